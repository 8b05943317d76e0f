//! A progress bar on stderr for long dumps.
//!
//! It is drawn only when stderr is a terminal and stdout is not (the output goes to a file or a
//! pipe, so the bar does not tangle with it), and only once a run has taken more than
//! [`DELAY`]: short runs print nothing extra.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How long a run goes before its bar appears.
pub const DELAY: Duration = Duration::from_secs(1);

/// Progress over a known number of bytes.
pub struct Progress {
    bar: ProgressBar,
    started: Instant,
    /// Whether a bar may be drawn at all.
    enabled: bool,
    shown: bool,
}

impl Progress {
    /// Progress over `total` bytes, labelled `verb` (`dumping`).
    pub fn new(verb: &str, total: u64) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
        let template = format!("{verb} {{bar:40}} {{decimal_bytes}}/{{decimal_total_bytes}} {{wide_msg}}");
        bar.set_style(ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()));
        let enabled = std::io::stderr().is_terminal() && !std::io::stdout().is_terminal();
        Progress { bar, started: Instant::now(), enabled, shown: false }
    }

    /// Names what is being worked on (an entry name, escaped by the caller).
    pub fn set_message(&self, message: String) {
        self.bar.set_message(message);
    }

    /// Counts `bytes` more done, and shows the bar once the run has taken long enough.
    pub fn inc(&mut self, bytes: u64) {
        self.bar.inc(bytes);
        if self.enabled && !self.shown && self.started.elapsed() >= DELAY {
            self.shown = true;
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
    }

    /// Prints a line on stderr without tearing the bar.
    pub fn note(&self, line: &str) {
        self.bar.suspend(|| eprintln!("{line}"));
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

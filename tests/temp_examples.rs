//! Runs the `temp_writer` and `temp_reader` examples (the port of the .NET shared-memory pair) as
//! real processes, and checks what the readers printed and that the store is gone afterwards.
//!
//! The example binaries are not test dependencies cargo can name (`CARGO_BIN_EXE_*` covers binaries
//! only), but `cargo test` and `cargo test --workspace` build every example of the package
//! `shmstore-examples` (examples/Cargo.toml, a default member of the workspace) before they run the
//! tests, into `target/<profile>/examples/`, next to the `deps/` directory this test binary lives
//! in. Running this file alone (`cargo test --test temp_examples`) builds no examples: run
//! `cargo build -p shmstore-examples --examples` first.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

/// The path of the example binary `name`, built by `cargo test` next to this test binary.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/temp_examples-HASH -> target/<profile>/examples/NAME
    let profile_dir = exe.parent().and_then(Path::parent).expect("test binary in target/<profile>/deps");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "example binary {} not found: `cargo test` builds the examples; when running this test alone, \
         run `cargo build -p shmstore-examples --examples` first",
        path.display()
    );
    path
}

/// A running example, its stdout lines arriving on a channel.
struct Running {
    name: &'static str,
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(name: &'static str, dir: &Path, args: &[&str]) -> Running {
        let mut child = Command::new(example(name))
            .args(args)
            .env("SHMSTORE_TEMP_DIR", dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running { name, child, lines, seen: Vec::new() }
    }

    /// Waits (at most a minute, as a safety net) for a line starting with `prefix`.
    fn wait_for_line(&mut self, prefix: &str) {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    let found = line.starts_with(prefix);
                    self.seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(e) => panic!("{} never printed {prefix:?} ({e}); it printed {:#?}", self.name, self.seen),
            }
        }
    }

    /// Waits for the process to exit successfully and returns everything it printed.
    fn finish(mut self) -> Vec<String> {
        let status = self.child.wait().expect("wait");
        let more: Vec<String> = self.lines.iter().collect();
        self.seen.extend(more);
        assert!(status.success(), "{} failed with {status}; it printed {:#?}", self.name, self.seen);
        std::mem::take(&mut self.seen)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Only reached with the process still running when the test failed.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_reader_prints_every_message_of_the_writer_and_the_store_goes_away() {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = format!("global_share_memory-{}", std::process::id());
    const MESSAGES: u64 = 4;

    // A reader started before the writer finds no shared memory, retries every second, and then
    // follows the writer until it has been quiet for 1.5 s.
    let mut early = Running::start("temp_reader", dir.path(), &[&name, "0", "1500"]);
    early.wait_for_line("no shared memory");

    // The writer writes a message every 700 ms; a reader started after the first one sees them all.
    let mut writer = Running::start("temp_writer", dir.path(), &[&name, "700", &MESSAGES.to_string()]);
    writer.wait_for_line("wrote 0: Hello World0");
    let reader = Running::start("temp_reader", dir.path(), &[&name, &MESSAGES.to_string(), "10000"]);

    let reader_out = reader.finish();
    let writer_out = writer.finish();
    let early_out = early.finish();

    let expected: Vec<String> = (0..MESSAGES).map(|i| format!("message {i}: Hello World{i}")).collect();
    let printed: Vec<String> = reader_out.iter().filter(|l| l.starts_with("message ")).cloned().collect();
    assert_eq!(printed, expected, "the reader's output: {reader_out:#?}");
    assert_eq!(reader_out.last().map(String::as_str), Some("done after 4 messages"));
    assert!(writer_out.iter().any(|l| l == "done"), "{writer_out:#?}");

    assert!(early_out.iter().any(|l| l == "no shared memory"), "{early_out:#?}");
    let last = format!("message {}: Hello World{}", MESSAGES - 1, MESSAGES - 1);
    assert!(early_out.contains(&last), "the early reader missed the last message: {early_out:#?}");
    assert!(early_out.iter().any(|l| l.contains("the writer is gone")), "{early_out:#?}");

    // Everybody has exited: the store is gone.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

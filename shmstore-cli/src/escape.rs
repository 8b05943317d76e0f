//! Terminal-safe text: every string that comes from a store file (entry, type, field and variant
//! names, text values, error details) or from the file system passes through here before the
//! command prints it.
//!
//! A crafted file could otherwise hold bytes that a terminal obeys rather than shows: ESC starts a
//! sequence that can clear the screen, move the cursor or retitle the window; other C0 controls,
//! DEL and the C1 controls (U+0080..U+009F, which some terminals obey as 8-bit sequences) do
//! similar things; and the Unicode bidirectional controls reorder the text around them, so that
//! a name can read differently from what it holds. Each of these is printed as a Rust-style
//! escape, `\u{1b}`, which shows what the file holds without acting on it. Every other character,
//! including non-ASCII letters (`Größe`, `温度`), is printed as it is.
//!
//! The library refuses control characters in entry names; these escapes are the command's own
//! defence, whatever the library accepts.

use std::borrow::Cow;

/// Whether printing `c` raw could make a terminal do more than show a character: a control
/// character (C0, DEL, C1), a bidirectional formatting character, or a line or paragraph
/// separator.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'                       // Arabic letter mark
            | '\u{200e}' | '\u{200f}'        // left-to-right and right-to-left marks
            | '\u{202a}'..='\u{202e}'        // embeddings and overrides
            | '\u{2066}'..='\u{2069}'        // isolates
            | '\u{2028}' | '\u{2029}' // line and paragraph separators
        )
}

/// `s` with every [unsafe](is_unsafe) character written as `\u{..}` (lower-case hex); borrowed
/// when there is none.
pub fn text(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A file system path, [escaped](text) after a lossy conversion to UTF-8.
pub fn path(p: &std::path::Path) -> String {
    text(&p.to_string_lossy()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped() {
        assert_eq!(text("\x1b[2J\x1bcgone"), "\\u{1b}[2J\\u{1b}cgone");
        assert_eq!(text("a\tb\nc\rd\0e"), "a\\u{9}b\\u{a}c\\u{d}d\\u{0}e");
        assert_eq!(text("del\x7f"), "del\\u{7f}");
        // C1: CSI and the string terminator, as UTF-8-encoded characters.
        assert_eq!(text("x\u{9b}31my\u{9c}"), "x\\u{9b}31my\\u{9c}");
    }

    #[test]
    fn bidi_controls_are_escaped() {
        assert_eq!(text("invoice\u{202e}fdp.exe"), "invoice\\u{202e}fdp.exe");
        assert_eq!(text("\u{2066}a\u{2069}\u{200f}\u{61c}"), "\\u{2066}a\\u{2069}\\u{200f}\\u{61c}");
        assert_eq!(text("line\u{2028}break"), "line\\u{2028}break");
    }

    #[test]
    fn printable_text_is_untouched() {
        for s in ["", "samples", "Größe", "温度_°C", "emoji 🦀", "quote \" and \\ backslash", "tab-free"] {
            assert!(matches!(text(s), Cow::Borrowed(b) if b == s), "{s:?}");
        }
    }

    #[test]
    fn every_escape_is_printable() {
        // Whatever comes in, nothing unsafe goes out.
        let all: String = (0..0x3000u32).filter_map(char::from_u32).collect();
        assert!(!text(&all).chars().any(is_unsafe));
    }
}

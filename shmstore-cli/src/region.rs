//! Byte regions printed in chunks: a text preview and a hex dump, or a JSON string or array,
//! whatever the region's size, in memory bounded by [`CHUNK_BYTES`].
//!
//! Each form needs one fact about the whole selection before its first byte can be printed (where
//! the trailing zero bytes start, for the preview; whether it is all UTF-8, for JSON), so each
//! reads the selection twice: once to learn that, once to print. Each chunk is copied under the
//! entry's shared lock, a consistent snapshot of itself; a writer may change the region between
//! chunks and between the two passes, and the output stays well-formed when it does.

use std::io::Write;

use shmstore::Store;

use crate::escape;
use crate::failure::Failure;
use crate::json;
use crate::progress::Progress;

/// How many bytes are copied out at a time. A multiple of 16, so that hex lines never straddle
/// two chunks.
pub const CHUNK_BYTES: u64 = 1 << 20;

/// How many bytes of a region the text preview shows; the hex dump shows them all.
pub const PREVIEW_BYTES: u64 = 256;

/// How many bytes of the region a dump of `len` of its bytes reads, for the progress bar.
pub fn planned_reads(len: u64) -> u64 {
    len.saturating_mul(2)
}

/// Reads chunks of one region, counting them on the progress bar.
pub struct Chunks<'a> {
    /// The store.
    pub store: &'a Store,
    /// The region's entry name.
    pub name: &'a str,
    /// The bar to count on.
    pub progress: &'a mut Progress,
}

impl Chunks<'_> {
    fn read(&mut self, at: u64, count: u64) -> Result<Vec<u8>, Failure> {
        let bytes = self.store.read_raw(self.name, at, count)?;
        self.progress.inc(count);
        Ok(bytes)
    }

    /// Where the trailing zero bytes of `start..end` begin: one past the last non-zero byte, or
    /// `start` if all are zero. Reads from the end, so a region with data near its end costs
    /// little.
    fn used_end(&mut self, start: u64, end: u64) -> Result<u64, Failure> {
        let mut at = end;
        while at > start {
            let count = CHUNK_BYTES.min(at - start);
            let chunk = self.read(at - count, count)?;
            if let Some(last) = last_non_zero(&chunk) {
                self.progress.inc(at - count - start); // The part never read.
                return Ok(at - count + last as u64 + 1);
            }
            at -= count;
        }
        Ok(start)
    }

    /// Whether all of `start..end` is UTF-8.
    fn is_utf8(&mut self, start: u64, end: u64) -> Result<bool, Failure> {
        let mut at = start;
        while at < end {
            let count = CHUNK_BYTES.min(end - at);
            let chunk = self.read(at, count)?;
            match std::str::from_utf8(&chunk) {
                Ok(_) => at += count,
                // A character cut by the chunk's end: read it again with the next chunk.
                Err(e) if e.error_len().is_none() && at + count < end && e.valid_up_to() > 0 => {
                    at += e.valid_up_to() as u64
                }
                Err(_) => {
                    self.progress.inc(end - at - count); // The part never read.
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }
}

/// `name[start..end] = "preview" ... (N more bytes) + Z zero bytes`, then a hex dump of every
/// selected byte, 16 a line, like `hexdump -C`: a run of lines equal to the one before it is
/// shown as one `*`, followed by the offset where the run ends.
pub fn text(out: &mut dyn Write, chunks: &mut Chunks<'_>, start: u64, end: u64) -> Result<(), Failure> {
    let used_end = chunks.used_end(start, end)?;
    let shown_end = used_end.min(start.saturating_add(PREVIEW_BYTES));
    let head =
        if shown_end > start { chunks.store.read_raw(chunks.name, start, shown_end - start)? } else { Vec::new() };
    writeln!(
        out,
        "{}[{start}..{end}] = {}",
        escape::text(chunks.name),
        preview(&head, used_end - shown_end, end - used_end)
    )?;

    let mut previous: Option<[u8; 16]> = None;
    let mut squeezing = false;
    let mut at = start;
    while at < end {
        let count = CHUNK_BYTES.min(end - at);
        let chunk = chunks.read(at, count)?;
        for (i, line) in chunk.chunks(16).enumerate() {
            let offset = at + i as u64 * 16;
            let full: Option<[u8; 16]> = line.try_into().ok();
            if full.is_some() && full == previous {
                if !squeezing {
                    writeln!(out, "    *")?;
                    squeezing = true;
                }
                continue;
            }
            writeln!(out, "    {}", hex_line(offset, line))?;
            previous = full;
            squeezing = false;
        }
        at += count;
    }
    if squeezing {
        writeln!(out, "    {end:08x}")?;
    }
    Ok(())
}

/// The selected bytes as JSON: a string if they are all UTF-8 (zero bytes as `\u0000`), else an
/// array of numbers 0..=255.
pub fn json(out: &mut dyn Write, chunks: &mut Chunks<'_>, start: u64, end: u64) -> Result<(), Failure> {
    let utf8 = chunks.is_utf8(start, end)?;
    out.write_all(if utf8 { b"\"" } else { b"[" })?;
    let mut at = start;
    while at < end {
        let count = CHUNK_BYTES.min(end - at);
        let chunk = chunks.read(at, count)?;
        if !utf8 {
            write_numbers(out, &chunk, at == start)?;
            at += count;
            continue;
        }
        match std::str::from_utf8(&chunk) {
            Ok(text) => {
                write_text(out, text)?;
                at += count;
            }
            Err(e) => {
                let (valid, rest) = chunk.split_at(e.valid_up_to());
                write_text(out, std::str::from_utf8(valid).unwrap_or_default())?;
                match e.error_len() {
                    // A character cut by the chunk's end: read it again with the next chunk.
                    None if at + count < end && !valid.is_empty() => at += valid.len() as u64,
                    // A writer changed the region since it was checked: the string stays a
                    // string, with U+FFFD for what is no longer UTF-8.
                    None => {
                        write_text(out, "\u{fffd}")?;
                        at += count;
                    }
                    Some(bad) => {
                        write_text(out, "\u{fffd}")?;
                        at += (valid.len() + bad.min(rest.len())) as u64;
                    }
                }
            }
        }
    }
    out.write_all(if utf8 { b"\"" } else { b"]" })?;
    Ok(())
}

/// `pattern` repeated to fill `N` bytes (`N` a multiple of its length).
const fn repeated<const N: usize>(pattern: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = pattern[i % pattern.len()];
        i += 1;
    }
    out
}

/// 256 escaped zero bytes, for runs of them in a JSON string.
static NUL_ESCAPES: [u8; 6 * 256] = repeated(b"\\u0000");

/// 256 zero bytes as JSON array items, each after a comma.
static ZERO_ITEMS: [u8; 2 * 256] = repeated(b",0");

/// The body of a JSON string holding `text`, quick for runs of zero bytes (the bulk of a sparse
/// region): each is `\u0000`.
fn write_text(out: &mut dyn Write, text: &str) -> std::io::Result<()> {
    let mut rest = text;
    while !rest.is_empty() {
        let zeros = zero_prefix(rest.as_bytes());
        let mut left = zeros;
        while left > 0 {
            let n = left.min(256);
            out.write_all(&NUL_ESCAPES[..n * 6])?;
            left -= n;
        }
        rest = &rest[zeros..];
        let other = rest.find('\0').unwrap_or(rest.len());
        let mut quoted = Vec::with_capacity(other + 2);
        json::write_str(&mut quoted, &rest[..other])?;
        out.write_all(&quoted[1..quoted.len() - 1])?;
        rest = &rest[other..];
    }
    Ok(())
}

/// Bytes as the comma-separated numbers of a JSON array; `first` if none has been written yet.
/// Quick for runs of zero bytes.
fn write_numbers(out: &mut dyn Write, bytes: &[u8], first: bool) -> std::io::Result<()> {
    let mut line = Vec::with_capacity(bytes.len() * 4);
    let mut i = 0;
    while i < bytes.len() {
        let zeros = zero_prefix(&bytes[i..]);
        if zeros > 0 {
            // Each zero as ",0"; the very first without its comma.
            let skip = usize::from(first && i == 0);
            let mut left = zeros;
            let mut from = skip;
            while left > 0 {
                let n = left.min(256);
                line.extend_from_slice(&ZERO_ITEMS[from..n * 2]);
                from = 0;
                left -= n;
            }
            i += zeros;
            continue;
        }
        let b = bytes[i];
        if i > 0 || !first {
            line.push(b',');
        }
        if b >= 100 {
            line.push(b'0' + b / 100);
        }
        if b >= 10 {
            line.push(b'0' + b / 10 % 10);
        }
        line.push(b'0' + b % 10);
        i += 1;
    }
    out.write_all(&line)
}

/// How many bytes at the start of `bytes` are zero.
fn zero_prefix(bytes: &[u8]) -> usize {
    const BLOCK: usize = 256;
    const ZEROS: [u8; BLOCK] = [0; BLOCK];
    // Whole blocks compared at once, then byte by byte: quick for long runs.
    let blocks = bytes.chunks_exact(BLOCK).take_while(|b| *b == ZEROS).count();
    let at = blocks * BLOCK;
    at + bytes[at..].iter().take_while(|&&b| b == 0).count()
}

/// The index of the last non-zero byte, if any.
fn last_non_zero(bytes: &[u8]) -> Option<usize> {
    const BLOCK: usize = 256;
    const ZEROS: [u8; BLOCK] = [0; BLOCK];
    let tail = bytes.len() % BLOCK;
    if let Some(i) = bytes[bytes.len() - tail..].iter().rposition(|&b| b != 0) {
        return Some(bytes.len() - tail + i);
    }
    let whole = &bytes[..bytes.len() - tail];
    let block = whole.chunks_exact(BLOCK).rposition(|b| b != ZEROS)?;
    let i = whole[block * BLOCK..(block + 1) * BLOCK].iter().rposition(|&b| b != 0)?;
    Some(block * BLOCK + i)
}

/// The preview: the bytes as a quoted, escaped UTF-8-lossy string, then how many more bytes up
/// to the trailing zeros were left out, then how many trailing zero bytes follow.
fn preview(head: &[u8], more: u64, zeros: u64) -> String {
    let mut text = format!("{:?}", String::from_utf8_lossy(head));
    if more > 0 {
        text.push_str(&format!(" ... ({more} more bytes)"));
    }
    if zeros > 0 {
        text.push_str(&format!(" + {zeros} zero byte{}", if zeros == 1 { "" } else { "s" }));
    }
    escape::text(&text).into_owned()
}

/// One line of a hex dump, like `hexdump -C`: the offset, up to 16 bytes in hex, and the printable
/// ASCII ones (others as `.`).
fn hex_line(offset: u64, bytes: &[u8]) -> String {
    let mut line = format!("{offset:08x} ");
    for i in 0..16 {
        if i == 8 {
            line.push(' ');
        }
        match bytes.get(i) {
            Some(b) => line.push_str(&format!(" {b:02x}")),
            None => line.push_str("   "),
        }
    }
    let ascii: String =
        bytes.iter().map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '.' }).collect();
    line.push_str(&format!("  |{ascii}|"));
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews() {
        assert_eq!(preview(b"hello", 0, 3), "\"hello\" + 3 zero bytes");
        assert_eq!(preview(b"a\nb\0c", 0, 0), "\"a\\nb\\0c\"");
        assert_eq!(preview(&[0xff, b'x'], 0, 1), "\"\u{fffd}x\" + 1 zero byte");
        assert_eq!(preview(b"", 0, 0), "\"\"");
        assert_eq!(preview(b"zz", 4, 0), "\"zz\" ... (4 more bytes)");
        assert_eq!(preview(b"\x1b[2J\xe2\x80\xae", 0, 0), "\"\\u{1b}[2J\\u{202e}\"");
    }

    #[test]
    fn hex_lines() {
        assert_eq!(
            hex_line(16, b"Hello, world!\0\x7f\xff"),
            "00000010  48 65 6c 6c 6f 2c 20 77  6f 72 6c 64 21 00 7f ff  |Hello, world!...|"
        );
        assert_eq!(hex_line(0, b"ab"), format!("00000000  61 62{}  |ab|", " ".repeat(43)));
    }

    #[test]
    fn zero_scans() {
        let mut bytes = vec![0u8; 1000];
        assert_eq!(zero_prefix(&bytes), 1000);
        assert_eq!(last_non_zero(&bytes), None);
        for at in [0, 1, 255, 256, 257, 511, 700, 999] {
            bytes.fill(0);
            bytes[at] = 1;
            assert_eq!(zero_prefix(&bytes), at);
            assert_eq!(last_non_zero(&bytes), Some(at));
        }
        assert_eq!(last_non_zero(&[]), None);
        assert_eq!(zero_prefix(&[]), 0);
    }

    #[test]
    fn json_bodies() {
        let mut out = Vec::new();
        write_text(&mut out, "a\0\0\"b\x1b").unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "a\\u0000\\u0000\\\"b\\u001b");
        let mut out = Vec::new();
        let long = format!("{}x{}", "\0".repeat(300), "\0".repeat(3));
        write_text(&mut out, &long).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), format!("{}x{}", "\\u0000".repeat(300), "\\u0000".repeat(3)));
        let mut out = Vec::new();
        write_numbers(&mut out, &[0, 9, 10, 99, 100, 255], true).unwrap();
        write_numbers(&mut out, &[7, 0, 0], false).unwrap();
        write_numbers(&mut out, &[0; 300], false).unwrap();
        let expected = format!("0,9,10,99,100,255,7,0,0{}", ",0".repeat(300));
        assert_eq!(String::from_utf8(out).unwrap(), expected);
        let mut out = Vec::new();
        write_numbers(&mut out, &[0; 600], true).unwrap();
        write_numbers(&mut out, &[1], false).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), format!("0{},1", ",0".repeat(599)));
    }
}

//! `shmstore dump`: values decoded from the stored schemas alone.

use std::io::Write;
use std::path::Path;

use shmstore::format::value::{self, Value};
use shmstore::{EntryInfo, EntryKind, Schema, SchemaKind, Store};

use crate::failure::{self, Failure};
use crate::json;

/// How many array elements text output shows unless told otherwise.
pub const DEFAULT_TEXT_LIMIT: u64 = 100;

/// How many bytes of an array are copied out at a time.
const CHUNK_BYTES: u64 = 1 << 20;

/// How many bytes of a byte region the text preview shows; the hex dump shows them all.
const PREVIEW_BYTES: usize = 256;

/// What to print.
#[derive(Debug, Clone)]
pub struct Options {
    /// JSON instead of text.
    pub json: bool,
    /// The first array element to print.
    pub offset: u64,
    /// How many array elements to print at most; `None` for all.
    pub limit: Option<u64>,
}

/// Runs `shmstore dump FILE [NAME]`.
pub fn run(path: &Path, name: Option<&str>, opts: &Options, out: &mut dyn Write) -> Result<(), Failure> {
    let store = failure::open(path)?;
    let entries = store.entries()?;
    let selected: Vec<&EntryInfo> = match name {
        Some(name) => {
            vec![entries.iter().find(|e| e.name == name).ok_or_else(|| failure::no_entry(path, name, &store))?]
        }
        None => entries.iter().collect(),
    };
    let mut dumper = Dumper { store: &store, opts, invalid: 0, out };
    if opts.json {
        if name.is_some() {
            dumper.json_entry(selected[0])?;
        } else {
            dumper.out.write_all(b"{")?;
            for (i, e) in selected.iter().enumerate() {
                if i > 0 {
                    dumper.out.write_all(b",")?;
                }
                serde_json::to_writer(&mut *dumper.out, &e.name).map_err(std::io::Error::from)?;
                dumper.out.write_all(b":")?;
                dumper.json_entry(e)?;
            }
            dumper.out.write_all(b"}")?;
        }
        writeln!(dumper.out)?;
    } else {
        for e in selected {
            dumper.text_entry(e)?;
        }
    }
    match dumper.invalid {
        0 => Ok(()),
        1 => Err(Failure::invalid(format!(
            "1 value in `{}` breaks its type's rules (shown as <invalid: ...>); `shmstore verify {}` checks them all",
            path.display(),
            path.display()
        ))),
        n => Err(Failure::invalid(format!(
            "{n} values in `{}` break their types' rules (shown as <invalid: ...>); `shmstore verify {}` checks them all",
            path.display(),
            path.display()
        ))),
    }
}

struct Dumper<'a> {
    store: &'a Store,
    opts: &'a Options,
    /// How many printed values held invalid bytes.
    invalid: u64,
    out: &'a mut dyn Write,
}

impl Dumper<'_> {
    /// The elements of array `e` to print.
    fn range(&self, e: &EntryInfo) -> (u64, u64) {
        let start = self.opts.offset.min(e.len);
        let count = self.opts.limit.map_or(e.len - start, |limit| limit.min(e.len - start));
        (start, start + count)
    }

    /// Decodes elements `start..end` of `e`, chunk by chunk, handing each to `each`.
    fn elements(
        &mut self,
        e: &EntryInfo,
        schema: &Schema,
        (start, end): (u64, u64),
        each: &mut dyn FnMut(&mut dyn Write, u64, &Value) -> std::io::Result<()>,
    ) -> Result<(), Failure> {
        let per_chunk = (CHUNK_BYTES / e.elem_size.max(1)).max(1);
        let size = usize::try_from(e.elem_size).map_err(|_| Failure::invalid("element size too large"))?;
        let mut at = start;
        while at < end {
            let count = per_chunk.min(end - at);
            let bytes = self.store.read_raw(&e.name, at, count)?;
            for i in 0..count {
                let offset = i as usize * size;
                let chunk = bytes.get(offset..offset + size).unwrap_or(&[]);
                let value = value::decode(schema, chunk)
                    .map_err(|v| Failure::invalid(format!("entry `{}`: element {}: {v}", e.name, at + i)))?;
                if value.has_invalid() {
                    self.invalid += 1;
                }
                each(&mut *self.out, at + i, &value)?;
            }
            at += count;
        }
        Ok(())
    }

    fn object(&mut self, e: &EntryInfo, schema: &Schema) -> Result<Value, Failure> {
        let bytes = self.store.read_raw(&e.name, 0, 1)?;
        let value = value::decode(schema, &bytes).map_err(|v| Failure::invalid(format!("entry `{}`: {v}", e.name)))?;
        if value.has_invalid() {
            self.invalid += 1;
        }
        Ok(value)
    }

    fn json_entry(&mut self, e: &EntryInfo) -> Result<(), Failure> {
        if e.kind == EntryKind::Bytes {
            // A string if the selected bytes are UTF-8, else an array of numbers 0..=255.
            let bytes = self.bytes(e)?;
            let written = match std::str::from_utf8(&bytes) {
                Ok(text) => serde_json::to_writer(&mut *self.out, text),
                Err(_) => serde_json::to_writer(&mut *self.out, &bytes),
            };
            written.map_err(std::io::Error::from)?;
            return Ok(());
        }
        let schema = self.store.schema(&e.name)?;
        if e.kind != EntryKind::Array {
            let value = self.object(e, &schema)?;
            serde_json::to_writer(&mut *self.out, &json::value(&value)).map_err(std::io::Error::from)?;
            return Ok(());
        }
        let range = self.range(e);
        self.out.write_all(b"[")?;
        self.elements(e, &schema, range, &mut |out, i, value| {
            if i > range.0 {
                out.write_all(b",")?;
            }
            serde_json::to_writer(&mut *out, &json::value(value)).map_err(std::io::Error::from)
        })?;
        self.out.write_all(b"]")?;
        Ok(())
    }

    /// The selected bytes of byte region `e`, copied in one piece: one consistent snapshot.
    fn bytes(&mut self, e: &EntryInfo) -> Result<Vec<u8>, Failure> {
        let (start, end) = self.range(e);
        Ok(self.store.read_raw(&e.name, start, end - start)?)
    }

    /// A byte region as text: a UTF-8-lossy preview, then a hex dump with offsets.
    fn text_bytes(&mut self, e: &EntryInfo) -> Result<(), Failure> {
        let (start, end) = self.range(e);
        let bytes = self.bytes(e)?;
        writeln!(self.out, "{}[{start}..{end}] = {}", e.name, preview(&bytes))?;
        for (i, line) in bytes.chunks(16).enumerate() {
            writeln!(self.out, "    {}", hex_line(start + i as u64 * 16, line))?;
        }
        if end < e.len {
            self.out.flush()?;
            eprintln!(
                "shmstore: `{}`: showing bytes {start}..{end} of {}; see more with --offset {end}, --limit N or --all",
                e.name, e.len
            );
        }
        Ok(())
    }

    fn text_entry(&mut self, e: &EntryInfo) -> Result<(), Failure> {
        if e.kind == EntryKind::Bytes {
            return self.text_bytes(e);
        }
        let schema = self.store.schema(&e.name)?;
        if e.kind != EntryKind::Array {
            let value = self.object(e, &schema)?;
            writeln!(self.out, "{} = {value}", e.name)?;
            return Ok(());
        }
        let (start, end) = self.range(e);
        let more = end < e.len;
        let composite = matches!(schema.kind, SchemaKind::Struct { .. } | SchemaKind::Array { .. });
        write!(self.out, "{}[{start}..{end}] = [", e.name)?;
        if composite && start < end {
            // One element per line.
            writeln!(self.out)?;
            self.elements(e, &schema, (start, end), &mut |out, _, value| writeln!(out, "    {value},"))?;
            writeln!(self.out, "{}]", if more { "    ...\n" } else { "" })?;
        } else {
            self.elements(e, &schema, (start, end), &mut |out, i, value| {
                if i > start {
                    out.write_all(b", ")?;
                }
                write!(out, "{value}")
            })?;
            let ellipsis = match (more, start == end) {
                (false, _) => "",
                (true, true) => "...",
                (true, false) => ", ...",
            };
            writeln!(self.out, "{ellipsis}]")?;
        }
        if more {
            self.out.flush()?;
            eprintln!(
                "shmstore: `{}`: showing elements {start}..{end} of {}; see more with --offset {end}, --limit N or --all",
                e.name, e.len
            );
        }
        Ok(())
    }
}

/// The bytes as a quoted, escaped UTF-8-lossy string: trailing zero bytes are counted instead of
/// shown, and text past [`PREVIEW_BYTES`] is cut off (the hex dump has it all).
fn preview(bytes: &[u8]) -> String {
    let used = bytes.iter().rposition(|&b| b != 0).map_or(0, |last| last + 1);
    let shown = used.min(PREVIEW_BYTES);
    let mut text = format!("{:?}", String::from_utf8_lossy(&bytes[..shown]));
    if shown < used {
        text.push_str(&format!(" ... ({} more bytes)", used - shown));
    }
    if used < bytes.len() {
        let zeros = bytes.len() - used;
        text.push_str(&format!(" + {zeros} zero byte{}", if zeros == 1 { "" } else { "s" }));
    }
    text
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
        assert_eq!(preview(b"hello\0\0\0"), "\"hello\" + 3 zero bytes");
        assert_eq!(preview(b"a\nb\0c"), "\"a\\nb\\0c\"");
        assert_eq!(preview(&[0xff, b'x', 0]), "\"\u{fffd}x\" + 1 zero byte");
        assert_eq!(preview(b""), "\"\"");
        let long = vec![b'z'; PREVIEW_BYTES + 4];
        assert!(preview(&long).ends_with("\" ... (4 more bytes)"), "{}", preview(&long));
    }

    #[test]
    fn hex_lines() {
        assert_eq!(
            hex_line(16, b"Hello, world!\0\x7f\xff"),
            "00000010  48 65 6c 6c 6f 2c 20 77  6f 72 6c 64 21 00 7f ff  |Hello, world!...|"
        );
        assert_eq!(hex_line(0, b"ab"), format!("00000000  61 62{}  |ab|", " ".repeat(43)));
    }
}

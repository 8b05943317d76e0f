//! `shmstore dump`: values decoded from the stored schemas alone, printed as they are read.
//!
//! Nothing is read whole: arrays are copied in chunks of about [`CHUNK_BYTES`], byte regions
//! too (see [`region`](crate::region)), and values are printed straight from their bytes
//! ([`render`](crate::render)). An object is one consistent snapshot, so it is copied in one
//! piece: its size is that of its type.

use std::io::Write;
use std::path::Path;

use shmstore::{EntryInfo, EntryKind, Schema, SchemaKind, Store};

use crate::escape;
use crate::failure::{self, Failure};
use crate::json::{self, Ints};
use crate::progress::Progress;
use crate::region::{self, Chunks};
use crate::render::{self, Style};

/// How many array elements text output shows unless told otherwise.
pub const DEFAULT_TEXT_LIMIT: u64 = 100;

/// How many bytes of an array are copied out at a time.
const CHUNK_BYTES: u64 = region::CHUNK_BYTES;

/// What to print.
#[derive(Debug, Clone)]
pub struct Options {
    /// JSON instead of text.
    pub json: bool,
    /// How JSON writes 64-bit integers.
    pub ints: Ints,
    /// The first array element (byte, for a byte region) to print.
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
    // Every request is checked before anything is printed.
    for e in &selected {
        check_offset(e, opts.offset, name.is_some())?;
    }
    let planned = selected.iter().map(|e| planned_reads(e, opts)).fold(0, u64::saturating_add);
    let mut dumper = Dumper { store: &store, opts, invalid: 0, out, progress: Progress::new("dumping", planned) };
    if opts.json {
        if name.is_some() {
            dumper.json_entry(selected[0])?;
        } else {
            dumper.out.write_all(b"{")?;
            for (i, e) in selected.iter().enumerate() {
                if i > 0 {
                    dumper.out.write_all(b",")?;
                }
                json::write_str(dumper.out, &e.name)?;
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
    dumper.progress.finish();
    let file = escape::path(path);
    match dumper.invalid {
        0 => Ok(()),
        1 => Err(Failure::invalid(format!(
            "1 value in `{file}` breaks its type's rules (shown as <invalid: ...>); `shmstore verify {file}` checks them all"
        ))),
        n => Err(Failure::invalid(format!(
            "{n} values in `{file}` break their types' rules (shown as <invalid: ...>); `shmstore verify {file}` checks them all"
        ))),
    }
}

/// Refuses an `--offset` at or past the end of an array or byte region (an empty one takes only
/// 0), and any `--offset` for an object named on the command line. Without a name, objects ignore
/// the offset.
fn check_offset(e: &EntryInfo, offset: u64, named: bool) -> Result<(), Failure> {
    if offset == 0 {
        return Ok(());
    }
    let name = escape::text(&e.name);
    let unit = if e.kind == EntryKind::Bytes { "byte" } else { "element" };
    match e.kind {
        EntryKind::Array | EntryKind::Bytes if offset < e.len => Ok(()),
        EntryKind::Array | EntryKind::Bytes => {
            let valid = match e.len {
                0 => "it is empty, so leave out --offset".to_owned(),
                1 => "the only valid offset is 0".to_owned(),
                n => format!("use an offset from 0 to {}", n - 1),
            };
            Err(Failure::usage(format!(
                "--offset {offset} is out of range for `{name}`, which has {} {unit}{}: {valid}",
                e.len,
                if e.len == 1 { "" } else { "s" }
            )))
        }
        _ if named => Err(Failure::usage(format!(
            "`{name}` is an object, one value: --offset applies to arrays and byte regions; leave it out"
        ))),
        _ => Ok(()),
    }
}

/// How many bytes dumping `e` reads, for the progress bar.
fn planned_reads(e: &EntryInfo, opts: &Options) -> u64 {
    let (start, end) = range(e, opts);
    match e.kind {
        EntryKind::Bytes => region::planned_reads(end - start),
        EntryKind::Array => (end - start).saturating_mul(e.elem_size),
        _ => e.elem_size,
    }
}

/// The elements of array or byte region `e` to print.
fn range(e: &EntryInfo, opts: &Options) -> (u64, u64) {
    let start = opts.offset.min(e.len);
    let count = opts.limit.map_or(e.len - start, |limit| limit.min(e.len - start));
    (start, start + count)
}

struct Dumper<'a> {
    store: &'a Store,
    opts: &'a Options,
    /// How many printed values held invalid bytes.
    invalid: u64,
    out: &'a mut dyn Write,
    progress: Progress,
}

impl Dumper<'_> {
    fn style(&self) -> Style {
        if self.opts.json {
            Style::Json(self.opts.ints)
        } else {
            Style::Text
        }
    }

    /// The schema of `e`, which must agree with its record on the size of a value.
    fn schema(&self, e: &EntryInfo) -> Result<Schema, Failure> {
        let schema = self.store.schema(&e.name)?;
        if schema.size != e.elem_size {
            return Err(Failure::invalid(format!(
                "entry `{}`: its record says {} bytes per value, but its schema `{}` says {}; `shmstore verify` checks the whole file",
                escape::text(&e.name),
                e.elem_size,
                escape::text(&schema.display_name()),
                schema.size
            )));
        }
        Ok(schema)
    }

    /// Prints elements `start..end` of array `e`, copied chunk by chunk: for each, what `before`
    /// writes (given the element's index), the element, then what `after` writes.
    fn elements(
        &mut self,
        e: &EntryInfo,
        schema: &Schema,
        (start, end): (u64, u64),
        before: &mut dyn FnMut(&mut dyn Write, u64) -> std::io::Result<()>,
        after: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<(), Failure> {
        let per_chunk = (CHUNK_BYTES / e.elem_size.max(1)).max(1);
        let size = usize::try_from(e.elem_size).map_err(|_| Failure::invalid("element size too large"))?;
        let style = self.style();
        let mut at = start;
        while at < end {
            let count = per_chunk.min(end - at);
            let bytes = self.store.read_raw(&e.name, at, count)?;
            self.progress.inc(count.saturating_mul(e.elem_size));
            for i in 0..count {
                let offset = i as usize * size;
                let element = bytes.get(offset..offset + size).unwrap_or(&[]);
                before(&mut *self.out, at + i)?;
                if render::value(&mut *self.out, schema, element, style)? {
                    self.invalid += 1;
                }
                after(&mut *self.out)?;
            }
            at += count;
        }
        Ok(())
    }

    /// Prints object `e`, copied in one piece (one consistent snapshot).
    fn object(&mut self, e: &EntryInfo, schema: &Schema) -> Result<(), Failure> {
        let bytes = self.store.read_raw(&e.name, 0, 1)?;
        self.progress.inc(e.elem_size);
        let style = self.style();
        if render::value(&mut *self.out, schema, &bytes, style)? {
            self.invalid += 1;
        }
        Ok(())
    }

    fn chunks<'s>(&'s mut self, e: &'s EntryInfo) -> (&'s mut dyn Write, Chunks<'s>) {
        (&mut *self.out, Chunks { store: self.store, name: &e.name, progress: &mut self.progress })
    }

    fn json_entry(&mut self, e: &EntryInfo) -> Result<(), Failure> {
        self.progress.set_message(escape::text(&e.name).into_owned());
        let (start, end) = range(e, self.opts);
        if e.kind == EntryKind::Bytes {
            let (out, mut chunks) = self.chunks(e);
            return region::json(out, &mut chunks, start, end);
        }
        let schema = self.schema(e)?;
        if e.kind != EntryKind::Array {
            return self.object(e, &schema);
        }
        self.out.write_all(b"[")?;
        self.elements(
            e,
            &schema,
            (start, end),
            &mut |out, i| if i > start { out.write_all(b",") } else { Ok(()) },
            &mut |_| Ok(()),
        )?;
        self.out.write_all(b"]")?;
        Ok(())
    }

    /// Tells on stderr which part of `e` was shown, and how to see the rest.
    fn partial(&self, e: &EntryInfo, what: &str, (start, end): (u64, u64)) {
        self.progress.note(&format!(
            "shmstore: `{}`: showing {what} {start}..{end} of {}; see more with --offset {end}, --limit N or --all",
            escape::text(&e.name),
            e.len
        ));
    }

    fn text_entry(&mut self, e: &EntryInfo) -> Result<(), Failure> {
        self.progress.set_message(escape::text(&e.name).into_owned());
        let name = escape::text(&e.name).into_owned();
        let (start, end) = range(e, self.opts);
        let more = end < e.len;
        if e.kind == EntryKind::Bytes {
            let (out, mut chunks) = self.chunks(e);
            region::text(out, &mut chunks, start, end)?;
            if more {
                self.out.flush()?;
                self.partial(e, "bytes", (start, end));
            }
            return Ok(());
        }
        let schema = self.schema(e)?;
        if e.kind != EntryKind::Array {
            write!(self.out, "{name} = ")?;
            self.object(e, &schema)?;
            writeln!(self.out)?;
            return Ok(());
        }
        let composite = matches!(schema.kind, SchemaKind::Struct { .. } | SchemaKind::Array { .. });
        write!(self.out, "{name}[{start}..{end}] = [")?;
        if composite && start < end {
            // One element per line.
            writeln!(self.out)?;
            self.elements(e, &schema, (start, end), &mut |out, _| out.write_all(b"    "), &mut |out| {
                out.write_all(b",\n")
            })?;
            writeln!(self.out, "{}]", if more { "    ...\n" } else { "" })?;
        } else {
            self.elements(
                e,
                &schema,
                (start, end),
                &mut |out, i| if i > start { out.write_all(b", ") } else { Ok(()) },
                &mut |_| Ok(()),
            )?;
            let ellipsis = match (more, start == end) {
                (false, _) => "",
                (true, true) => "...",
                (true, false) => ", ...",
            };
            writeln!(self.out, "{ellipsis}]")?;
        }
        if more {
            self.out.flush()?;
            self.partial(e, "elements", (start, end));
        }
        Ok(())
    }
}

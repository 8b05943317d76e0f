//! `shmstore verify`: the structure, the schemas and every value of a store.

use std::io::{IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::Path;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shmstore::format::value;
use shmstore::{EntryInfo, EntryKind, Schema};

use crate::failure::{self, Failure};
use crate::inspect::human_bytes;

/// How many bytes of an entry are copied out and checked at a time.
const CHUNK_BYTES: u64 = 1 << 20;

/// Runs `shmstore verify FILE`.
pub fn run(path: &Path, max_reports: u64, out: &mut dyn Write) -> Result<(), Failure> {
    // Opening and listing run the library's own checks, so verify refuses exactly what the library
    // refuses, in the same words: the header at open (magic, version, checksums, geometry, a file
    // shorter than its header says), then, as the entries are listed, every entry block (each on
    // its own, and all of them together: no two claim the same bytes, no schema is longer than
    // the format allows). A format-v2 open checks no block; listing checks them all.
    let store = failure::open(path)?;
    let entries = store.entries()?;
    // Then the free lists, which neither opening nor listing walk: every node sound, in the data
    // area, sharing no byte with another node or a live entry, and each list ending.
    store.check_free_lists()?;

    // Then every schema, against its record: the cheap structural checks come first, and a
    // problem there ends the run before any value is read.
    let mut checked = Vec::with_capacity(entries.len());
    let mut problems = Vec::new();
    // The header's informational live words (the entry count, the growth generation) are not
    // checked by open, since nothing depends on them; a value no real store can hold means the
    // header was damaged or crafted. A count that lags the catalog is only a warning: it is raised
    // just after an entry is published, so it lags during a creation or after a crash.
    for s in crate::inspect::suspicious(&store.info(), entries.len() as u64) {
        let line = format!("header word `{}` is {}: {}", s.field, s.value, s.why);
        if s.why.starts_with("impossible") {
            problems.push(line);
        } else {
            eprintln!("shmstore: warning: {line}");
        }
    }
    for e in &entries {
        match store.schema(&e.name) {
            Ok(schema) => match disagreement(e, &schema) {
                Some(problem) => problems.push(format!("entry `{}`: {problem}", e.name)),
                None => checked.push((e, schema)),
            },
            Err(err) => problems.push(err.to_string()),
        }
    }
    if !problems.is_empty() {
        for p in &problems[..problems.len() - 1] {
            eprintln!("shmstore: {p}");
        }
        return Err(Failure::invalid(problems.pop().unwrap_or_default()));
    }

    // Then every value.
    let total: u64 = checked.iter().map(|(e, _)| e.len.saturating_mul(e.elem_size)).fold(0, u64::saturating_add);
    let bar = progress_bar(total);
    let mut invalid = 0u64;
    let mut bad_entries = 0u64;
    for (e, schema) in &checked {
        bar.set_message(e.name.clone());
        let before = invalid;
        let mut report = |v: shmstore::InvalidValue| {
            invalid += 1;
            if invalid <= max_reports {
                bar.suspend(|| eprintln!("shmstore: invalid value: {}: {}", v.path, v.detail));
            }
            ControlFlow::Continue(())
        };
        check_entry(&store, e, schema, &bar, &mut report)?;
        if invalid > before {
            bad_entries += 1;
        }
    }
    bar.finish_and_clear();

    if invalid > 0 {
        let shown =
            if invalid > max_reports { format!(" (the first {max_reports} are shown above)") } else { String::new() };
        return Err(Failure::invalid(format!(
            "verify failed: `{}` holds {invalid} invalid value{} in {bad_entries} of its {} entr{}{shown}",
            path.display(),
            if invalid == 1 { "" } else { "s" },
            entries.len(),
            if entries.len() == 1 { "y" } else { "ies" },
        )));
    }
    writeln!(
        out,
        "ok: {} entr{}, {} checked",
        entries.len(),
        if entries.len() == 1 { "y" } else { "ies" },
        human_bytes(total)
    )?;
    Ok(())
}

/// What does not agree between an entry's record and its stored schema, if anything.
fn disagreement(e: &EntryInfo, schema: &Schema) -> Option<String> {
    if e.kind == EntryKind::Bytes && schema.fingerprint != <u8 as shmstore::SharedLayout>::LAYOUT.fingerprint {
        return Some(format!("it is a byte region, but its schema is {}, not u8", schema.display_name()));
    }
    if schema.fingerprint != e.fingerprint {
        return Some(format!(
            "its record says fingerprint {:016x}, but its schema has {:016x}",
            e.fingerprint, schema.fingerprint
        ));
    }
    if schema.size != e.elem_size || schema.align != e.align {
        return Some(format!(
            "its record says {} bytes aligned to {}, but its schema says {} bytes aligned to {}",
            e.elem_size, e.align, schema.size, schema.align
        ));
    }
    None
}

/// Reads all of `e` in chunks and reports every invalid value to `report`.
fn check_entry(
    store: &shmstore::Store,
    e: &EntryInfo,
    schema: &Schema,
    bar: &ProgressBar,
    report: &mut dyn FnMut(shmstore::InvalidValue) -> ControlFlow<()>,
) -> Result<(), Failure> {
    // Arrays and byte regions are checked element by element; anything else is one value.
    if !matches!(e.kind, EntryKind::Array | EntryKind::Bytes) {
        let bytes = store.read_raw(&e.name, 0, 1)?;
        let _ = value::find_invalid(schema, &bytes, &e.name, report);
        bar.inc(e.elem_size);
        return Ok(());
    }
    if e.elem_size == 0 {
        return Ok(());
    }
    let per_chunk = (CHUNK_BYTES / e.elem_size).max(1);
    let mut at = 0;
    while at < e.len {
        let count = per_chunk.min(e.len - at);
        let bytes = store.read_raw(&e.name, at, count)?;
        let _ = value::find_invalid_elements(schema, &bytes, &e.name, at, report);
        bar.inc(count * e.elem_size);
        at += count;
    }
    Ok(())
}

/// A bar over the bytes checked, on stderr, when stdout is a terminal; hidden otherwise.
fn progress_bar(total: u64) -> ProgressBar {
    if !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("verifying {bar:40} {decimal_bytes}/{decimal_total_bytes} {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

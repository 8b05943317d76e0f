//! The commands that change a store: `shmstore upgrade` and `shmstore compact` (offline rewrites
//! of a closed store, through [`shmstore::upgrade`] and [`shmstore::compact`]), and `shmstore rm`
//! and `shmstore mv` (through [`Store::remove`] and [`Store::rename`], on a store that may be in
//! use).

use std::io::Write;
use std::path::Path;

use shmstore::{RewriteReport, Store};

use crate::escape;
use crate::failure::Failure;
use crate::inspect::human_bytes;

/// Runs `shmstore upgrade FILE`.
pub fn upgrade(path: &Path, out: &mut dyn Write) -> Result<(), Failure> {
    let report = shmstore::upgrade(path)?;
    leftovers(&report, out)?;
    if report.rewritten {
        writeln!(
            out,
            "upgraded `{}` from format version {} to 2: {}; {}",
            escape::path(path),
            report.from_version,
            entries(&report),
            sizes(&report)
        )?;
    } else {
        writeln!(out, "`{}` already has format version {}: nothing to do", escape::path(path), report.from_version)?;
    }
    Ok(())
}

/// Runs `shmstore compact FILE`.
pub fn compact(path: &Path, out: &mut dyn Write) -> Result<(), Failure> {
    let report = shmstore::compact(path)?;
    leftovers(&report, out)?;
    let upgraded = if report.from_version < 2 { " (and upgraded it from format version 1 to 2)" } else { "" };
    writeln!(out, "compacted `{}`{upgraded}: {}; {}", escape::path(path), entries(&report), sizes(&report))?;
    Ok(())
}

/// Runs `shmstore rm FILE NAME`.
pub fn rm(path: &Path, name: &str, out: &mut dyn Write) -> Result<(), Failure> {
    let store = Store::open(path)?;
    store.remove(name)?;
    store.flush()?;
    writeln!(out, "removed `{}` from `{}`", escape::text(name), escape::path(path))?;
    Ok(())
}

/// Runs `shmstore mv FILE FROM TO`.
pub fn mv(path: &Path, from: &str, to: &str, out: &mut dyn Write) -> Result<(), Failure> {
    let store = Store::open(path)?;
    store.rename(from, to)?;
    store.flush()?;
    writeln!(out, "renamed `{}` to `{}` in `{}`", escape::text(from), escape::text(to), escape::path(path))?;
    Ok(())
}

/// `3 entries`, plus the migration records dropped.
fn entries(report: &RewriteReport) -> String {
    let mut text = match report.entries {
        1 => "1 entry".to_owned(),
        n => format!("{n} entries"),
    };
    match report.dropped_records {
        0 => {}
        1 => text.push_str(" (1 record replaced by a migration dropped)"),
        n => text.push_str(&format!(" ({n} records replaced by migrations dropped)")),
    }
    text
}

/// `file 64.0 MB -> 1.2 MB, on disk 3.1 MB -> 1.2 MB`.
fn sizes(report: &RewriteReport) -> String {
    format!(
        "file {} -> {}, on disk {} -> {}",
        human_bytes(report.len_before),
        human_bytes(report.len_after),
        human_bytes(report.disk_before),
        human_bytes(report.disk_after)
    )
}

/// One line for each temporary file of a dead earlier run that was removed.
fn leftovers(report: &RewriteReport, out: &mut dyn Write) -> std::io::Result<()> {
    for path in &report.leftovers_removed {
        writeln!(out, "removed `{}`, left by an earlier run that did not finish", escape::path(path))?;
    }
    Ok(())
}

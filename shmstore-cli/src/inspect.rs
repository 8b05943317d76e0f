//! `shmstore inspect`: header facts and the table of entries.

use std::io::Write;
use std::path::Path;

use serde_json::{json, Value as Json};
use shmstore::{EntryInfo, StoreInfo};

use crate::escape;
use crate::failure::{self, Failure};
use crate::json::{self, Ints};

/// Runs `shmstore inspect FILE [--json]`: a table, or JSON with 64-bit numbers written as `ints`
/// says.
pub fn run(path: &Path, as_json: Option<Ints>, out: &mut dyn Write) -> Result<(), Failure> {
    let store = failure::open(path)?;
    let info = store.info();
    let entries = store.entries()?;
    let suspicious = suspicious(&info, entries.len() as u64);
    if let Some(ints) = as_json {
        let mut doc = header_json(&info, ints);
        doc["suspicious"] =
            suspicious.iter().map(|s| json!({ "field": s.field, "value": ints.u64(s.value), "why": s.why })).collect();
        let list = entries
            .iter()
            .map(|e| {
                let mut j = entry_json(e, ints);
                j["schema"] = json::schema(&store.schema(&e.name)?, ints);
                Ok(j)
            })
            .collect::<Result<Vec<_>, shmstore::Error>>()?;
        doc["entries"] = Json::Array(list);
        json::write(out, &doc, true)?;
        writeln!(out)?;
    } else {
        write_text(&info, &entries, &suspicious, out)?;
    }
    Ok(())
}

/// A header word holding a value no store could hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspicious {
    /// The word, by its `inspect --json` name.
    pub field: &'static str,
    /// What it holds.
    pub value: u64,
    /// Why that is impossible, or what it disagrees with.
    pub why: String,
}

/// The live header words that fail the checks a store always passes. The library checks the
/// capacity and the allocation end when it opens a store (and refuses it if they fail); the
/// entry count and the growth generation are not needed to read a store, so only these checks
/// look at them:
///
/// - the entry count is at most the catalog's cap, and equals the number of entries the catalog
///   lists. It is raised just after an entry is published and lowered just after one is removed,
///   so it can differ from the catalog by the entries being created or removed at that moment, or
///   by one a process died while creating or removing.
/// - the generation counts how often the capacity grew, and each growth adds at least one byte
///   to a capacity that starts at least at the data area's offset: it is at most
///   `capacity - data_offset`.
pub fn suspicious(info: &StoreInfo, listed: u64) -> Vec<Suspicious> {
    let mut found = Vec::new();
    let count = u64::from(info.entries);
    if count > u64::from(info.max_entries) {
        found.push(Suspicious {
            field: "entry_count",
            value: count,
            why: format!("impossible: more than the catalog holds; the catalog lists {listed}"),
        });
    } else if count > listed {
        found.push(Suspicious {
            field: "entry_count",
            value: count,
            why: format!(
                "the catalog lists only {listed}: an entry is being removed, or a process died while removing one"
            ),
        });
    } else if count < listed {
        found.push(Suspicious {
            field: "entry_count",
            value: count,
            why: format!("the catalog lists {listed}: an entry is being created, or a process died while creating one"),
        });
    }
    let growth_room = info.capacity.saturating_sub(info.data_offset);
    if info.generation > growth_room {
        found.push(Suspicious {
            field: "generation",
            value: info.generation,
            why: format!("impossible: more growths than a capacity of {} bytes allows", info.capacity),
        });
    }
    found
}

/// `"atomic"` for double-buffered objects, `"in-place"` for everything else.
pub fn commit_mode(e: &EntryInfo) -> &'static str {
    if e.is_double_buffered() {
        "atomic"
    } else {
        "in-place"
    }
}

fn header_json(info: &StoreInfo, ints: Ints) -> Json {
    json!({
        "path": info.path.to_string_lossy(),
        "format_version": info.format_version,
        "capacity": ints.u64(info.capacity),
        "used": ints.u64(info.used),
        "generation": ints.u64(info.generation),
        "max_entries": info.max_entries,
        "entry_count": info.entries,
        "created_unix_nanos": ints.u64(info.created_unix_nanos),
        "created": rfc3339(info.created_unix_nanos),
        "data_offset": ints.u64(info.data_offset),
    })
}

fn entry_json(e: &EntryInfo, ints: Ints) -> Json {
    json!({
        "name": e.name,
        "kind": e.kind.as_str(),
        "type": e.type_name,
        "version": e.version,
        "fingerprint": format!("{:016x}", e.fingerprint),
        "len": ints.u64(e.len),
        "bytes": ints.u64(e.bytes),
        "commit": commit_mode(e),
        "slots": e.slots,
        "elem_size": ints.u64(e.elem_size),
        "align": ints.u64(e.align),
        "data_offset": ints.u64(e.data_offset),
        "slot_stride": ints.u64(e.slot_stride),
        "record_offset": ints.u64(e.record_offset),
        "seq_offset": ints.u64(e.record_offset + SEQ_IN_RECORD),
    })
}

/// Where an entry block keeps its commit sequence word (`docs/format.md`): 16. (A format-v1
/// catalog record kept it at 192; v1 stores are only read, and `upgrade` converts them.)
pub const SEQ_IN_RECORD: u64 = shmstore::format::v2::block::SEQ;

fn write_text(
    info: &StoreInfo,
    entries: &[EntryInfo],
    suspicious: &[Suspicious],
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let percent = if info.capacity == 0 { 0.0 } else { info.used as f64 * 100.0 / info.capacity as f64 };
    let note = |field: &str| {
        suspicious.iter().find(|s| s.field == field).map_or_else(String::new, |s| format!(" ({})", s.why))
    };
    let facts = [
        ("file", escape::path(&info.path)),
        ("format", format!("version {}", info.format_version)),
        ("capacity", format!("{} bytes ({})", info.capacity, human_bytes(info.capacity))),
        ("used", format!("{} bytes ({}, {percent:.1}%)", info.used, human_bytes(info.used))),
        ("generation", format!("{} (times grown){}", info.generation, note("generation"))),
        (
            "entries",
            match info.max_entries {
                u32::MAX => format!("{} (no cap: the catalog grows){}", info.entries, note("entry_count")),
                cap => format!("{} of at most {cap}{}", info.entries, note("entry_count")),
            },
        ),
        ("created", rfc3339(info.created_unix_nanos)),
    ];
    for (key, value) in facts {
        writeln!(out, "{:<11} {value}", format!("{key}:"))?;
    }
    writeln!(out)?;
    if entries.is_empty() {
        return writeln!(out, "(no entries)");
    }
    let header = ["NAME", "KIND", "TYPE", "VERSION", "FINGERPRINT", "LEN", "BYTES", "COMMIT"];
    let rows: Vec<[String; 8]> = entries
        .iter()
        .map(|e| {
            [
                escape::text(&e.name).into_owned(),
                e.kind.as_str().to_owned(),
                escape::text(&e.type_name).into_owned(),
                e.version.to_string(),
                format!("{:016x}", e.fingerprint),
                e.len.to_string(),
                e.bytes.to_string(),
                commit_mode(e).to_owned(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    // Numbers are right-aligned.
    let right = [false, false, false, true, false, true, true, false];
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i > 0 {
                s.push_str("  ");
            }
            if right[i] {
                s.push_str(&" ".repeat(pad));
                s.push_str(cell);
            } else {
                s.push_str(cell);
                if i + 1 < cells.len() {
                    s.push_str(&" ".repeat(pad));
                }
            }
        }
        s
    };
    writeln!(out, "{}", line(&header.map(String::from)))?;
    for row in &rows {
        writeln!(out, "{}", line(row))?;
    }
    Ok(())
}

/// A byte count in decimal units: `1.2 MB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if value < 1000.0 {
            break;
        }
        value /= 1000.0;
        unit = u;
    }
    format!("{value:.1} {unit}")
}

/// Nanoseconds since the Unix epoch as an RFC 3339 UTC timestamp with nanoseconds.
pub fn rfc3339(unix_nanos: u64) -> String {
    let secs = unix_nanos / 1_000_000_000;
    let nanos = unix_nanos % 1_000_000_000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400_000_000_001), "2000-02-29T00:00:00.000000001Z");
        assert_eq!(rfc3339(1_700_000_000_123_456_789), "2023-11-14T22:13:20.123456789Z");
    }

    #[test]
    fn byte_counts() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_200_000), "1.2 MB");
        assert_eq!(human_bytes(20_480), "20.5 kB");
    }
}

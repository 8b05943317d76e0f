//! `shmstore inspect` and `shmstore verify`, on good, poked and damaged files.

mod common;

use std::fs;
use std::path::Path;

use common::{active_offset, build, entry_json, poke, shmstore, temp_store, Config, Everything, Inner};
use shmstore::{SharedLayout, Store};

fn inspect_json(path: &Path) -> serde_json::Value {
    let run = shmstore(["inspect".as_ref(), path.as_os_str(), "--json".as_ref()]);
    serde_json::from_str(run.ok()).unwrap_or_else(|e| panic!("not JSON ({e}): {run:#?}"))
}

#[test]
fn inspect_shows_the_header_and_every_entry() {
    let (_dir, path) = temp_store("inspect.shm");
    build(&path);
    let file = path.to_str().unwrap();
    let run = shmstore(["inspect", file]);
    let text = run.ok();
    for fact in
        ["file:       ", "format:     version 2", "capacity:   1048576 bytes (1.0 MB)", "entries:    4 of at most 64"]
    {
        assert!(text.contains(fact), "{fact:?} not in\n{text}");
    }
    assert!(text.lines().any(|l| l.starts_with("created:    20") && l.ends_with('Z')), "{text}");
    let header = text.lines().find(|l| l.starts_with("NAME")).expect("a table");
    assert!(header.split_whitespace().eq(["NAME", "KIND", "TYPE", "VERSION", "FINGERPRINT", "LEN", "BYTES", "COMMIT"]));
    let row = |name: &str| -> Vec<String> {
        let line =
            text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{name}: {text}"));
        line.split_whitespace().map(str::to_owned).collect()
    };
    let fp = |f: u64| format!("{f:016x}");
    assert_eq!(
        row("config"),
        ["config", "object", "Config", "1", &fp(Config::LAYOUT.fingerprint), "1", "128", "atomic"]
    );
    assert_eq!(row("everything")[1..5], ["object", "Everything", "1", &fp(Everything::LAYOUT.fingerprint)]);
    assert_eq!(row("everything")[7], "in-place");
    assert_eq!(row("samples"), ["samples", "array", "f64", "1", &fp(f64::LAYOUT.fingerprint), "20", "160", "in-place"]);
    assert_eq!(row("rows")[1..3], ["array", "Inner"]);

    // JSON says the same, plus the offsets, checked against the library's own view.
    let json = inspect_json(&path);
    assert_eq!(json["format_version"], 2);
    assert_eq!(json["capacity"], 1 << 20);
    assert_eq!(json["max_entries"], 64);
    assert_eq!(json["entry_count"], 4);
    assert_eq!(json["entries"].as_array().unwrap().len(), 4);
    let store = Store::options().read_only(true).open(&path).unwrap();
    assert_eq!(json["used"], store.used());
    assert_eq!(json["created_unix_nanos"], store.info().created_unix_nanos);
    for e in store.entries().unwrap() {
        let j = entry_json(&json, &e.name);
        assert_eq!(j["kind"], e.kind.as_str());
        assert_eq!(j["type"], e.type_name);
        assert_eq!(j["version"], e.version);
        assert_eq!(j["fingerprint"], fp(e.fingerprint));
        assert_eq!(j["commit"], if e.slots == 2 { "atomic" } else { "in-place" });
        for (key, value) in [
            ("len", e.len),
            ("bytes", e.bytes),
            ("elem_size", e.elem_size),
            ("align", e.align),
            ("slots", u64::from(e.slots)),
            ("data_offset", e.data_offset),
            ("slot_stride", e.slot_stride),
            ("record_offset", e.record_offset),
            ("seq_offset", e.record_offset + 16),
        ] {
            assert_eq!(j[key], value, "{}.{key}", e.name);
        }
    }
    // The schema comes along, for readers in other languages.
    let schema = &entry_json(&json, "config")["schema"];
    assert_eq!(schema["kind"], "struct");
    assert_eq!(schema["fields"][2]["name"], "name");
    assert_eq!(schema["fields"][2]["offset"], std::mem::offset_of!(Config, name));
    assert_eq!(schema["fields"][2]["schema"]["kind"], "fixed_str");
    assert_eq!(schema["fields"][3]["schema"]["variants"][2], serde_json::json!({"name": "Turbo", "value": 200}));
}

#[test]
fn verify_passes_a_good_store() {
    let (_dir, path) = temp_store("good.shm");
    build(&path);
    let run = shmstore(["verify".as_ref(), path.as_os_str()]);
    // One copy of every value: 208 + 16 + 20 * 8 + 5 * 10 bytes.
    let bytes = Everything::LAYOUT.size + Config::LAYOUT.size + 20 * 8 + 5 * Inner::LAYOUT.size;
    assert_eq!(bytes, 434);
    assert_eq!(run.ok(), "ok: 4 entries, 434 B checked\n");
    assert_eq!(run.stderr, "");

    let (_dir, empty) = temp_store("empty.shm");
    Store::open_or_create(&empty, 1 << 16).unwrap();
    assert_eq!(shmstore(["verify".as_ref(), empty.as_os_str()]).ok(), "ok: 0 entries, 0 B checked\n");
    assert!(shmstore(["inspect".as_ref(), empty.as_os_str()]).ok().ends_with("(no entries)\n"));
}

#[test]
fn verify_names_every_invalid_value_by_its_path() {
    let (_dir, path) = temp_store("poked.shm");
    build(&path);
    // A bool in the active slot of the double-buffered `config`.
    let config_at = active_offset(&path, "config");
    poke(&path, config_at + std::mem::offset_of!(Config, verbose) as u64, &[7]);
    // A bool inside element 3 of the array `rows`, and an enum in a nested array of `everything`.
    let rows_at = active_offset(&path, "rows");
    poke(&path, rows_at + 3 * Inner::LAYOUT.size as u64 + std::mem::offset_of!(Inner, flag) as u64, &[2]);
    let everything_at = active_offset(&path, "everything");
    let mode_at = std::mem::offset_of!(Everything, inners) + Inner::LAYOUT.size + std::mem::offset_of!(Inner, mode);
    poke(&path, everything_at + mode_at as u64, &[9]);

    let run = shmstore(["verify".as_ref(), path.as_os_str()]);
    assert_eq!(run.code, 2, "{run:#?}");
    assert_eq!(run.stdout, "");
    let lines: Vec<&str> = run.stderr.lines().collect();
    // Entries are checked in catalog order, which follows the names' hashes.
    let mut reports = lines[..3].to_vec();
    reports.sort();
    assert_eq!(
        reports,
        [
            "shmstore: invalid value: config.verbose: holds 7, which is not a valid bool (0 or 1)",
            "shmstore: invalid value: everything.inners[1].mode: holds 9, which is not a variant of enum `Mode8`",
            "shmstore: invalid value: rows[3].flag: holds 2, which is not a valid bool (0 or 1)",
        ]
    );
    assert!(lines[3].starts_with("shmstore: verify failed: "), "{run:#?}");
    assert!(lines[3].contains("holds 3 invalid values in 3 of its 4 entries"), "{run:#?}");
    assert_eq!(lines.len(), 4);

    // --max-reports bounds the report, not the count.
    let run = shmstore(["verify".as_ref(), path.as_os_str(), "--max-reports".as_ref(), "1".as_ref()]);
    assert_eq!(run.code, 2, "{run:#?}");
    assert_eq!(run.stderr.lines().count(), 2, "{run:#?}");
    assert!(run.stderr.contains("3 invalid values") && run.stderr.contains("the first 1 are shown"), "{run:#?}");

    // dump still shows everything, marks the bad value, and fails.
    let run = shmstore(["dump".as_ref(), path.as_os_str(), "config".as_ref()]);
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(run.stdout.contains("verbose: <invalid: holds 7, which is not a valid bool (0 or 1)>"), "{run:#?}");
    assert!(
        run.stderr.contains("1 value in")
            && run.stderr.contains("breaks its type's rules")
            && run.stderr.contains("shmstore verify"),
        "{run:#?}"
    );
    let run = shmstore(["dump".as_ref(), path.as_os_str(), "rows".as_ref(), "--json".as_ref()]);
    assert_eq!(run.code, 2, "{run:#?}");
    let rows: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(rows[3]["flag"], serde_json::json!({"$invalid": "holds 2, which is not a valid bool (0 or 1)"}));
}

/// Runs every command on `path`: each must fail with `code` and the same one-line message, which
/// contains `phrase`; nothing goes to stdout.
fn every_command_refuses(path: &Path, code: i32, phrase: &str) {
    let mut messages = Vec::new();
    for args in [
        vec!["inspect"],
        vec!["inspect", "--json"],
        vec!["dump"],
        vec!["dump", "--json"],
        vec!["verify"],
        vec!["header"],
    ] {
        let mut full: Vec<&std::ffi::OsStr> = vec![args[0].as_ref(), path.as_os_str()];
        full.extend(args[1..].iter().map(std::ffi::OsStr::new));
        let run = shmstore(&full);
        messages.push(run.fails(code, phrase).to_owned());
        assert_eq!(run.stdout, "", "{args:?}: {run:#?}");
    }
    assert!(messages.windows(2).all(|w| w[0] == w[1]), "{messages:#?}");
}

#[test]
fn damaged_and_foreign_files_are_refused_with_one_clear_line() {
    let (dir, path) = temp_store("corrupt.shm");
    build(&path);
    let good = fs::read(&path).unwrap();
    let damaged = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        fs::write(&p, bytes).unwrap();
        p
    };

    // A flipped bit in the checksummed header (its creation time).
    let mut flipped = good.clone();
    flipped[60] ^= 0x10;
    every_command_refuses(&damaged("flipped.shm", &flipped), 2, "checksum of the header does not match");

    // Cut short.
    every_command_refuses(&damaged("truncated.shm", &good[..good.len() / 2]), 2, "truncated");
    every_command_refuses(&damaged("stub.shm", &good[..100]), 2, "is not a shmstore file (it is only 100 bytes long)");

    // All zeros, text, nothing.
    every_command_refuses(&damaged("zeroed.shm", &vec![0; good.len()]), 2, "is not a shmstore file");
    every_command_refuses(
        &damaged("text.shm", b"hello, this is not a store\n".repeat(50).as_slice()),
        2,
        "is not a shmstore file",
    );
    every_command_refuses(&damaged("empty.shm", b""), 2, "is not a shmstore file");

    // A newer format version, with the checksum fixed up so that only the version is wrong.
    let mut newer = good.clone();
    newer[8..12].copy_from_slice(&9u32.to_le_bytes());
    let sum = shmstore::format::checksum::checksum64(&newer[..248]);
    newer[248..256].copy_from_slice(&sum.to_le_bytes());
    every_command_refuses(&damaged("newer.shm", &newer), 1, "format v9; this shmstore command reads up to v2");

    // A damaged entry block (its static part, which is checksummed; opening does not look at it,
    // every command does when it lists the entries).
    let json = inspect_json(&path);
    let record = entry_json(&json, "samples")["record_offset"].as_u64().unwrap() as usize;
    let mut bad_record = good.clone();
    bad_record[record + 192 + 100] ^= 1;
    every_command_refuses(&damaged("record.shm", &bad_record), 2, "checksum");

    // No file at all, and a directory.
    every_command_refuses(&dir.path().join("missing.shm"), 1, "does not exist");
    let run = shmstore(["inspect".as_ref(), dir.path().as_os_str()]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.starts_with("shmstore: ") && run.stderr.lines().count() == 1, "{run:#?}");

    // The good file is still good, and nothing above changed the damaged ones' sources.
    assert_eq!(fs::read(&path).unwrap(), good);
    shmstore(["verify".as_ref(), path.as_os_str()]).ok();
}

#[test]
fn inspect_marks_impossible_header_words() {
    let (_dir, path) = temp_store("words.shm");
    build(&path);
    // A good store: no notes, and an empty list in JSON.
    let text = shmstore(["inspect".as_ref(), path.as_os_str()]).ok().to_owned();
    assert!(text.contains("\nentries:    4 of at most 64\n"), "{text}");
    assert!(text.contains("\ngeneration: 0 (times grown)\n"), "{text}");
    assert_eq!(inspect_json(&path)["suspicious"], serde_json::json!([]));

    // The live words are not checksummed: anything can be written there.
    let generation = shmstore::format::v2::header::GENERATION;
    let entry_count = shmstore::format::v2::header::ENTRY_COUNT;
    poke(&path, entry_count, &4_000_000_000u64.to_ne_bytes());
    poke(&path, generation, &u64::MAX.to_ne_bytes());
    let run = shmstore(["inspect".as_ref(), path.as_os_str()]);
    let text = run.ok();
    assert!(
        text.contains(
            "\nentries:    4000000000 of at most 64 (impossible: more than the catalog holds; the catalog lists 4)\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "\ngeneration: {} (times grown) (impossible: more growths than a capacity of 1048576 bytes allows)\n",
            u64::MAX
        )),
        "{text}"
    );
    // verify refuses both, one line each.
    let run = shmstore(["verify".as_ref(), path.as_os_str()]);
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(run.stderr.contains("header word `entry_count` is 4000000000: impossible"), "{run:#?}");
    assert!(run.stderr.contains(&format!("header word `generation` is {}: impossible", u64::MAX)), "{run:#?}");
    let doc = inspect_json(&path);
    assert_eq!(
        doc["suspicious"],
        serde_json::json!([
            {"field": "entry_count", "value": 4_000_000_000u64, "why": "impossible: more than the catalog holds; the catalog lists 4"},
            {"field": "generation", "value": u64::MAX, "why": "impossible: more growths than a capacity of 1048576 bytes allows"},
        ])
    );

    // Within the catalog's size, but more than it lists (a removal in progress, or one a process
    // died in); and fewer (a creation in progress, or one a process died in).
    poke(&path, generation, &0u64.to_ne_bytes());
    poke(&path, entry_count, &9u64.to_ne_bytes());
    let run = shmstore(["inspect".as_ref(), path.as_os_str()]);
    assert!(run.ok().contains("\nentries:    9 of at most 64 (the catalog lists only 4: "), "{run:#?}");
    assert!(run.ok().contains("\ngeneration: 0 (times grown)\n"), "{run:#?}");
    poke(&path, entry_count, &3u64.to_ne_bytes());
    let run = shmstore(["inspect".as_ref(), path.as_os_str()]);
    assert!(run.ok().contains("\nentries:    3 of at most 64 (the catalog lists 4: "), "{run:#?}");
    // A count that lags the catalog is a warning, not a failure, for verify.
    let run = shmstore(["verify".as_ref(), path.as_os_str()]);
    assert!(run.ok().starts_with("ok: "), "{run:#?}");
    assert!(run.stderr.contains("warning: header word `entry_count` is 3: the catalog lists 4"), "{run:#?}");
    assert_eq!(inspect_json(&path)["suspicious"][0]["field"], "entry_count");
}

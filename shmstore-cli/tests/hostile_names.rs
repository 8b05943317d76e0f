//! Names from the file never reach the terminal raw: control characters and bidirectional
//! controls are printed escaped by every command, while ordinary non-ASCII text stays as it is.

mod common;

use std::fs;
use std::path::Path;

use common::{entry_json, poke, shmstore, temp_store, Run};
use shmstore::format::schema;
use shmstore::format::v2::block;
use shmstore::{SchemaKind, SharedLayout, Store};

/// A struct whose type and field names are ordinary non-ASCII text.
#[derive(SharedLayout, Clone, Copy, Debug, Default)]
#[repr(C)]
#[allow(non_camel_case_types)]
struct Größe {
    wärme: u32,
}

/// Its names are replaced in the file by [`ESC_TYPE`] and [`ESC_FIELD`], of the same lengths.
#[derive(SharedLayout, Clone, Copy, Debug, Default)]
#[repr(C)]
struct Zzzz {
    ab: u8,
}

/// ESC [ 2 J: "clear the screen".
const ESC_TYPE: &str = "\x1b[2J";
/// ESC c: "reset the terminal".
const ESC_FIELD: &str = "\x1bc";

/// An entry name the library accepts (no control characters) that reads backwards after its
/// right-to-left override.
const BIDI_NAME: &str = "report\u{202e}txt.exe";

fn every_command(path: &Path, entry: &str) -> Vec<(String, Run)> {
    let file = path.to_str().unwrap();
    [
        vec!["inspect", file],
        vec!["inspect", file, "--json"],
        vec!["dump", file],
        vec!["dump", file, "--json"],
        vec!["dump", file, entry],
        vec!["header", file],
    ]
    .into_iter()
    .map(|args| (args.join(" "), shmstore(&args)))
    .collect()
}

fn assert_no_raw(runs: &[(String, Run)], raw: char) {
    for (args, run) in runs {
        assert!(!run.stdout.contains(raw) && !run.stderr.contains(raw), "raw {raw:?} in `{args}`: {run:#?}");
    }
}

#[test]
fn unicode_names_pass_and_bidi_controls_are_escaped() {
    let (_dir, path) = temp_store("names.shm");
    let store = Store::open_or_create(&path, 1 << 20).unwrap();
    store.object_or_init(BIDI_NAME, || Größe { wärme: 5 }).unwrap();
    store.close().unwrap();

    let runs = every_command(&path, BIDI_NAME);
    assert_no_raw(&runs, '\u{202e}');
    let escaped = "report\\u{202e}txt.exe";
    for (args, run) in &runs {
        let out = run.ok();
        assert!(out.contains("Größe") || args.starts_with("dump") && args.contains("--json"), "`{args}`: {out}");
        if args.contains("--json") {
            // JSON escapes it its own way, and gives the exact name back.
            assert!(out.contains(r"report\u202etxt.exe"), "`{args}`: {out}");
        } else {
            assert!(out.contains(escaped), "`{args}`: {out}");
        }
    }
    let inspect: serde_json::Value = serde_json::from_str(&runs[1].1.stdout).unwrap();
    assert_eq!(entry_json(&inspect, BIDI_NAME)["type"], "Größe");
    let dump: serde_json::Value = serde_json::from_str(&runs[3].1.stdout).unwrap();
    assert_eq!(dump[BIDI_NAME], serde_json::json!({"wärme": 5}));
    assert_eq!(runs[4].1.stdout, format!("{escaped} = Größe {{ wärme: 5 }}\n"));

    // A name typed on the command line is escaped in the error too.
    let run = shmstore(["dump", path.to_str().unwrap(), "\x1b[2Jgone"]);
    run.fails(1, "no entry named `\\u{1b}[2Jgone`");
    assert!(!run.stderr.contains('\x1b'), "{run:#?}");
}

/// Rewrites the stored schema of `name` (an entry of type [`Zzzz`]) so that its type and field
/// names hold escape sequences, with fingerprints and checksums that match: a store as a hostile
/// writer could make it. Returns whether this build's schema decoder accepts such names.
fn craft_escape_names(path: &Path, name: &str) -> bool {
    let inspect: serde_json::Value =
        serde_json::from_str(shmstore(["inspect", path.to_str().unwrap(), "--json"]).ok()).unwrap();
    let record = entry_json(&inspect, name)["record_offset"].as_u64().unwrap();
    let bytes = fs::read(path).unwrap();
    let at = (record + block::STATIC_OFFSET) as usize;
    let decoded = block::decode(&bytes[at..], record, bytes.len() as u64).unwrap();
    let mut entry = decoded.entry;
    let stored = &bytes[entry.schema_offset as usize..(entry.schema_offset + entry.schema_len) as usize];
    assert_eq!(stored, schema::encode(&Zzzz::LAYOUT));

    let mut crafted = schema::decode(stored).unwrap();
    crafted.type_name = ESC_TYPE.into();
    let SchemaKind::Struct { fields } = &mut crafted.kind else { panic!("a struct") };
    fields[0].name = ESC_FIELD.into();
    crafted.fingerprint = crafted.compute_fingerprint();
    let encoded = crafted.encode();
    assert_eq!(encoded.len(), stored.len());
    poke(path, entry.schema_offset, &encoded);
    entry.fingerprint = crafted.fingerprint;
    poke(path, at as u64, &block::encode(&entry, decoded.serial));
    schema::decode(&encoded).is_ok()
}

#[test]
fn escape_sequences_in_schema_names_are_printed_escaped() {
    let (_dir, path) = temp_store("crafted.shm");
    let store = Store::open_or_create(&path, 1 << 20).unwrap();
    store.array_or_init("crafted", 2, Zzzz { ab: 7 }).unwrap();
    store.close().unwrap();
    let accepted = craft_escape_names(&path, "crafted");

    let runs = every_command(&path, "crafted");
    assert_no_raw(&runs, '\x1b');
    if !accepted {
        // The library refuses control characters in schema names: the file is corrupt, and says
        // so in one escaped line.
        for (args, run) in &runs {
            run.fails(2, "crafted");
            assert!(run.stdout.is_empty(), "`{args}`: {run:#?}");
        }
        return;
    }
    let text = |i: usize| runs[i].1.ok().to_owned();
    let row = text(0).lines().find(|l| l.starts_with("crafted ")).map(str::to_owned);
    assert!(row.as_deref().is_some_and(|r| r.contains("\\u{1b}[2J")), "{}", text(0));
    let inspect: serde_json::Value = serde_json::from_str(&text(1)).unwrap();
    assert_eq!(entry_json(&inspect, "crafted")["type"], ESC_TYPE);
    assert_eq!(entry_json(&inspect, "crafted")["schema"]["fields"][0]["name"], ESC_FIELD);
    assert!(text(1).contains(r#""type": "\u001b[2J""#), "{}", text(1));
    assert_eq!(text(4), "crafted[0..2] = [\n    \\u{1b}[2J { \\u{1b}c: 7 },\n    \\u{1b}[2J { \\u{1b}c: 7 },\n]\n");
    let dump: serde_json::Value = serde_json::from_str(&text(3)).unwrap();
    assert_eq!(dump["crafted"][1][ESC_FIELD], 7);
    // The C header: identifiers are made of ASCII letters, comments show the escapes.
    assert!(text(5).contains("\\u{1b}[2J"), "{}", text(5));
}

//! Byte regions through the CLI: `inspect` names their kind, `dump` shows a preview and a hex dump
//! (and JSON: a string when the bytes are UTF-8, else numbers), `verify` and `c-header` accept them.

mod common;

use std::path::Path;

use common::{entry_json, shmstore, temp_store};
use serde_json::{json, Value};
use shmstore::Store;

/// A store with the byte regions `greeting` (64 bytes, "hello, bytes" at offset 0), `binary`
/// (4 bytes, not UTF-8), `empty` (0 bytes), and the array `samples`.
fn build(path: &Path) {
    let store = Store::open_or_create(path, 1 << 20).unwrap();
    store.bytes_or_init("greeting", 64).unwrap().write_at(0, b"hello, bytes").unwrap();
    store.bytes_or_init("binary", 4).unwrap().write_at(0, &[0xff, 0x00, b'A', 0x80]).unwrap();
    store.bytes_or_init("empty", 0).unwrap();
    store.array_or_init::<u16>("samples", 3, 7).unwrap();
    store.close().unwrap();
}

fn run_json(args: &[&str]) -> Value {
    let run = shmstore(args);
    serde_json::from_str(run.ok()).unwrap_or_else(|e| panic!("not JSON ({e}): {run:#?}"))
}

#[test]
fn inspect_shows_the_bytes_kind() {
    let (_dir, path) = temp_store("inspect.shm");
    build(&path);
    let file = path.to_str().unwrap();
    let doc = run_json(&["inspect", file, "--json"]);
    let greeting = entry_json(&doc, "greeting");
    assert_eq!(
        (&greeting["kind"], &greeting["type"], &greeting["len"], &greeting["bytes"], &greeting["elem_size"]),
        (&json!("bytes"), &json!("u8"), &json!(64), &json!(64), &json!(1))
    );
    assert_eq!(greeting["commit"], "in-place");
    assert_eq!(entry_json(&doc, "samples")["kind"], "array");

    let text = shmstore(["inspect", file]);
    let row = text.ok().lines().find(|l| l.starts_with("greeting")).unwrap_or_else(|| panic!("{text:#?}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[..3], ["greeting", "bytes", "u8"], "{row}");
}

#[test]
fn dump_shows_a_preview_and_hex() {
    let (_dir, path) = temp_store("dump.shm");
    build(&path);
    let file = path.to_str().unwrap();

    let run = shmstore(["dump", file, "greeting"]);
    let lines: Vec<&str> = run.ok().lines().collect();
    assert_eq!(lines[0], r#"greeting[0..64] = "hello, bytes" + 52 zero bytes"#);
    assert_eq!(lines[1], "    00000000  68 65 6c 6c 6f 2c 20 62  79 74 65 73 00 00 00 00  |hello, bytes....|");
    // Lines equal to the one before are squeezed into one `*`, then the offset where they end.
    assert_eq!(lines[2], "    00000010  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  |................|");
    assert_eq!(lines[3..], ["    *", "    00000040"], "{run:#?}");

    // Offset and limit count bytes; a partial view says how to see the rest.
    let run = shmstore(["dump", file, "greeting", "--offset", "7", "--limit", "5"]);
    assert_eq!(
        run.ok(),
        "greeting[7..12] = \"bytes\"\n    00000007  62 79 74 65 73                                    |bytes|\n"
    );
    assert!(run.stderr.contains("showing bytes 7..12 of 64"), "{run:#?}");

    let run = shmstore(["dump", file, "binary"]);
    assert_eq!(
        run.ok(),
        "binary[0..4] = \"\u{fffd}\\0A\u{fffd}\"\n    00000000  ff 00 41 80                                       |..A.|\n"
    );
    assert_eq!(shmstore(["dump", file, "empty"]).ok(), "empty[0..0] = \"\"\n");

    // Every entry, with the array printed as before.
    let all = shmstore(["dump", file]);
    assert!(all.ok().contains("samples[0..3] = [7, 7, 7]"), "{all:#?}");
    assert!(all.ok().contains("greeting[0..64] = \"hello, bytes\""), "{all:#?}");
}

#[test]
fn dump_json_is_a_string_when_utf8_else_numbers() {
    let (_dir, path) = temp_store("json.shm");
    build(&path);
    let file = path.to_str().unwrap();
    assert_eq!(run_json(&["dump", file, "greeting", "--json", "--limit", "12"]), json!("hello, bytes"));
    let whole = run_json(&["dump", file, "greeting", "--json"]);
    assert_eq!(whole, json!(format!("hello, bytes{}", "\0".repeat(52))));
    assert_eq!(run_json(&["dump", file, "binary", "--json"]), json!([255, 0, 65, 128]));
    assert_eq!(run_json(&["dump", file, "binary", "--json", "--offset", "2"]), json!([65, 128]));
    assert_eq!(run_json(&["dump", file, "empty", "--json"]), json!(""));
    let all = run_json(&["dump", file, "--json"]);
    assert_eq!(all["binary"], json!([255, 0, 65, 128]));
    assert_eq!(all["samples"], json!([7, 7, 7]));
    assert_eq!(all["greeting"], whole);
}

#[test]
fn verify_and_header_accept_byte_regions() {
    let (_dir, path) = temp_store("verify.shm");
    build(&path);
    let file = path.to_str().unwrap();
    let run = shmstore(["verify", file]);
    assert!(run.ok().starts_with("ok: 4 entries"), "{run:#?}");
    let header = shmstore(["header", file]);
    assert!(header.ok().contains("byte region of 64 bytes"), "{header:#?}");
    assert!(header.ok().contains("GREETING_LEN 64ULL"), "{header:#?}");
}

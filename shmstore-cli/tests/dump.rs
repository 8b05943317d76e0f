//! `shmstore dump`: values written by Rust come back, decoded from the stored schemas alone.

mod common;

use common::{build, shmstore, temp_store, MAX_SAFE, SAMPLES, U128_V};
use serde_json::{json, Value};

fn dump_json(args: &[&str]) -> Value {
    let run = shmstore(args);
    serde_json::from_str(run.ok()).unwrap_or_else(|e| panic!("not JSON ({e}): {run:#?}"))
}

#[test]
fn every_field_type_round_trips_through_json() {
    let (_dir, path) = temp_store("all.shm");
    build(&path);
    let file = path.to_str().unwrap();
    let inner = |a: u16, b: i16, flag: bool, mode: &str, tag: &str| json!({"a": a, "b": b, "flag": flag, "mode": mode, "tag": tag});
    // An integer's JSON type follows from its Rust type: 128-bit integers are strings, 64-bit
    // ones exact numbers, whatever their values.
    let expected = json!({
        "u128_v": U128_V.to_string(),
        "i128_v": "-42",
        "u64_v": MAX_SAFE,
        "big_u64": MAX_SAFE + 1,
        "i64_v": -(MAX_SAFE as i64),
        "min_i64": i64::MIN,
        "f64_v": -1234.5,
        "specials": ["NaN", "Infinity", "-Infinity"],
        "m64": "Huge",
        "a_u64": u64::MAX,
        "a_i64": -5,
        "u32_v": u32::MAX,
        "i32_v": i32::MIN,
        "f32_v": 0.1,
        "m32": "Y",
        "a_u32": 77,
        "a_i32": -77,
        "u16_v": u16::MAX,
        "i16_v": -300,
        "m16": "B",
        "inner": inner(1, -1, true, "Turbo", "ab"),
        "grid": [[1, 2, 3], [4, 5, 6]],
        "inners": [inner(2, -2, false, "Slow", "abcd"), inner(3, -3, true, "Fast", "")],
        "u8_v": 255,
        "i8_v": -128,
        "flag": true,
        "m8": "Fast",
        "a_bool": true,
        "name": "grüße!",
    });
    let run = shmstore(["dump", file, "everything", "--json"]);
    let got: Value = serde_json::from_str(run.ok()).unwrap();
    assert_eq!(got, expected);
    // Exact, in the text itself (serde_json would parse a rounded double the same way).
    assert!(run.stdout.contains(r#""a_u64":18446744073709551615,"#), "{run:#?}");
    assert!(run.stdout.contains(r#""big_u64":9007199254740992,"#), "{run:#?}");
    // Fields come in declaration order.
    let keys: Vec<&String> = got.as_object().unwrap().keys().collect();
    assert_eq!(keys.first().map(|k| k.as_str()), Some("u128_v"));
    assert_eq!(keys.last().map(|k| k.as_str()), Some("name"));

    // The double-buffered object shows its last commit, not the other slot.
    let config = dump_json(&["dump", file, "config", "--json"]);
    assert_eq!(config, json!({"port": 8080, "verbose": true, "name": "edge-1", "mode": "Fast"}));

    // Without a name: every entry, by name; arrays whole.
    let all = dump_json(&["dump", file, "--json"]);
    assert_eq!(all["everything"], expected);
    assert_eq!(all["config"], config);
    let samples: Vec<Value> = (0..SAMPLES).map(|i| json!(i as f64 * 1.5)).collect();
    assert_eq!(all["samples"], Value::Array(samples));
    assert_eq!(all["rows"][3], inner(3, -3, false, "Fast", "r3"));
    assert_eq!(all.as_object().unwrap().len(), 4);
}

#[test]
fn arrays_are_paged() {
    let (_dir, path) = temp_store("paged.shm");
    build(&path);
    let file = path.to_str().unwrap();
    assert_eq!(
        dump_json(&["dump", file, "samples", "--json", "--offset", "5", "--limit", "3"]),
        json!([7.5, 9.0, 10.5])
    );
    // A limit past the end: what there is.
    assert_eq!(dump_json(&["dump", file, "samples", "--json", "--offset", "18", "--limit", "5"]), json!([27.0, 28.5]));
    assert_eq!(dump_json(&["dump", file, "samples", "--json", "--offset", "19"]), json!([28.5]));

    let run = shmstore(["dump", file, "samples", "--offset", "5", "--limit", "3"]);
    assert_eq!(run.ok(), "samples[5..8] = [7.5, 9.0, 10.5, ...]\n");
    assert!(run.stderr.contains("showing elements 5..8 of 20"), "{run:#?}");
    let run = shmstore(["dump", file, "samples", "--offset", "17"]);
    assert_eq!(run.ok(), "samples[17..20] = [25.5, 27.0, 28.5]\n");
    assert_eq!(run.stderr, "");
    // Text output shows at most 100 elements unless told otherwise; --all shows them all.
    let all = shmstore(["dump", file, "samples", "--all"]);
    assert!(all.ok().starts_with("samples[0..20] = [0.0, 1.5, 3.0,"), "{all:#?}");
    let rows = shmstore(["dump", file, "rows", "--offset", "1", "--limit", "2"]);
    assert_eq!(
        rows.ok(),
        "rows[1..3] = [\n    Inner { a: 1, b: -1, flag: false, mode: Fast, tag: \"r1\" },\n    \
         Inner { a: 2, b: -2, flag: true, mode: Fast, tag: \"r2\" },\n    ...\n]\n"
    );
}

#[test]
fn text_output_reads_like_rust() {
    let (_dir, path) = temp_store("text.shm");
    build(&path);
    let file = path.to_str().unwrap();
    let run = shmstore(["dump", file, "config"]);
    assert_eq!(run.ok(), "config = Config { port: 8080, verbose: true, name: \"edge-1\", mode: Fast }\n");
    let run = shmstore(["dump", file, "everything"]);
    let text = run.ok();
    for part in [
        "everything = Everything { u128_v: 1267650600228229401496703205383, i128_v: -42,",
        "specials: [NaN, inf, -inf], m64: Huge,",
        "inner: Inner { a: 1, b: -1, flag: true, mode: Turbo, tag: \"ab\" }, grid: [[1, 2, 3], [4, 5, 6]],",
        "a_bool: true, name: \"grüße!\" }\n",
    ] {
        assert!(text.contains(part), "{part:?} not in {text}");
    }
    // Every entry, in catalog order, one after the other.
    let all = shmstore(["dump", file]);
    let text = all.ok();
    for start in ["everything = ", "config = ", "samples[0..20] = ", "rows[0..5] = ["] {
        assert!(text.lines().any(|l| l.starts_with(start)), "{start:?} not in {text}");
    }
}

#[test]
fn unknown_entries_and_bad_arguments_are_usage_errors() {
    let (_dir, path) = temp_store("names.shm");
    build(&path);
    let file = path.to_str().unwrap();
    let line = shmstore(["dump", file, "nope"]).fails(1, "no entry named `nope`").to_owned();
    assert!(line.contains("`everything`") && line.contains("`rows`"), "{line}");
    shmstore(["header", file, "nope"]).fails(1, "no entry named `nope`");
    let run = shmstore(["dump", file, "--limit", "many"]);
    assert_eq!(run.code, 1, "{run:#?}");
    let run = shmstore(["frobnicate"]);
    assert_eq!(run.code, 1, "{run:#?}");
    let run = shmstore(["--help"]);
    assert!(run.ok().contains("Exit status"), "{run:#?}");
    let run = shmstore(["help", "dump"]);
    assert!(run.ok().contains("--u64-as-string"), "{run:#?}");
    // --u64-as-string is about JSON.
    let run = shmstore(["dump", file, "--u64-as-string"]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("--json"), "{run:#?}");
}

#[test]
fn offsets_past_the_end_are_errors() {
    let (_dir, path) = temp_store("offsets.shm");
    build(&path);
    let file = path.to_str().unwrap();
    for json in [false, true] {
        let mut args = vec!["dump", file, "samples", "--offset", "20"];
        if json {
            args.push("--json");
        }
        let line =
            shmstore(&args).fails(1, "--offset 20 is out of range for `samples`, which has 20 elements").to_owned();
        assert!(line.ends_with("use an offset from 0 to 19"), "{line}");
        assert_eq!(shmstore(&args).stdout, "");
    }
    shmstore(["dump", file, "samples", "--offset", "20000", "--limit", "5"]).fails(1, "--offset 20000 is out of range");
    // Without a name, every array is checked, before anything is printed.
    let run = shmstore(["dump", file, "--offset", "7"]);
    run.fails(1, "--offset 7 is out of range for `rows`, which has 5 elements: use an offset from 0 to 4");
    assert_eq!(run.stdout, "");
    // An object has one value: an offset makes no sense for it when it is named.
    shmstore(["dump", file, "config", "--offset", "1"]).fails(1, "`config` is an object");
    // In range, all is well.
    assert_eq!(
        shmstore(["dump", file, "rows", "--offset", "4", "--json"]).ok().trim_end(),
        r#"[{"a":4,"b":-4,"flag":true,"mode":"Fast","tag":"r4"}]"#
    );
}

#[test]
fn u64_as_string_makes_every_64_bit_integer_a_string() {
    let (_dir, path) = temp_store("strings.shm");
    build(&path);
    let file = path.to_str().unwrap();
    let got = dump_json(&["dump", file, "everything", "--json", "--u64-as-string"]);
    for (key, value) in [
        ("u128_v", json!(U128_V.to_string())),
        ("i128_v", json!("-42")),
        ("u64_v", json!(MAX_SAFE.to_string())),
        ("big_u64", json!((MAX_SAFE + 1).to_string())),
        ("i64_v", json!((-(MAX_SAFE as i64)).to_string())),
        ("min_i64", json!(i64::MIN.to_string())),
        ("a_u64", json!(u64::MAX.to_string())),
        ("a_i64", json!("-5")),
        // Smaller integers and everything else stay as they were.
        ("u32_v", json!(u32::MAX)),
        ("a_i32", json!(-77)),
        ("i8_v", json!(-128)),
        ("f64_v", json!(-1234.5)),
        ("m64", json!("Huge")),
    ] {
        assert_eq!(got[key], value, "{key}");
    }
    // The same for inspect's 64-bit numbers; its 32-bit ones stay numbers.
    let numbers: Value = serde_json::from_str(shmstore(["inspect", file, "--json"]).ok()).unwrap();
    let strings: Value = serde_json::from_str(shmstore(["inspect", file, "--json", "--u64-as-string"]).ok()).unwrap();
    for key in ["capacity", "used", "generation", "created_unix_nanos", "data_offset"] {
        assert!(numbers[key].is_u64(), "{key}: {numbers:#}");
        assert_eq!(strings[key], json!(numbers[key].as_u64().unwrap().to_string()), "{key}");
    }
    for key in ["format_version", "max_entries", "entry_count"] {
        assert!(strings[key].is_u64(), "{key}: {strings:#}");
    }
    let (n, s) = (common::entry_json(&numbers, "samples"), common::entry_json(&strings, "samples"));
    for key in ["len", "bytes", "elem_size", "data_offset", "record_offset", "seq_offset"] {
        assert_eq!(s[key], json!(n[key].as_u64().unwrap().to_string()), "{key}");
    }
    assert_eq!(s["schema"]["size"], json!("8"));
    assert_eq!(s["version"], json!(1));
}

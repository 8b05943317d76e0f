//! Dumps of large byte regions run in bounded memory: under an address-space limit that leaves
//! less room than one copy of the region, `dump --all` and `dump --json` still succeed.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use common::temp_store;
use shmstore::Store;

/// The region's size: more than [`HEADROOM`], so that a command copying it whole cannot run.
const REGION: u64 = 64 << 20;

/// Address space allowed beyond the store's mapping: room for the program, its stack and its
/// buffers (the command needs about 10 MiB), but not for a second copy of the region.
const HEADROOM: u64 = 40 << 20;
const _: () = assert!(HEADROOM < REGION);

/// A store whose byte region `big` is [`REGION`] bytes: "hello" and then zeros (a sparse file).
fn build(path: &Path) -> u64 {
    let store = Store::open_or_create(path, 1 << 20).unwrap();
    store.bytes_or_init("big", REGION).unwrap().write_at(0, b"hello").unwrap();
    store.close().unwrap();
    std::fs::metadata(path).unwrap().len()
}

/// What a run under the address-space limit printed: its exit status, how many bytes it wrote to
/// stdout, their first and last few bytes, and stderr.
struct Limited {
    code: Option<i32>,
    len: u64,
    head: Vec<u8>,
    tail: Vec<u8>,
    stderr: String,
}

/// Runs `shmstore ARGS` with its address space limited (RLIMIT_AS, set by the shell's `ulimit -v`)
/// to `limit` bytes, counting its output instead of keeping it.
fn run_limited(limit: u64, args: &[&str]) -> Limited {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -v "$1" || exit 99; shift; exec "$@""#)
        .arg("sh")
        .arg((limit / 1024).to_string())
        .arg(env!("CARGO_BIN_EXE_shmstore"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sh");
    let mut stdout = child.stdout.take().unwrap();
    let (mut len, mut head, mut tail) = (0u64, Vec::new(), Vec::new());
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        len += n as u64;
        if head.len() < 64 {
            head.extend_from_slice(&buf[..n.min(64 - head.len())]);
        }
        tail.extend_from_slice(&buf[n.saturating_sub(64)..n]);
        tail.drain(..tail.len().saturating_sub(64));
    }
    let out = child.wait_with_output().unwrap();
    Limited { code: out.status.code(), len, head, tail, stderr: String::from_utf8_lossy(&out.stderr).into_owned() }
}

#[test]
fn a_region_larger_than_the_free_memory_dumps_as_text_and_json() {
    let (_dir, path) = temp_store("big.shm");
    let file_len = build(&path);
    let file = path.to_str().unwrap();
    // The whole file is mapped; beyond it, less room than the region needs.
    let limit = file_len + HEADROOM;

    let text = run_limited(limit, &["dump", file, "big", "--all"]);
    assert_eq!(text.code, Some(0), "{}", text.stderr);
    let expected = format!(
        "big[0..{REGION}] = \"hello\" + {} zero bytes\n    \
         00000000  68 65 6c 6c 6f 00 00 00  00 00 00 00 00 00 00 00  |hello...........|\n    \
         00000010  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  |................|\n    \
         *\n    {REGION:08x}\n",
        REGION - 5
    );
    assert_eq!(text.len, expected.len() as u64);
    assert_eq!(String::from_utf8_lossy(&text.head), expected[..64]);

    // JSON: one string, "hello" then a \u0000 for every zero byte.
    let json = run_limited(limit, &["dump", file, "big", "--json"]);
    assert_eq!(json.code, Some(0), "{}", json.stderr);
    assert_eq!(json.len, 1 + 5 + (REGION - 5) * 6 + 1 + 1);
    assert!(json.head.starts_with(b"\"hello\\u0000\\u0000"), "{:?}", String::from_utf8_lossy(&json.head));
    assert!(json.tail.ends_with(b"\\u0000\\u0000\"\n"), "{:?}", String::from_utf8_lossy(&json.tail));

    // Every entry, with a window.
    let all = run_limited(limit, &["dump", file, "--json", "--offset", "3", "--limit", &(REGION - 10).to_string()]);
    assert_eq!(all.code, Some(0), "{}", all.stderr);
    assert_eq!(all.len, 1 + 5 + 1 + 1 + 2 + (REGION - 12) * 6 + 1 + 1 + 1);
    assert!(all.head.starts_with(b"{\"big\":\"lo\\u0000"), "{:?}", String::from_utf8_lossy(&all.head));
}

#[test]
fn a_region_that_is_not_utf8_dumps_as_json_numbers() {
    let (_dir, path) = temp_store("binary.shm");
    let store = Store::open_or_create(&path, 1 << 20).unwrap();
    let region = store.bytes_or_init("bin", REGION).unwrap();
    // Valid UTF-8 up to its last byte, so that only a whole pass can tell.
    region.write_at(REGION - 1, &[0xff]).unwrap();
    region.write_at(0, "é".as_bytes()).unwrap();
    store.close().unwrap();
    let limit = std::fs::metadata(&path).unwrap().len() + HEADROOM;

    let json = run_limited(limit, &["dump", path.to_str().unwrap(), "bin", "--json"]);
    assert_eq!(json.code, Some(0), "{}", json.stderr);
    // [195,169,0,0,...,0,255]
    assert_eq!(json.len, 1 + 8 + (REGION - 3) * 2 + 3 + 1 + 1);
    assert!(json.head.starts_with(b"[195,169,0,0,"), "{:?}", String::from_utf8_lossy(&json.head));
    assert!(json.tail.ends_with(b",0,0,255]\n"), "{:?}", String::from_utf8_lossy(&json.tail));
}

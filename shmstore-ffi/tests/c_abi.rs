//! The C ABI, exercised from C: `tests/c/peer.c` is compiled with the C compiler (`$CC`, else
//! `cc`) against `include/shmstore.h` and this crate's static library, and run as a separate
//! process next to Rust readers and writers.
//!
//! Without a C compiler the tests are skipped, loudly (and fail in CI, where a skipped check is a
//! hole in the suite).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use shmstore::{Error, SharedLayout, Store};

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct Torn {
    seq: u64,
    words: [u64; 31],
}

const K: u64 = 0x9E37_79B9_7F4A_7C15;

impl Torn {
    fn new(seq: u64) -> Torn {
        Torn { seq, words: std::array::from_fn(|i| seq.wrapping_mul(K).wrapping_add(i as u64)) }
    }

    fn consistent(&self) -> bool {
        *self == Torn::new(self.seq)
    }
}

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
#[shared(version = 1)]
struct ConfigV1 {
    port: u16,
    verbose: bool,
    _pad: [u8; 5],
    restarts: u64,
}

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
#[shared(version = 2)]
struct ConfigV2 {
    port: u32,
    _pad: [u8; 4],
    restarts: u64,
    limit: u64,
}

/// How many loads the C reader makes, at least, and how many distinct values it must see.
const READS: u64 = 2_000_000;
const CHANGES: u64 = 1_000;

/// How long a test waits for a C process's next line before declaring it hung: a safety net
/// against a deadlock hanging the suite, never a synchronisation.
const PATIENCE: Duration = Duration::from_secs(120);

/// Whether the suite runs in CI.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "false" | "no"))
}

/// The C compiler, or `None` (after saying so loudly) if there is none.
fn c_compiler(test: &str) -> Option<String> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    match Command::new(&cc).arg("--version").output() {
        Ok(out) if out.status.success() => Some(cc),
        _ => {
            let missing = "no C compiler (set CC, or install cc/gcc/clang) to build the C peer";
            assert!(!in_ci(), "{missing}: CI must run {test}");
            eprintln!("\n*** SKIPPED {test}: {missing}. It would FAIL in CI (CI=true). ***\n");
            None
        }
    }
}

/// This crate's static library, built by cargo next to the test binary.
fn static_lib() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let lib = deps.join("libshmstore_ffi.a");
    assert!(lib.exists(), "{} was not built: cargo builds it with the crate (crate-type staticlib)", lib.display());
    lib
}

/// The C peer, compiled once per test binary; `None` without a C compiler.
fn peer(test: &str) -> Option<&'static Path> {
    static PEER: OnceLock<Option<PathBuf>> = OnceLock::new();
    PEER.get_or_init(|| {
        let cc = c_compiler(test)?;
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("c_abi_peer");
        let defines = [
            ("TORN_FP", Torn::LAYOUT.fingerprint),
            ("CONFIG1_FP", ConfigV1::LAYOUT.fingerprint),
            ("CONFIG2_FP", ConfigV2::LAYOUT.fingerprint),
            ("U32_FP", u32::LAYOUT.fingerprint),
        ];
        let built = Command::new(&cc)
            .args(["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror"])
            .arg("-I")
            .arg(manifest.join("include"))
            .args(defines.map(|(name, fp)| format!("-D{name}=0x{fp:016x}ull")))
            .arg(manifest.join("tests/c/peer.c"))
            .arg(static_lib())
            .args(["-lpthread", "-ldl", "-lm", "-o"])
            .arg(&out)
            .output()
            .expect("run the C compiler");
        assert!(
            built.status.success(),
            "tests/c/peer.c did not compile:\n{}{}",
            String::from_utf8_lossy(&built.stdout),
            String::from_utf8_lossy(&built.stderr)
        );
        Some(out)
    })
    .as_deref()
}

/// A running C peer, talking through its stdin and stdout.
struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Peer {
    fn spawn(exe: &Path, args: &[&str]) -> Peer {
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the C peer");
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Peer { stdin: child.stdin.take(), child, lines }
    }

    /// The peer's next line of output.
    fn line(&mut self) -> String {
        self.lines.recv_timeout(PATIENCE).unwrap_or_else(|e| {
            let _ = self.child.kill();
            panic!("the C peer said nothing more ({e:?}); it exited with {:?}", self.child.wait())
        })
    }

    /// Sends `command`.
    fn send(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
    }

    /// Sends `command` and returns the answer.
    fn ask(&mut self, command: &str) -> String {
        self.send(command);
        self.line()
    }

    fn finish(mut self) -> String {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        let rest: Vec<String> = self.lines.iter().collect();
        assert!(status.success(), "the C peer failed ({status}): {rest:?}");
        rest.join("\n")
    }

    fn kill9(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        let status = self.child.wait().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));
    }
}

fn new_store(dir: &tempfile::TempDir) -> (PathBuf, Store) {
    let path = dir.path().join("c.shm");
    let store = Store::open_or_create(&path, 1 << 20).unwrap();
    (path, store)
}

/// `key=value` from a line of the peer's output.
fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        .parse()
        .unwrap()
}

#[test]
fn a_c_reader_never_sees_a_torn_value_from_a_rust_writer() {
    let Some(peer) = peer("a_c_reader_never_sees_a_torn_value_from_a_rust_writer") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = new_store(&dir);
    let torn = store.object_or_init("torn", || Torn::new(0)).unwrap();
    let stop = AtomicBool::new(false);
    let out = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut seq = 0;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                torn.store(Torn::new(seq)).unwrap();
            }
            seq
        });
        let reader = Peer::spawn(peer, &["read", path.to_str().unwrap(), &READS.to_string(), &CHANGES.to_string()]);
        let out = reader.finish();
        stop.store(true, Ordering::Relaxed);
        let commits = writer.join().unwrap();
        eprintln!("C reader: {out} (Rust writer: {commits} commits)");
        out
    });
    assert!(field(&out, "reads") >= READS && field(&out, "changes") >= CHANGES, "{out}");
    assert_eq!(field(&out, "torn"), 0, "the C reader saw torn values: {out}");
}

#[test]
fn a_rust_reader_never_sees_a_torn_value_from_a_c_writer() {
    let Some(peer) = peer("a_rust_reader_never_sees_a_torn_value_from_a_c_writer") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = new_store(&dir);
    let torn = store.object_or_init("torn", || Torn::new(0)).unwrap();
    const COMMITS: u64 = 200_000;
    let writer = Peer::spawn(peer, &["write", path.to_str().unwrap(), &COMMITS.to_string()]);
    let (mut reads, mut bad, mut last, mut changes) = (0u64, 0u64, 0u64, 0u64);
    loop {
        let value = torn.load().unwrap();
        reads += 1;
        if !value.consistent() {
            bad += 1;
        }
        assert!(value.seq >= last, "values go back: {} after {last}", value.seq);
        if value.seq != last {
            changes += 1;
            last = value.seq;
        }
        if value.seq == COMMITS {
            break;
        }
    }
    let out = writer.finish();
    eprintln!("Rust reader of a C writer: reads={reads} torn={bad} changes={changes}; C writer: {out}");
    assert_eq!(field(&out, "wrote"), COMMITS);
    assert_eq!(bad, 0, "the Rust reader saw torn values");
}

#[test]
fn a_running_c_process_follows_a_migration_or_gets_a_clear_error() {
    let Some(peer) = peer("a_running_c_process_follows_a_migration_or_gets_a_clear_error") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = new_store(&dir);
    let v1 = ConfigV1 { port: 1234, verbose: true, _pad: [0; 5], restarts: 3 };
    store.object_or_init("config", || v1).unwrap();
    let mut c = Peer::spawn(peer, &["serve", path.to_str().unwrap()]);

    let before = c.ask("load1");
    assert!(before.starts_with("ok port=1234 restarts=3 "), "{before}");
    let seen = field(&before, "version");
    let early = c.ask("load2");
    assert!(early.starts_with("err 5 entry `config` holds ConfigV1 (16 bytes"), "{early}");
    // A C waiter is woken by a Rust commit (if the commit comes first, the wait returns at once:
    // either way, with the commit's version).
    c.send(&format!("wait {seen}"));
    store.object::<ConfigV1>("config").unwrap().update(|c| c.restarts += 1).unwrap();
    assert_eq!(c.line(), format!("ok version={}", seen + 1));
    let seen = seen + 1;

    store
        .migrate("config", |c: ConfigV1| ConfigV2 {
            port: c.port.into(),
            _pad: [0; 4],
            restarts: c.restarts,
            limit: 99,
        })
        .unwrap();
    let migrated = store.object::<ConfigV2>("config").unwrap().version().get();

    // A wait through the handle of the old record returns at once: the entry changed, and has
    // the version of its new record.
    assert_eq!(c.ask(&format!("wait {seen}")), format!("ok version={migrated}"));
    // The old layout: a clear error, never the old (stale) bytes or the new ones misread.
    let old = c.ask("load1");
    let expected = Error::ForeignLayoutMismatch {
        name: "config".into(),
        found_type: "ConfigV2".into(),
        found_size: 24,
        found_fingerprint: ConfigV2::LAYOUT.fingerprint.into(),
        expected_size: 16,
        expected_fingerprint: ConfigV1::LAYOUT.fingerprint.into(),
    };
    assert_eq!(old, format!("err 5 {expected}"));
    // The new layout: the C process follows the entry.
    assert_eq!(c.ask("load2"), format!("ok port=1234 restarts=4 limit=99 version={migrated}"));

    // And it writes through the new record, under the same locks as Rust.
    assert!(c.ask("store2 4321").starts_with("ok "));
    assert!(c.ask("update2 10").starts_with("ok "));
    let cfg = store.object::<ConfigV2>("config").unwrap();
    assert_eq!(cfg.load().unwrap(), ConfigV2 { port: 4321, _pad: [0; 4], restarts: 11, limit: 2 });
    let v = cfg.version();
    let refused = c.ask("refuse2");
    assert_eq!(refused, "err 11 the update callback of entry `config` returned 7: nothing was committed");
    assert_eq!(cfg.version(), v, "an aborted update commits nothing");
    c.finish();
}

#[test]
fn a_c_writer_killed_inside_a_commit_leaves_the_last_committed_value() {
    let Some(peer) = peer("a_c_writer_killed_inside_a_commit_leaves_the_last_committed_value") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = new_store(&dir);
    let torn = store.object_or_init("torn", || Torn::new(5)).unwrap();
    drop(store);

    // Killed in its update callback: holding the exclusive lock, half the value written.
    let mut c = Peer::spawn(peer, &["hang", path.to_str().unwrap()]);
    assert_eq!(c.line(), "inside");
    c.kill9();
    let store = Store::open(&path).unwrap();
    assert_eq!(store.object::<Torn>("torn").unwrap().load().unwrap(), Torn::new(5));
    // The kernel released its lock: a write goes through.
    let mut guard = torn.write_timeout(PATIENCE).unwrap();
    *guard = Torn::new(6);
    guard.commit().unwrap();

    // Killed in a stream of commits: wherever it was, the value is one it committed whole.
    let c = {
        let mut c = Peer::spawn(peer, &["spin", path.to_str().unwrap(), "7"]);
        assert_eq!(c.line(), "running");
        c
    };
    c.kill9();
    let store = Store::open(&path).unwrap();
    let value = store.object::<Torn>("torn").unwrap().load().unwrap();
    assert!(value.consistent() && value.seq >= 7 + 1000, "{value:?}");
    store.object::<Torn>("torn").unwrap().write_timeout(PATIENCE).unwrap().commit().unwrap();
}

#[test]
fn misuse_of_the_abi_is_an_error_code_with_the_rust_message() {
    let Some(peer) = peer("misuse_of_the_abi_is_an_error_code_with_the_rust_message") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = new_store(&dir);
    store.object_or_init("torn", || Torn::new(1)).unwrap();
    let samples = store.array_or_init("samples", 4, 0u32).unwrap();
    samples.write_at(0, &[10, 20, 30, 40]).unwrap();
    let out = Peer::spawn(peer, &["misuse", path.to_str().unwrap()]).finish();
    let lines: std::collections::HashMap<&str, &str> = out.lines().filter_map(|l| l.split_once(' ')).collect();
    let rust = |e: Error| e.to_string();
    let fp = Torn::LAYOUT.fingerprint;
    let torn_mismatch = |size: u64, fingerprint: u64| Error::ForeignLayoutMismatch {
        name: "torn".into(),
        found_type: "Torn".into(),
        found_size: 256,
        found_fingerprint: fp.into(),
        expected_size: size,
        expected_fingerprint: fingerprint.into(),
    };
    let not_found = rust(Store::open(&path).unwrap().untyped_object("nope").unwrap_err());
    let bad_name = rust(Store::open(&path).unwrap().untyped_object("").unwrap_err());
    let kind = rust(Store::open(&path).unwrap().untyped_object("samples").unwrap_err());
    let missing = rust(Store::open("/nonexistent/store.shm").unwrap_err());
    let expected = [
        ("null_store", "1 the store is NULL: pass a valid pointer".to_owned()),
        ("null_name", "1 the entry name is NULL: pass a valid pointer".to_owned()),
        ("null_out", "1 the output buffer is NULL: pass a valid pointer".to_owned()),
        ("null_callback", "1 the update callback is NULL: pass a valid pointer".to_owned()),
        ("null_version", "1 the version is NULL: pass a valid pointer".to_owned()),
        ("not_found", format!("4 {not_found}")),
        ("bad_name", format!("2 {bad_name}")),
        ("not_utf8", "2 invalid entry name \"\u{fffd}\": it is not UTF-8: pass UTF-8 text".to_owned()),
        ("wrong_size", format!("5 {}", torn_mismatch(248, fp))),
        ("wrong_fingerprint", format!("5 {}", torn_mismatch(256, fp ^ 1))),
        ("kind", format!("6 {kind}")),
        ("array_len", "0 ".to_owned()),
        ("len", "4".to_owned()),
        ("read_at", "0 ".to_owned()),
        ("read", "20 30 40 0".to_owned()),
        ("write_at", "0 ".to_owned()),
        (
            "out_of_bounds",
            format!("8 {}", Error::OutOfBounds { name: "samples".into(), what: "read_at", start: 3, end: 5, len: 4 }),
        ),
        ("overflow", format!("2 {} elements of 4 bytes overflow: ask for fewer", usize::MAX)),
        ("store_if_stale", format!("10 {}", Error::VersionConflict { name: "torn".into(), expected: 12345, found: 0 })),
        ("open_missing", format!("3 {missing}")),
        ("open_flags", "2 unknown flags 0x4: pass 0 or SHMSTORE_OPEN_READ_ONLY".to_owned()),
    ];
    for (name, want) in expected {
        assert_eq!(lines.get(name).map(|s| s.trim_end()), Some(want.trim_end()), "{name}, in:\n{out}");
    }
    assert_eq!(samples.get(2).unwrap(), 70);
    assert_eq!(samples.get(3).unwrap(), 80);
}

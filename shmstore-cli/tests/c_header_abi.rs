//! The functions `shmstore header` generates, compiled and run as separate C processes: the
//! header-only reader (`NAME_read_mapped`, no library) against a Rust writer, a migration, a
//! removal, a rename and a crash-cut replacement, and the typed wrappers over the C ABI (`config_load`, `config_store`, `samples_read_at`, ...),
//! linked with shmstore-ffi's static library.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use common::{build, config, poke, shmstore, temp_store, Config, Mode8};
use shmstore::{FixedStr, SharedLayout, Store};

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct Torn {
    seq: u64,
    words: [u64; 31],
}

/// `Torn` after a migration: one more word.
#[derive(SharedLayout, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
#[shared(version = 2)]
struct Torn2 {
    seq: u64,
    words: [u64; 31],
    extra: u64,
}

/// `Torn` after a migration that keeps its size: another layout all the same.
#[derive(SharedLayout, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
#[shared(version = 3)]
struct TornSameSize {
    seq: u64,
    words: [u64; 30],
    extra: u64,
}

const K: u64 = 0x9E37_79B9_7F4A_7C15;

fn torn(seq: u64) -> Torn {
    Torn { seq, words: std::array::from_fn(|i| seq.wrapping_mul(K).wrapping_add(i as u64)) }
}

/// How many header-only reads the C reader makes, at least, and how many distinct values it must
/// see among them.
const READS: u64 = 2_000_000;
const CHANGES: u64 = 1_000;

/// A reader that maps the store file itself and uses only the generated header.
const MAPPED_READER: &str = r#"
#define _DEFAULT_SOURCE
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store.h"

#ifdef SHMSTORE_H
#error "the library's header must not be needed, nor picked up, here"
#endif

static int consistent(const shmstore_torn_t *t) {
    for (int i = 0; i < 31; i++)
        if (t->words[i] != t->seq * 0x9E3779B97F4A7C15ull + (uint64_t)i) return 0;
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) return 2;
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) return 2;
    shmstore_torn_t t;
    uint64_t version = 0;
    /* once: one read; from BLOCK SERIAL: one read as by a header made when the entry's block was
     * BLOCK with SERIAL, for this header's layout. */
    int once = strcmp(argv[2], "once") == 0, from = strcmp(argv[2], "from") == 0 && argc == 5;
    if (once || from) {
        memset(&t, 0xAB, sizeof t);
        int rc = once ? torn_read_mapped(map, (uint64_t)st.st_size, &t, &version)
                      : shmstore_mapped_read(map, (uint64_t)st.st_size, strtoull(argv[3], NULL, 10),
                                             strtoull(argv[4], NULL, 10), TORN_NAME, sizeof TORN_NAME - 1,
                                             TORN_FINGERPRINT, sizeof t, &t, &version);
        int zeroed = 1;
        for (size_t i = 0; i < sizeof t; i++) zeroed &= ((unsigned char *)&t)[i] == 0;
        printf("rc=%d seq=%" PRIu64 " consistent=%d zeroed=%d version=%" PRIu64 "\n", rc, t.seq, consistent(&t),
               zeroed, version);
        return 0;
    }
    /* until: read until a read fails other than BUSY; say "ready" after the first success. */
    if (strcmp(argv[2], "until") == 0) {
        uint64_t n = 0, torn = 0, busy = 0;
        int rc;
        for (;;) {
            rc = torn_read_mapped(map, (uint64_t)st.st_size, &t, &version);
            if (rc == SHMSTORE_MAPPED_BUSY) {
                busy++;
                continue;
            }
            if (rc != SHMSTORE_MAPPED_OK) break;
            if (!consistent(&t)) torn++;
            if (n++ == 0) {
                printf("ready\n");
                fflush(stdout);
            }
        }
        printf("rc=%d reads=%" PRIu64 " torn=%" PRIu64 " busy=%" PRIu64 "\n", rc, n, torn, busy);
        return 0;
    }
    if (argc < 5) return 2;
    uint64_t reads = strtoull(argv[3], NULL, 10), changes = strtoull(argv[4], NULL, 10);
    uint64_t n = 0, torn = 0, busy = 0, seen = 0, last = UINT64_MAX;
    while (n < reads || seen < changes) {
        int rc = torn_read_mapped(map, (uint64_t)st.st_size, &t, &version);
        if (rc == SHMSTORE_MAPPED_BUSY) {
            busy++;
            continue;
        }
        if (rc != SHMSTORE_MAPPED_OK) {
            printf("rc=%d\n", rc);
            return 1;
        }
        n++;
        if (!consistent(&t)) torn++;
        if (t.seq != last) {
            seen++;
            last = t.seq;
        }
    }
    printf("reads=%" PRIu64 " torn=%" PRIu64 " changes=%" PRIu64 " busy=%" PRIu64 "\n", n, torn, seen, busy);
    return 0;
}
"#;

/// A program that uses the typed wrappers over the library's C ABI.
const ABI_USER: &str = r#"
#define _DEFAULT_SOURCE
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmstore.h"
#include "store.h"

int main(int argc, char **argv) {
    (void)argc;
    shmstore_status err;
    shmstore *s = shmstore_open(argv[1], 0, &err);
    if (s == NULL) {
        printf("open: %d %s\n", (int)err, shmstore_last_error());
        return 1;
    }
    shmstore_config_t c;
    uint64_t version = 0;
    shmstore_status st = config_load_versioned(s, &c, &version);
    printf("load %d port=%u name=%.12s mode=%u version=%" PRIu64 "\n", (int)st, c.port, c.name, c.mode, version);
    c.port = 9090;
    st = config_store(s, &c);
    printf("store %d\n", (int)st);
    c.mode = 77; /* not a variant of Mode8 */
    st = config_store(s, &c);
    printf("invalid %d %s\n", (int)st, shmstore_last_error());

    double x[3];
    st = samples_read_at(s, 2, x, 3);
    printf("read_at %d %g %g %g\n", (int)st, x[0], x[1], x[2]);
    double y[2] = {-1.0, -2.0};
    st = samples_write_at(s, 0, y, 2);
    uint64_t len = 0;
    shmstore_status st2 = samples_len(s, &len);
    printf("write_at %d len %d %" PRIu64 "\n", (int)st, (int)st2, len);

    /* The header-only reader sees the library's commit. */
    int fd = open(argv[1], O_RDONLY);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) return 1;
    void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) return 1;
    shmstore_config_t m;
    int rc = config_read_mapped(map, (uint64_t)sb.st_size, &m, NULL);
    printf("mapped %d port=%u\n", rc, m.port);
    shmstore_close(s);
    return 0;
}
"#;

fn c_compiler(test: &str) -> Option<String> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    match Command::new(&cc).arg("--version").output() {
        Ok(out) if out.status.success() => Some(cc),
        _ => {
            let ci = std::env::var("CI")
                .is_ok_and(|v| !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "false" | "no"));
            let missing = "no C compiler (set CC, or install cc/gcc/clang) to compile generated headers";
            assert!(!ci, "{missing}: CI must run {test}");
            eprintln!("\n*** SKIPPED {test}: {missing}. It would FAIL in CI (CI=true). ***\n");
            None
        }
    }
}

/// Compiles `source` in `dir` (which holds the headers) into `dir/exe`, with `extra` arguments
/// after the source (libraries).
fn compile(cc: &str, dir: &Path, source: &str, exe: &str, extra: &[&std::ffi::OsStr]) -> PathBuf {
    let src = dir.join(format!("{exe}.c"));
    fs::write(&src, source).unwrap();
    let out = dir.join(exe);
    let built = Command::new(cc)
        .args(["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(dir)
        .arg(&src)
        .args(extra)
        .arg("-o")
        .arg(&out)
        .output()
        .expect("run the C compiler");
    assert!(
        built.status.success(),
        "{exe}.c did not compile:\n{}{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
    out
}

fn header(path: &Path) -> String {
    shmstore(["header".as_ref(), path.as_os_str()]).ok().to_owned()
}

fn run(exe: &Path, args: &[&str]) -> String {
    let out = Command::new(exe).args(args).stderr(Stdio::inherit()).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{} failed ({}): {text}", exe.display(), out.status);
    text
}

fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        .parse()
        .unwrap()
}

#[test]
fn the_header_only_reader_sees_no_torn_value_and_no_stale_one_after_a_migration() {
    let Some(cc) = c_compiler("the_header_only_reader_sees_no_torn_value_and_no_stale_one_after_a_migration") else {
        return;
    };
    let (dir, path) = temp_store("mapped.shm");
    let store = Store::open_or_create(&path, 1 << 20).unwrap();
    let obj = store.object_or_init("torn", || torn(0)).unwrap();
    fs::write(dir.path().join("store.h"), header(&path)).unwrap();
    let reader = compile(&cc, dir.path(), MAPPED_READER, "mapped_reader", &[]);
    let p = path.to_str().unwrap();

    let stop = AtomicBool::new(false);
    let out = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut seq = 0;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                obj.store(torn(seq)).unwrap();
            }
            seq
        });
        let out = Command::new(&reader).args([p, "read", &READS.to_string(), &CHANGES.to_string()]).output();
        stop.store(true, Ordering::Relaxed);
        let commits = writer.join().unwrap();
        let out = out.unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(out.status.success(), "the reader failed: {text}");
        eprintln!("header-only C reader: {} (Rust writer: {commits} commits)", text.trim());
        text
    });
    assert!(field(&out, "reads") >= READS && field(&out, "changes") >= CHANGES, "{out}");
    assert_eq!(field(&out, "torn"), 0, "the header-only reader saw torn values: {out}");

    obj.store(torn(41)).unwrap();
    let v41 = obj.version().get();
    assert_eq!(run(&reader, &[p, "once"]), format!("rc=0 seq=41 consistent=1 zeroed=0 version={v41}\n"));
    let old = header(&path);
    store.migrate("torn", |t: Torn| Torn2 { seq: t.seq + 1, words: torn(t.seq + 1).words, extra: 7 }).unwrap();
    let v42 = store.object::<Torn2>("torn").unwrap().version().get();
    // Built for the old layout: it follows the entry to its new block, and refuses it.
    assert_eq!(run(&reader, &[p, "once"]), "rc=1 seq=0 consistent=0 zeroed=1 version=0\n");
    // Built from a header made after the migration, which starts at the new block.
    let new_dir = tempfile::tempdir().unwrap();
    let new = header(&path);
    fs::write(new_dir.path().join("store.h"), &new).unwrap();
    let new_reader = compile(&cc, new_dir.path(), MAPPED_READER, "mapped_reader", &[]);
    let seen = format!("rc=0 seq=42 consistent=1 zeroed=0 version={v42}\n");
    assert_eq!(run(&new_reader, &[p, "once"]), seen);
    // Built for the new layout but starting from the old block (a header made before the migration
    // for the layout the entry was migrated to): it follows moved_to to the new block.
    let (old_block, old_serial) = (define(&old, "TORN_BLOCK_OFFSET"), define(&old, "TORN_SERIAL"));
    assert_ne!(old_block, define(&new, "TORN_BLOCK_OFFSET"), "the migration gave the entry a new block");
    assert_eq!(run(&new_reader, &[p, "from", &old_block.to_string(), &old_serial.to_string()]), seen);
}

/// The value of `#define NAME value` in `header`, an integer with a `ULL` suffix.
fn define(header: &str, name: &str) -> u64 {
    let line = header
        .lines()
        .find(|l| l.starts_with(&format!("#define {name} ")))
        .unwrap_or_else(|| panic!("no #define {name} in\n{header}"));
    line.split_whitespace().nth(2).unwrap().trim_end_matches(['U', 'L']).parse().unwrap()
}

/// A store with the object `torn` (value `torn(5)`), and the header-only reader built from its
/// header.
fn torn_store(cc: &str, file: &str) -> (tempfile::TempDir, PathBuf, Store, PathBuf) {
    let (dir, path) = temp_store(file);
    let store = Store::open_or_create(&path, 1 << 20).unwrap();
    store.object_or_init("torn", || torn(5)).unwrap();
    fs::write(dir.path().join("store.h"), header(&path)).unwrap();
    let reader = compile(cc, dir.path(), MAPPED_READER, "mapped_reader", &[]);
    let version = store.object::<Torn>("torn").unwrap().version().get();
    assert_eq!(
        run(&reader, &[path.to_str().unwrap(), "once"]),
        format!("rc=0 seq=5 consistent=1 zeroed=0 version={version}\n")
    );
    (dir, path, store, reader)
}

const GONE: &str = "rc=4 seq=0 consistent=0 zeroed=1 version=0\n";

#[test]
fn the_header_only_reader_reports_a_removed_entry_as_gone_even_when_its_block_is_reused() {
    let Some(cc) = c_compiler("the_header_only_reader_reports_a_removed_entry_as_gone_even_when_its_block_is_reused")
    else {
        return;
    };
    let (_dir, path, store, reader) = torn_store(&cc, "removed.shm");
    let p = path.to_str().unwrap();
    let block = store.entry_info("torn").unwrap().record_offset;
    store.remove("torn").unwrap();
    assert_eq!(run(&reader, &[p, "once"]), GONE);
    // An entry of the same name and layout again: it takes the freed block, with a new serial. The
    // old header names the removed entry, not this one.
    store.object_or_init("torn", || torn(6)).unwrap();
    assert_eq!(store.entry_info("torn").unwrap().record_offset, block, "the new entry reuses the freed block");
    assert_eq!(run(&reader, &[p, "once"]), GONE);
    // A header made now reads it.
    let new_dir = tempfile::tempdir().unwrap();
    fs::write(new_dir.path().join("store.h"), header(&path)).unwrap();
    let new_reader = compile(&cc, new_dir.path(), MAPPED_READER, "mapped_reader", &[]);
    let version = store.object::<Torn>("torn").unwrap().version().get();
    assert_eq!(run(&new_reader, &[p, "once"]), format!("rc=0 seq=6 consistent=1 zeroed=0 version={version}\n"));
}

#[test]
fn the_header_only_reader_reports_a_renamed_entry_as_gone() {
    let Some(cc) = c_compiler("the_header_only_reader_reports_a_renamed_entry_as_gone") else { return };
    // A name of another length, and one of the same length.
    for to in ["torn_renamed", "nrot"] {
        let (_dir, path, store, reader) = torn_store(&cc, "renamed.shm");
        store.rename("torn", to).unwrap();
        // Same data, same layout, but the block moved_to leads to is named otherwise.
        assert_eq!(store.object::<Torn>(to).unwrap().load().unwrap(), torn(5));
        assert_eq!(run(&reader, &[path.to_str().unwrap(), "once"]), GONE, "renamed to {to}");
    }
}

#[test]
fn the_header_only_reader_refuses_a_layout_of_the_same_size_and_another_fingerprint() {
    let Some(cc) = c_compiler("the_header_only_reader_refuses_a_layout_of_the_same_size_and_another_fingerprint")
    else {
        return;
    };
    let (_dir, path, store, reader) = torn_store(&cc, "same_size.shm");
    assert_eq!(std::mem::size_of::<TornSameSize>(), std::mem::size_of::<Torn>());
    assert_ne!(TornSameSize::LAYOUT.fingerprint, Torn::LAYOUT.fingerprint);
    store
        .migrate("torn", |t: Torn| TornSameSize { seq: t.seq, words: std::array::from_fn(|i| t.words[i]), extra: 1 })
        .unwrap();
    assert_eq!(run(&reader, &[path.to_str().unwrap(), "once"]), "rc=1 seq=0 consistent=0 zeroed=1 version=0\n");
}

/// A C process reading in a loop while the entry takes commits and is then migrated (or removed):
/// every value it gets is whole, and its reads end with the error of the change.
#[test]
fn the_header_only_reader_running_during_a_migration_or_removal_ends_with_its_error() {
    use std::io::{BufRead, BufReader};
    let Some(cc) = c_compiler("the_header_only_reader_running_during_a_migration_or_removal_ends_with_its_error")
    else {
        return;
    };
    for (change, rc) in [("migrate", 1), ("remove", 4)] {
        let (_dir, path, store, reader) = torn_store(&cc, "running.shm");
        let obj = store.object::<Torn>("torn").unwrap();
        let mut child =
            Command::new(&reader).args([path.to_str().unwrap(), "until"]).stdout(Stdio::piped()).spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "ready");
        for seq in 6..20_000 {
            obj.store(torn(seq)).unwrap();
        }
        if change == "migrate" {
            store.migrate("torn", |t: Torn| Torn2 { seq: t.seq, words: t.words, extra: 0 }).unwrap();
        } else {
            store.remove("torn").unwrap();
        }
        let last = lines.next().unwrap().unwrap();
        assert!(child.wait().unwrap().success());
        eprintln!("header-only C reader during commits, then {change}: {last}");
        assert_eq!(field(&last, "rc"), rc, "{change}: {last}");
        assert_eq!(field(&last, "torn"), 0, "{change}: {last}");
        assert!(field(&last, "reads") >= 1, "{change}: {last}");
    }
}

/// The state a crash leaves between a replacement's commit point (the old block moved to the new)
/// and the step that marks the new block live: the new block is a shadow whose moved_to points
/// back at the old one. It counts as live, as the library counts it; a shadow that the block it
/// points back at is not moved to does not.
#[test]
fn the_header_only_reader_takes_a_committed_shadow_as_live_and_no_other() {
    let Some(cc) = c_compiler("the_header_only_reader_takes_a_committed_shadow_as_live_and_no_other") else {
        return;
    };
    let (dir, path, store, _) = torn_store(&cc, "shadow.shm");
    let p = path.to_str().unwrap();
    let old = header(&path);
    store.migrate("torn", |t: Torn| Torn2 { seq: t.seq + 1, words: torn(t.seq + 1).words, extra: 7 }).unwrap();
    let version = store.object::<Torn2>("torn").unwrap().version().get();
    store.close().unwrap();
    let new = header(&path);
    fs::write(dir.path().join("store.h"), &new).unwrap();
    let reader = compile(&cc, dir.path(), MAPPED_READER, "mapped_reader_v2", &[]);
    let (old_block, old_serial) = (define(&old, "TORN_BLOCK_OFFSET"), define(&old, "TORN_SERIAL"));
    let new_block = define(&new, "TORN_BLOCK_OFFSET");
    assert_ne!(old_block, new_block);
    let from_old = [p, "from", &old_block.to_string(), &old_serial.to_string()];
    // The old block is moved to the new one (the commit point); the new one becomes a shadow that
    // points back at it, as if a crash cut off the step that marks it live.
    let (state, moved_to) = (0, 32);
    poke(&path, new_block + state, &2u32.to_ne_bytes());
    poke(&path, new_block + moved_to, &old_block.to_ne_bytes());
    let seen = format!("rc=0 seq=6 consistent=1 zeroed=0 version={version}\n");
    assert_eq!(run(&reader, &[p, "once"]), seen, "a committed shadow is live");
    assert_eq!(run(&reader, &from_old), seen, "moved_to leads to a committed shadow");
    // A shadow that points back at a block not moved to it is not committed.
    poke(&path, new_block + moved_to, &(old_block + 64 * 7).to_ne_bytes());
    assert_eq!(run(&reader, &[p, "once"]), GONE);
    assert_eq!(run(&reader, &from_old), GONE);
}

#[test]
fn the_typed_wrappers_use_the_library() {
    let Some(cc) = c_compiler("the_typed_wrappers_use_the_library") else { return };
    let (dir, path) = temp_store("abi.shm");
    build(&path);
    fs::write(dir.path().join("store.h"), header(&path)).unwrap();
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shmstore-ffi/include/shmstore.h");
    fs::copy(include, dir.path().join("shmstore.h")).unwrap();
    // shmstore-ffi is a dev-dependency: cargo builds its static library next to this test.
    let lib = std::env::current_exe().unwrap().parent().unwrap().join("libshmstore_ffi.a");
    assert!(lib.exists(), "{} was not built", lib.display());
    let libs = [lib.as_os_str(), "-lpthread".as_ref(), "-ldl".as_ref(), "-lm".as_ref()];
    let exe = compile(&cc, dir.path(), ABI_USER, "abi_user", &libs);
    let before = Store::open(&path).unwrap().object::<Config>("config").unwrap().version().get();
    let out = run(&exe, &[path.to_str().unwrap()]);

    let store = Store::open(&path).unwrap();
    let cfg = store.object::<Config>("config").unwrap();
    // What Rust says of the same invalid value.
    let invalid = {
        let untyped = store.untyped_object("config").unwrap();
        let (mut bytes, _) = untyped.load().unwrap();
        bytes[std::mem::offset_of!(Config, mode)] = 77;
        untyped.store_bytes(&bytes).unwrap_err().to_string()
    };
    let expected = [
        format!("load 0 port=8080 name=edge-1 mode=1 version={before}"),
        "store 0".to_owned(),
        format!("invalid 7 {invalid}"),
        "read_at 0 3 4.5 6".to_owned(),
        "write_at 0 len 0 20".to_owned(),
        "mapped 0 port=9090".to_owned(),
    ];
    assert_eq!(out.lines().collect::<Vec<_>>(), expected, "the C program printed:\n{out}");
    assert_eq!(
        cfg.load().unwrap(),
        Config { port: 9090, name: FixedStr::new("edge-1").unwrap(), mode: Mode8::Fast, ..config() }
    );
    let samples = store.array::<f64>("samples").unwrap();
    assert_eq!(samples.get(0).unwrap(), -1.0);
    assert_eq!(samples.get(1).unwrap(), -2.0);
    assert_eq!(samples.get(2).unwrap(), 3.0);
}

/// The quickstart example's types (examples/quickstart.rs), declared again: a store checks
/// layouts, not Rust types, so this writes the store the quickstart writes.
mod quickstart {
    use shmstore::{FixedStr, SharedLayout};

    #[derive(SharedLayout, Clone, Copy, Debug, Default)]
    #[repr(C)]
    #[shared(version = 1)]
    pub struct RunLog {
        pub runs: u64,
        pub last_run_unix_secs: u64,
        pub last_pid: u32,
        pub last_workers: u32,
        pub last_host: FixedStr<32>,
    }

    #[derive(SharedLayout, Clone, Copy, Debug, Default)]
    #[repr(C)]
    pub struct Totals {
        pub runs: u64,
        pub last_run: u64,
        pub all_runs: u64,
    }

    #[derive(SharedLayout, Clone, Copy, Debug, Default, PartialEq)]
    #[repr(C)]
    pub struct WorkerRow {
        pub pid: u32,
        pub id: u32,
        pub increments: u64,
        pub micros: u64,
    }
}

/// The C example `shmstore-ffi/examples/quickstart_reader.c`, built as its comment says, reads a
/// store written as the quickstart writes it.
#[test]
fn the_c_quickstart_reader_example_reads_the_quickstart_store() {
    use quickstart::{RunLog, Totals, WorkerRow};
    let Some(cc) = c_compiler("the_c_quickstart_reader_example_reads_the_quickstart_store") else { return };
    let (dir, path) = temp_store("quickstart.shm");
    {
        let store = Store::open_or_create(&path, 1 << 20).unwrap();
        let log = store.object_or_init("run_log", RunLog::default).unwrap();
        log.update(|l| {
            l.runs = 2;
            l.last_pid = 4242;
            l.last_workers = 4;
            l.last_host = FixedStr::new("edge-1").unwrap();
        })
        .unwrap();
        store
            .object_or_init("totals", Totals::default)
            .unwrap()
            .store(Totals { runs: 1, last_run: 100, all_runs: 100 })
            .unwrap();
        let workers = store.array_or_init("workers", 2, WorkerRow::default()).unwrap();
        workers.write_at(1, &[WorkerRow { pid: 7, id: 1, increments: 50, micros: 9 }]).unwrap();
        store.object_or_init("counter", || 0u64).unwrap();
    }
    let run_log_version = Store::open(&path).unwrap().object::<RunLog>("run_log").unwrap().version().get();
    fs::write(dir.path().join("quickstart.h"), header(&path)).unwrap();
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shmstore-ffi/include/shmstore.h");
    fs::copy(include, dir.path().join("shmstore.h")).unwrap();
    let example =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../shmstore-ffi/examples/quickstart_reader.c"))
            .unwrap();
    let lib = std::env::current_exe().unwrap().parent().unwrap().join("libshmstore_ffi.a");
    let libs = [lib.as_os_str(), "-lpthread".as_ref(), "-ldl".as_ref(), "-lm".as_ref()];
    let exe = compile(&cc, dir.path(), &example, "quickstart_reader", &libs);
    let out = run(&exe, &[path.to_str().unwrap()]);
    let expected = [
        format!("run_log: 2 runs, the last by pid 4242 with 4 workers on edge-1 (version {run_log_version})"),
        "totals: 1 finished runs, the last counted 100, all together 100".to_owned(),
        "worker 0: pid 0, 0 increments in 0 us".to_owned(),
        "worker 1: pid 7, 50 increments in 9 us".to_owned(),
        "totals (header-only read): 1 finished runs".to_owned(),
    ];
    assert_eq!(out.lines().collect::<Vec<_>>(), expected, "the example printed:\n{out}");
}

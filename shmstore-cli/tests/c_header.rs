//! `shmstore header`: a C program compiled against the generated header reads the store file
//! itself and sees exactly what Rust wrote.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{build, config, entry_json, shmstore, temp_store, Config, Everything, MAX_SAFE, U128_V};
use shmstore::{SharedLayout, Store};

/// Two different types with the same name, which the header must tell apart.
mod a {
    #[derive(shmstore::SharedLayout, Clone, Copy, Debug, Default)]
    #[repr(C)]
    pub struct Point {
        pub x: i32,
        pub y: i32,
    }
}

mod b {
    #[derive(shmstore::SharedLayout, Clone, Copy, Debug, Default)]
    #[repr(C)]
    pub struct Point {
        pub x: f64,
        pub y: f64,
    }
}

/// Packed below its fields' alignment.
#[derive(SharedLayout, Clone, Copy, Debug, Default)]
#[repr(C, packed(2))]
struct Packed {
    a: u64,
    b: u16,
}

/// Aligned above its fields' alignment.
#[derive(SharedLayout, Clone, Copy, Debug, Default)]
#[repr(C, align(32))]
struct Aligned {
    v: u64,
    _pad: [u8; 24],
}

/// Fields named `0` and `1`.
#[derive(SharedLayout, Clone, Copy, Debug, Default)]
#[repr(C)]
struct Pair(u32, i32);

#[derive(SharedLayout, Clone, Copy, Debug, Default)]
#[repr(C)]
struct Shapes {
    aligned: Aligned,
    q: b::Point,
    p: a::Point,
    pair: Pair,
    packed: Packed,
    int: u8,
    _pad: [u8; 21],
}

fn shapes(v: u64) -> Shapes {
    Shapes {
        aligned: Aligned { v, _pad: [0; 24] },
        q: b::Point { x: 0.25, y: -8.5 },
        p: a::Point { x: -7, y: 9 },
        pair: Pair(4_000_000_000, -2),
        packed: Packed { a: 0x0102_0304_0506_0708, b: 515 },
        int: 42,
        _pad: [0; 21],
    }
}

const PROGRAM: &str = r#"
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store.h"

static const unsigned char *base;

/* The active copy of an entry: its seq word picks the slot. */
static const void *active(uint64_t seq_offset, uint64_t data_offset, uint64_t slot_stride) {
    uint64_t seq = __atomic_load_n((const uint64_t *)(base + seq_offset), __ATOMIC_ACQUIRE);
    return base + data_offset + (seq & 1) * slot_stride;
}
#define ACTIVE(E) active(E##_SEQ_OFFSET, E##_DATA_OFFSET, E##_SLOT_STRIDE)

static void text(const char *label, const char *s, size_t cap) {
    printf("%s=%.*s\n", label, (int)strnlen(s, cap), s);
}

static void inner(const char *label, const struct Inner *i) {
    printf("%s=%u %d %u %d ", label, i->a, i->b, i->flag, i->mode == Mode8_Turbo ? 2 : i->mode == Mode8_Fast);
    text("tag", i->tag, sizeof i->tag);
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) { perror("open"); return 1; }
    base = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) { perror("mmap"); return 1; }

    const struct Everything *e = ACTIVE(EVERYTHING);
    printf("u128_v=%016llx%016llx\n", (unsigned long long)(e->u128_v >> 64), (unsigned long long)e->u128_v);
    printf("i128_v=%lld\n", (long long)e->i128_v);
    printf("u64_v=%llu big_u64=%llu\n", (unsigned long long)e->u64_v, (unsigned long long)e->big_u64);
    printf("i64_v=%lld min_i64=%lld\n", (long long)e->i64_v, (long long)e->min_i64);
    printf("f64_v=%g specials=%g %g %g\n", e->f64_v, e->specials[0], e->specials[1], e->specials[2]);
    printf("m64=%d\n", e->m64 == Mode64_Huge);
    printf("a_u64=%llu a_i64=%lld\n", (unsigned long long)__atomic_load_n(&e->a_u64, __ATOMIC_ACQUIRE),
           (long long)__atomic_load_n(&e->a_i64, __ATOMIC_ACQUIRE));
    printf("u32_v=%u i32_v=%d f32_v=%g m32=%d\n", e->u32_v, e->i32_v, e->f32_v, e->m32 == Mode32_Y);
    printf("a_u32=%u a_i32=%d\n", __atomic_load_n(&e->a_u32, __ATOMIC_ACQUIRE), __atomic_load_n(&e->a_i32, __ATOMIC_ACQUIRE));
    printf("u16_v=%u i16_v=%d m16=%d\n", e->u16_v, e->i16_v, e->m16 == Mode16_B);
    inner("inner", &e->inner);
    printf("grid=%u %u %u %u %u %u\n", e->grid[0][0], e->grid[0][1], e->grid[0][2], e->grid[1][0], e->grid[1][1], e->grid[1][2]);
    inner("inners0", &e->inners[0]);
    inner("inners1", &e->inners[1]);
    printf("u8_v=%u i8_v=%d flag=%u m8=%d a_bool=%u\n", e->u8_v, e->i8_v, e->flag, e->m8 == Mode8_Fast,
           __atomic_load_n(&e->a_bool, __ATOMIC_ACQUIRE));
    text("name", e->name, sizeof e->name);

    const shmstore_config_t *c = ACTIVE(CONFIG);
    printf("config=%u %u %d ", c->port, c->verbose, c->mode == Mode8_Fast);
    text("name", c->name, sizeof c->name);

    const shmstore_samples_t *samples = ACTIVE(SAMPLES);
    printf("samples=%llu %g %g\n", (unsigned long long)SAMPLES_LEN, samples[1], samples[SAMPLES_LEN - 1]);

    const shmstore_rows_t *rows = ACTIVE(ROWS);
    inner("rows3", &rows[3]);

    const shmstore_shapes_t *s = ACTIVE(SHAPES);
    printf("shapes=%llu %g %g %d %d %u %d %llx %u %u\n", (unsigned long long)s->aligned.v, s->q.x, s->q.y, s->p.x,
           s->p.y, s->pair._0, s->pair._1, (unsigned long long)s->packed.a, s->packed.b, s->int_);
    printf("fingerprints=%016llx %016llx\n", (unsigned long long)CONFIG_FINGERPRINT, (unsigned long long)SHAPES_FINGERPRINT);
    return 0;
}
"#;

/// The C compiler: `$CC`, else `cc`; `None` (and the test is skipped) only if there is none.
fn c_compiler() -> Option<String> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    match Command::new(&cc).arg("--version").output() {
        Ok(out) if out.status.success() => Some(cc),
        _ => None,
    }
}

/// Whether the suite runs in CI: the `CI` variable that CI services set (`true`, `1`, ...), unless
/// it says `false` or `0`.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "false" | "no"))
}

fn compile(cc: &str, source: &Path, exe: &Path) {
    let out = Command::new(cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-o"])
        .arg(exe)
        .arg(source)
        .output()
        .expect("run the C compiler");
    assert!(
        out.status.success(),
        "the C program did not compile:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of `#define NAME value` in `header`, without its integer suffix.
fn define(header: &str, name: &str) -> String {
    let line = header
        .lines()
        .find(|l| l.starts_with(&format!("#define {name} ")))
        .unwrap_or_else(|| panic!("no #define {name} in\n{header}"));
    line.split_whitespace().nth(2).unwrap().trim_end_matches(['U', 'L', 'u']).to_owned()
}

#[test]
fn a_c_program_reads_what_rust_wrote() {
    let Some(cc) = c_compiler() else {
        let missing = "no C compiler (set CC, or install cc/gcc/clang) to compile the generated header";
        // In CI a skipped check is a hole in the suite, not a pass.
        assert!(!in_ci(), "{missing}: CI must run this test (CI={:?})", std::env::var("CI").unwrap_or_default());
        eprintln!("\n*** SKIPPED a_c_program_reads_what_rust_wrote: {missing}. It would FAIL in CI (CI=true). ***\n");
        return;
    };
    let (dir, path) = temp_store("c.shm");
    build(&path);
    {
        let store = Store::open(&path).unwrap();
        let s = store.object_or_init("shapes", || shapes(1)).unwrap();
        s.store(shapes(123_456_789)).unwrap();
        store.close().unwrap();
    }

    let run = shmstore(["header".as_ref(), path.as_os_str()]);
    let header = run.ok().to_owned();
    assert_eq!(run.stderr, "");
    // Every struct once, nested ones first; the two `Point`s apart; identifiers made valid C.
    for needle in [
        "#ifndef SHMSTORE_C_SHM_H",
        "struct Inner {",
        "struct Point {",
        "struct Point_",
        "} __attribute__((packed, aligned(2)));",
        "} __attribute__((aligned(32)));",
        "    uint32_t _0;",
        "    uint8_t int_;",
        "    unsigned __int128 u128_v;",
        "    uint8_t flag; /* bool: 0 or 1 */",
        "    uint64_t a_u64; /* AtomicU64: access with atomic operations */",
        "    char name[11]; /* FixedStr<11>: UTF-8, NUL-padded */",
        "    uint16_t grid[2][3];",
        "    struct Inner inners[2];",
        "typedef uint64_t Mode64;",
        "#define Mode64_Huge ((Mode64)18364758544493064720ULL)",
        "_Static_assert(offsetof(struct Everything, name) == 197, \"Everything.name must be at offset 197\");",
        "_Static_assert(sizeof(struct Shapes) == 96,",
    ] {
        assert!(header.contains(needle), "{needle:?} not in\n{header}");
    }
    assert_eq!(header.matches("struct Inner {").count(), 1);
    assert!(header.find("struct Inner {") < header.find("struct Everything {"));
    assert!(header.trim_end().ends_with("#endif /* SHMSTORE_C_SHM_H */"));
    assert_eq!(define(&header, "CONFIG_FINGERPRINT"), format!("0x{:016x}", Config::LAYOUT.fingerprint));
    assert_eq!(define(&header, "EVERYTHING_FINGERPRINT"), format!("0x{:016x}", Everything::LAYOUT.fingerprint));
    // The offsets agree with `inspect --json`.
    let inspect: serde_json::Value =
        serde_json::from_str(shmstore(["inspect".as_ref(), path.as_os_str(), "--json".as_ref()]).ok()).unwrap();
    for (entry, prefix) in [("config", "CONFIG"), ("samples", "SAMPLES"), ("shapes", "SHAPES")] {
        let e = entry_json(&inspect, entry);
        for (key, suffix) in [
            ("data_offset", "DATA_OFFSET"),
            ("slot_stride", "SLOT_STRIDE"),
            ("record_offset", "RECORD_OFFSET"),
            ("record_offset", "BLOCK_OFFSET"),
            ("seq_offset", "SEQ_OFFSET"),
            ("len", "LEN"),
        ] {
            assert_eq!(define(&header, &format!("{prefix}_{suffix}")), e[key].to_string(), "{entry}.{key}");
        }
    }

    assert_eq!(define(&header, "CONFIG_NAME"), "\"config\"");
    // Every entry names the serial of its block, which the header-only reader checks.
    for prefix in ["CONFIG", "SAMPLES", "SHAPES", "EVERYTHING"] {
        assert!(define(&header, &format!("{prefix}_SERIAL")).parse::<u64>().is_ok_and(|s| s > 0), "{prefix}");
    }

    fs::write(dir.path().join("store.h"), &header).unwrap();
    let source = dir.path().join("reader.c");
    fs::write(&source, PROGRAM).unwrap();
    let exe = dir.path().join("reader");
    compile(&cc, &source, &exe);
    let out = Command::new(&exe).arg(&path).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8(out.stdout).unwrap();

    let cfg = config();
    let expected = [
        format!("u128_v={U128_V:032x}"),
        "i128_v=-42".to_owned(),
        format!("u64_v={MAX_SAFE} big_u64={}", MAX_SAFE + 1),
        format!("i64_v=-{MAX_SAFE} min_i64={}", i64::MIN),
        "f64_v=-1234.5 specials=nan inf -inf".to_owned(),
        "m64=1".to_owned(),
        format!("a_u64={} a_i64=-5", u64::MAX),
        format!("u32_v={} i32_v={} f32_v=0.1 m32=1", u32::MAX, i32::MIN),
        "a_u32=77 a_i32=-77".to_owned(),
        "u16_v=65535 i16_v=-300 m16=1".to_owned(),
        "inner=1 -1 1 2 tag=ab".to_owned(),
        "grid=1 2 3 4 5 6".to_owned(),
        "inners0=2 -2 0 0 tag=abcd".to_owned(),
        "inners1=3 -3 1 1 tag=".to_owned(),
        "u8_v=255 i8_v=-128 flag=1 m8=1 a_bool=1".to_owned(),
        "name=grüße!".to_owned(),
        format!("config={} 1 1 name={}", cfg.port, cfg.name.as_str()),
        "samples=20 1.5 28.5".to_owned(),
        "rows3=3 -3 0 1 tag=r3".to_owned(),
        "shapes=123456789 0.25 -8.5 -7 9 4000000000 -2 102030405060708 515 42".to_owned(),
        format!("fingerprints={:016x} {:016x}", Config::LAYOUT.fingerprint, Shapes::LAYOUT.fingerprint),
    ];
    assert_eq!(printed.lines().collect::<Vec<_>>(), expected, "the C program printed:\n{printed}");

    // A header for one entry stands alone too.
    let one = shmstore(["header".as_ref(), path.as_os_str(), "shapes".as_ref()]).ok().to_owned();
    assert!(one.contains("#ifndef SHMSTORE_C_SHM_SHAPES_H"), "{one}");
    assert!(!one.contains("Everything"), "{one}");
    fs::write(dir.path().join("shapes.h"), &one).unwrap();
    let unit = dir.path().join("unit.c");
    fs::write(&unit, "#include \"shapes.h\"\nint main(void) { return (int)sizeof(shmstore_shapes_t) - 96; }\n")
        .unwrap();
    let unit_exe = dir.path().join("unit");
    compile(&cc, &unit, &unit_exe);
    assert!(Command::new(&unit_exe).status().unwrap().success());

    // -o writes the same text to a file.
    let out_path = dir.path().join("out.h");
    let run = shmstore(["header".as_ref(), path.as_os_str(), "-o".as_ref(), out_path.as_os_str()]);
    assert_eq!(run.ok(), "");
    assert_eq!(fs::read_to_string(&out_path).unwrap(), header);
}

/// A format-1 store (read-only to this build) gets its types and offsets, but no header-only
/// reader: that reader walks format-2 blocks.
#[test]
fn a_format_1_store_gets_no_header_only_reader() {
    let (dir, path) = temp_store("v1.shm");
    fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/golden/v1.shm"), &path).unwrap();
    let header = shmstore(["header".as_ref(), path.as_os_str()]).ok().to_owned();
    assert!(header.contains("This store is format version 1"), "{header}");
    assert!(header.contains("_RECORD_OFFSET "), "{header}");
    for absent in ["static inline int shmstore_mapped_read(", "_read_mapped(", "_SERIAL "] {
        assert!(!header.contains(absent), "{absent:?} in\n{header}");
    }
    let Some(cc) = c_compiler() else {
        assert!(!in_ci(), "no C compiler: CI must run this test");
        return;
    };
    fs::write(dir.path().join("v1.h"), &header).unwrap();
    let unit = dir.path().join("unit.c");
    fs::write(&unit, "#include \"v1.h\"\nint main(void) { return 0; }\n").unwrap();
    let exe = dir.path().join("unit");
    compile(&cc, &unit, &exe);
    assert!(Command::new(&exe).status().unwrap().success());
}

//! Benchmarks of shmstore's hot paths, each paired with a raw baseline measured in the same run.
//!
//! ```text
//! cargo bench --bench store -- --noplot           # everything, about a minute
//! cargo bench --bench store -- object/             # one group (a substring filter)
//! ```
//!
//! | shmstore                              | baseline                                  |
//! | ------------------------------------- | ----------------------------------------- |
//! | `object/read_guard`, `object/load`    | `baseline/ofd_lock_pair/read`             |
//! | `object/write_guard`, `object/update` | `baseline/ofd_lock_pair/write`            |
//! | `object/load`, `object/update`        | `baseline/mmap_ofd_copy64/{load,update}`  |
//! | `array/read_at_1MiB/*`                | `baseline/memcpy_1MiB/{vec,from_mmap}`    |
//! | `array/write_at_1MiB/*`               | `baseline/memcpy_1MiB/{vec,to_mmap}`      |
//!
//! The baselines are what the library does, written by hand: a bare `fcntl(F_OFD_SETLKW)` lock and
//! unlock of one byte (the kernel lock every guard takes), the same plus a 64-byte copy through a
//! raw `memmap2` mapping, and a plain 1 MiB `memcpy`. `benches/README.md` has the targets and the
//! last results.

use std::fs::File;
use std::hint::black_box;
use std::os::fd::AsRawFd;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use memmap2::MmapRaw;
use shmstore::{SharedLayout, Store};

/// A 64-byte object: one cache line, no validation needed (every bit pattern is a valid `u64`).
#[derive(SharedLayout, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct Obj64 {
    a: [u64; 8],
}

const MIB: usize = 1 << 20;

/// The byte the baselines lock: in the same far-away range as the library's entry locks
/// (`2^62 + 1 + slot`, see docs/format.md), so that the kernel does the same work.
const LOCK_OFFSET: i64 = (1 << 62) + 1;

/// One `fcntl(F_OFD_SETLKW)` call on the byte at `offset`: lock (`F_RDLCK`/`F_WRLCK`) or unlock
/// (`F_UNLCK`). This is the whole cost floor of a guard: one call to lock, one to unlock.
fn ofd(file: &File, offset: i64, kind: libc::c_int) {
    // SAFETY: all-zero is a valid `struct flock`; OFD locks require `l_pid == 0`.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = offset;
    fl.l_len = 1;
    let cmd = if kind == libc::F_UNLCK { libc::F_OFD_SETLK } else { libc::F_OFD_SETLKW };
    // SAFETY: `fl` is a live, initialised `struct flock` for the whole call and the descriptor is
    // owned by `file`, which outlives it.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &mut fl as *mut libc::flock) };
    assert_eq!(rc, 0, "fcntl(F_OFD_SETLK[W]) failed: {}", std::io::Error::last_os_error());
}

/// A file of `len` bytes in `dir`, mapped shared and read-write with `memmap2`.
fn raw_mapping(dir: &std::path::Path, name: &str, len: usize) -> (File, MmapRaw) {
    let file =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(dir.join(name)).unwrap();
    file.set_len(len as u64).unwrap();
    let map = MmapRaw::map_raw(&file).unwrap();
    // Touch every page, as the store's benches do, so that no page fault is measured.
    // SAFETY: the mapping is `len` bytes long, writable, and nobody else uses it.
    unsafe { std::ptr::write_bytes(map.as_mut_ptr(), 1, len) };
    (file, map)
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();

    // ---- The store under test: one 64-byte object, and 1 MiB arrays of f64 and of u8. ----
    let store = Store::open_or_create(dir.path().join("bench.shm"), 8 * MIB as u64).unwrap();
    let obj = store.object_or_init("obj64", Obj64::default).unwrap();
    let f64s = store.array_or_init::<f64>("f64_1MiB", MIB / 8, 1.5).unwrap();
    let bytes = store.array_or_init::<u8>("u8_1MiB", MIB, 7).unwrap();

    // ---- Baselines: the same work without the library. ----
    let (lock_file, raw) = raw_mapping(dir.path(), "raw.bin", 2 * MIB);
    let raw_obj = raw.as_mut_ptr().cast::<Obj64>(); // page-aligned, so aligned for Obj64
    let raw_bytes = raw.as_mut_ptr().wrapping_add(MIB); // the second MiB, for the memcpy baselines

    let mut g = c.benchmark_group("baseline");
    g.bench_function("ofd_lock_pair/read", |b| {
        b.iter(|| {
            ofd(&lock_file, black_box(LOCK_OFFSET), libc::F_RDLCK);
            ofd(&lock_file, black_box(LOCK_OFFSET), libc::F_UNLCK);
        })
    });
    g.bench_function("ofd_lock_pair/write", |b| {
        b.iter(|| {
            ofd(&lock_file, black_box(LOCK_OFFSET), libc::F_WRLCK);
            ofd(&lock_file, black_box(LOCK_OFFSET), libc::F_UNLCK);
        })
    });
    // What `Shared::load` does: shared lock, copy the value out, unlock.
    g.bench_function("mmap_ofd_copy64/load", |b| {
        b.iter(|| {
            ofd(&lock_file, LOCK_OFFSET, libc::F_RDLCK);
            // SAFETY: `raw_obj` is in the mapping, aligned, and any bytes are a valid `Obj64`;
            // only this thread uses the mapping.
            let v = unsafe { raw_obj.read() };
            ofd(&lock_file, LOCK_OFFSET, libc::F_UNLCK);
            black_box(v)
        })
    });
    // What `Shared::update` does: exclusive lock, read-modify-write in place, unlock.
    g.bench_function("mmap_ofd_copy64/update", |b| {
        b.iter(|| {
            ofd(&lock_file, LOCK_OFFSET, libc::F_WRLCK);
            // SAFETY: as above, and the exclusive lock stands for the guard's exclusivity.
            let o = unsafe { &mut *black_box(raw_obj) };
            o.a[0] = o.a[0].wrapping_add(1);
            ofd(&lock_file, LOCK_OFFSET, libc::F_UNLCK);
        })
    });
    g.throughput(Throughput::Bytes(MIB as u64));
    let src = vec![3u8; MIB];
    let mut dst = vec![0u8; MIB];
    g.bench_function("memcpy_1MiB/vec", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&src));
            black_box(&mut dst);
        })
    });
    g.bench_function("memcpy_1MiB/from_mmap", |b| {
        b.iter(|| {
            // SAFETY: `raw_bytes..+MIB` is in the mapping, which no one else writes; `dst` is
            // a separate allocation of the same length.
            unsafe { std::ptr::copy_nonoverlapping(black_box(raw_bytes), dst.as_mut_ptr(), MIB) };
            black_box(&mut dst);
        })
    });
    g.bench_function("memcpy_1MiB/to_mmap", |b| {
        b.iter(|| {
            // SAFETY: as above, in the other direction.
            unsafe { std::ptr::copy_nonoverlapping(black_box(src.as_ptr()), black_box(raw_bytes), MIB) };
        })
    });
    g.finish();

    // ---- Objects: every guard is one kernel lock pair plus in-process bookkeeping. ----
    let mut g = c.benchmark_group("object");
    g.bench_function("load", |b| b.iter(|| black_box(obj.load().unwrap())));
    g.bench_function("read_guard", |b| {
        b.iter(|| {
            let guard = obj.read().unwrap();
            black_box(guard.a[3]);
        })
    });
    let mut n = 0u64;
    g.bench_function("write_guard", |b| {
        b.iter(|| {
            let mut guard = obj.write().unwrap();
            n = n.wrapping_add(1);
            guard.a[3] = black_box(n);
        })
    });
    g.bench_function("update", |b| b.iter(|| obj.update(|o| o.a[0] = o.a[0].wrapping_add(1)).unwrap()));
    g.finish();

    // ---- Arrays: a 1 MiB copy under one lock pair; should run at memcpy speed. ----
    let mut g = c.benchmark_group("array");
    g.throughput(Throughput::Bytes(MIB as u64));
    let mut f64_buf = vec![0.0f64; MIB / 8];
    let mut u8_buf = vec![0u8; MIB];
    g.bench_function("read_at_1MiB/f64", |b| {
        b.iter(|| {
            f64s.read_at(0, black_box(&mut f64_buf)).unwrap();
        })
    });
    g.bench_function("read_at_1MiB/u8", |b| {
        b.iter(|| {
            bytes.read_at(0, black_box(&mut u8_buf)).unwrap();
        })
    });
    g.bench_function("write_at_1MiB/f64", |b| {
        b.iter(|| {
            f64s.write_at(0, black_box(&f64_buf)).unwrap();
        })
    });
    g.bench_function("write_at_1MiB/u8", |b| {
        b.iter(|| {
            bytes.write_at(0, black_box(&u8_buf)).unwrap();
        })
    });
    g.finish();

    drop(raw);
    store.close().unwrap();
}

criterion_group! {
    name = store;
    // Short runs: the whole file takes about a minute on two cores.
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(store);

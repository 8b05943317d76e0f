//! The life cycle of entries in a format-v2 store: remove, rename, resize, a catalog that grows,
//! space that is reused, and version-1 files opened read-only.

mod common;

use common::{emit, temp_store, wait_for, ChildArgs, ChildProc};
use shmstore::{Error, SharedLayout, Store};

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Default)]
#[repr(C)]
struct Pair {
    a: u64,
    b: u64,
}

#[test]
#[ignore = "entry point for child processes spawned by the tests in this file"]
fn child_main() {
    let Some(args) = common::child_args() else { return };
    match args.role.as_str() {
        "watch" => role_watch(&args),
        other => panic!("unknown child role {other:?}"),
    }
}

/// Opens `pair` (an object) and `samples` (an array), reports their values, waits for "check",
/// then reports what each handle's next access gives.
fn role_watch(args: &ChildArgs) {
    let store = Store::open(&args.path).unwrap();
    let pair = store.object::<Pair>("pair").unwrap();
    let samples = store.array::<u32>("samples").unwrap();
    emit(format!("ready {} {}", pair.load().unwrap().a, samples.len()));
    wait_for("check");
    let describe = |e: Error| match e {
        Error::Removed { name } => format!("removed:{name}"),
        Error::Moved { name, to } => format!("moved:{name}->{to}"),
        other => format!("other:{other}"),
    };
    let pair_now = pair.load().map(|p| format!("ok:{}", p.a)).unwrap_or_else(describe);
    let samples_now = samples.read().map(|s| format!("ok:{}", s.len())).unwrap_or_else(describe);
    emit(format!("pair {pair_now}"));
    emit(format!("samples {samples_now}"));
}

#[test]
fn removed_entries_are_not_found_and_their_handles_fail_in_every_process() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, 1 << 20).unwrap();
    let pair = store.object_or_init("pair", || Pair { a: 1, b: 2 }).unwrap();
    let samples = store.array_or_init::<u32>("samples", 16, 9).unwrap();
    let mut child = ChildProc::spawn("watch", &path, "");
    assert_eq!(child.expect("ready"), "1 16");

    store.remove("pair").unwrap();
    store.remove("samples").unwrap();
    assert!(matches!(store.object::<Pair>("pair"), Err(Error::NotFound { .. })));
    assert!(matches!(store.array::<u32>("samples"), Err(Error::NotFound { .. })));
    assert!(matches!(pair.load(), Err(Error::Removed { .. })));
    assert!(matches!(pair.store(Pair::default()), Err(Error::Removed { .. })));
    assert!(matches!(samples.read(), Err(Error::Removed { .. })));
    assert!(matches!(samples.write_at(0, &[1]), Err(Error::Removed { .. })));
    assert!(matches!(store.remove("pair"), Err(Error::NotFound { .. })));

    // New entries reuse the space and the blocks: the old handles still fail, and never see
    // the new values.
    let again = store.object_or_init("pair", || Pair { a: 7, b: 8 }).unwrap();
    store.array_or_init::<u32>("samples", 16, 5).unwrap();
    assert_eq!(again.load().unwrap(), Pair { a: 7, b: 8 });
    assert!(matches!(pair.load(), Err(Error::Removed { .. })), "an old handle saw a reused block");
    assert!(matches!(samples.read(), Err(Error::Removed { .. })));

    child.send("check");
    assert_eq!(child.expect("pair"), "removed:pair");
    assert_eq!(child.expect("samples"), "removed:samples");
    child.finish();
    // Another opener sees the new entries only.
    let other = Store::open(&path).unwrap();
    assert_eq!(other.object::<Pair>("pair").unwrap().load().unwrap().a, 7);
    assert_eq!(other.array::<u32>("samples").unwrap().get(3).unwrap(), 5);
    assert_eq!(other.entries().unwrap().len(), 2);
}

#[test]
fn renamed_entries_keep_their_data_under_the_new_name_only() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, 1 << 20).unwrap();
    let pair = store.object_or_init("pair", || Pair { a: 3, b: 4 }).unwrap();
    pair.store(Pair { a: 5, b: 6 }).unwrap();
    let samples = store.array_or_init::<u32>("samples", 4, 1).unwrap();
    let mut child = ChildProc::spawn("watch", &path, "");
    assert_eq!(child.expect("ready"), "5 4");

    store.rename("pair", "couple").unwrap();
    // Checked before anything else is created: once the old block is reused by a new entry, an
    // old handle can only tell that its entry is gone (Error::Removed).
    child.send("check");
    assert_eq!(child.expect("pair"), "moved:pair->couple");
    assert_eq!(child.expect("samples"), "ok:4");
    child.finish();
    assert!(matches!(store.object::<Pair>("pair"), Err(Error::NotFound { .. })));
    let couple = store.object::<Pair>("couple").unwrap();
    assert_eq!(couple.load().unwrap(), Pair { a: 5, b: 6 });
    match pair.load() {
        Err(Error::Moved { name, to }) => assert_eq!((name.as_str(), to.as_str()), ("pair", "couple")),
        other => panic!("expected Moved, got {other:?}"),
    }
    // Commits through the new name keep working, and the version goes on.
    couple.update(|p| p.a += 1).unwrap();
    assert_eq!(store.object::<Pair>("couple").unwrap().load().unwrap().a, 6);

    // The new name must be free; the same name is a no-op.
    store.array_or_init::<u32>("other", 1, 0).unwrap();
    assert!(matches!(store.rename("samples", "other"), Err(Error::NameTaken { .. })));
    store.rename("samples", "samples").unwrap();
    assert!(matches!(store.rename("absent", "x"), Err(Error::NotFound { .. })));
    assert_eq!(samples.get(0).unwrap(), 1);
}

#[test]
fn resize_keeps_the_prefix_fills_the_rest_and_moves_other_handles() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, 1 << 20).unwrap();
    store.object_or_init("pair", || Pair { a: 1, b: 1 }).unwrap();
    let mut samples = store.array_or_init::<u32>("samples", 4, 0).unwrap();
    samples.write_at(0, &[10, 11, 12, 13]).unwrap();
    let other = store.array::<u32>("samples").unwrap();
    let mut child = ChildProc::spawn("watch", &path, "");
    assert_eq!(child.expect("ready"), "1 4");

    samples.resize(6, 99).unwrap();
    child.send("check");
    assert_eq!(child.expect("pair"), "ok:1");
    assert_eq!(child.expect("samples"), "moved:samples->samples");
    child.finish();
    assert_eq!(&*samples.read().unwrap(), &[10, 11, 12, 13, 99, 99]);
    assert!(matches!(other.read(), Err(Error::Moved { .. })));
    assert_eq!(store.array::<u32>("samples").unwrap().len(), 6);
    samples.resize(2, 0).unwrap();
    assert_eq!(&*store.array::<u32>("samples").unwrap().read().unwrap(), &[10, 11]);
    samples.resize(0, 0).unwrap();
    assert!(samples.is_empty());
    samples.resize(3, 4).unwrap();
    assert_eq!(&*samples.read().unwrap(), &[4, 4, 4]);

    let mut blob = store.bytes_or_init("blob", 4).unwrap();
    blob.write_at(0, b"abcd").unwrap();
    blob.resize(6).unwrap();
    let mut out = [1u8; 6];
    blob.read_at(0, &mut out).unwrap();
    assert_eq!(&out, b"abcd\0\0");
}

#[test]
fn the_catalog_grows_and_every_opener_sees_every_entry() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, 1 << 20).unwrap();
    let watcher = Store::open(&path).unwrap();
    // The first lookups fill the watcher's cache; growth must not leave it stale.
    assert!(watcher.object::<u64>("n0").is_err());
    for i in 0..2000u64 {
        store.object_or_init(&format!("n{i}"), || i).unwrap();
    }
    for i in (0..2000u64).step_by(7) {
        assert_eq!(watcher.object::<u64>(&format!("n{i}")).unwrap().load().unwrap(), i);
    }
    assert_eq!(watcher.entries().unwrap().len(), 2000);
    assert_eq!(store.max_entries(), u32::MAX, "no cap without max_entries");
    let fresh = Store::open(&path).unwrap();
    assert_eq!(fresh.object::<u64>("n1999").unwrap().load().unwrap(), 1999);
    assert_eq!(fresh.info().entries, 2000);
}

#[test]
fn an_explicit_cap_is_catalog_full() {
    let (_dir, path) = temp_store();
    let store = Store::options().create(true).capacity(1 << 20).max_entries(3).open(&path).unwrap();
    for name in ["a", "b", "c"] {
        store.object_or_init(name, || 0u8).unwrap();
    }
    let err = store.object_or_init("d", || 0u8).unwrap_err();
    assert!(matches!(err, Error::CatalogFull { max_entries: 3, .. }), "{err}");
    // The cap is the store's, recorded at creation.
    assert_eq!(Store::open(&path).unwrap().max_entries(), 3);
    store.remove("a").unwrap();
    store.object_or_init("d", || 0u8).unwrap();
}

#[test]
fn space_of_removed_arrays_is_reused() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, 1 << 20).unwrap();
    let mut first_round = 0;
    for round in 0..4 {
        for i in 0..32 {
            let a = store.array_or_init::<u8>(&format!("a{i}"), 1 << 20, round as u8 + 1).unwrap();
            assert_eq!(a.get((1 << 20) - 1).unwrap(), round as u8 + 1, "reused space is filled, not stale");
        }
        if round == 0 {
            first_round = std::fs::metadata(&path).unwrap().len();
        }
        for i in 0..32 {
            store.remove(&format!("a{i}")).unwrap();
        }
    }
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size * 4 <= first_round * 5, "the store grew from {first_round} to {size} bytes");
    assert!(store.info().used <= first_round);
}

#[test]
fn all_atomic_entries_space_is_never_reused() {
    use std::sync::atomic::{AtomicU64, Ordering};
    #[derive(SharedLayout)]
    #[repr(C)]
    struct Hits {
        n: AtomicU64,
    }
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, 1 << 20).unwrap();
    let hits = store.object_or_init("hits", || Hits { n: AtomicU64::new(5) }).unwrap();
    let data = store.entry_info("hits").unwrap().data_offset;
    store.remove("hits").unwrap();
    for i in 0..8 {
        let o = store.object_or_init(&format!("o{i}"), || [0u64; 8]).unwrap();
        assert_ne!(store.entry_info(o.name()).unwrap().data_offset, data, "atomic space was reused");
    }
    assert!(matches!(hits.read(), Err(Error::Removed { .. })));
    let _ = Ordering::Relaxed;
}

#[test]
fn a_v1_file_opens_read_only_and_a_writer_is_told_to_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.shm");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/v1.shm"), &path).unwrap();
    let before = std::fs::read(&path).unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, Error::UpgradeRequired { .. }), "{err}");
    assert!(err.to_string().contains(&format!("shmstore upgrade {}", path.display())), "{err}");
    let err = Store::open_or_create(&path, 1 << 20).unwrap_err();
    assert!(matches!(err, Error::UpgradeRequired { .. }), "{err}");
    let store = Store::options().read_only(true).open(&path).unwrap();
    assert_eq!(store.format_version(), 1);
    assert_eq!(store.info().format_version, 1);
    assert!(matches!(store.remove("config"), Err(Error::ReadOnly { .. })));
    assert!(std::fs::read(&path).unwrap() == before, "the v1 file changed");
}

#[test]
fn a_newer_format_names_both_versions() {
    let (_dir, path) = temp_store();
    drop(Store::open_or_create(&path, 1 << 20).unwrap());
    common::poke(&path, 8, &3u32.to_le_bytes());
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, Error::UnsupportedFormat { found: 3, supported: 2, .. }), "{err}");
    assert!(err.to_string().contains("format v3; this build reads up to v2"), "{err}");
}

/// A crash between the commit point of a resize (the old block `moved` to the new one) and its
/// last step (the new block marked live) leaves the new block a *shadow* that points back at the
/// old one: it is the entry, for lookups and for handles. (The power-loss simulator found handles
/// refusing it as removed.)
#[test]
fn a_replacement_cut_off_after_its_commit_point_is_the_entry() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, 1 << 20).unwrap();
    let old = store.array_or_init::<u32>("a", 4, 1).unwrap();
    let old_at = store.entry_info("a").unwrap().record_offset;
    let mut a = store.array::<u32>("a").unwrap();
    a.resize(6, 2).unwrap();
    let new_at = store.entry_info("a").unwrap().record_offset;
    drop((a, old, store));
    // Undo the last step: the new block is a shadow again, pointing back at the old one.
    common::poke(&path, new_at, &2u32.to_ne_bytes());
    common::poke(&path, new_at + 32, &old_at.to_ne_bytes());

    let store = Store::open(&path).unwrap();
    let a = store.array::<u32>("a").unwrap();
    assert_eq!(&*a.read().unwrap(), &[1, 1, 1, 1, 2, 2]);
    a.write_at(0, &[7]).unwrap();
    assert_eq!(store.entries().unwrap().len(), 1);
    store.remove("a").unwrap();
    assert!(matches!(store.array::<u32>("a"), Err(Error::NotFound { .. })));
}

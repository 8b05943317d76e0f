//! Index tables of the first format-2 builds (magic `SHMINDEX`, probes from the low bits of the
//! hash) stay readable, and a store holding one keeps every entry when its index grows into a
//! table of the current kind (magic `SHMINDX2`, probes from mixed bits).

use std::path::Path;

use shmstore::{Error, Store};

/// Magic of the current index tables, and of the tables of the first format-2 builds.
const MAGIC: &[u8; 8] = b"SHMINDX2";
const LEGACY_MAGIC: &[u8; 8] = b"SHMINDEX";

/// How many index tables of each kind the file holds (a grown store keeps its old tables' bytes
/// until they are reused, so this counts the table headers found on 64-byte boundaries).
fn tables(path: &Path) -> (usize, usize) {
    let bytes = std::fs::read(path).unwrap();
    let count = |magic: &[u8; 8]| bytes.chunks_exact(64).filter(|c| &c[..8] == magic).count();
    (count(MAGIC), count(LEGACY_MAGIC))
}

/// Whether `name` is found: opening it as the wrong type fails with a mismatch, not `NotFound`.
fn found(store: &Store, name: &str) -> bool {
    !matches!(store.object::<u64>(name), Err(Error::NotFound { .. }))
}

#[test]
fn a_legacy_index_is_read_and_grows_into_a_current_one() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/v2.shm");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("legacy.shm");
    std::fs::copy(&golden, &path).unwrap();
    let (current, legacy) = tables(&path);
    assert_eq!(current, 0, "the golden file predates SHMINDX2 tables");
    assert!(legacy >= 1, "the golden file has a SHMINDEX table");

    let store = Store::open(&path).unwrap();
    let old: Vec<String> = store.entries().unwrap().into_iter().map(|e| e.name).collect();
    assert!(old.len() >= 5, "{old:?}");
    for name in &old {
        assert!(found(&store, name), "`{name}` is not found through the legacy table");
    }
    // Enough new entries that the index grows (its tables start at 64 slots, half full at most).
    let new: Vec<String> = (0..300).map(|i| format!("entry-{i:05}")).collect();
    for (i, name) in new.iter().enumerate() {
        store.object_or_init(name, || i as u64).unwrap();
    }
    drop(store);
    let (current, _) = tables(&path);
    assert!(current >= 1, "growing the index wrote no SHMINDX2 table");

    let store = Store::open(&path).unwrap();
    for name in &old {
        assert!(found(&store, name), "`{name}` is lost after the index grew");
    }
    for (i, name) in new.iter().enumerate() {
        assert_eq!(store.object::<u64>(name).unwrap().load().unwrap(), i as u64, "{name}");
    }
    let names: Vec<String> = store.entries().unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names.len(), old.len() + new.len());
}

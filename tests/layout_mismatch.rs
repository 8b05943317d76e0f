//! Opening an entry with a type whose layout differs from the stored one is refused, with an
//! error that says what was found and what was asked for, and the data stays as it was.

mod common;

use std::fs;
use std::path::Path;

use common::temp_store;
use shmstore::{EntryKind, Error, SharedLayout, Store};

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Default)]
#[repr(C)]
#[shared(version = 1)]
struct ConfigV1 {
    port: u32,
    workers: u32,
    limit: u64,
}

/// Same fields as V1, one renamed (`workers` -> `threads`).
#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Default)]
#[repr(C)]
struct ConfigRenamed {
    port: u32,
    threads: u32,
    limit: u64,
}

/// `port` widened from u32 to u64 (and `workers` moved to keep it padding-free).
#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Default)]
#[repr(C)]
struct ConfigWidened {
    port: u64,
    workers: u32,
    _pad: [u8; 4],
    limit: u64,
}

/// Same fields as V1, only the declared version bumped.
#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Default)]
#[repr(C)]
#[shared(version = 2)]
struct ConfigV2 {
    port: u32,
    workers: u32,
    limit: u64,
}

/// Same fields and version as V1, only the type's name differs: by design the same layout.
#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Default)]
#[repr(C)]
struct RenamedType {
    port: u32,
    workers: u32,
    limit: u64,
}

/// Same size and alignment as V1 (16 bytes, align 8) but a different structure.
#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Default)]
#[repr(C)]
struct SameSize {
    a: u64,
    b: u64,
}

const V1: ConfigV1 = ConfigV1 { port: 8080, workers: 12, limit: 0xdead_beef_cafe };

fn setup() -> (tempfile::TempDir, std::path::PathBuf, Store) {
    let (dir, path) = temp_store();
    let store = Store::open_or_create(&path, 1 << 20).unwrap();
    store.object_or_init("config", || V1).unwrap();
    store.array_or_init::<u32>("ids", 8, 5).unwrap();
    store.flush().unwrap();
    (dir, path, store)
}

/// Checks every field of a LayoutMismatch for entry `config` stored as V1, opened as `T`.
fn assert_mismatch<T: SharedLayout + std::fmt::Debug>(result: shmstore::Result<T>, expected_type: &str) {
    let err = match result {
        Err(e) => e,
        Ok(v) => panic!("opening ConfigV1 as {expected_type} succeeded: {v:?}"),
    };
    let message = err.to_string();
    match err {
        Error::LayoutMismatch {
            name,
            expected_type: exp_type,
            found_type,
            expected_version,
            found_version,
            expected_fingerprint,
            found_fingerprint,
            diff,
        } => {
            let diff = diff.expect("the stored layout descriptor is readable");
            assert!(!diff.is_empty(), "a mismatch always has a difference to show");
            for line in diff.to_string().lines() {
                assert!(message.contains(line), "the message shows the diff line {line:?}: {message}");
            }
            assert_eq!(name, "config");
            assert_eq!(exp_type, expected_type);
            assert_eq!(found_type, "ConfigV1");
            assert_eq!(expected_version, T::LAYOUT.version);
            assert_eq!(found_version, 1);
            assert_eq!(expected_fingerprint, T::LAYOUT.fingerprint);
            assert_eq!(found_fingerprint, ConfigV1::LAYOUT.fingerprint);
        }
        other => panic!("expected LayoutMismatch opening as {expected_type}, got {other:?}"),
    }
    assert!(message.contains("ConfigV1"), "{message}");
    assert!(message.contains(expected_type), "{message}");
    assert!(message.contains("config"), "{message}");
    assert!(message.contains(&format!("{:016x}", ConfigV1::LAYOUT.fingerprint)), "{message}");
}

/// The stored config is intact: same file bytes, and V1 still loads the original value.
fn assert_untouched(path: &Path, before: &[u8], store: &Store) {
    assert!(fs::read(path).unwrap() == before, "a refused open changed the file");
    assert_eq!(store.object::<ConfigV1>("config").unwrap().load().unwrap(), V1);
    assert_eq!(Store::open(path).unwrap().object::<ConfigV1>("config").unwrap().load().unwrap(), V1);
}

fn load<T: SharedLayout + Copy>(store: &Store) -> shmstore::Result<T> {
    store.object::<T>("config")?.load()
}

#[test]
fn fingerprints_differ_where_the_layout_does() {
    let v1 = ConfigV1::LAYOUT;
    assert_ne!(v1.fingerprint, ConfigRenamed::LAYOUT.fingerprint);
    assert_ne!(v1.fingerprint, ConfigWidened::LAYOUT.fingerprint);
    assert_ne!(v1.fingerprint, SameSize::LAYOUT.fingerprint);
    assert_eq!(v1.fingerprint, ConfigV2::LAYOUT.fingerprint, "the version is not part of the fingerprint");
    assert_eq!(v1.fingerprint, RenamedType::LAYOUT.fingerprint, "the type name is not part of the fingerprint");
    assert_eq!((v1.version, ConfigV2::LAYOUT.version), (1, 2));
}

#[test]
fn renamed_field_is_a_layout_mismatch() {
    let (_dir, path, store) = setup();
    let before = fs::read(&path).unwrap();
    assert_mismatch(load::<ConfigRenamed>(&store), "ConfigRenamed");
    assert_untouched(&path, &before, &store);
}

#[test]
fn widened_field_is_a_layout_mismatch() {
    let (_dir, path, store) = setup();
    let before = fs::read(&path).unwrap();
    assert_mismatch(load::<ConfigWidened>(&store), "ConfigWidened");
    assert_untouched(&path, &before, &store);
}

#[test]
fn version_bump_alone_is_a_layout_mismatch() {
    let (_dir, path, store) = setup();
    let before = fs::read(&path).unwrap();
    assert_mismatch(load::<ConfigV2>(&store), "ConfigV2");
    assert_untouched(&path, &before, &store);
}

#[test]
fn same_size_different_fields_is_a_layout_mismatch() {
    let (_dir, path, store) = setup();
    let before = fs::read(&path).unwrap();
    assert_mismatch(load::<SameSize>(&store), "SameSize");
    assert_untouched(&path, &before, &store);
}

#[test]
fn object_or_init_with_another_layout_is_refused_without_running_init() {
    let (_dir, path, store) = setup();
    let before = fs::read(&path).unwrap();
    let result = store.object_or_init::<ConfigV2>("config", || panic!("init must not run for an existing entry"));
    assert_mismatch(result.and_then(|h| h.load()), "ConfigV2");
    let result = store.object_or_init::<ConfigWidened>("config", || panic!("init must not run for an existing entry"));
    assert_mismatch(result.and_then(|h| h.load()), "ConfigWidened");
    assert_untouched(&path, &before, &store);
    assert_eq!(store.entries().unwrap().len(), 2, "no second `config` entry was made");
}

#[test]
fn mismatch_in_a_fresh_store_handle_too() {
    // The check must not depend on this process's cache of entries.
    let (_dir, path, store) = setup();
    drop(store);
    let fresh = Store::open(&path).unwrap();
    // (Read after the open: the first opener of a format-v2 store resets its open state.)
    let before = fs::read(&path).unwrap();
    assert_mismatch(load::<ConfigRenamed>(&fresh), "ConfigRenamed");
    assert_untouched(&path, &before, &fresh);
}

#[test]
fn renaming_the_type_keeps_the_data_readable() {
    let (_dir, _path, store) = setup();
    let same = store.object::<RenamedType>("config").unwrap().load().unwrap();
    assert_eq!((same.port, same.workers, same.limit), (V1.port, V1.workers, V1.limit));
}

#[test]
fn primitive_arrays_check_their_element_type() {
    let (_dir, path, store) = setup();
    let before = fs::read(&path).unwrap();
    for result in
        [store.array::<i32>("ids").map(drop), store.array::<u64>("ids").map(drop), store.array::<f32>("ids").map(drop)]
    {
        match result {
            Err(Error::LayoutMismatch { name, found_type, found_fingerprint, .. }) => {
                assert_eq!(name, "ids");
                assert_eq!(found_type, "u32");
                assert_eq!(found_fingerprint, u32::LAYOUT.fingerprint);
            }
            other => panic!("expected LayoutMismatch, got {other:?}"),
        }
    }
    match store.array_or_init::<[u8; 4]>("ids", 8, [0; 4]) {
        Err(Error::LayoutMismatch { expected_type, found_type, .. }) => {
            assert_eq!(expected_type, "[u8; 4]");
            assert_eq!(found_type, "u32");
        }
        other => panic!("expected LayoutMismatch, got {other:?}"),
    }
    assert!(fs::read(&path).unwrap() == before);
    assert_eq!(*store.array::<u32>("ids").unwrap().read().unwrap(), [5; 8]);
}

#[test]
fn object_versus_array_is_a_kind_mismatch() {
    let (_dir, path, store) = setup();
    let before = fs::read(&path).unwrap();

    match store.array::<ConfigV1>("config") {
        Err(Error::KindMismatch { name, expected, found }) => {
            assert_eq!((name.as_str(), expected, found), ("config", "array", "object"));
        }
        other => panic!("expected KindMismatch, got {other:?}"),
    }
    match store.array_or_init::<ConfigV1>("config", 4, V1) {
        Err(Error::KindMismatch { expected, found, .. }) => assert_eq!((expected, found), ("array", "object")),
        other => panic!("expected KindMismatch, got {other:?}"),
    }
    match store.object::<u32>("ids") {
        Err(e @ Error::KindMismatch { .. }) => {
            let Error::KindMismatch { ref name, expected, found } = e else { unreachable!() };
            assert_eq!((name.as_str(), expected, found), ("ids", "object", "array"));
            let message = e.to_string();
            assert!(message.contains("ids") && message.contains("array") && message.contains("object"), "{message}");
        }
        other => panic!("expected KindMismatch, got {other:?}"),
    }
    match store.object_or_init::<u32>("ids", || panic!("init must not run")) {
        Err(Error::KindMismatch { expected, found, .. }) => assert_eq!((expected, found), ("object", "array")),
        other => panic!("expected KindMismatch, got {other:?}"),
    }
    assert!(fs::read(&path).unwrap() == before);

    let kinds: Vec<_> = store.entries().unwrap().into_iter().map(|e| (e.name, e.kind)).collect();
    assert!(kinds.contains(&("config".to_owned(), EntryKind::Object)), "{kinds:?}");
    assert!(kinds.contains(&("ids".to_owned(), EntryKind::Array)), "{kinds:?}");
    assert_eq!(kinds.len(), 2);
}

#[test]
fn entries_report_the_stored_layout() {
    let (_dir, _path, store) = setup();
    let entries = store.entries().unwrap();
    let config = entries.iter().find(|e| e.name == "config").unwrap();
    assert_eq!(config.kind, EntryKind::Object);
    assert_eq!(config.type_name, "ConfigV1");
    assert_eq!(config.version, 1);
    assert_eq!(config.fingerprint, ConfigV1::LAYOUT.fingerprint);
    assert_eq!((config.elem_size, config.align, config.len), (16, 8, 1));
    assert!(config.slots == 1 || config.slots == 2);
    assert!(config.bytes >= 16 * u64::from(config.slots));
    let ids = entries.iter().find(|e| e.name == "ids").unwrap();
    assert_eq!(ids.kind, EntryKind::Array);
    assert_eq!(ids.type_name, "u32");
    assert_eq!((ids.elem_size, ids.align, ids.len, ids.bytes, ids.slots), (4, 4, 8, 32, 1));
}

//! `shmstore rm` and `shmstore mv`: they change a store through the library, visibly to the
//! processes that have it open, and refuse what the library refuses with one-line errors.

mod common;

use std::fs;
use std::path::Path;

use common::{shmstore, temp_store};
use shmstore::{Error, Store};

/// A store with the objects `a` (1) and `b` (2) and the array `xs`.
fn new_store(path: &Path) {
    let store = Store::open_or_create(path, 1 << 20).unwrap();
    store.object_or_init("a", || 1u64).unwrap();
    store.object_or_init("b", || 2u64).unwrap();
    store.array_or_init("xs", 10, 3u32).unwrap();
    store.close().unwrap();
}

#[test]
fn rm_removes_an_entry_and_open_handles_see_it() {
    let (_dir, path) = temp_store("rm.shm");
    new_store(&path);
    // This process keeps the store and a handle open while the command (another process) runs.
    let store = Store::open(&path).unwrap();
    let a = store.object::<u64>("a").unwrap();
    assert_eq!(a.load().unwrap(), 1);

    let run = shmstore(["rm".as_ref(), path.as_os_str(), "a".as_ref()]);
    assert_eq!(run.ok(), format!("removed `a` from `{}`\n", path.display()));
    assert!(matches!(a.load(), Err(Error::Removed { .. })), "{:?}", a.load());
    assert!(matches!(store.object::<u64>("a"), Err(Error::NotFound { .. })));
    assert_eq!(store.object::<u64>("b").unwrap().load().unwrap(), 2);
    drop((a, store));

    // Again: there is nothing by that name any more.
    shmstore(["rm".as_ref(), path.as_os_str(), "a".as_ref()]).fails(1, "no entry named `a`");
    let names: Vec<String> = Store::open(&path).unwrap().entries().unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn mv_renames_an_entry_and_refuses_a_taken_name() {
    let (_dir, path) = temp_store("mv.shm");
    new_store(&path);
    let store = Store::open(&path).unwrap();
    let b = store.object::<u64>("b").unwrap();

    let run = shmstore(["mv".as_ref(), path.as_os_str(), "b".as_ref(), "c".as_ref()]);
    assert_eq!(run.ok(), format!("renamed `b` to `c` in `{}`\n", path.display()));
    assert!(matches!(b.load(), Err(Error::Moved { ref to, .. }) if to == "c"), "{:?}", b.load());
    assert_eq!(store.object::<u64>("c").unwrap().load().unwrap(), 2);
    assert!(matches!(store.object::<u64>("b"), Err(Error::NotFound { .. })));
    drop((b, store));

    let line = shmstore(["mv".as_ref(), path.as_os_str(), "c".as_ref(), "a".as_ref()])
        .fails(1, "cannot rename `c` to `a`: an entry named `a` exists")
        .to_owned();
    assert!(line.contains("shmstore rm FILE a"), "{line}");
    shmstore(["mv".as_ref(), path.as_os_str(), "nope".as_ref(), "d".as_ref()]).fails(1, "no entry named `nope`");
    shmstore(["mv".as_ref(), path.as_os_str(), "c".as_ref(), "".as_ref()]).fails(1, "invalid entry name");
    let store = Store::open(&path).unwrap();
    assert_eq!(store.object::<u64>("c").unwrap().load().unwrap(), 2);
    assert_eq!(store.object::<u64>("a").unwrap().load().unwrap(), 1);
}

#[test]
fn a_v1_store_must_be_upgraded_first() {
    let (_dir, path) = temp_store("v1.shm");
    fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/golden/v1.shm"), &path).unwrap();
    let pristine = fs::read(&path).unwrap();
    for args in [vec!["rm", "config"], vec!["mv", "config", "cfg"]] {
        let mut argv: Vec<&std::ffi::OsStr> = vec![args[0].as_ref(), path.as_os_str()];
        argv.extend(args[1..].iter().map(std::ffi::OsStr::new));
        let line = shmstore(argv).fails(1, "has store format version 1, which this command cannot change").to_owned();
        assert!(line.contains(&format!("`shmstore upgrade {}` first", path.display())), "{line}");
    }
    assert!(fs::read(&path).unwrap() == pristine, "a refused edit must not touch the file");
    shmstore(["rm".as_ref(), path.parent().unwrap().join("missing.shm").as_os_str(), "x".as_ref()])
        .fails(1, "does not exist");
}

#[test]
fn help_lists_rm_and_mv() {
    let help = shmstore(["--help"]);
    let text = help.ok();
    for command in ["rm", "mv"] {
        assert!(text.lines().any(|l| l.trim_start().starts_with(command)), "{command} missing from:\n{text}");
    }
    let long = shmstore(["help", "rm"]);
    assert!(long.ok().contains("takes the locks the library takes"), "{}", long.stdout);
}

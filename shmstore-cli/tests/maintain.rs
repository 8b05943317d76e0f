//! `shmstore upgrade` and `shmstore compact`: they rewrite closed stores, refuse open ones
//! naming the process that holds them, and say what they did.

mod common;

use std::fs;
use std::path::Path;

use common::{shmstore, temp_store};
use shmstore::Store;

/// The golden version-1 store of the library's suite, copied to `path`.
fn golden_v1(path: &Path) {
    fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/golden/v1.shm"), path).unwrap();
}

/// Runs this file's tests one at a time. A store's locks belong to its open file description,
/// and a child process that another test thread is starting holds copies of every descriptor
/// until it `exec`s: a store this process has just closed can then still look open to a rewrite
/// (which correctly says [`shmstore::Error::InUse`]). Serialising the tests keeps that window out
/// of the assertions.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn upgrade_converts_a_v1_store_once_and_then_has_nothing_to_do() {
    let _serial = serial();
    let (dir, path) = temp_store("old.shm");
    golden_v1(&path);
    let p = path.display();
    let first = shmstore(["upgrade".as_ref(), path.as_os_str()]);
    let line = first.ok();
    assert!(line.starts_with(&format!("upgraded `{p}` from format version 1 to 2: ")), "{line}");
    assert!(line.contains(" entries (1 record replaced by a migration dropped); file "), "{line}");
    assert_eq!(line.lines().count(), 1, "{line}");
    assert_eq!(first.stderr, "");

    let again = shmstore(["upgrade".as_ref(), path.as_os_str()]);
    assert_eq!(again.ok(), format!("`{p}` already has format version 2: nothing to do\n"));
    // Nothing but the store is left in the directory.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn compact_shrinks_a_store_and_reports_sizes() {
    let _serial = serial();
    let (_dir, path) = temp_store("big.shm");
    let store = Store::open_or_create(&path, 64 << 20).unwrap();
    store.array_or_init("samples", 1000, 1.5f64).unwrap();
    store.close().unwrap();
    let before = fs::metadata(&path).unwrap().len();

    let run = shmstore(["compact".as_ref(), path.as_os_str()]);
    let line = run.ok();
    assert!(line.starts_with(&format!("compacted `{}`", path.display())), "{line}");
    assert!(line.contains(": 1 entry; file 67.1 MB -> "), "{line}");
    assert!(fs::metadata(&path).unwrap().len() < before / 100);
}

#[test]
fn compact_and_upgrade_refuse_a_store_another_process_has_open() {
    let _serial = serial();
    let (_dir, path) = temp_store("busy.shm");
    golden_v1(&path);
    let pristine = fs::read(&path).unwrap();
    // This test process holds the store open; the command runs in a process of its own.
    let held = Store::options().read_only(true).open(&path).unwrap();
    for command in ["compact", "upgrade"] {
        let run = shmstore([command.as_ref(), path.as_os_str()]);
        let line = run.fails(1, &format!("is open in process {}", std::process::id()));
        assert!(line.contains(&format!("{command} replaces the file and needs the store closed everywhere")), "{line}");
    }
    assert!(fs::read(&path).unwrap() == pristine, "a refused rewrite must not touch the file");
    drop(held);
    shmstore(["upgrade".as_ref(), path.as_os_str()]).ok();
}

#[test]
fn leftovers_of_a_dead_run_are_removed_and_reported() {
    let _serial = serial();
    let (dir, path) = temp_store("s.shm");
    golden_v1(&path);
    // A pid above the largest Linux hands out (2^22): no process has it.
    let leftover = dir.path().join(".s.shm.4194309.17.upgrading");
    fs::write(&leftover, b"half a store").unwrap();
    let run = shmstore(["compact".as_ref(), path.as_os_str()]);
    let out = run.ok();
    let first = out.lines().next().unwrap();
    assert!(
        first.starts_with("removed `")
            && first.ends_with(".s.shm.4194309.17.upgrading`, left by an earlier run that did not finish"),
        "{out}"
    );
    assert!(!leftover.exists());
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn bad_paths_and_bad_files_get_one_line_errors() {
    let _serial = serial();
    let (dir, path) = temp_store("missing.shm");
    shmstore(["upgrade".as_ref(), path.as_os_str()]).fails(1, "does not exist");
    shmstore(["compact".as_ref(), dir.path().as_os_str()]).fails(1, "is a directory");
    let junk = dir.path().join("junk");
    fs::write(&junk, vec![7u8; 4096]).unwrap();
    shmstore(["compact".as_ref(), junk.as_os_str()]).fails(2, "is not a shmstore file");
    assert_eq!(fs::read(&junk).unwrap(), vec![7u8; 4096]);
}

#[test]
fn help_lists_the_maintenance_commands() {
    let _serial = serial();
    let help = shmstore(["--help"]);
    let text = help.ok();
    for command in ["upgrade", "compact"] {
        assert!(text.lines().any(|l| l.trim_start().starts_with(command)), "{command} missing from:\n{text}");
    }
    let long = shmstore(["help", "compact"]);
    assert!(long.ok().contains("only while no process has the store open"), "{}", long.stdout);
}

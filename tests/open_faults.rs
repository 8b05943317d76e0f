//! Faults at open, creation and growth: files that are not stores, files replaced or truncated
//! under a store, exclusive holders, full disks and address-space limits. Real files, real
//! processes (this binary spawned again with a role, see `child_main`).

mod common;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use common::{emit, temp_store, wait_eof, wait_for, ChildArgs, ChildProc, CHILD_PATIENCE};
use shmstore::{Error, Store};

#[test]
#[ignore = "entry point for child processes spawned by the tests in this file"]
fn child_main() {
    let Some(args) = common::child_args() else { return };
    match args.role.as_str() {
        "limited_grow" => role_limited_grow(&args),
        "hold_exclusive" => role_hold_exclusive(&args),
        "adopt" => role_adopt(&args),
        "fill" => role_fill(&args),
        "relative_then_chdir" => role_relative_then_chdir(&args),
        other => panic!("unknown child role {other:?}"),
    }
}

/// Runs `f` on a thread and fails the test if it does not return within the children's patience:
/// a safety net that turns a hang into a failure, not a synchronisation.
fn must_return<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(CHILD_PATIENCE).unwrap_or_else(|_| panic!("{what} hung"))
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path that lives for the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo: {}", std::io::Error::last_os_error());
}

#[test]
fn a_fifo_is_refused_at_once() {
    let (dir, path) = temp_store();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    type Open = fn(&Path) -> shmstore::Result<Store>;
    let opens: [(&str, Open); 4] = [
        ("open", |p| Store::open(p)),
        ("read-only open", |p| Store::options().read_only(true).open(p)),
        ("open_or_create", |p| Store::open_or_create(p, 1 << 20)),
        ("create(true).capacity", |p| Store::options().create(true).capacity(1 << 20).open(p)),
    ];
    for (what, open) in opens {
        let f = fifo.clone();
        match must_return(what, move || open(&f)) {
            Err(e @ Error::NotRegularFile { .. }) => {
                assert!(e.to_string().contains("is a FIFO (named pipe), not a regular file"), "{what}: {e}");
            }
            other => panic!("{what}: expected NotRegularFile, got {other:?}"),
        }
    }
    // A directory says what it is too.
    let err = Store::options().read_only(true).open(dir.path()).unwrap_err();
    assert!(matches!(err, Error::NotRegularFile { what: "a directory", .. }), "{err:?}");
    let _ = path;
}

/// Lowers the address-space limit to 4 GiB, then asks for an array that needs a 16 GiB store,
/// and one beyond the default maximum capacity; reports both errors and the capacity after.
fn role_limited_grow(args: &ChildArgs) {
    let limit = libc::rlimit { rlim_cur: 4 << 30, rlim_max: 4 << 30 };
    // SAFETY: `limit` is a live, initialised rlimit for the call.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) }, 0);
    let store = Store::open(&args.path).unwrap();
    match store.array_or_init::<u64>("h", 1 << 31, 0) {
        Err(e @ Error::GrowthFailed { .. }) => emit(format!("growth-failed {e}")),
        other => emit(format!("unexpected {:?}", other.map(|a| a.len()))),
    }
    match store.array_or_init::<u64>("h", 1 << 40, 0) {
        Err(e @ Error::StoreFull { .. }) => emit(format!("store-full {e}")),
        other => emit(format!("unexpected {:?}", other.map(|a| a.len()))),
    }
    emit(format!("capacity {}", store.capacity()));
    drop(store);
    // The store still opens under the same limit.
    let again = Store::open(&args.path).unwrap();
    emit(format!("reopened {}", again.capacity()));
}

#[test]
fn a_failed_huge_growth_leaves_the_store_as_it_was() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, 1 << 20).unwrap();
    store.object_or_init("n", || 5u64).unwrap();
    drop(store);
    let mut child = ChildProc::spawn("limited_grow", &path, "");
    let grown = child.expect("growth-failed");
    assert!(grown.contains("address space") && grown.contains("keeps its old size"), "{grown}");
    let full = child.expect("store-full");
    assert!(full.contains("max_capacity("), "{full}");
    assert_eq!(child.expect("capacity"), (1u64 << 20).to_string());
    assert_eq!(child.expect("reopened"), (1u64 << 20).to_string());
    child.finish();
    assert_eq!(fs::metadata(&path).unwrap().len(), 1 << 20, "the file went back to its old length");
    let store = Store::open(&path).unwrap();
    assert_eq!(store.capacity(), 1 << 20);
    assert_eq!(store.object::<u64>("n").unwrap().load().unwrap(), 5);
}

/// Takes the exclusive `flock` of the file, reports it, and on `replace NEW` renames NEW over
/// the path before letting go (by exiting); otherwise holds it until stdin closes.
fn role_hold_exclusive(args: &ChildArgs) {
    let file = fs::OpenOptions::new().read(true).write(true).open(&args.path).unwrap();
    file.lock().unwrap();
    emit("locked");
    match common::wait_line() {
        Some(line) if line.starts_with("replace ") => {
            fs::rename(line.trim_start_matches("replace "), &args.path).unwrap();
            emit("replaced");
        }
        _ => wait_eof(),
    }
}

#[test]
fn an_exclusive_holder_makes_open_busy_at_once_or_after_the_timeout() {
    let (_dir, path) = temp_store();
    drop(Store::open_or_create(&path, 1 << 20).unwrap());
    let mut holder = ChildProc::spawn("hold_exclusive", &path, "");
    holder.expect("locked");
    let p = path.clone();
    match must_return("open", move || Store::open(&p)) {
        Err(e @ Error::Busy { waited: None, .. }) => {
            assert!(e.to_string().contains("another process holds"), "{e}");
            assert!(e.to_string().contains("lock_timeout"), "{e}");
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    let err = Store::options().read_only(true).lock_timeout(Duration::from_millis(30)).open(&path).unwrap_err();
    assert!(matches!(err, Error::Busy { waited: Some(_), .. }), "{err:?}");
    drop(holder);
    Store::open(&path).unwrap();
}

#[test]
fn an_open_that_waits_through_a_replacement_opens_the_new_store() {
    let (dir, path) = temp_store();
    // The file that will be replaced is not even a store: opening it would fail.
    fs::write(&path, b"about to be replaced").unwrap();
    let next = dir.path().join("next.shm");
    Store::open_or_create(&next, 1 << 20).unwrap().object_or_init("v", || 42u64).unwrap();
    let mut holder = ChildProc::spawn("hold_exclusive", &path, "");
    holder.expect("locked");
    let old_ino = {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(&path).unwrap().ino()
    };
    let p = path.clone();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(
            Store::options().lock_timeout(CHILD_PATIENCE).open(&p).map(|s| s.object::<u64>("v").map(|v| v.load())),
        );
    });
    // Wait until the opener holds a descriptor of the old file (it is then polling for its lock).
    loop {
        let open = fs::read_dir("/proc/self/fd").unwrap().filter_map(|e| e.ok()).any(|e| {
            use std::os::unix::fs::MetadataExt;
            fs::metadata(e.path()).is_ok_and(|m| m.ino() == old_ino)
        });
        if open {
            break;
        }
        std::thread::yield_now();
    }
    holder.send(&format!("replace {}", next.display()));
    holder.expect("replaced");
    holder.finish();
    let opened = rx.recv_timeout(CHILD_PATIENCE).expect("open hung");
    assert_eq!(opened.unwrap().unwrap().unwrap(), 42);
}

#[test]
fn a_replaced_or_deleted_store_is_reported() {
    let (dir, path) = temp_store();
    let store = Store::open_or_create(&path, 1 << 16).unwrap();
    store.check().unwrap();
    store.flush().unwrap();
    let other = dir.path().join("other.shm");
    drop(Store::open_or_create(&other, 1 << 16).unwrap());
    fs::rename(&other, &path).unwrap();
    for (what, result) in [
        ("check", store.check()),
        ("flush", store.flush()),
        ("growth", store.array_or_init::<u64>("big", 1 << 20, 0).map(|_| ())),
    ] {
        match result {
            Err(e @ Error::Replaced { unlinked: false, .. }) => {
                assert!(e.to_string().contains("renamed over it"), "{what}: {e}")
            }
            other => panic!("{what}: expected Replaced, got {other:?}"),
        }
    }
    let fresh = Store::open_or_create(&path, 1 << 16).unwrap();
    fs::remove_file(&path).unwrap();
    let err = fresh.check().unwrap_err();
    assert!(matches!(err, Error::Replaced { unlinked: true, .. }), "{err:?}");
    assert!(err.to_string().contains("deleted"), "{err}");
    assert!(matches!(fresh.flush(), Err(Error::Replaced { unlinked: true, .. })));
}

#[test]
fn a_truncated_store_names_the_cause() {
    let (_dir, path) = temp_store();
    drop(Store::open_or_create(&path, 1 << 20).unwrap());
    fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(1 << 19).unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, Error::Truncated { .. }), "{err:?}");
    assert!(err.to_string().contains("another program truncated it"), "{err}");
    assert!(err.to_string().contains("SIGBUS"), "{err}");
}

#[test]
fn misleading_messages_name_the_cause() {
    let (dir, path) = temp_store();
    // A dangling symbolic link.
    let link = dir.path().join("link.shm");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    match Store::open_or_create(&link, 1 << 20) {
        Err(e @ Error::DanglingSymlink { .. }) => {
            assert!(e.to_string().contains("symbolic link to"), "{e}");
            assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        }
        other => panic!("expected DanglingSymlink, got {other:?}"),
    }
    assert!(!path.exists(), "nothing was created through the link");
    // A capacity beyond the address space.
    match Store::open_or_create(&path, u64::MAX) {
        Err(e @ Error::CapacityTooLarge { .. }) => assert!(e.to_string().contains("address space"), "{e}"),
        other => panic!("expected CapacityTooLarge, got {other:?}"),
    }
    assert!(!path.exists());
    // An array too large for any store.
    let store = Store::open_or_create(&path, 1 << 20).unwrap();
    match store.array_or_init::<u64>("a", usize::MAX / 8, 0) {
        Err(e @ Error::EntryTooLarge { .. }) => {
            assert!(!e.to_string().contains("max_capacity"), "{e}");
            assert!(e.to_string().contains("ask for a shorter array"), "{e}");
        }
        other => panic!("expected EntryTooLarge, got {:?}", other.map(|a| a.len())),
    }
}

#[test]
fn create_new_refuses_an_existing_file() {
    let (_dir, path) = temp_store();
    let store = Store::options().create_new(true).capacity(1 << 16).open(&path).unwrap();
    store.object_or_init("n", || 1u64).unwrap();
    match Store::options().create_new(true).capacity(1 << 16).open(&path) {
        Err(e @ Error::AlreadyExists { .. }) => assert!(e.to_string().contains("already exists"), "{e}"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(Store::open(&path).unwrap().object::<u64>("n").unwrap().load().unwrap(), 1);
}

#[test]
fn an_empty_file_is_adopted_only_with_a_capacity() {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    match Store::open(tmp.path()) {
        Err(e @ Error::NotAStore { .. }) => assert!(e.to_string().contains("with a capacity"), "{e}"),
        other => panic!("expected NotAStore, got {other:?}"),
    }
    let store = Store::open_or_create(tmp.path(), 4096).unwrap();
    assert_eq!(store.capacity(), 8192, "a small capacity is rounded up to the minimum (header and first index table)");
    store.object_or_init("n", || 3u64).unwrap();
    drop(store);
    assert_eq!(Store::open(tmp.path()).unwrap().object::<u64>("n").unwrap().load().unwrap(), 3);
}

/// Waits for `go`, then adopts the empty file and claims the entry `who` with its pid.
fn role_adopt(args: &ChildArgs) {
    emit("ready");
    wait_for("go");
    let store = Store::open_or_create(&args.path, 1 << 20).unwrap();
    let who = store.object_or_init("who", std::process::id).unwrap();
    emit(format!("who {} {}", who.load().unwrap(), store.entries().unwrap().len()));
}

#[test]
fn processes_racing_to_adopt_an_empty_file_share_one_store() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..4 {
        let path = dir.path().join(format!("empty{round}"));
        fs::write(&path, b"").unwrap();
        let mut children: Vec<_> = (0..3).map(|_| ChildProc::spawn("adopt", &path, "")).collect();
        for c in &mut children {
            c.expect("ready");
        }
        for c in &mut children {
            c.send("go");
        }
        let seen: Vec<String> = children.iter_mut().map(|c| c.expect("who")).collect();
        for c in children {
            c.finish();
        }
        assert!(seen.windows(2).all(|w| w[0] == w[1]), "round {round}: {seen:?}");
        assert!(seen[0].ends_with(" 1"), "round {round}: {seen:?}");
        let store = Store::open(&path).unwrap();
        assert_eq!(store.entries().unwrap().len(), 1);
        assert_eq!(store.object::<u32>("who").unwrap().load().unwrap().to_string(), seen[0].split(' ').next().unwrap());
    }
}

/// A small tmpfs mounted in a temporary directory, unmounted on drop; `None` (with a message)
/// where mounting is impossible (not root, or no permission in this container).
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount(options: &str) -> Option<SmallFs> {
        // SAFETY: `geteuid` has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipped: cannot mount a tmpfs here");
            return None;
        }
        Some(SmallFs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Creates a 4 MiB store with allocate(true) on the 2 MiB file system at PATH's directory, and
/// fills 3 MiB of it: a full disk must be an error, never a SIGBUS.
fn role_fill(args: &ChildArgs) {
    match Store::options().create(true).capacity(4 << 20).allocate(true).open(&args.path) {
        Err(e @ Error::DiskFull { .. }) => emit(format!("disk-full {e}")),
        Err(e) => emit(format!("unexpected {e:?}")),
        Ok(store) => {
            let a = store.array_or_init::<u8>("fill", 3 << 20, 1).unwrap();
            emit(format!("filled {}", a.len()));
        }
    }
}

#[test]
fn allocate_reserves_the_initial_capacity() {
    let Some(fs_) = SmallFs::mount("size=2m") else { return };
    let path = fs_.path().join("store.shm");
    let mut child = ChildProc::spawn("fill", &path, "");
    let line = child.expect("disk-full");
    assert!(line.contains("no room on the file system"), "{line}");
    child.finish();
    assert_eq!(fs::read_dir(fs_.path()).unwrap().count(), 0, "a failed creation leaves nothing behind");
    // What fits is reserved, and growth past the disk is an error too.
    let store = Store::options().create(true).capacity(1 << 20).allocate(true).open(&path).unwrap();
    match store.array_or_init::<u8>("big", 3 << 20, 1) {
        Err(Error::DiskFull { .. }) => {}
        other => panic!("expected DiskFull, got {:?}", other.map(|a| a.len())),
    }
    assert_eq!(store.capacity(), 1 << 20);
    assert_eq!(fs::metadata(&path).unwrap().len(), 1 << 20);
}

#[test]
fn a_read_write_open_on_a_read_only_file_system_says_to_open_read_only() {
    let Some(fs_) = SmallFs::mount("size=1m") else { return };
    let path = fs_.path().join("store.shm");
    drop(Store::open_or_create(&path, 1 << 16).unwrap());
    let ok = std::process::Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(fs_.path())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: cannot remount read-only here");
        return;
    }
    match Store::open(&path) {
        Err(e @ Error::ReadOnlyFileSystem { .. }) => assert!(e.to_string().contains("read_only(true)"), "{e}"),
        other => panic!("expected ReadOnlyFileSystem, got {other:?}"),
    }
    Store::options().read_only(true).open(&path).unwrap();
}

/// Opens the store by a path relative to its directory, then changes the working directory: the
/// relative path now names nothing, but the store was neither replaced nor deleted.
fn role_relative_then_chdir(args: &ChildArgs) {
    let dir = args.path.parent().unwrap();
    std::env::set_current_dir(dir).unwrap();
    let store = Store::open(args.path.file_name().unwrap()).unwrap();
    std::env::set_current_dir("/").unwrap();
    common::emit(format!("check {:?}", store.check().map_err(|e| e.to_string())));
    common::emit(format!("flush {:?}", store.flush().map_err(|e| e.to_string())));
}

#[test]
fn a_store_opened_by_a_relative_path_survives_a_change_of_directory() {
    let (_dir, path) = temp_store();
    Store::open_or_create(&path, 1 << 20).unwrap();
    let mut child = ChildProc::spawn("relative_then_chdir", &path, "");
    assert_eq!(child.expect("check"), "Ok(())");
    assert_eq!(child.expect("flush"), "Ok(())");
    child.finish();
}

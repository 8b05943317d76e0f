//! `shmstore clean-temp`: removes the temporary stores no process holds, and nothing else.

use std::process::Command;

use shmstore::Store;

#[test]
fn clean_temp_removes_leftovers_and_keeps_stores_in_use() {
    let dir = tempfile::tempdir().unwrap();
    // A leftover is a store file under a temporary store's name that no process holds, as a
    // process killed with SIGKILL leaves it; one made by path looks just the same.
    for name in ["left-a", "left-b"] {
        drop(Store::open_or_create(dir.path().join(format!("shmstore.{name}")), 1 << 16).unwrap());
    }
    // A store some process (this one) holds.
    let busy = Store::open_or_create(dir.path().join("shmstore.busy"), 1 << 16).unwrap();
    std::fs::write(dir.path().join("other.txt"), b"not a store").unwrap();

    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_shmstore"))
            .args(args)
            .env("SHMSTORE_TEMP_DIR", dir.path())
            .output()
            .expect("run shmstore");
        (out.status.code(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    };
    assert_eq!(run(&["clean-temp"]), (Some(0), "left-a\nleft-b\n".to_owned(), String::new()));
    let mut left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    left.sort();
    assert_eq!(left, ["other.txt", "shmstore.busy"]);
    // Nothing more to do, and it says so, on stderr (stdout lists only what was removed).
    let (code, stdout, stderr) = run(&["clean-temp"]);
    assert_eq!((code, stdout.as_str()), (Some(0), ""));
    assert_eq!(
        stderr,
        format!("shmstore: nothing to clean: no leftover temporary stores in `{}`\n", dir.path().display())
    );
    drop(busy);

    // A temporary-store directory that does not exist is an error that says what to do.
    let out = Command::new(env!("CARGO_BIN_EXE_shmstore"))
        .arg("clean-temp")
        .env("SHMSTORE_TEMP_DIR", dir.path().join("missing"))
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("shmstore: ") && stderr.contains("SHMSTORE_TEMP_DIR"), "{stderr}");
}

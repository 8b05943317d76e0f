//! Errors in the command's words: a shell user is never told to call an API function.

mod common;

use std::fs;
use std::path::Path;

use common::{shmstore, temp_store};

/// Runs every command on `path` and returns the one error line they all give.
fn error_of_every_command(path: &Path, code: i32, phrase: &str) -> String {
    let file = path.to_str().unwrap();
    let mut lines = Vec::new();
    for args in [vec!["inspect", file], vec!["dump", file, "--json"], vec!["verify", file], vec!["header", file]] {
        let run = shmstore(&args);
        let line = run.fails(code, phrase).to_owned();
        for api in ["Store::", "options()", "_or_init", "read_only("] {
            assert!(!line.contains(api), "{api:?} in `{}`: {line}", args.join(" "));
        }
        lines.push(line);
    }
    assert!(lines.windows(2).all(|w| w[0] == w[1]), "{lines:#?}");
    lines.swap_remove(0)
}

#[test]
fn missing_files_and_dangling_links() {
    let (dir, path) = temp_store("missing.shm");
    let line = error_of_every_command(&path, 1, "does not exist");
    assert_eq!(
        line,
        format!(
            "shmstore: store file `{}` does not exist: check the path (shmstore commands never create a store)",
            path.display()
        )
    );

    let link = dir.path().join("link.shm");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    let line = error_of_every_command(&link, 1, "is a symbolic link");
    assert_eq!(
        line,
        format!(
            "shmstore: `{}` is a symbolic link to `{}`, which does not exist: check the link",
            link.display(),
            path.display()
        )
    );
}

#[test]
fn directories_and_foreign_files() {
    let (dir, path) = temp_store("text.shm");
    fs::write(&path, b"just some text\n").unwrap();
    let line = error_of_every_command(&path, 2, "is not a shmstore file");
    assert!(line.ends_with("check the path, or delete the file if it is a leftover"), "{line}");
    // The library may refuse it before reading it (it is not a regular file); either way, the
    // line says what it is.
    error_of_every_command(dir.path(), 1, "directory");
}

#[test]
fn a_fifo_is_refused_at_once_by_every_command() {
    let (dir, _) = temp_store("unused.shm");
    let fifo = dir.path().join("fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success(), "mkfifo");
    // A command that blocked on the FIFO would never return: run them on a thread, and turn a
    // hang into a failure (a safety net, not a synchronisation).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(error_of_every_command(&fifo, 1, "FIFO"));
    });
    let line = rx.recv_timeout(std::time::Duration::from_secs(60)).expect("a command hung on a FIFO");
    assert!(line.contains("is a FIFO (named pipe), not a regular file"), "{line}");
}

#[test]
fn verify_says_another_program_truncated_the_store() {
    let (_dir, path) = temp_store("cut.shm");
    drop(shmstore::Store::open_or_create(&path, 1 << 20).unwrap());
    fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(1 << 19).unwrap();
    let line = shmstore(["verify", path.to_str().unwrap()]).fails(2, "truncated").to_owned();
    assert!(line.contains("another program truncated it"), "{line}");
}

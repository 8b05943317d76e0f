//! Runs the example programs that have a checkable outcome, as a user would run them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use shmstore::Store;

/// The example binary `name`, which `cargo test` builds into `target/<profile>/examples/` next to
/// this test's `target/<profile>/deps/`. The examples are the package `shmstore-examples`
/// (examples/Cargo.toml), a default member of the workspace, so `cargo test` and
/// `cargo test --workspace` build them; `cargo test --test examples` alone does not.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe.parent().and_then(Path::parent).expect("the test binary lies in target/<profile>/deps");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.is_file(),
        "{} is missing: `cargo test` builds the examples, but `cargo test --test examples` alone does not; \
         run `cargo build -p shmstore-examples --examples` first",
        path.display()
    );
    path
}

fn run(exe: &Path, args: &[&str]) -> String {
    let Output { status, stdout, stderr } = Command::new(exe).args(args).output().expect("run the example");
    let (stdout, stderr) = (String::from_utf8_lossy(&stdout), String::from_utf8_lossy(&stderr));
    assert!(status.success(), "{} {args:?} failed with {status}\nstdout:\n{stdout}\nstderr:\n{stderr}", exe.display());
    stdout.into_owned()
}

/// The quickstart's `Totals`, declared again: a store checks layouts, not Rust types, so any
/// program with the same layout can read the object.
#[derive(shmstore::SharedLayout, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct Totals {
    runs: u64,
    last_run: u64,
    all_runs: u64,
}

#[test]
fn quickstart_counts_exactly_and_its_second_run_finds_what_the_first_kept() {
    let exe = example("quickstart");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quickstart.shm");
    let file = path.to_str().unwrap();

    // First run: a new store, nothing kept yet.
    let out = run(&exe, &[file]);
    for line in [
        "run #1 (previous run: none, this is the first run)",
        "kept from earlier runs (`totals`): nothing counted yet",
        "this run's counter (`counter`): starts at 0",
        "counter = 100000 (expected 100000)",
        "kept for the next run (`totals`): 1 run counted 100000 increments in all",
        "done: run again, and run #2 will find this run in `run_log` and `totals` \
         (`counter` and `workers` start over each run)",
    ] {
        assert!(out.contains(line), "missing {line:?} in the first run's output:\n{out}");
    }

    // Second run: it finds the first run's record and totals, and starts its own count over.
    let out = run(&exe, &[file]);
    for line in [
        "run #2 (previous run: ",
        "kept from earlier runs (`totals`): 1 run counted 100000 increments in all, the last one 100000",
        "this run's counter (`counter`): reset to 0 (the last run left it at 100000)",
        "counter = 100000 (expected 100000)",
        "kept for the next run (`totals`): 2 runs counted 200000 increments in all",
        "done: run again, and run #3 will find",
    ] {
        assert!(out.contains(line), "missing {line:?} in the second run's output:\n{out}");
    }
    assert!(!out.contains("this is the first run"), "{out}");

    // And the file holds what the output says, for any other program.
    let store = Store::open(&path).unwrap();
    let totals = store.object::<Totals>("totals").unwrap().load().unwrap();
    assert_eq!(totals, Totals { runs: 2, last_run: 100_000, all_runs: 200_000 });
    assert_eq!(store.object::<u64>("counter").unwrap().load().unwrap(), 100_000);
}

#[test]
fn persistent_accessor_writes_at_offset_2_and_another_process_reads_it_back() {
    let exe = example("persistent_accessor");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("global.shm");
    let file = path.to_str().unwrap();

    // First run: no file yet, so it creates the store, writes, and a second process reads.
    let out = run(&exe, &[file, "Hello, persisted world"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("store: ") && lines[0].contains("(created"), "{out}");
    assert!(!out.contains("previous message"), "{out}");
    assert!(out.contains("wrote 22 bytes at offset 2 of `global_share_memory` (1024 bytes)"), "{out}");
    assert!(out.contains("refused: write_at 1020..1028 is out of bounds"), "{out}");
    let reader = lines.iter().find(|l| l.starts_with("reader (pid")).unwrap_or_else(|| panic!("{out}"));
    assert!(!reader.contains(&format!("pid {})", std::process::id())), "{reader}");
    // ReadArray(0, buf, 0, 1024): bytes 0 and 1 were never written; the message starts at 2.
    assert!(
        reader.ends_with("read 1024 bytes; the first 16: 00 00 48 65 6c 6c 6f 2c 20 70 65 72 73 69 73 74"),
        "{reader}"
    );
    assert!(out.contains("reader: message at offset 2: \"Hello, persisted world\""), "{out}");

    // Second run: the file exists (FileMode.Open), and still holds the first run's message.
    let out = run(&exe, &[file, "again"]);
    assert!(out.lines().next().unwrap().ends_with("(opened)"), "{out}");
    assert!(out.contains("previous message: \"Hello, persisted world\""), "{out}");
    assert!(out.contains("reader: message at offset 2: \"again\""), "{out}");

    // And the store holds it for any other program.
    let region = Store::open(&path).unwrap().bytes("global_share_memory").unwrap();
    let mut head = [0u8; 8];
    region.read_at(0, &mut head).unwrap();
    assert_eq!(&head, b"\0\0again\0");
    assert_eq!(region.len(), 1024);
}

/// The examples are a package of their own whose manifest must name each file (cargo discovers
/// examples only in `examples/` below a manifest), so a new example that is not listed in
/// examples/Cargo.toml would silently never be built, run or linted.
#[test]
fn every_file_in_examples_is_declared_in_its_manifest() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("read examples/Cargo.toml");
    let declared: Vec<&str> =
        manifest.lines().filter_map(|line| line.trim().strip_prefix("path = \"")?.strip_suffix('"')).collect();
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("read examples/")
        .map(|e| e.expect("read examples/").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".rs"))
        .collect();
    files.sort();
    assert!(files.iter().any(|f| f == "quickstart.rs"), "examples/ holds {files:?}");
    let missing: Vec<&String> = files.iter().filter(|f| !declared.contains(&f.as_str())).collect();
    assert!(
        missing.is_empty(),
        "examples/Cargo.toml has no [[example]] for {missing:?}: add `[[example]] name = \"NAME\" path = \"NAME.rs\"`"
    );
    let stale: Vec<&&str> = declared.iter().filter(|d| !files.iter().any(|f| f == *d)).collect();
    assert!(stale.is_empty(), "examples/Cargo.toml declares {stale:?}, which do not exist in examples/");
}

//! Upgrading a stored configuration to a new layout with `Store::migrate`.
//!
//! ```text
//! cargo run --example migrate_config              # store at target/migrate_config.shm
//! cargo run --example migrate_config -- my.shm    # or anywhere you like
//! ```
//!
//! The story: version 1 of a program stored its `Config`. Version 2 adds a timeout and a name, so
//! its `Config` has a different layout, and opening the old entry with the new type is refused
//! (`Error::LayoutMismatch`) rather than misread. The new build therefore migrates the entry when it
//! starts: `Store::migrate` converts the stored value with a function you write, and switches every
//! process over to the new layout atomically, even if the migrating process dies half way.
//! Migrating is idempotent, so every start of the new build can simply call it.
//!
//! What it prints:
//! 1. the v1 value, written by "the old build" (the store file is recreated on every run);
//! 2. `migrated config from v1 to v2` at the first start of the new build, and `already at v2`
//!    at the next one;
//! 3. the error a v1 handle opened before the migration now gets (a process still running the old
//!    build would see the same);
//! 4. the v2 value.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use shmstore::{FixedStr, Migration, Store};

/// The layout the old build stores.
mod v1 {
    use shmstore::SharedLayout;

    /// A shared type is a `#[repr(C)]` struct of plain data without padding (the derive checks):
    /// `_pad` fills the bytes between `verbose` and `max_conn` explicitly.
    #[derive(SharedLayout, Clone, Copy, Debug)]
    #[repr(C)]
    #[shared(version = 1)]
    pub struct Config {
        pub port: u16,
        pub verbose: bool,
        pub _pad: [u8; 5],
        pub max_conn: u64,
    }
}

/// The layout the new build stores: two fields added. Bump `version` with every layout change.
mod v2 {
    use shmstore::{FixedStr, SharedLayout};

    #[derive(SharedLayout, Clone, Copy, Debug)]
    #[repr(C)]
    #[shared(version = 2)]
    pub struct Config {
        pub port: u16,
        pub verbose: bool,
        pub _pad: [u8; 5],
        pub max_conn: u64,
        /// New in v2.
        pub timeout_ms: u64,
        /// New in v2.
        pub name: FixedStr<32>,
    }
}

/// The value new fields get when an old config is upgraded.
const DEFAULT_TIMEOUT_MS: u64 = 5000;
const DEFAULT_NAME: &str = "unnamed";

/// How a v1 config becomes a v2 config: keep every old field, give the new ones their defaults.
fn upgrade(old: v1::Config) -> v2::Config {
    v2::Config {
        port: old.port,
        verbose: old.verbose,
        _pad: [0; 5],
        max_conn: old.max_conn,
        timeout_ms: DEFAULT_TIMEOUT_MS,
        name: FixedStr::truncating(DEFAULT_NAME),
    }
}

/// The name of the entry holding the configuration.
const CONFIG: &str = "config";
/// Size of a new store file (sparse: untouched space costs no disk).
const CAPACITY: u64 = 1 << 20;

fn main() -> ExitCode {
    // Print errors with their `Display` text: shmstore's messages say what to do next.
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = match args.as_slice() {
        [] => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("examples/ lies in the workspace")
            .join("target/migrate_config.shm"),
        [flag] if flag.starts_with('-') => {
            return Err(format!("unknown option `{flag}`; usage: migrate_config [STORE_PATH]").into())
        }
        [path] => PathBuf::from(path),
        _ => return Err("usage: migrate_config [STORE_PATH]".into()),
    };
    start_fresh(&path)?;
    println!("store: {}", path.display());

    // 1. The old build writes its config.
    let store = Store::open_or_create(&path, CAPACITY)?;
    let old = store.object_or_init(CONFIG, || v1::Config { port: 8080, verbose: true, _pad: [0; 5], max_conn: 512 })?;
    println!("v1 config: {:?}", old.load()?);

    // 2. The new build starts, twice (say, a deploy and a restart). Each start opens the store and
    //    migrates; only the first one has anything to do.
    for _start in 0..2 {
        new_build_starts(&path)?;
    }

    // 3. The old handle, opened before the migration, no longer reads: the entry holds v2 now.
    match old.load() {
        Err(e @ shmstore::Error::LayoutMismatch { .. }) => println!("the v1 handle now fails: {e}"),
        Err(e) => return Err(format!("the v1 handle failed, but not with a layout mismatch: {e}").into()),
        Ok(value) => return Err(format!("the v1 handle still read {value:?} after the migration").into()),
    }

    // 4. The v2 value, as any process opening the store now sees it.
    let config = Store::open(&path)?.object::<v2::Config>(CONFIG)?.load()?;
    println!("v2 config: {config:?}");
    println!(
        "  port {}, max_conn {}, timeout {} ms, name {:?}",
        config.port, config.max_conn, config.timeout_ms, &*config.name
    );
    Ok(())
}

/// What the new build does at startup: bring the stored config to v2 (a no-op if it is there
/// already), then use it with the v2 type.
fn new_build_starts(path: &Path) -> Result<(), Box<dyn Error>> {
    let store = Store::open(path)?;
    match store.migrate(CONFIG, upgrade)? {
        Migration::Migrated => println!("migrated config from v1 to v2"),
        Migration::AlreadyMigrated => println!("already at v2"),
        other => println!("migration: {other:?}"),
    }
    let config = store.object::<v2::Config>(CONFIG)?;
    println!("new build runs with timeout {} ms", config.load()?.timeout_ms);
    Ok(())
}

/// Removes the store file left by a previous run, so that every run starts from v1.
fn start_fresh(path: &Path) -> Result<(), Box<dyn Error>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot remove the old store {}: {e}", path.display()).into()),
    }
}

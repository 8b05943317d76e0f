//! What happens when a program meets a store written with a different layout: a typed error that
//! names both layouts, and the data left untouched.
//!
//! ```text
//! cargo run --example layout_mismatch
//! ```

use shmstore::{Error, SharedLayout, Store};

/// The layout an older build wrote.
mod v1 {
    use super::SharedLayout;

    #[derive(SharedLayout, Clone, Copy, Debug, Default)]
    #[repr(C)]
    #[shared(version = 1)]
    pub struct Config {
        pub port: u16,
        pub verbose: bool,
        pub _pad: [u8; 1],
        pub max_conn: u32,
    }
}

/// A newer build widened `max_conn` to `u64` and bumped the version.
mod v2 {
    use super::SharedLayout;

    #[derive(SharedLayout, Clone, Copy, Debug, Default)]
    #[repr(C)]
    #[shared(version = 2)]
    pub struct Config {
        pub port: u16,
        pub verbose: bool,
        pub _pad: [u8; 5],
        pub max_conn: u64,
    }
}

fn main() -> Result<(), Error> {
    let dir = std::env::temp_dir().join(format!("shmstore-layout-mismatch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io { op: "create", path: dir.clone(), source })?;
    let path = dir.join("app.shm");

    let store = Store::open_or_create(&path, 1 << 20)?;
    store.object_or_init("config", || v1::Config { port: 8080, max_conn: 100, ..Default::default() })?;

    // The new build opens the same entry with its own type: refused, never reinterpreted.
    match store.object::<v2::Config>("config") {
        Err(e @ Error::LayoutMismatch { .. }) => println!("error: {e}"),
        other => panic!("expected a layout mismatch, got {other:?}"),
    }
    // The old type still reads the untouched data.
    println!("v1 still reads: {:?}", store.object::<v1::Config>("config")?.load()?);

    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

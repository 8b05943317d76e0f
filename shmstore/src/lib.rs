//! Typed shared objects in memory-mapped files, on Linux.
//!
//! shmstore shares typed state between processes, and keeps it across restarts, through one
//! memory-mapped file:
//!
//! - `#[derive(SharedLayout)]` on a `#[repr(C)]` struct proves at compile time that it is plain old
//!   data (no padding, no pointers, every field shareable) and gives it a versioned [`Layout`]
//!   descriptor with a stable fingerprint.
//! - A [`Store`] maps a file of named objects ([`Shared<T>`]) and arrays ([`SharedArray<T>`]) and
//!   hands out typed read and write guards, locked against other threads and processes by robust
//!   process-shared mutexes in the file (or, in OFD lock mode, kernel byte-range locks), which a
//!   process that dies holding them cannot leave stuck.
//! - Byte regions ([`SharedBytes`]) hold raw bytes, read and written at bounds-checked `u64`
//!   offsets or through a [`ByteStream`] (`std::io::{Read, Write, Seek}`, bounded by the region or,
//!   from [`SharedBytes::stream_range`], by a window of it), and an [`ArrayView`] is a
//!   bounds-checked window onto part of an array: the typed answers to .NET's `CreateViewStream`
//!   and `CreateViewAccessor(offset, length)`.
//! - An entry opened with a different layout is refused with [`Error::LayoutMismatch`], which
//!   lists what differs field by field; bytes are never reinterpreted. [`Store::migrate`] converts
//!   an entry to a new layout, crash-atomically.
//! - Objects commit atomically (a panic or a killed process leaves the last published value),
//!   [`Shared::load`] is lock-free, and [`Shared::wait_for_change`] sleeps until another process
//!   commits.
//! - [`Store::open_or_create_temp`] gives a named store without a user-visible file, removed when
//!   the last process that has it open closes it or dies; a store that runs out of room grows, and
//!   every process adopts the new size.
//! - A store lives for years: its catalog grows with its entries (lookups stay O(1), and opening
//!   costs nothing per entry), [`Store::remove`], [`Store::rename`] and [`SharedArray::resize`]
//!   change entries crash-atomically (other handles get [`Error::Removed`] or [`Error::Moved`]),
//!   and freed space is reused. Files of the first format version open read-only; `shmstore
//!   upgrade` converts them.
//!
//! ```
//! use shmstore::{FixedStr, SharedLayout, Store};
//!
//! #[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Default)]
//! #[repr(C)]
//! #[shared(version = 1)]
//! struct Config {
//!     port: u16,
//!     verbose: bool,
//!     _pad: [u8; 5],
//!     max_conn: u64,
//!     name: FixedStr<32>,
//! }
//!
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("app.shm");
//! // Any number of processes can run this; the first one creates the file.
//! let store = Store::open_or_create(&path, 1 << 20)?;
//! let cfg = store.object_or_init("config", Config::default)?;
//! cfg.update(|c| {
//!     c.port = 8080;
//!     c.name = FixedStr::new("edge-1").unwrap();
//! })?;
//!
//! // Another process (here: a new handle) sees the same value, and so does the next run.
//! let again = Store::open(&path)?.object::<Config>("config")?;
//! assert_eq!(again.load()?.port, 8080);
//! assert_eq!(again.read()?.name, "edge-1");
//!
//! // A different layout is refused, with the reason.
//! let err = Store::open(&path)?.object::<u64>("config").unwrap_err();
//! assert!(matches!(err, shmstore::Error::LayoutMismatch { .. }));
//! # Ok::<(), shmstore::Error>(())
//! ```
//!
//! The on-disk format (version 2) is specified in `docs/format.md`, version 1 in
//! `docs/format-v1.md`; [`format`](mod@format) implements both as pure code.
//!
//! # Platforms
//!
//! **Linux only**, for now: the crate does not compile elsewhere. Its locks are robust,
//! process-shared pthread mutexes in the mapping, whose next locker is told when their holder
//! died ([`LockMode::Robust`], the default), or Linux open-file-description byte-range locks
//! (`F_OFD_SETLK`), which the kernel releases when a process dies ([`LockMode::Ofd`]); and
//! [`Shared::wait_for_change`] sleeps on a futex shared between processes. The
//! platform code is one internal module behind a small interface, so that macOS and Windows ports
//! can be added without touching the rest.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

// Lets the derive's `::shmstore::...` paths resolve inside this crate's own tests.
extern crate self as shmstore;

// `Store`'s methods are spread over several modules, and rustdoc lists them in the order the
// modules are declared: these come first so that the `Store` page opens with the constructors
// (files, then temporary stores), then byte regions, inspection and migration. `options` comes
// before them so that the `OpenOptions` page lists its settings before `open` (in `store`) and the
// temporary-store settings (in `temp`).
//
// The modules sit on floors (the facade and handles; `entry/`; `file/`; `error` and `options`;
// `format/` and `sys/`; `layout` and `fixed_str`), and imports only run down them: see
// `tests/floors.rs` (`imports_run_down_the_floors`).
mod options;
mod store;
mod temp;

mod bytes;
mod inspect;
mod migrate;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
mod array;
mod entry;
mod error;
mod file;
mod fixed_str;
pub mod format;
mod guard_free;
pub mod layout;
mod object;
mod offline;
mod stream;
mod sys;
mod untyped;
mod view;

pub use array::SharedArray;
pub use bytes::SharedBytes;
pub use entry::commit::{Version, OPTIMISTIC_TRIES};
pub use entry::guard::{ReadGuard, WriteGuard};
pub use error::{Error, Fingerprint, Result, WaitedFor};
pub use fixed_str::{FixedStr, FixedStrError};
pub use format::entry::{EntryKind, MAX_NAME_LEN};
pub use format::schema::{Schema, SchemaField, SchemaKind, SchemaVariant};
pub use format::v2::header::LockMode;
pub use inspect::StoreInfo;
pub use layout::{AllAtomic, Field, InvalidValue, Layout, Primitive, SharedLayout, TypeKind, Variant};
pub use migrate::Migration;
pub use object::Shared;
pub use offline::{compact, upgrade, RewriteReport};
pub use options::{Durability, OpenOptions, DEFAULT_MAX_ENTRIES};
pub use store::{EntryInfo, Store};
pub use stream::ByteStream;
pub use temp::{DEFAULT_TEMP_DIR, MAX_TEMP_NAME_LEN, TEMP_DIR_VAR};
pub use untyped::{UntypedArray, UntypedObject};
pub use view::ArrayView;

/// Derives [`SharedLayout`](trait@SharedLayout) for a `#[repr(C)]` (or `#[repr(transparent)]`)
/// struct, or for a fieldless enum with an explicit unsigned `#[repr(u8|u16|u32|u64)]` (signed
/// and `usize` representations are refused). The macro's own page lists every accepted shape.
#[cfg(feature = "derive")]
pub use shmstore_derive::SharedLayout;

#[cfg(test)]
mod tests {
    /// rustdoc lists `Store`'s methods in the order their modules are declared; keep the
    /// constructors first (see the comment above the `mod` declarations).
    #[test]
    fn the_store_page_opens_with_its_constructors() {
        let source = include_str!("lib.rs");
        let at = |module: &str| {
            source.find(&format!("\nmod {module};\n")).unwrap_or_else(|| panic!("no `mod {module};` in lib.rs"))
        };
        let order = ["store", "temp", "bytes", "inspect", "migrate"].map(at);
        assert!(order.is_sorted(), "mod declarations of store, temp, bytes, inspect, migrate are out of order");
    }
}

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
// `tests::imports_run_down_the_floors`.
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

    /// The floors of the crate, bottom up: a module may import its own floor and those below,
    /// never one above. Every top-level module (a file, or a folder with all it holds) has one.
    const FLOORS: &[(&str, &[&str])] = &[
        ("leaves", &["layout", "fixed_str"]),
        ("pure format and platform code", &["format", "sys", "__private"]),
        ("vocabulary", &["error", "options"]),
        ("the state of one store file", &["file"]),
        ("the entry machinery", &["entry"]),
        (
            "the facade and the typed handles",
            &[
                "lib",
                "store",
                "temp",
                "bytes",
                "inspect",
                "migrate",
                "array",
                "guard_free",
                "object",
                "offline",
                "stream",
                "untyped",
                "view",
            ],
        ),
    ];

    /// The floor of the top-level module `module`, as an index into [`FLOORS`].
    fn floor_of(module: &str) -> Option<usize> {
        FLOORS.iter().position(|(_, modules)| modules.contains(&module))
    }

    /// `source` without comments, string and character literals, and `#[cfg(test)]` items (tests
    /// may use anything): only the paths that code names are left.
    fn code_only(source: &str) -> String {
        let chars: Vec<char> = source.chars().collect();
        let mut out = String::with_capacity(source.len());
        let mut i = 0;
        while i < chars.len() {
            let peek = |j: usize| chars.get(j).copied().unwrap_or(' ');
            let c = chars[i];
            if c == '/' && peek(i + 1) == '/' {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            } else if c == '/' && peek(i + 1) == '*' {
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && peek(i + 1) == '/') {
                    i += 1;
                }
                i += 2;
            } else if c == 'r' && (peek(i + 1) == '"' || peek(i + 1) == '#') && !(i > 0 && is_ident(chars[i - 1])) {
                // A raw string: r"..." or r#"..."#.
                let hashes = chars[i + 1..].iter().take_while(|&&c| c == '#').count();
                if chars.get(i + 1 + hashes) != Some(&'"') {
                    out.push(c);
                    i += 1;
                    continue;
                }
                i += hashes + 2;
                let closing: String = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
                while i < chars.len() && !chars[i..].starts_with(&closing.chars().collect::<Vec<_>>()) {
                    i += 1;
                }
                i += closing.len();
                out.push_str("\"\"");
            } else if c == '"' {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            } else if c == '\'' && peek(i + 1) == '\\' {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if c == '\'' && peek(i + 2) == '\'' {
                i += 3;
            } else {
                out.push(c);
                i += 1;
            }
        }
        // Drop each `#[cfg(test)]` item: up to its `;`, or its braces' end.
        while let Some(at) = out.find("#[cfg(test)]") {
            let (mut depth, mut end) = (0usize, out.len());
            for (j, c) in out[at..].char_indices() {
                match c {
                    ';' if depth == 0 => {}
                    '{' => {
                        depth += 1;
                        continue;
                    }
                    '}' if depth > 1 => {
                        depth -= 1;
                        continue;
                    }
                    '}' => {}
                    _ => continue,
                }
                end = at + j + 1;
                break;
            }
            out.replace_range(at..end, "");
        }
        out
    }

    fn is_ident(c: char) -> bool {
        c.is_ascii_alphanumeric() || c == '_'
    }

    /// The identifiers that start the paths of a `use` group's body `{a::b, C, d::{e, f}}`.
    fn group_heads(body: &str) -> Vec<String> {
        let (mut parts, mut depth) = (vec![String::new()], 0);
        for c in body.chars() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => parts.push(String::new()),
                c if depth == 0 => parts.last_mut().unwrap().push(c),
                _ => {}
            }
        }
        parts.iter().map(|part| part.trim().chars().take_while(|&c| is_ident(c)).collect()).collect()
    }

    /// The top-level modules `code` (of the module at `module_path`) names: through `crate::`
    /// (`$crate::` too), and through `super::` chains that climb to the crate root. Names
    /// re-exported by lib.rs resolve through `reexports` to the module they come from.
    fn imports(code: &str, module_path: &[String], reexports: &[(String, String)]) -> Vec<(String, String)> {
        let mut found = Vec::new();
        let ident_at = |s: &str| s.chars().take_while(|&c| is_ident(c)).collect::<String>();
        let path_at = |s: &str| s.chars().take_while(|&c| is_ident(c) || c == ':').collect::<String>();
        let resolve = |name: String| match reexports.iter().find(|(item, _)| *item == name) {
            Some((_, module)) => module.clone(),
            None => name,
        };
        for (at, _) in code.match_indices("crate::") {
            if code[..at].chars().next_back().is_some_and(is_ident) {
                continue;
            }
            let rest = &code[at + "crate::".len()..];
            if let Some(body) = rest.strip_prefix('{') {
                let body = &body[..body.find("};").unwrap_or(body.len())];
                found.extend(
                    group_heads(body).into_iter().map(|head| (resolve(head.clone()), format!("crate::{head}"))),
                );
            } else {
                found.push((resolve(ident_at(rest)), format!("crate::{}", path_at(rest))));
            }
        }
        for (at, _) in code.match_indices("super::") {
            if code[..at].chars().next_back().is_some_and(|c| is_ident(c) || c == ':') {
                continue;
            }
            let mut rest = &code[at..];
            let mut climbs = 0;
            while let Some(r) = rest.strip_prefix("super::") {
                rest = r;
                climbs += 1;
            }
            if climbs == module_path.len() {
                found.push((resolve(ident_at(rest)), format!("{}{}", "super::".repeat(climbs), path_at(rest))));
            }
        }
        found.retain(|(m, _)| !m.is_empty() && m != "self" && m != "*");
        found
    }

    /// Every `.rs` file under `dir`, with its module path (`file/lock/mod.rs` is `[file, lock]`).
    fn sources(dir: &std::path::Path, module_path: Vec<String>, out: &mut Vec<(std::path::PathBuf, Vec<String>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
            let mut inner = module_path.clone();
            if path.is_dir() {
                inner.push(name);
                sources(&path, inner, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                match name.as_str() {
                    "mod" => {}
                    "lib" if inner.is_empty() => {}
                    "private" if inner.is_empty() => inner.push("__private".into()),
                    _ => inner.push(name),
                }
                out.push((path, inner));
            }
        }
    }

    /// The floor check sees the paths code names, and only those: through `crate::` (plain, in a
    /// group, or a name lib.rs re-exports) and through `super::` from a folder's root, but not in
    /// comments, strings or `#[cfg(test)]` items.
    #[test]
    fn the_floor_check_reads_paths_from_code_only() {
        let source = r#"
            //! Links to [`crate::store`] and prose about crate::entry are not imports.
            use crate::file::state::StoreInner;
            use crate::{error::Error, Store};
            const WORDS: &str = "crate::temp";
            fn f() -> char { let _ = super::view::resolve; '"' }
            #[cfg(test)]
            mod tests {
                use crate::object::Shared;
            }
            /* crate::untyped */
            use crate::format::{self, v2::header};
        "#;
        let reexports = [("Store".to_owned(), "store".to_owned())];
        let found = |module_path: &[&str]| {
            let module_path: Vec<String> = module_path.iter().map(|m| m.to_string()).collect();
            let mut modules: Vec<String> =
                imports(&code_only(source), &module_path, &reexports).into_iter().map(|(m, _)| m).collect();
            modules.sort();
            modules
        };
        assert_eq!(found(&["file", "map"]), ["error", "file", "format", "store"]);
        assert_eq!(found(&["entry"]), ["error", "file", "format", "store", "view"], "super:: from entry/mod.rs");
    }

    /// Imports run one way, down the floors of [`FLOORS`]: the facade and handles use the entry
    /// machinery, which uses the file's state, which uses the format and platform code. A lower
    /// floor that names a higher one fails here, naming the file and the import.
    #[test]
    fn imports_run_down_the_floors() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let lib = code_only(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
        // `pub use module::...::{A, B};` in lib.rs: which module each re-exported name comes from.
        let mut reexports = Vec::new();
        for line in lib.lines().filter_map(|l| l.trim().strip_prefix("pub use ")) {
            let module = line.split("::").next().unwrap().to_owned();
            let items = line.rsplit("::").next().unwrap().trim_matches(|c| "{};".contains(c));
            for item in items.split(',') {
                let item = item.split(" as ").last().unwrap().trim().to_owned();
                reexports.push((item, module.clone()));
            }
        }
        let mut files = Vec::new();
        sources(&src, Vec::new(), &mut files);
        files.sort();
        assert!(files.len() > 40, "found only {} source files under {}", files.len(), src.display());
        let mut wrong = Vec::new();
        for (path, module_path) in &files {
            let module = module_path.first().map_or("lib", String::as_str);
            let floor = floor_of(module).unwrap_or_else(|| panic!("module `{module}` has no floor in FLOORS"));
            let code = code_only(&std::fs::read_to_string(path).unwrap());
            let file = path.strip_prefix(&src).unwrap().display();
            for (import, named) in imports(&code, module_path, &reexports) {
                let Some(to) = floor_of(&import) else {
                    wrong.push(format!("{file}: `{named}` names `{import}`, which has no floor in FLOORS"));
                    continue;
                };
                if to > floor {
                    wrong.push(format!(
                        "{file}: `{named}`: `{module}` ({}) must not import `{import}` ({}), a floor above it",
                        FLOORS[floor].0, FLOORS[to].0,
                    ));
                }
            }
        }
        wrong.dedup();
        assert!(wrong.is_empty(), "imports that climb:\n{}", wrong.join("\n"));
    }
}

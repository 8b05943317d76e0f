//! Untyped handles: an entry's values as bytes, checked against the schema stored in the file.
//!
//! [`UntypedObject`] and [`UntypedArray`] are for code that has no Rust type for an entry: the C
//! ABI (`shmstore-ffi`), the Python package, generic tools. They take the same locks, run the
//! same commit protocol and validate values against the same rules as [`Shared`](crate::Shared)
//! and [`SharedArray`](crate::SharedArray), with the stored [`Schema`] in place of a
//! [`Layout`](crate::Layout): a `bool` that is not 0 or 1, an enum discriminant that names no
//! variant or a `FixedStr` that is not UTF-8 is [`Error::InvalidValue`], on the way in (nothing
//! is committed) as on the way out.
//!
//! A handle is bound to the record it was opened on. After [`Store::migrate`] replaced the
//! entry's layout, every load, commit, read, write and wait through it fails with
//! [`Error::LayoutMismatch`] (from the layout it was opened with to the new one): it never returns
//! bytes of the old record written after the migration, nor bytes of the new layout as the old.
//! Open the entry again by name ([`UntypedObject::reopen`]) to follow it.

use std::fmt;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use crate::entry::commit::{Version, OPTIMISTIC_TRIES};
use crate::entry::handle::{EntryHandle, Hold};
use crate::entry::seqlock;
use crate::error::{Error, Result};
use crate::file::copy;
use crate::file::lock::Wait;
use crate::file::state::StoreInner;
use crate::format::diff;
use crate::format::entry::{Entry, EntryKind};
use crate::format::schema::Schema;
use crate::format::value;
use crate::options::Durability;
use crate::store::{EntryInfo, Store};

impl From<u64> for Version {
    /// The version whose sequence number is `seq` (as [`Version::get`] returned it), for callers
    /// that keep versions as integers (the C ABI, Python).
    fn from(seq: u64) -> Version {
        Version(seq)
    }
}

impl Store {
    /// The existing object `name`, as bytes of its stored layout: [`Error::NotFound`] if there is
    /// none, [`Error::KindMismatch`] if it is an array or a byte region.
    ///
    /// ```
    /// use shmstore::Store;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open_or_create(dir.path().join("u.shm"), 1 << 20)?;
    /// store.object_or_init("port", || 8080u16)?;
    ///
    /// let port = store.untyped_object("port")?;
    /// assert_eq!(port.schema().display_name(), "u16");
    /// let mut bytes = [0u8; 2];
    /// port.load_into(&mut bytes)?;
    /// assert_eq!(u16::from_ne_bytes(bytes), 8080);
    /// port.store_bytes(&9090u16.to_ne_bytes())?;
    /// assert_eq!(store.object::<u16>("port")?.load()?, 9090);
    /// # Ok::<(), shmstore::Error>(())
    /// ```
    pub fn untyped_object(&self, name: &str) -> Result<UntypedObject> {
        Untyped::open(self, name, &[EntryKind::Object]).map(|inner| UntypedObject { inner })
    }

    /// The existing array or byte region `name`, as bytes of its stored element layout:
    /// [`Error::NotFound`] if there is none, [`Error::KindMismatch`] if it is an object.
    pub fn untyped_array(&self, name: &str) -> Result<UntypedArray> {
        Untyped::open(self, name, &[EntryKind::Array, EntryKind::Bytes]).map(|inner| UntypedArray { inner })
    }
}

/// What both untyped handles hold.
#[derive(Clone)]
struct Untyped {
    handle: EntryHandle,
    schema: Arc<Schema>,
    info: EntryInfo,
    /// `value::needs_validation(&schema)`, computed once: the schema walk is not free.
    validate: bool,
}

impl Untyped {
    fn open(store: &Store, name: &str, kinds: &[EntryKind]) -> Result<Untyped> {
        let inner = store.inner_arc();
        let found = inner.find(name)?;
        let entry = found.entry.clone();
        if !kinds.contains(&entry.kind) {
            let expected = if kinds.contains(&EntryKind::Object) { "object" } else { "array" };
            return Err(Error::KindMismatch { name: entry.name.clone(), expected, found: entry.kind.as_str() });
        }
        let info = inner.entry_info(found.at, &entry)?;
        let schema = Arc::new(inner.stored_schema(&entry)?);
        let handle = EntryHandle::untyped(inner, found, schema.clone())?;
        let validate = value::needs_validation(&schema);
        Ok(Untyped { handle, schema, info, validate })
    }

    fn name(&self) -> &str {
        self.handle.name()
    }

    fn store(&self) -> Store {
        Store { inner: self.handle.store.clone() }
    }

    fn elem_size(&self) -> u64 {
        self.handle.entry.elem_size
    }

    /// Fails unless the entry's values are `size` bytes with fingerprint `fingerprint`.
    fn expect(&self, size: u64, fingerprint: u64) -> Result<()> {
        if size == self.elem_size() && fingerprint == self.handle.entry.fingerprint {
            return Ok(());
        }
        Err(Error::ForeignLayoutMismatch {
            name: self.name().to_owned(),
            found_type: self.schema.display_name(),
            found_size: self.elem_size(),
            found_fingerprint: self.handle.entry.fingerprint.into(),
            expected_size: size,
            expected_fingerprint: fingerprint.into(),
        })
    }

    fn buffer_size(&self, what: &'static str, len: usize, exact: bool) -> Error {
        Error::BufferSize { name: self.name().to_owned(), what, len: len as u64, elem_size: self.elem_size(), exact }
    }

    /// Checks that `bytes` (one value, of the right length) are a valid value of the schema.
    fn check_value(&self, bytes: &[u8]) -> Result<()> {
        if !self.validate {
            return Ok(());
        }
        value::validate(&self.schema, bytes, "value").map_err(|invalid| self.invalid(invalid))
    }

    fn invalid(&self, invalid: crate::InvalidValue) -> Error {
        Error::InvalidValue { name: self.name().to_owned(), type_name: self.schema.display_name(), invalid }
    }

    fn outside(&self) -> Error {
        self.handle.store.corrupt(format!("entry `{}` points outside the mapping", self.name()))
    }

    /// The version, read under `_hold` (a lock on this entry), so that it is the version of
    /// exactly what the holder reads or wrote.
    fn version_under(&self, _hold: &Hold<'_>) -> Version {
        self.handle.version()
    }

    /// Copies `out.len()` bytes of the active slot from byte `start` into `out`, atomics with
    /// atomic loads of their own width. The caller holds `_hold` on this entry.
    fn copy_locked(&self, _hold: &Hold<'_>, start: u64, out: &mut [u8]) -> Result<()> {
        let store = &self.handle.store;
        let offset = store.active_offset(self.handle.at, &self.handle.entry) + start;
        let map = store.map();
        let ptr = map.ptr(offset, out.len() as u64, 1).ok_or_else(|| self.outside())?;
        // SAFETY: `ptr` checked that `out.len()` bytes from `ptr` lie in the mapping, which
        // `self.handle.store` keeps alive for this borrow; they are whole values of `self.schema`
        // (the entry's stored layout, checked against its record when the handle was made; the
        // callers pass whole elements from an element boundary), and `_hold` is this entry's lock,
        // held by the caller for the whole call.
        unsafe { copy::copy_shared(&*self.schema, ptr, out) };
        Ok(())
    }

    /// Copies `out.len()` bytes of the active slot from byte `start` into `out`, consistently,
    /// and returns the version they belong to: under the entry's shared lock, or, in a process
    /// that cannot take it (a read-only mapping in robust lock mode, whose locks live in the
    /// file), as an optimistic copy retried until no writer was in.
    fn copy_current(&self, start: u64, out: &mut [u8]) -> Result<Version> {
        let handle = &self.handle;
        if handle.store.cannot_lock() {
            let offset = handle.store.active_offset(handle.at, &handle.entry) + start;
            handle.store.copy_unlocked(
                handle.name(),
                handle.at,
                &*self.schema,
                offset,
                out,
                Wait::Forever,
                None,
                || handle.check_current(),
            )?;
            return Ok(handle.version());
        }
        let hold = handle.hold(false, Wait::Forever, None)?;
        self.copy_locked(&hold, start, out)?;
        Ok(self.version_under(&hold))
    }

    /// Writes `bytes` in place at byte `start` of the entry and records the change. The caller
    /// holds `hold`, the entry's exclusive lock.
    fn write_locked(&self, hold: &Hold<'_>, start: u64, bytes: &[u8]) -> Result<Version> {
        let store = &self.handle.store;
        let offset = self.handle.entry.data_offset + start;
        if copy::Shape::is_all_atomic(&*self.schema) {
            // Holders of `Shared::get` use an all-atomic value's atomics without any lock, so
            // every other write to those bytes must be atomic too.
            let map = store.map();
            let ptr =
                map.ptr(offset, bytes.len() as u64, self.handle.entry.elem_align).ok_or_else(|| self.outside())?;
            // SAFETY: `ptr` checked that `bytes.len()` bytes from `ptr` lie in the mapping (writable:
            // the exclusive `hold` is refused on read-only stores), aligned for the schema, which
            // `self.handle.store` keeps mapped for this borrow; they hold whole values of
            // `self.schema` (the callers pass whole values from a value boundary), all atomics,
            // which every cooperating access uses through atomics of these widths.
            if !unsafe { copy::store_atomics(&*self.schema, ptr, bytes) } {
                return Err(self.outside());
            }
        } else if !store.map().write(offset, bytes) {
            return Err(self.outside());
        }
        self.handle.changed_in_place(hold, self.handle.durability)?;
        Ok(self.version_under(hold))
    }
}

impl fmt::Debug for Untyped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Untyped").field("name", &self.name()).field("type", &self.schema.display_name()).finish()
    }
}

/// The error of a handle whose record was migrated away from `expected` (its stored schema):
/// [`Error::LayoutMismatch`] from `expected` to the layout of `newest`.
pub(crate) fn mismatch(store: &StoreInner, newest: &Entry, expected: &Schema) -> Error {
    let stored = store.stored_schema(newest).ok();
    Error::LayoutMismatch {
        name: newest.name.clone(),
        expected_type: expected.display_name(),
        found_type: stored.as_ref().map_or_else(|| format!("<type {:016x}>", newest.fingerprint), Schema::display_name),
        expected_version: expected.version,
        found_version: newest.version,
        expected_fingerprint: expected.fingerprint.into(),
        found_fingerprint: newest.fingerprint.into(),
        diff: stored.map(|stored| diff::diff(&stored, expected)),
    }
}

/// An object of a [`Store`], read and written as the bytes of the layout stored with it: made by
/// [`Store::untyped_object`].
///
/// Loads are consistent copies (the lock-free seqlock read of [`Shared::load`](crate::Shared::load)
/// for a double-buffered object, a copy under the shared lock otherwise), commits go through the
/// same protocol as [`Shared::store`](crate::Shared::store), and every value is validated against
/// the stored schema: an invalid value is [`Error::InvalidValue`] and is never committed. Buffers
/// must be exactly [`size`](Self::size) bytes ([`Error::BufferSize`]).
///
/// The handle is bound to the record it was opened on: after [`Store::migrate`] replaced the
/// entry's layout, its loads, commits and waits fail with [`Error::LayoutMismatch`] (never
/// returning bytes of either layout as the other), and [`reopen`](Self::reopen) follows the entry.
#[derive(Clone, Debug)]
pub struct UntypedObject {
    inner: Untyped,
}

impl UntypedObject {
    /// The object's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The entry's description, as [`Store::entries`] gives it.
    pub fn info(&self) -> &EntryInfo {
        &self.inner.info
    }

    /// The stored layout of the value.
    pub fn schema(&self) -> &Schema {
        &self.inner.schema
    }

    /// The size of the value in bytes: the length of every buffer this handle takes.
    pub fn size(&self) -> usize {
        self.inner.elem_size() as usize
    }

    /// The stored layout's fingerprint.
    pub fn fingerprint(&self) -> u64 {
        self.inner.handle.entry.fingerprint
    }

    /// Fails with [`Error::ForeignLayoutMismatch`] unless the value is `size` bytes of the layout
    /// with fingerprint `fingerprint`: how a caller with a layout compiled in another language
    /// (a struct from `shmstore header`) checks that it matches the entry.
    pub fn expect_layout(&self, size: u64, fingerprint: u64) -> Result<()> {
        self.inner.expect(size, fingerprint)
    }

    /// The entry `name` opened again: after a migration, the handle of its new layout.
    pub fn reopen(&self) -> Result<UntypedObject> {
        self.inner.store().untyped_object(self.name())
    }

    /// This handle, committing with `durability` instead of the store's default.
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.inner.handle.durability = durability;
        self
    }

    /// The current [`Version`].
    pub fn version(&self) -> Version {
        self.inner.handle.version()
    }

    /// Whether the object is double-buffered (crash-atomic commits, lock-free loads).
    pub fn is_double_buffered(&self) -> bool {
        self.inner.handle.entry.slot_count == 2
    }

    fn check_len(&self, what: &'static str, len: usize) -> Result<()> {
        if len as u64 == self.inner.elem_size() {
            Ok(())
        } else {
            Err(self.inner.buffer_size(what, len, true))
        }
    }

    /// Copies the current value into `out` (exactly [`size`](Self::size) bytes) and returns its
    /// version. The copy is consistent, and validated: on [`Error::InvalidValue`], `out` holds
    /// the invalid bytes, which the caller must not use as a value.
    pub fn load_into(&self, out: &mut [u8]) -> Result<Version> {
        self.check_len("load_into", out.len())?;
        let u = &self.inner;
        let version = match u.handle.hot() {
            Some((seq, slots, still)) => {
                // As `Shared::load`: a migration, removal or rename marks the entry before it
                // bumps `seq`, so a read that sees the bump sees the mark, and reports it.
                let check = || if still.moved_away() { u.handle.check_current() } else { Ok(()) };
                let copied = loop {
                    let copied =
                        seqlock::read(seq, slots, OPTIMISTIC_TRIES, check, |words| seqlock::copy_out(words, out))?;
                    // A read-only mapping in robust lock mode cannot take the lock (it lives in
                    // the file): it keeps trying, letting the writers run in between.
                    if copied.is_some() || !u.handle.store.cannot_lock() {
                        break copied;
                    }
                    std::thread::yield_now();
                };
                match copied {
                    Some((true, seq)) => Version(seq),
                    Some((false, _)) => return Err(u.outside()),
                    None => {
                        // Writers keep winning: queue up behind them instead.
                        let hold = u.handle.hold(false, Wait::Forever, None)?;
                        u.copy_locked(&hold, 0, out)?;
                        u.version_under(&hold)
                    }
                }
            }
            None => u.copy_current(0, out)?,
        };
        u.check_value(out)?;
        Ok(version)
    }

    /// A copy of the current value and its version.
    pub fn load(&self) -> Result<(Vec<u8>, Version)> {
        let mut out = vec![0u8; self.size()];
        let version = self.load_into(&mut out)?;
        Ok((out, version))
    }

    /// Commits `bytes` (exactly [`size`](Self::size) bytes) as the new value, and returns the
    /// version it was committed as. An invalid value is [`Error::InvalidValue`], checked before
    /// anything is locked: nothing is committed.
    pub fn store_bytes(&self, bytes: &[u8]) -> Result<Version> {
        self.commit("store_bytes", bytes, None)
    }

    /// Like [`store_bytes`](Self::store_bytes), but commits only if the object is still at
    /// version `expected` (the version a load returned), and fails with
    /// [`Error::VersionConflict`] otherwise: a load-modify-store that loses no concurrent commit.
    pub fn store_bytes_if(&self, bytes: &[u8], expected: Version) -> Result<Version> {
        self.commit("store_bytes_if", bytes, Some(expected))
    }

    fn commit(&self, what: &'static str, bytes: &[u8], expected: Option<Version>) -> Result<Version> {
        self.check_len(what, bytes.len())?;
        let u = &self.inner;
        u.check_value(bytes)?;
        let hold = u.handle.hold(true, Wait::Forever, None)?;
        if let Some(expected) = expected {
            let found = u.version_under(&hold);
            if found != expected {
                return Err(Error::VersionConflict {
                    name: self.name().to_owned(),
                    expected: expected.get(),
                    found: found.get(),
                });
            }
        }
        self.publish(&hold, bytes)
    }

    fn publish(&self, hold: &Hold<'_>, bytes: &[u8]) -> Result<Version> {
        let u = &self.inner;
        if self.is_double_buffered() {
            u.handle.publish(hold, bytes, u.handle.durability)?;
            Ok(u.version_under(hold))
        } else {
            u.write_locked(hold, 0, bytes)
        }
    }

    /// Runs `f` on a copy of the current value under the object's exclusive lock and commits the
    /// result, returning what `f` returns and the new version: an atomic read-modify-write across
    /// threads and processes. The result is validated before it is committed: an invalid one is
    /// [`Error::InvalidValue`] and commits nothing, as does a panic in `f`. The current value is
    /// not validated first, so `f` can repair an invalid one.
    pub fn update_bytes<R>(&self, f: impl FnOnce(&mut [u8]) -> R) -> Result<(R, Version)> {
        let done = self.try_update_bytes(|value| Ok::<R, std::convert::Infallible>(f(value)))?;
        Ok(done.unwrap_or_else(|never| match never {}))
    }

    /// Like [`update_bytes`](Self::update_bytes), but `f` decides whether to commit: `Ok(r)`
    /// commits (if the value is valid) and gives `Ok((r, version))`, `Err(e)` commits nothing
    /// and gives `Ok(Err(e))`. The outer error is the store's.
    pub fn try_update_bytes<R, E>(
        &self,
        f: impl FnOnce(&mut [u8]) -> std::result::Result<R, E>,
    ) -> Result<std::result::Result<(R, Version), E>> {
        let u = &self.inner;
        let hold = u.handle.hold(true, Wait::Forever, None)?;
        let mut value = vec![0u8; self.size()];
        u.copy_locked(&hold, 0, &mut value)?;
        let result = match f(&mut value) {
            Ok(result) => result,
            Err(e) => return Ok(Err(e)),
        };
        u.check_value(&value)?;
        Ok(Ok((result, self.publish(&hold, &value)?)))
    }

    /// Sleeps until the object's version differs from `since` (another commit, by any thread or
    /// process), and returns the new version; after `timeout` with no commit, fails with
    /// [`Error::Timeout`]. Like [`Shared::wait_for_change`](crate::Shared::wait_for_change),
    /// without the copy: load the value with [`load_into`](Self::load_into).
    pub fn wait_for_change(&self, since: Version, timeout: Duration) -> Result<Version> {
        self.inner.handle.wait_changed(since, Some(timeout))
    }
}

/// An array or byte region of a [`Store`], read and written as bytes of its stored element
/// layout: made by [`Store::untyped_array`].
///
/// Reads and writes take the entry's shared and exclusive lock, as
/// [`SharedArray::read_at`](crate::SharedArray::read_at) and
/// [`write_at`](crate::SharedArray::write_at) do, and are bounds-checked
/// ([`Error::OutOfBounds`]). Buffers must hold whole elements ([`Error::BufferSize`]). Elements
/// are validated against the stored schema both ways: a write of an invalid element is
/// [`Error::InvalidValue`] and writes nothing. After a migration of the entry, reads, writes and
/// waits fail with [`Error::LayoutMismatch`], and [`reopen`](Self::reopen) follows it.
#[derive(Clone, Debug)]
pub struct UntypedArray {
    inner: Untyped,
}

impl UntypedArray {
    /// The entry's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The entry's description, as [`Store::entries`] gives it.
    pub fn info(&self) -> &EntryInfo {
        &self.inner.info
    }

    /// The stored layout of one element (`u8` for a byte region).
    pub fn schema(&self) -> &Schema {
        &self.inner.schema
    }

    /// Whether this is a byte region ([`EntryKind::Bytes`]) rather than an array.
    pub fn is_bytes(&self) -> bool {
        self.inner.handle.entry.kind == EntryKind::Bytes
    }

    /// The number of elements.
    pub fn len(&self) -> u64 {
        self.inner.handle.entry.count
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The size of one element in bytes.
    pub fn elem_size(&self) -> usize {
        self.inner.elem_size() as usize
    }

    /// The stored element layout's fingerprint.
    pub fn fingerprint(&self) -> u64 {
        self.inner.handle.entry.fingerprint
    }

    /// Fails with [`Error::ForeignLayoutMismatch`] unless the elements are `elem_size` bytes of
    /// the layout with fingerprint `fingerprint`.
    pub fn expect_layout(&self, elem_size: u64, fingerprint: u64) -> Result<()> {
        self.inner.expect(elem_size, fingerprint)
    }

    /// The entry `name` opened again: after a migration, the handle of its new layout.
    pub fn reopen(&self) -> Result<UntypedArray> {
        self.inner.store().untyped_array(self.name())
    }

    /// This handle, writing with `durability` instead of the store's default.
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.inner.handle.durability = durability;
        self
    }

    /// The current [`Version`]: it changes with every write.
    pub fn version(&self) -> Version {
        self.inner.handle.version()
    }

    /// Checks that `len` bytes are whole elements that fit from element `start`, and returns the
    /// byte offset of `start`.
    fn range(&self, what: &'static str, start: u64, len: usize) -> Result<u64> {
        let size = self.inner.elem_size();
        let whole = if size == 0 { len == 0 } else { (len as u64).is_multiple_of(size) };
        if !whole {
            return Err(self.inner.buffer_size(what, len, false));
        }
        let count = (len as u64).checked_div(size).unwrap_or(0);
        let end = start.checked_add(count).filter(|&end| end <= self.len());
        if end.is_none() {
            return Err(Error::OutOfBounds {
                name: self.name().to_owned(),
                what,
                start,
                end: start.saturating_add(count),
                len: self.len(),
            });
        }
        // `end <= len`, and the entry's `len * size` bytes lie in the store, so this cannot
        // overflow.
        Ok(start * size)
    }

    fn validate(&self, start: u64, bytes: &[u8]) -> Result<()> {
        let u = &self.inner;
        let mut first = None;
        let _ = value::find_invalid_elements(&u.schema, bytes, "value", start, &mut |invalid| {
            first = Some(invalid);
            ControlFlow::Break(())
        });
        first.map_or(Ok(()), |invalid| Err(u.invalid(invalid)))
    }

    /// Copies elements `start..start + out.len() / elem_size` into `out` under the entry's shared
    /// lock, and returns the version they belong to. Validated: on [`Error::InvalidValue`], `out`
    /// holds the bytes read, which the caller must not use as values.
    pub fn read_at(&self, start: u64, out: &mut [u8]) -> Result<Version> {
        let offset = self.range("read_at", start, out.len())?;
        let version = self.inner.copy_current(offset, out)?;
        self.validate(start, out)?;
        Ok(version)
    }

    /// Copies `bytes` (whole elements) into elements `start..` under the entry's exclusive lock,
    /// and returns the version of the change. Every element is validated first: if one is
    /// invalid ([`Error::InvalidValue`]) or the range reaches past the end
    /// ([`Error::OutOfBounds`]), nothing is written.
    pub fn write_at(&self, start: u64, bytes: &[u8]) -> Result<Version> {
        let offset = self.range("write_at", start, bytes.len())?;
        self.validate(start, bytes)?;
        let u = &self.inner;
        let hold = u.handle.hold(true, Wait::Forever, None)?;
        u.write_locked(&hold, offset, bytes)
    }

    /// Sleeps until the entry's version differs from `since` (a write, by any thread or
    /// process), and returns the new version; after `timeout` with none, fails with
    /// [`Error::Timeout`].
    pub fn wait_for_change(&self, since: Version, timeout: Duration) -> Result<Version> {
        self.inner.handle.wait_changed(since, Some(timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::staging;
    use crate::{FixedStr, SharedLayout};
    use std::sync::atomic::Ordering;

    #[derive(SharedLayout, Clone, Copy, Debug, PartialEq)]
    #[repr(u8)]
    enum Mode {
        Fast = 1,
        Safe = 2,
    }

    #[derive(SharedLayout, Clone, Copy, Debug, PartialEq)]
    #[repr(C)]
    struct Config {
        port: u16,
        verbose: bool,
        mode: Mode,
        _pad: [u8; 4],
        max_conn: u64,
        name: FixedStr<8>,
    }

    const MODE_AT: usize = 3;

    fn config() -> Config {
        Config {
            port: 80,
            verbose: false,
            mode: Mode::Fast,
            _pad: [0; 4],
            max_conn: 7,
            name: FixedStr::new("a").unwrap(),
        }
    }

    fn bytes_of(mut c: Config) -> Vec<u8> {
        staging::owned_bytes(&mut c).to_vec()
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_create(dir.path().join("u.shm"), 1 << 20).unwrap();
        (dir, store)
    }

    #[test]
    fn an_untyped_object_loads_and_commits_what_the_typed_handle_sees() {
        let (_dir, store) = store();
        let typed = store.object_or_init("config", config).unwrap();
        let obj = store.untyped_object("config").unwrap();
        assert_eq!((obj.size(), obj.fingerprint()), (24, Config::LAYOUT.fingerprint));
        assert_eq!(obj.schema(), &Schema::from(&Config::LAYOUT));
        let (bytes, v) = obj.load().unwrap();
        assert_eq!((bytes, v), (bytes_of(config()), typed.version()));

        let new = Config { port: 8080, ..config() };
        let v2 = obj.store_bytes(&bytes_of(new)).unwrap();
        assert_eq!(typed.load_versioned().unwrap(), (new, v2));
        assert_eq!(v2.get(), v.get() + 1);

        let (port, v3) = obj.update_bytes(|b| u16::from_ne_bytes([b[0], b[1]])).unwrap();
        assert_eq!((port, v3.get()), (8080, v2.get() + 1));
        let refused = obj.try_update_bytes(|b| {
            b[0] = 1;
            Err::<(), _>("no")
        });
        assert_eq!(refused.unwrap(), Err("no"));
        assert_eq!((typed.load().unwrap().port, obj.version()), (8080, v3), "an Err from f commits nothing");
        assert!(obj.expect_layout(24, Config::LAYOUT.fingerprint).is_ok());
        assert!(matches!(obj.expect_layout(24, 1), Err(Error::ForeignLayoutMismatch { .. })));
        assert!(matches!(obj.expect_layout(16, Config::LAYOUT.fingerprint), Err(Error::ForeignLayoutMismatch { .. })));
    }

    #[test]
    fn invalid_values_and_wrong_sizes_commit_nothing() {
        let (_dir, store) = store();
        let typed = store.object_or_init("config", config).unwrap();
        let obj = store.untyped_object("config").unwrap();
        let v = obj.version();
        let mut bad = bytes_of(config());
        bad[MODE_AT] = 3;
        let err = obj.store_bytes(&bad).unwrap_err();
        assert!(matches!(&err, Error::InvalidValue { invalid, .. } if invalid.path == "value.mode"), "{err}");
        let err = obj.update_bytes(|b| b[MODE_AT] = 9).unwrap_err();
        assert!(matches!(err, Error::InvalidValue { .. }));
        let err = obj.store_bytes(&[0u8; 23]).unwrap_err();
        assert!(matches!(err, Error::BufferSize { len: 23, elem_size: 24, exact: true, .. }), "{err}");
        assert!(matches!(obj.load_into(&mut [0u8; 25]), Err(Error::BufferSize { .. })));
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            obj.update_bytes(|b| {
                b[0] = 99;
                panic!("in f")
            })
        }));
        assert!(panicked.is_err());
        assert_eq!((typed.load().unwrap(), obj.version()), (config(), v), "nothing was committed");
        assert!(obj.store_bytes(&bytes_of(config())).is_ok(), "and the lock was released");
    }

    #[test]
    fn store_bytes_if_refuses_a_stale_version() {
        let (_dir, store) = store();
        store.object_or_init("n", || 1u64).unwrap();
        let obj = store.untyped_object("n").unwrap();
        let (_, v) = obj.load().unwrap();
        let v2 = obj.store_bytes_if(&2u64.to_ne_bytes(), v).unwrap();
        let err = obj.store_bytes_if(&3u64.to_ne_bytes(), v).unwrap_err();
        assert!(
            matches!(err, Error::VersionConflict { expected, found, .. } if expected == v.get() && found == v2.get())
        );
        assert_eq!(store.object::<u64>("n").unwrap().load().unwrap(), 2);
    }

    #[test]
    fn an_object_holding_atomics_is_copied_and_written_in_place() {
        use std::sync::atomic::AtomicU32;
        #[derive(SharedLayout)]
        #[repr(C)]
        struct Hits {
            hits: AtomicU32,
            misses: AtomicU32,
        }
        let (_dir, store) = store();
        let typed =
            store.object_or_init("hits", || Hits { hits: AtomicU32::new(5), misses: AtomicU32::new(6) }).unwrap();
        let obj = store.untyped_object("hits").unwrap();
        assert!(!obj.is_double_buffered());
        let (bytes, _) = obj.load().unwrap();
        assert_eq!(bytes, [5u32.to_ne_bytes(), 6u32.to_ne_bytes()].concat());
        obj.store_bytes(&[7u32.to_ne_bytes(), 8u32.to_ne_bytes()].concat()).unwrap();
        assert_eq!(typed.read().unwrap().misses.load(Ordering::Relaxed), 8);
    }

    #[test]
    fn arrays_and_byte_regions_are_read_and_written_in_bounds() {
        let (_dir, store) = store();
        let typed = store.array_or_init("modes", 4, Mode::Safe).unwrap();
        let arr = store.untyped_array("modes").unwrap();
        assert_eq!((arr.len(), arr.elem_size(), arr.is_bytes()), (4, 1, false));
        let v = arr.write_at(1, &[1, 1]).unwrap();
        assert_eq!(v, typed.version());
        let mut out = [0u8; 4];
        arr.read_at(0, &mut out).unwrap();
        assert_eq!(out, [2, 1, 1, 2]);
        let err = arr.write_at(2, &[1, 7]).unwrap_err();
        assert!(matches!(&err, Error::InvalidValue { invalid, .. } if invalid.path == "value[3]"), "{err}");
        assert!(matches!(arr.write_at(3, &[1, 1]), Err(Error::OutOfBounds { start: 3, end: 5, len: 4, .. })));
        assert!(matches!(arr.read_at(u64::MAX, &mut [0u8; 1]), Err(Error::OutOfBounds { .. })));
        assert_eq!(typed.get(3).unwrap(), Mode::Safe, "nothing was written");

        store.array_or_init("wide", 3, 0u32).unwrap();
        let wide = store.untyped_array("wide").unwrap();
        assert!(matches!(wide.write_at(0, &[0u8; 6]), Err(Error::BufferSize { exact: false, .. })));

        let region = store.bytes_or_init("raw", 16).unwrap();
        let raw = store.untyped_array("raw").unwrap();
        assert!(raw.is_bytes());
        raw.write_at(4, b"abc").unwrap();
        let mut got = [0u8; 3];
        region.read_at(4, &mut got).unwrap();
        assert_eq!(&got, b"abc");
        assert!(matches!(store.untyped_object("raw"), Err(Error::KindMismatch { .. })));
        assert!(matches!(store.untyped_array("nope"), Err(Error::NotFound { .. })));
    }

    /// A waiter on an untyped handle is woken by a commit from another handle, and one that
    /// sees nothing times out.
    #[test]
    fn wait_for_change_returns_the_version_of_the_next_commit() {
        let (_dir, store) = store();
        store.object_or_init("n", || 1u64).unwrap();
        store.array_or_init("a", 2, 0u8).unwrap();
        let (obj, arr) = (store.untyped_object("n").unwrap(), store.untyped_array("a").unwrap());
        let (v, va) = (obj.version(), arr.version());
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| obj.wait_for_change(v, Duration::from_secs(24 * 3600)));
            let array_waiter = scope.spawn(|| arr.wait_for_change(va, Duration::from_secs(24 * 3600)));
            let committed = store.object::<u64>("n").unwrap().update(|n| *n += 1);
            assert!(committed.is_ok());
            store.array::<u8>("a").unwrap().set(1, 9).unwrap();
            assert_eq!(waiter.join().unwrap().unwrap().get(), v.get() + 1);
            assert_eq!(array_waiter.join().unwrap().unwrap().get(), va.get() + 1);
        });
        let quiet = obj.wait_for_change(obj.version(), Duration::ZERO);
        assert!(matches!(quiet, Err(Error::Timeout { .. })), "{quiet:?}");
    }

    #[test]
    fn a_read_only_store_is_read_and_never_written() {
        let (dir, store) = store();
        store.object_or_init("n", || 1u64).unwrap();
        store.array_or_init("a", 2, 5u8).unwrap();
        let ro = Store::options().read_only(true).open(dir.path().join("u.shm")).unwrap();
        let (obj, arr) = (ro.untyped_object("n").unwrap(), ro.untyped_array("a").unwrap());
        assert_eq!(obj.load().unwrap().0, 1u64.to_ne_bytes());
        let mut out = [0u8; 2];
        arr.read_at(0, &mut out).unwrap();
        assert_eq!(out, [5, 5]);
        assert!(matches!(obj.store_bytes(&2u64.to_ne_bytes()), Err(Error::ReadOnly { .. })));
        assert!(matches!(obj.update_bytes(|_| ()), Err(Error::ReadOnly { .. })));
        assert!(matches!(arr.write_at(0, &[1]), Err(Error::ReadOnly { .. })));
        assert_eq!(store.object::<u64>("n").unwrap().load().unwrap(), 1);
    }

    #[test]
    fn a_migrated_entry_is_a_layout_mismatch_until_reopened() {
        let (_dir, store) = store();
        store.object_or_init("n", || 5u32).unwrap();
        let obj = store.untyped_object("n").unwrap();
        let v = obj.version();
        store.migrate("n", |x: u32| u64::from(x) * 2).unwrap();
        for err in [
            obj.load().unwrap_err(),
            obj.store_bytes(&1u32.to_ne_bytes()).unwrap_err(),
            obj.wait_for_change(v, Duration::from_secs(3600)).unwrap_err(),
        ] {
            let Error::LayoutMismatch { expected_type, found_type, .. } = &err else { panic!("{err}") };
            assert_eq!((expected_type.as_str(), found_type.as_str()), ("u32", "u64"));
        }
        let new = obj.reopen().unwrap();
        assert_eq!(new.load().unwrap().0, 10u64.to_ne_bytes());

        store.array_or_init("a", 2, 3u16).unwrap();
        let arr = store.untyped_array("a").unwrap();
        store.migrate("a", |x: u16| u32::from(x) + 1).unwrap();
        assert!(matches!(arr.read_at(0, &mut [0u8; 2]), Err(Error::LayoutMismatch { .. })));
        assert!(matches!(arr.write_at(0, &[0u8; 2]), Err(Error::LayoutMismatch { .. })));
        let mut out = [0u8; 8];
        arr.reopen().unwrap().read_at(0, &mut out).unwrap();
        assert_eq!(out, [4u32.to_ne_bytes(), 4u32.to_ne_bytes()].concat().as_slice());
    }
}

//! A C ABI for shmstore: `include/shmstore.h` declares it, and this crate builds it as
//! `libshmstore_ffi.so` and `libshmstore_ffi.a`.
//!
//! C, C++ and any language with a C FFI become full peers of Rust processes: every call goes
//! through the library's untyped handles ([`shmstore::UntypedObject`],
//! [`shmstore::UntypedArray`]), so it takes the same locks, runs the same commit protocol,
//! validates values against the same stored layouts and follows the same migrations as a Rust
//! process does.
//!
//! # Conventions
//!
//! - Every function but [`shmstore_open`], [`shmstore_close`] and [`shmstore_last_error`]
//!   returns a [`ShmstoreStatus`]: `SHMSTORE_OK` (0), or an error code, whose message
//!   [`shmstore_last_error`] gives (the Rust [`shmstore::Error`]'s `Display`, or a message of this
//!   crate for bad arguments).
//! - Every pointer argument is checked for `NULL` (`SHMSTORE_ERR_NULL`) except the optional
//!   `version` out-parameters; sizes are checked against the entry's stored layout.
//! - A value's layout is given as its size and its fingerprint (the constants `shmstore header`
//!   emits next to each struct): a layout that is not the entry's is
//!   `SHMSTORE_ERR_LAYOUT_MISMATCH`, never a reinterpretation of the bytes.
//! - After a migration, calls follow the entry to its new record: if the new layout is the
//!   caller's, they succeed; if not, they fail with `SHMSTORE_ERR_LAYOUT_MISMATCH`. A load never
//!   returns bytes of a record that was migrated away before the load began.
//! - No panic crosses the ABI: one is caught and reported as `SHMSTORE_ERR_PANIC`.
//! - A store handle may be used from several threads at once.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use shmstore::{Error, Store, UntypedArray, UntypedObject, Version};

/// The result of a call: `SHMSTORE_OK`, or why it failed (the details are in
/// [`shmstore_last_error`]). Declared in C as `shmstore_status`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShmstoreStatus {
    /// Success.
    Ok = 0,
    /// A required pointer argument was `NULL`.
    Null = 1,
    /// An argument is invalid: a name or path that is not UTF-8, unknown flags, a size that
    /// overflows, a buffer that is not whole elements.
    Argument = 2,
    /// The store file does not exist.
    FileNotFound = 3,
    /// The store has no entry of this name.
    NotFound = 4,
    /// The entry's layout is not the caller's (size or fingerprint differ), for example because
    /// it was migrated to another layout.
    LayoutMismatch = 5,
    /// The entry is of another kind (an object where an array was asked for, or the reverse).
    KindMismatch = 6,
    /// A value is not valid for its layout (a `bool` that is not 0 or 1, an enum value that
    /// names no variant, a string that is not UTF-8): nothing was committed or returned.
    InvalidValue = 7,
    /// A range reaches past the end of an array.
    OutOfBounds = 8,
    /// Nothing changed within the timeout, or a lock stayed held.
    Timeout = 9,
    /// A conditional store found another version than the expected one.
    VersionConflict = 10,
    /// An update callback returned non-zero: nothing was committed.
    Aborted = 11,
    /// The store was opened read-only.
    ReadOnly = 12,
    /// The file is not a store, is corrupt, truncated, of another format version or byte order.
    BadStore = 13,
    /// An operating-system call failed.
    Io = 14,
    /// A panic inside the library (a bug in shmstore): caught before it reached the caller.
    Panic = 15,
    /// Any other error; the message says what it is.
    Other = 16,
}

/// Open the store read-only (`SHMSTORE_OPEN_READ_ONLY` in C).
pub const SHMSTORE_OPEN_READ_ONLY: u32 = 1;

/// How many times one call follows an entry that keeps being migrated under it.
const MAX_FOLLOW: u32 = 16;

/// A failed call: its status and its message.
struct Failure {
    status: ShmstoreStatus,
    message: String,
}

impl Failure {
    fn new(status: ShmstoreStatus, message: impl Into<String>) -> Failure {
        Failure { status, message: message.into() }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure { status: status_of(&e), message: e.to_string() }
    }
}

/// The status code of a library error.
fn status_of(e: &Error) -> ShmstoreStatus {
    use ShmstoreStatus as S;
    match e {
        Error::FileNotFound { .. } => S::FileNotFound,
        Error::NotFound { .. } => S::NotFound,
        Error::LayoutMismatch { .. } | Error::ForeignLayoutMismatch { .. } => S::LayoutMismatch,
        Error::KindMismatch { .. } => S::KindMismatch,
        Error::InvalidValue { .. } => S::InvalidValue,
        Error::OutOfBounds { .. } => S::OutOfBounds,
        Error::Timeout { .. } => S::Timeout,
        Error::VersionConflict { .. } => S::VersionConflict,
        Error::ReadOnly { .. } | Error::ReadOnlyFileSystem { .. } => S::ReadOnly,
        Error::InvalidName { .. } | Error::BufferSize { .. } | Error::InvalidOptions(_) => S::Argument,
        Error::NotAStore { .. }
        | Error::UnsupportedFormat { .. }
        | Error::WrongEndianness { .. }
        | Error::BadChecksum { .. }
        | Error::Truncated { .. }
        | Error::Corrupt { .. }
        | Error::NotRegularFile { .. } => S::BadStore,
        Error::Io { .. } => S::Io,
        _ => S::Other,
    }
}

thread_local! {
    /// The message of the last call of this thread that failed.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    // A message never holds a NUL (names cannot, paths cannot); if one did, it is shown escaped.
    let text = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|last| *last.borrow_mut() = text);
}

/// The message of `panic`, a caught panic's payload.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic.downcast_ref::<&str>().copied().or_else(|| panic.downcast_ref::<String>().map(String::as_str)).unwrap_or("")
}

/// Runs `f`, turning its failure or panic into a status and the thread's last error.
fn run(f: impl FnOnce() -> Result<(), Failure>) -> ShmstoreStatus {
    let failure = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return ShmstoreStatus::Ok,
        Ok(Err(failure)) => failure,
        Err(panic) => Failure::new(
            ShmstoreStatus::Panic,
            format!("shmstore panicked ({}): this is a bug in shmstore, please report it", panic_message(&*panic)),
        ),
    };
    set_last_error(&failure.message);
    failure.status
}

/// An open store, as C sees it (`shmstore *`): the store and this handle's untyped handles, by
/// entry name, so that a call does not look the entry up and decode its schema again.
pub struct Shmstore {
    store: Store,
    objects: Cache<UntypedObject>,
    arrays: Cache<UntypedArray>,
}

/// Handles by the bytes of their entry's name.
type Cache<H> = Mutex<HashMap<Box<[u8]>, Arc<H>, BuildHasherDefault<Fnv>>>;

/// FNV-1a, for the cache's keys: entry names are short, and the resistance of the default hasher to
/// chosen keys buys nothing in a cache of the caller's own names (it cost a fifth of a load).
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

// C callers share one `shmstore *` between threads (the header says they may): the compiler
// checks that this is sound.
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<Shmstore>()
};

/// Something a handle of either kind can be asked about.
trait Untyped: Sized {
    fn open(store: &Store, name: &str) -> Result<Self, Error>;
    fn expect_layout(&self, size: u64, fingerprint: u64) -> Result<(), Error>;
}

impl Untyped for UntypedObject {
    fn open(store: &Store, name: &str) -> Result<Self, Error> {
        store.untyped_object(name)
    }
    fn expect_layout(&self, size: u64, fingerprint: u64) -> Result<(), Error> {
        UntypedObject::expect_layout(self, size, fingerprint)
    }
}

impl Untyped for UntypedArray {
    fn open(store: &Store, name: &str) -> Result<Self, Error> {
        store.untyped_array(name)
    }
    fn expect_layout(&self, size: u64, fingerprint: u64) -> Result<(), Error> {
        UntypedArray::expect_layout(self, size, fingerprint)
    }
}

impl Shmstore {
    /// Runs `op` on the handle of entry `name`, checked against the caller's layout (`size`,
    /// `fingerprint`), following migrations: a cached handle whose layout is not the caller's, or
    /// whose entry was migrated under it, is replaced by a fresh lookup by name.
    fn with<H: Untyped, R>(
        &self,
        cache: &Cache<H>,
        name: &CStr,
        size: u64,
        fingerprint: u64,
        mut op: impl FnMut(&H) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let mut fresh = false;
        for _ in 0..MAX_FOLLOW {
            let handle = handle(&self.store, cache, name, fresh)?;
            if let Err(e) = handle.expect_layout(size, fingerprint) {
                // A cached handle may be of a record that was migrated since: look again.
                if fresh {
                    return Err(e);
                }
                fresh = true;
                continue;
            }
            match op(&handle) {
                Err(Error::LayoutMismatch { .. }) => fresh = true,
                result => return result,
            }
        }
        // Migrated under us MAX_FOLLOW times in a row: report the newest layout.
        let handle = handle(&self.store, cache, name, true)?;
        handle.expect_layout(size, fingerprint)?;
        op(&handle)
    }

    /// The current version of entry `name`, of any kind, from a fresh lookup (which replaces the
    /// cached handle).
    fn version_of(&self, name: &CStr) -> Result<Version, Error> {
        match handle(&self.store, &self.objects, name, true) {
            Ok(h) => Ok(h.version()),
            Err(Error::KindMismatch { .. }) => Ok(handle(&self.store, &self.arrays, name, true)?.version()),
            Err(e) => Err(e),
        }
    }
}

/// The cached handle of `name`, or a fresh one (looked up by name, so at the end of the entry's
/// migration chain) if `fresh` or if none is cached.
fn handle<H: Untyped>(store: &Store, cache: &Cache<H>, name: &CStr, fresh: bool) -> Result<Arc<H>, Error> {
    if !fresh {
        if let Some(handle) = cache.lock().unwrap_or_else(PoisonError::into_inner).get(name.to_bytes()) {
            return Ok(handle.clone());
        }
    }
    let text = name.to_str().map_err(|_| Error::InvalidName {
        name: name.to_string_lossy().into_owned(),
        reason: "it is not UTF-8: pass UTF-8 text".to_owned(),
    })?;
    let handle = Arc::new(H::open(store, text)?);
    cache.lock().unwrap_or_else(PoisonError::into_inner).insert(name.to_bytes().into(), handle.clone());
    Ok(handle)
}

// ------------------------------------------------------------------------------------------------
// Argument checks.

fn null(what: &str) -> Failure {
    Failure::new(ShmstoreStatus::Null, format!("{what} is NULL: pass a valid pointer"))
}

/// The store behind `store`.
///
/// # Safety
///
/// `store` is `NULL` or a pointer returned by [`shmstore_open`] and not yet closed.
unsafe fn store_arg<'a>(store: *const Shmstore) -> Result<&'a Shmstore, Failure> {
    // SAFETY: the caller passes NULL (refused here) or a live pointer from `shmstore_open`,
    // which is a `Box<Shmstore>` that stays alive until `shmstore_close`.
    unsafe { store.as_ref() }.ok_or_else(|| null("the store"))
}

/// The UTF-8 string `s`, named `what` in errors.
///
/// # Safety
///
/// `s` is `NULL` or points to a NUL-terminated string that lives for `'a`.
unsafe fn str_arg<'a>(s: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if s.is_null() {
        return Err(null(what));
    }
    // SAFETY: `s` is not NULL, and the caller vouches that it is NUL-terminated and alive.
    let s = unsafe { CStr::from_ptr(s) };
    s.to_str().map_err(|_| Failure::new(ShmstoreStatus::Argument, format!("{what} is not UTF-8: pass UTF-8 text")))
}

/// The entry name `name`, not yet checked to be UTF-8: [`handle`] checks it when it first looks
/// the name up, so that calls that find their handle in the cache skip the check.
///
/// # Safety
///
/// `name` is `NULL` or points to a NUL-terminated string that lives for `'a`.
unsafe fn name_arg<'a>(name: *const c_char) -> Result<&'a CStr, Failure> {
    if name.is_null() {
        return Err(null("the entry name"));
    }
    // SAFETY: `name` is not NULL, and the caller vouches that it is NUL-terminated and alive.
    Ok(unsafe { CStr::from_ptr(name) })
}

/// `ptr..ptr + len` as a byte slice.
///
/// # Safety
///
/// `ptr` is `NULL` or valid for reads of `len` bytes, which nothing writes for `'a`.
unsafe fn bytes_arg<'a>(ptr: *const c_void, len: usize, what: &str) -> Result<&'a [u8], Failure> {
    check_buffer(ptr.is_null(), len, what)?;
    // SAFETY: `ptr` is not NULL and, by the caller's contract, valid for reads of `len` bytes,
    // which are not written meanwhile; `len` fits in `isize`; `u8` needs no alignment.
    Ok(unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) })
}

/// `ptr..ptr + len` as a mutable byte slice.
///
/// # Safety
///
/// `ptr` is `NULL` or valid for writes of `len` bytes, which nothing else accesses for `'a`.
unsafe fn bytes_mut_arg<'a>(ptr: *mut c_void, len: usize, what: &str) -> Result<&'a mut [u8], Failure> {
    check_buffer(ptr.is_null(), len, what)?;
    // SAFETY: as in `bytes_arg`, for writes, and nothing else accesses the bytes meanwhile.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr.cast::<u8>(), len) })
}

/// What a caller's buffer must be before it is made a slice: not NULL, and at most `isize::MAX`
/// bytes long.
fn check_buffer(is_null: bool, len: usize, what: &str) -> Result<(), Failure> {
    if is_null {
        return Err(null(what));
    }
    if isize::try_from(len).is_err() {
        return Err(Failure::new(
            ShmstoreStatus::Argument,
            format!("{what}: {len} bytes is more than any buffer can be"),
        ));
    }
    Ok(())
}

/// The byte length of `count` elements of `elem_size` bytes.
fn elements_len(count: usize, elem_size: usize) -> Result<usize, Failure> {
    count.checked_mul(elem_size).ok_or_else(|| {
        Failure::new(ShmstoreStatus::Argument, format!("{count} elements of {elem_size} bytes overflow: ask for fewer"))
    })
}

/// Stores `version` in `*out` if `out` is not NULL.
///
/// # Safety
///
/// `out` is `NULL` or valid for a write of a `u64`.
unsafe fn put_version(out: *mut u64, version: Version) {
    if !out.is_null() {
        // SAFETY: not NULL, and valid for this write by the caller's contract.
        unsafe { out.write(version.get()) };
    }
}

/// What a call that fills the caller's buffer `out` returns: on success the version, stored in
/// `*version`; on failure `out` zeroed, so that no partial or invalid bytes reach the caller.
///
/// # Safety
///
/// As [`put_version`] for `version`.
unsafe fn filled(out: &mut [u8], version: *mut u64, result: shmstore::Result<Version>) -> Result<(), Failure> {
    match result {
        Ok(v) => {
            // SAFETY: the caller's contract for `version`.
            unsafe { put_version(version, v) };
            Ok(())
        }
        Err(e) => {
            out.fill(0);
            Err(e.into())
        }
    }
}

// ------------------------------------------------------------------------------------------------
// The ABI.

/// Opens the existing store at `path` (`flags`: 0, or `SHMSTORE_OPEN_READ_ONLY`). Returns the
/// store, or `NULL` with the reason in `*err` (if `err` is not `NULL`) and in
/// [`shmstore_last_error`]. Close it with [`shmstore_close`].
///
/// # Safety
///
/// `path` is `NULL` or a NUL-terminated string; `err` is `NULL` or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn shmstore_open(path: *const c_char, flags: u32, err: *mut ShmstoreStatus) -> *mut Shmstore {
    let mut opened = None;
    let status = run(|| {
        // SAFETY: the caller's contract for `path`.
        let path = unsafe { str_arg(path, "the path") }?;
        if flags & !SHMSTORE_OPEN_READ_ONLY != 0 {
            return Err(Failure::new(
                ShmstoreStatus::Argument,
                format!("unknown flags {flags:#x}: pass 0 or SHMSTORE_OPEN_READ_ONLY"),
            ));
        }
        let read_only = flags & SHMSTORE_OPEN_READ_ONLY != 0;
        let store = Store::options().read_only(read_only).open(Path::new(path))?;
        opened = Some(Box::new(Shmstore { store, objects: Mutex::default(), arrays: Mutex::default() }));
        Ok(())
    });
    if !err.is_null() {
        // SAFETY: not NULL, and valid for a write by the caller's contract.
        unsafe { err.write(status) };
    }
    opened.map_or(std::ptr::null_mut(), Box::into_raw)
}

/// Closes `store` (`NULL` is allowed, and does nothing). The store must not be used afterwards.
///
/// # Safety
///
/// `store` is `NULL` or a pointer returned by [`shmstore_open`] that was not closed yet, and no
/// other thread is using it.
#[no_mangle]
pub unsafe extern "C" fn shmstore_close(store: *mut Shmstore) {
    if store.is_null() {
        return;
    }
    // SAFETY: `store` came from `Box::into_raw` in `shmstore_open` and is closed only once (the
    // caller's contract), so we own it again.
    let store = unsafe { Box::from_raw(store) };
    // Dropping a store never panics by design; if it did, the panic must not cross the ABI.
    let _ = catch_unwind(AssertUnwindSafe(move || drop(store)));
}

/// The message of the last call on this thread that failed, as a NUL-terminated UTF-8 string
/// (empty if none has failed). It stays valid until the next failing call on this thread.
#[no_mangle]
pub extern "C" fn shmstore_last_error() -> *const c_char {
    LAST_ERROR.with(|last| last.borrow().as_ptr())
}

/// Copies the current value of the object `name` into `out` (`size` bytes), checked against the
/// caller's layout (`size` and `fingerprint`), and stores its version in `*version` (if not
/// `NULL`). The copy is consistent (never a mix of two commits) and validated. On failure, `out`
/// is zeroed.
///
/// # Safety
///
/// `store` is `NULL` or a live store; `name` is `NULL` or a NUL-terminated string; `out` is
/// `NULL` or valid for writes of `size` bytes; `version` is `NULL` or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn shmstore_load(
    store: *const Shmstore,
    name: *const c_char,
    out: *mut c_void,
    size: usize,
    fingerprint: u64,
    version: *mut u64,
) -> ShmstoreStatus {
    run(|| {
        // SAFETY (all three): the caller's contract for each argument.
        let (store, name) = unsafe { (store_arg(store)?, name_arg(name)?) };
        let out = unsafe { bytes_mut_arg(out, size, "the output buffer") }?;
        let loaded = store.with(&store.objects, name, size as u64, fingerprint, |h| h.load_into(out));
        // SAFETY: the caller's contract for `version`.
        unsafe { filled(out, version, loaded) }
    })
}

/// Commits `value` (`size` bytes of the caller's layout, checked with `size` and `fingerprint`)
/// as the new value of the object `name`, and stores the version it was committed as in
/// `*version` (if not `NULL`). An invalid value is `SHMSTORE_ERR_INVALID_VALUE`, and nothing is
/// committed.
///
/// # Safety
///
/// As for [`shmstore_load`], with `value` valid for reads of `size` bytes.
#[no_mangle]
pub unsafe extern "C" fn shmstore_store(
    store: *const Shmstore,
    name: *const c_char,
    value: *const c_void,
    size: usize,
    fingerprint: u64,
    version: *mut u64,
) -> ShmstoreStatus {
    run(|| {
        // SAFETY (all three): the caller's contract for each argument.
        let (store, name) = unsafe { (store_arg(store)?, name_arg(name)?) };
        let value = unsafe { bytes_arg(value, size, "the value")? };
        let v = store.with(&store.objects, name, size as u64, fingerprint, |h| h.store_bytes(value))?;
        // SAFETY: the caller's contract for `version`.
        unsafe { put_version(version, v) };
        Ok(())
    })
}

/// Like [`shmstore_store`], but commits only if the object is still at version `expected` (as
/// [`shmstore_load`] returned it); otherwise fails with `SHMSTORE_ERR_VERSION_CONFLICT` and
/// commits nothing: load, modify, and store with the loaded version, in a loop until it succeeds.
///
/// # Safety
///
/// As for [`shmstore_store`].
#[no_mangle]
pub unsafe extern "C" fn shmstore_store_if(
    store: *const Shmstore,
    name: *const c_char,
    value: *const c_void,
    size: usize,
    fingerprint: u64,
    expected: u64,
    version: *mut u64,
) -> ShmstoreStatus {
    run(|| {
        // SAFETY (all three): the caller's contract for each argument.
        let (store, name) = unsafe { (store_arg(store)?, name_arg(name)?) };
        let value = unsafe { bytes_arg(value, size, "the value")? };
        let expected = Version::from(expected);
        let v = store.with(&store.objects, name, size as u64, fingerprint, |h| h.store_bytes_if(value, expected))?;
        // SAFETY: the caller's contract for `version`.
        unsafe { put_version(version, v) };
        Ok(())
    })
}

/// The callback of [`shmstore_update`]: changes the `size` bytes at `value` in place, and returns
/// 0 to commit them or anything else to commit nothing. It runs under the entry's exclusive lock:
/// it must not use the same entry through the store, and must not unwind or `longjmp` out.
pub type ShmstoreUpdateFn = unsafe extern "C" fn(value: *mut c_void, size: usize, context: *mut c_void) -> c_int;

/// Runs `update(copy, size, context)` on a copy of the current value of the object `name` under
/// its exclusive lock, and commits the copy if the callback returns 0 (and the value is valid);
/// stores the new version in `*version` (if not `NULL`). A non-zero return is
/// `SHMSTORE_ERR_ABORTED`, and commits nothing. The callback is called at most once.
///
/// # Safety
///
/// As for [`shmstore_load`]; `update` is `NULL` or a function that may be called with `context`.
#[no_mangle]
pub unsafe extern "C" fn shmstore_update(
    store: *const Shmstore,
    name: *const c_char,
    size: usize,
    fingerprint: u64,
    update: Option<ShmstoreUpdateFn>,
    context: *mut c_void,
    version: *mut u64,
) -> ShmstoreStatus {
    run(|| {
        // SAFETY (both): the caller's contract for each argument.
        let (store, name) = unsafe { (store_arg(store)?, name_arg(name)?) };
        let update = update.ok_or_else(|| null("the update callback"))?;
        let done = store.with(&store.objects, name, size as u64, fingerprint, |h| {
            h.try_update_bytes(|value| {
                // SAFETY: `value` is a buffer of `size` bytes (the size was checked against the
                // entry) that lives for the call; `update` and `context` are the caller's, who
                // vouches that this call is valid.
                let rc = unsafe { update(value.as_mut_ptr().cast(), value.len(), context) };
                if rc == 0 {
                    Ok(())
                } else {
                    Err(rc)
                }
            })
        })?;
        match done {
            Ok(((), v)) => {
                // SAFETY: the caller's contract for `version`.
                unsafe { put_version(version, v) };
                Ok(())
            }
            Err(rc) => Err(Failure::new(
                ShmstoreStatus::Aborted,
                format!(
                    "the update callback of entry `{}` returned {rc}: nothing was committed",
                    name.to_string_lossy()
                ),
            )),
        }
    })
}

/// Copies elements `start..start + count` of the array or byte region `name` into `out`
/// (`count * elem_size` bytes), under the entry's shared lock, checked against the caller's
/// element layout (`elem_size`, `fingerprint`); stores the version in `*version` (if not `NULL`).
/// On failure, `out` is zeroed.
///
/// # Safety
///
/// As for [`shmstore_load`], with `out` valid for writes of `count * elem_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn shmstore_read_at(
    store: *const Shmstore,
    name: *const c_char,
    start: u64,
    out: *mut c_void,
    count: usize,
    elem_size: usize,
    fingerprint: u64,
    version: *mut u64,
) -> ShmstoreStatus {
    run(|| {
        // SAFETY (all three): the caller's contract for each argument.
        let (store, name) = unsafe { (store_arg(store)?, name_arg(name)?) };
        let out = unsafe { bytes_mut_arg(out, elements_len(count, elem_size)?, "the output buffer")? };
        let read = store.with(&store.arrays, name, elem_size as u64, fingerprint, |h| h.read_at(start, out));
        // SAFETY: the caller's contract for `version`.
        unsafe { filled(out, version, read) }
    })
}

/// Copies `count` elements (`count * elem_size` bytes of the caller's element layout) from
/// `values` into elements `start..` of the array or byte region `name`, under the entry's
/// exclusive lock; stores the version of the change in `*version` (if not `NULL`). An invalid
/// element or a range past the end writes nothing.
///
/// # Safety
///
/// As for [`shmstore_read_at`], with `values` valid for reads of `count * elem_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn shmstore_write_at(
    store: *const Shmstore,
    name: *const c_char,
    start: u64,
    values: *const c_void,
    count: usize,
    elem_size: usize,
    fingerprint: u64,
    version: *mut u64,
) -> ShmstoreStatus {
    run(|| {
        // SAFETY (all three): the caller's contract for each argument.
        let (store, name) = unsafe { (store_arg(store)?, name_arg(name)?) };
        let values = unsafe { bytes_arg(values, elements_len(count, elem_size)?, "the values")? };
        let v = store.with(&store.arrays, name, elem_size as u64, fingerprint, |h| h.write_at(start, values))?;
        // SAFETY: the caller's contract for `version`.
        unsafe { put_version(version, v) };
        Ok(())
    })
}

/// Sleeps until the version of entry `name` (an object, array or byte region) differs from
/// `since`, then stores the new version in `*version` (if not `NULL`); after `timeout_ms`
/// milliseconds with no change, fails with `SHMSTORE_ERR_TIMEOUT`. After a migration it returns
/// at once with the version of the entry's new record (a change, of the layout); the next call
/// with the caller's layout tells whether it can still read it.
///
/// # Safety
///
/// As for [`shmstore_load`].
#[no_mangle]
pub unsafe extern "C" fn shmstore_wait_for_change(
    store: *const Shmstore,
    name: *const c_char,
    since: u64,
    timeout_ms: u64,
    version: *mut u64,
) -> ShmstoreStatus {
    run(|| {
        // SAFETY (both): the caller's contract for each argument.
        let (store, name) = unsafe { (store_arg(store)?, name_arg(name)?) };
        let (since, timeout) = (Version::from(since), Duration::from_millis(timeout_ms));
        let waited = match handle(&store.store, &store.objects, name, false) {
            Ok(h) => h.wait_for_change(since, timeout),
            Err(Error::KindMismatch { .. }) => {
                handle(&store.store, &store.arrays, name, false).and_then(|h| h.wait_for_change(since, timeout))
            }
            Err(e) => Err(e),
        };
        let v = match waited {
            // The handle's record was migrated away: the entry changed, and now has the version
            // of its new record (and the cache holds the new record's handle).
            Err(Error::LayoutMismatch { .. }) => store.version_of(name)?,
            other => other?,
        };
        // SAFETY: the caller's contract for `version`.
        unsafe { put_version(version, v) };
        Ok(())
    })
}

/// Stores the current version of entry `name` (an object, array or byte region) in `*version`.
///
/// # Safety
///
/// As for [`shmstore_load`], with `version` not `NULL`.
#[no_mangle]
pub unsafe extern "C" fn shmstore_version(
    store: *const Shmstore,
    name: *const c_char,
    version: *mut u64,
) -> ShmstoreStatus {
    run(|| {
        // SAFETY (both): the caller's contract for each argument.
        let (store, name) = unsafe { (store_arg(store)?, name_arg(name)?) };
        if version.is_null() {
            return Err(null("the version"));
        }
        let v = store.version_of(name)?;
        // SAFETY: not NULL (checked), and valid for a write by the caller's contract.
        unsafe { put_version(version, v) };
        Ok(())
    })
}

/// Stores the number of elements of the array or byte region `name` in `*len`.
///
/// # Safety
///
/// As for [`shmstore_load`], with `len` not `NULL` and valid for a write.
#[no_mangle]
pub unsafe extern "C" fn shmstore_array_len(
    store: *const Shmstore,
    name: *const c_char,
    len: *mut u64,
) -> ShmstoreStatus {
    run(|| {
        // SAFETY (both): the caller's contract for each argument.
        let (store, name) = unsafe { (store_arg(store)?, name_arg(name)?) };
        if len.is_null() {
            return Err(null("the length"));
        }
        let n = handle(&store.store, &store.arrays, name, true)?.len();
        // SAFETY: not NULL (checked), and valid for a write by the caller's contract.
        unsafe { len.write(n) };
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        // SAFETY: `shmstore_last_error` returns a NUL-terminated string owned by this thread,
        // valid until the next failing call on it (none is made while it is read here).
        unsafe { CStr::from_ptr(shmstore_last_error()) }.to_str().unwrap().to_owned()
    }

    /// A panic inside a call stops at the ABI: the caller gets a status and a message.
    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let status = run(|| panic!("boom"));
        assert_eq!(status, ShmstoreStatus::Panic);
        assert_eq!(last_error(), "shmstore panicked (boom): this is a bug in shmstore, please report it");
        assert_eq!(run(|| Ok(())), ShmstoreStatus::Ok);
        assert!(last_error().starts_with("shmstore panicked (boom)"), "a success leaves the last error as it was");
    }

    #[test]
    fn a_message_with_a_nul_is_escaped() {
        set_last_error("a\0b");
        assert_eq!(last_error(), "a\\0b");
    }
}

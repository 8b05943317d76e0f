//! Making a new store file: planned ([`new_header`]), initialised in a staging file and linked
//! into place ([`create`]), or initialised in place when an empty file is adopted
//! ([`adopt_empty`]).

use std::fs::{self, File};
use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::file::map::Mapping;
use crate::format::header::{self, LOCK_BASE};
use crate::format::v2::{header as v2h, index as v2index};
use crate::options::{Durability, OpenOptions};
use crate::sys::file::Link;
use crate::sys::{self, sync};

/// The largest capacity any store can have: what a file offset (and this process's address
/// space) can express, `isize::MAX` bytes. Larger requests fail with [`Error::CapacityTooLarge`]
/// or [`Error::EntryTooLarge`].
pub(crate) const MAX_CAPACITY: u64 = isize::MAX as u64;

/// How [`create`] builds a new store.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Creation {
    /// The entries the first index table holds without growing ([`OpenOptions::max_entries`]).
    pub(crate) max_entries: Option<u32>,
    /// Whether the new file (and its name) are synced before it is used.
    pub(crate) durability: Durability,
    /// Whether its blocks are reserved on disk ([`OpenOptions::allocate`]).
    pub(crate) allocate: bool,
    /// Whether a file already at the path is an error ([`OpenOptions::create_new`]) rather than
    /// the store to open.
    pub(crate) exclusive: bool,
}

/// Refuses a capacity no store can have.
pub(super) fn check_capacity(path: &Path, capacity: u64) -> Result<()> {
    if capacity > MAX_CAPACITY {
        return Err(Error::CapacityTooLarge { path: path.to_owned(), requested: capacity, maximum: MAX_CAPACITY });
    }
    Ok(())
}

/// A new store's plan: its static header, the slots of its first index table, and its capacity
/// (`capacity` rounded up to what the header and that table need).
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewStore {
    pub(crate) header: v2h::Header,
    pub(crate) index_slots: u64,
    pub(crate) capacity: u64,
}

/// Plans a new store of `capacity` bytes whose first index table holds `max_entries` entries
/// (the default table if `None`).
fn new_header(path: &Path, capacity: u64, max_entries: Option<u32>) -> Result<NewStore> {
    let index_slots = match max_entries {
        None => v2index::MIN_SLOTS,
        Some(n) if n == 0 || n > header::MAX_SLOTS => {
            return Err(Error::InvalidOptions("max_entries must be between 1 and 1048576"));
        }
        Some(n) => (u64::from(n) * 2).next_power_of_two().max(v2index::MIN_SLOTS),
    };
    check_capacity(path, capacity)?;
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let needed = (v2h::DATA_OFFSET + v2index::table_len(index_slots)).next_multiple_of(8192);
    let capacity = capacity.max(needed).max(v2h::min_capacity());
    let header =
        v2h::Header { initial_capacity: capacity, created_unix_nanos: created, max_entries: max_entries.unwrap_or(0) };
    Ok(NewStore { header, index_slots, capacity })
}

/// Writes a new store into the empty file `file` (found at `path`): its length (or its reserved
/// blocks, with `allocate`), then its header, open state, live words and first index table,
/// synced with [`Durability::PowerLoss`] (by `msync`, then the length by `fsync`).
fn initialise(path: &Path, file: &File, plan: &NewStore, how: &Creation) -> Result<()> {
    let io = |op, source| Error::Io { op, path: path.to_owned(), source };
    let capacity = plan.capacity;
    if how.allocate {
        sync::allocate(path, file, 0, capacity).map_err(|e| disk_error(path, capacity, "allocate", e))?;
    } else {
        sync::set_len(path, file, capacity).map_err(|e| disk_error(path, capacity, "grow", e))?;
    }
    let index_end = v2h::DATA_OFFSET + v2index::table_len(plan.index_slots);
    let map = Mapping::new(file, index_end, false).map_err(|e| io("map", e))?;
    let written = map.write(0, &plan.header.encode())
        && map.write(v2h::OPEN_STATE_OFFSET, &crate::file::lock_mode::initial_state().encode())
        && map.write(v2h::DATA_OFFSET, &v2index::encode_header(plan.index_slots));
    debug_assert!(written, "the header and the first index fit in their own mapping");
    let live = |offset| map.atomic_u64(offset).expect("live words lie inside the header");
    live(v2h::CAPACITY).store(capacity, Ordering::Release);
    live(v2h::GENERATION).store(0, Ordering::Release);
    live(v2h::ALLOC_END).store(index_end.next_multiple_of(64), Ordering::Release);
    live(v2h::INDEX_ROOT).store(v2h::DATA_OFFSET, Ordering::Release);
    live(v2h::NEXT_SERIAL).store(1, Ordering::Release);
    if how.durability == Durability::PowerLoss {
        // The header was written through the mapping: msync it, then fsync for the length.
        map.flush(path).map_err(|e| io("msync", e))?;
        sync::fsync(path, file).map_err(|e| io("fsync", e))?;
    }
    Ok(())
}

/// The error for a failed extension of a store file to `capacity` bytes.
pub(super) fn disk_error(path: &Path, capacity: u64, op: &'static str, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => Error::DiskFull { path: path.to_owned(), requested: capacity },
        Some(libc::EFBIG) => {
            Error::CapacityTooLarge { path: path.to_owned(), requested: capacity, maximum: MAX_CAPACITY }
        }
        _ => Error::Io { op, path: path.to_owned(), source: e },
    }
}

/// Creates a store at `path` if there is none (returning whether this call linked it), without ever exposing a half-written file: the
/// store is built in a temporary file beside `path` and hard-linked into place, which fails if
/// another process got there first (and then its store is the one everybody opens, unless
/// `how.exclusive` makes that [`Error::AlreadyExists`]).
///
/// A capacity below what the header and catalog need is rounded up to it.
///
/// With [`Durability::PowerLoss`], the new file (its header and its length) is synced before it
/// is linked, and the directory after, so that once this returns a power loss can neither lose
/// the store nor leave a name for a file that is empty or shorter than its header says. With
/// [`Durability::Process`] nothing is synced: the page cache is shared by every process, so
/// nobody needs the disk to see the new store.
pub(crate) fn create(path: &Path, capacity: u64, how: &Creation) -> Result<bool> {
    let io = |op, source| Error::Io { op, path: path.to_owned(), source };
    let plan = new_header(path, capacity, how.max_entries)?;
    let file_name = path.file_name().ok_or_else(|| io("create", io::Error::from(io::ErrorKind::InvalidInput)))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    // Unique per process, per thread and per attempt, so concurrent creators never collide.
    static ATTEMPT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let attempt = ATTEMPT.fetch_add(1, Ordering::Relaxed);
    tmp_name.push(format!(".{}.{attempt}.{}.creating", std::process::id(), plan.header.created_unix_nanos));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| create_error(path, e))?;
        initialise(&tmp, &file, &plan, how).map_err(|e| at_path(e, path))?;
        let mut linked = true;
        match fs::hard_link(&tmp, path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && how.exclusive => {
                return Err(Error::AlreadyExists { path: path.to_owned() });
            }
            // Another creator won: its store is the one to open; the directory sync below still
            // makes its name durable (its contents are its creator's to sync).
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => linked = false,
            Err(e) => return Err(create_error(path, e)),
        }
        if how.durability == Durability::PowerLoss {
            // One directory sync covers the new name and the temporary one's removal.
            let _ = fs::remove_file(&tmp);
            sync::fsync_dir(parent_dir(path)).map_err(|e| io("fsync the directory of", e))?;
        }
        Ok(linked)
    })();
    let _ = fs::remove_file(&tmp);
    result
}

/// Reports an error about the staging file of [`create`] against the store's path.
fn at_path(e: Error, path: &Path) -> Error {
    match e {
        Error::Io { op, source, .. } => Error::Io { op, path: path.to_owned(), source },
        Error::DiskFull { requested, .. } => Error::DiskFull { path: path.to_owned(), requested },
        other => other,
    }
}

/// The error for a failed creation of a file beside `path`.
fn create_error(path: &Path, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::EROFS) => Error::ReadOnlyFileSystem { path: path.to_owned() },
        Some(libc::ENOSPC | libc::EDQUOT) => Error::DiskFull { path: path.to_owned(), requested: 0 },
        _ => Error::Io { op: "create", path: path.to_owned(), source: e },
    }
}

/// Makes the empty file `file` (found at `path`, on which the caller holds the shared `flock`) a
/// new store with the capacity and catalog `opts` ask for. Returns `false` if it turned out not
/// to be empty, or no longer at `path`, once the lock was held: the caller looks again.
///
/// The initialisation happens under the store's catalog lock (an OFD byte-range lock, which
/// conflicts across processes and, unlike `flock`, is independent of the shared `flock` every
/// opener holds), so that of several processes adopting the file at once, exactly one writes the
/// header; the others wait for it and then find a store. Every open of a non-empty file takes
/// that lock shared for a moment before it reads the header, so no opener sees the file extended
/// but its header not yet written.
pub(super) fn adopt_empty(path: &Path, file: &File, opts: &OpenOptions) -> Result<bool> {
    let io = |op, source| Error::Io { op, path: path.to_owned(), source };
    let capacity = opts.capacity.ok_or_else(|| Error::CapacityRequired { path: path.to_owned() })?;
    let plan = new_header(path, capacity, opts.max_entries)?;
    sys::lock_range(file, LOCK_BASE, sys::LockKind::Exclusive, true).map_err(|e| io("lock", e))?;
    let result = (|| {
        let empty = file.metadata().map_err(|e| io("stat", e))?.len() == 0;
        if !empty || sys::file::link_state(path, file).map_err(|e| io("stat", e))? != Link::Linked {
            return Ok(false);
        }
        let how = Creation {
            max_entries: opts.max_entries,
            durability: opts.durability,
            allocate: opts.allocate,
            exclusive: false,
        };
        if let Err(e) = initialise(path, file, &plan, &how) {
            // Leave it empty, as it was, rather than half initialised.
            let _ = sync::set_len(path, file, 0);
            return Err(e);
        }
        Ok(true)
    })();
    let _ = sys::unlock_range(file, LOCK_BASE);
    result
}

/// The directory that holds `path` (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

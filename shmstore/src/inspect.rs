//! Untyped access for tools: what a store holds, read without the Rust types that wrote it.
//!
//! Everything here works from the catalog and the layout descriptors stored in the file, so an
//! inspector, a dumper or a header exporter can open any store.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::file::copy;
use crate::file::lock::Wait;
use crate::file::state::{Format, StoreInner};
use crate::format::entry::Entry;
use crate::format::header;
use crate::format::schema::Schema;
use crate::format::v2::header as v2h;
use crate::store::{EntryInfo, Store};

/// Facts about a store as a whole; see [`Store::info`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreInfo {
    /// The store file.
    pub path: PathBuf,
    /// The file's format version.
    pub format_version: u32,
    /// Capacity in bytes.
    pub capacity: u64,
    /// Bytes in use: header, catalog and allocated data.
    pub used: u64,
    /// The growth generation: how many times the store has grown.
    pub generation: u64,
    /// The maximum number of entries.
    pub max_entries: u32,
    /// The number of entries.
    pub entries: u32,
    /// When the store was created, in nanoseconds since the Unix epoch.
    pub created_unix_nanos: u64,
    /// Where the data area starts.
    pub data_offset: u64,
}

impl Store {
    /// Facts about the store as a whole.
    pub fn info(&self) -> StoreInfo {
        let inner = self.inner();
        let (entries, created_unix_nanos, data_offset) = match &inner.format {
            Format::V1(h) => (
                inner.map().atomic_u32(header::ENTRY_COUNT_OFFSET).map_or(0, |c| c.load(Ordering::Acquire)),
                h.created_unix_nanos,
                h.data_offset,
            ),
            Format::V2(h) => {
                let count = inner.live_u64(v2h::ENTRY_COUNT).load(Ordering::Acquire);
                (u32::try_from(count).unwrap_or(u32::MAX), h.created_unix_nanos, v2h::DATA_OFFSET)
            }
        };
        StoreInfo {
            path: inner.path.clone(),
            format_version: self.format_version(),
            capacity: inner.capacity(),
            used: inner.alloc_end(),
            generation: inner.live_u64(inner.words.generation).load(Ordering::Acquire),
            max_entries: self.max_entries(),
            entries,
            created_unix_nanos,
            data_offset,
        }
    }

    /// What the entry `name` is: [`Error::NotFound`] if there is none.
    pub fn entry_info(&self, name: &str) -> Result<EntryInfo> {
        let found = self.inner().find(name)?;
        self.inner().entry_info(found.at, &found.entry)
    }

    /// The layout descriptor stored with the entry `name`, decoded: enough to interpret its bytes
    /// without the Rust type.
    pub fn schema(&self, name: &str) -> Result<Schema> {
        let found = self.inner().find(name)?;
        self.inner().stored_schema(&found.entry)
    }

    /// A consistent copy of the raw bytes of elements `start..start + count` of the entry `name`
    /// (for an object, element 0 is the value), taken under the entry's shared lock. Decode them
    /// with [`Store::schema`]. Out-of-range requests are [`Error::OutOfBounds`].
    pub fn read_raw(&self, name: &str, start: u64, count: u64) -> Result<Vec<u8>> {
        let inner = self.inner();
        let found = inner.find(name)?;
        let entry = found.entry.clone();
        let end = start.checked_add(count).filter(|&end| end <= entry.count);
        let Some(end) = end else {
            return Err(Error::OutOfBounds {
                name: name.to_owned(),
                what: "read_raw",
                start,
                end: start.saturating_add(count),
                len: entry.count,
            });
        };
        // The entry lies inside the store (checked when its record was read), so this is at most
        // the store's capacity; the buffer is still reserved fallibly, since the file can be far
        // larger than memory (a sparse file), and a failed reservation must not abort.
        let len = (end - start)
            .checked_mul(entry.elem_size)
            .and_then(|len| usize::try_from(len).ok())
            .ok_or_else(|| inner.corrupt(format!("entry `{name}` is too large to copy")))?;
        // Other holders of the shared lock may store to the entry's atomics meanwhile (through a
        // read guard's `&T`): the stored schema says where they are, so that they are read
        // atomically.
        let schema = inner.stored_schema(&entry)?;
        if schema.size != entry.elem_size {
            return Err(inner.corrupt(format!(
                "entry `{name}` has {}-byte elements, but its stored layout is {} bytes",
                entry.elem_size, schema.size
            )));
        }
        let mut bytes = Vec::new();
        bytes.try_reserve_exact(len).map_err(|_| {
            inner.io(
                "read_raw",
                std::io::Error::new(
                    std::io::ErrorKind::OutOfMemory,
                    format!("cannot allocate {len} bytes to copy entry `{name}` into: read fewer elements at a time"),
                ),
            )
        })?;
        bytes.resize(len, 0);
        if inner.cannot_lock() {
            // A read-only mapping in robust lock mode cannot take the entry's lock: copy
            // optimistically. A double-buffered object's slot is published whole, by one `seq`
            // store; an entry changed in place is checked against its `writer` word, and its
            // atomics are read at their own width (each whole, as under a shared lock).
            let check = || match found.serial {
                0 => Ok(()),
                serial => inner.v2_check_current(found.at, serial, &entry, None),
            };
            if entry.slot_count == 2 {
                let offset = |seq| entry.data_offset + (seq & 1) * entry.slot_stride + start * entry.elem_size;
                inner.copy_double_buffered(name, found.at, offset, &mut bytes, check)?;
            } else {
                let offset = entry.data_offset + start * entry.elem_size;
                inner.copy_unlocked(name, found.at, &schema, offset, &mut bytes, Wait::Forever, None, check)?;
            }
            return Ok(bytes);
        }
        let lock = inner.entry_lock(entry.lock_offset)?;
        let _held = inner.lock_entry(&lock, name, false, entry.slot_count != 2, Wait::Forever, None)?;
        if found.serial != 0 {
            inner.v2_check_current(found.at, found.serial, &entry, None)?;
        }
        let offset = inner.active_offset(found.at, &entry) + start * entry.elem_size;
        let map = inner.map();
        let Some(src) = map.ptr(offset, len as u64, 1) else {
            return Err(Error::BeyondMapping { name: name.to_owned(), mapped: map.len() });
        };
        // SAFETY: `ptr` checked that `len` bytes from `src` lie in `map`, which stays mapped while
        // `self` is borrowed; they are `end - start` values of the entry, whose stored schema is
        // `schema`; and `_held` is the entry's shared lock, held until we return.
        unsafe { copy::copy_shared(&schema, src, &mut bytes) };
        Ok(bytes)
    }
}

impl StoreInner {
    /// The public description of `entry`.
    pub(crate) fn entry_info(&self, at: u64, e: &Entry) -> Result<EntryInfo> {
        Ok(EntryInfo {
            type_name: self.stored_schema(e)?.display_name(),
            kind: e.kind,
            version: e.version,
            fingerprint: e.fingerprint,
            elem_size: e.elem_size,
            align: e.elem_align,
            len: e.count,
            bytes: e.data_len(),
            slots: e.slot_count,
            data_offset: e.data_offset,
            slot_stride: e.slot_stride,
            record_offset: at,
            seq_offset: at + self.words.seq,
            name: e.name.clone(),
        })
    }
}

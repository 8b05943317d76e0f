//! [`SharedBytes`]: a fixed-length region of raw bytes in a store, made by
//! [`Store::bytes_or_init`] and opened by [`Store::bytes`].
//!
//! A byte region is stored exactly like an array of `u8` (one slot, updated in place), under its
//! own entry kind, [`EntryKind::Bytes`], so that it cannot be opened by mistake as a typed array
//! or the other way round.

use std::fmt;
use std::ops::RangeBounds;
use std::time::Duration;

use crate::entry::commit::Version;
use crate::entry::guard::{ReadGuard, WriteGuard};
use crate::entry::handle::EntryHandle;
use crate::error::{Error, Result};
use crate::file::catalog::Found;
use crate::file::lock::Wait;
use crate::format::entry::EntryKind;
use crate::layout::SharedLayout;
use crate::options::Durability;
use crate::store::Store;
use crate::stream::ByteStream;
use crate::view::{self, ArrayView};

/// A handle to a named, fixed-length region of bytes in a [`Store`]: the checked answer to .NET's
/// `CreateViewAccessor(offset, length)` over raw bytes, with [`stream`](Self::stream) for
/// `CreateViewStream`.
///
/// Offsets are `u64`, like file offsets. Every access is bounds-checked: a range that reaches
/// past the end is [`Error::OutOfBounds`] and nothing is read or written, never a short copy.
/// Copies and guards lock the region against other threads and processes; the region is written
/// in place, so a process killed in the middle of a `write_at` can leave that range partly
/// written. Every write bumps the region's [`Version`].
///
/// ```
/// use std::io::{Read, Seek, SeekFrom, Write};
/// use shmstore::Store;
///
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open_or_create(dir.path().join("bytes.shm"), 1 << 20)?;
/// let region = store.bytes_or_init("greeting", 64)?; // 64 zero bytes
///
/// region.write_at(0, b"hello")?;
/// let mut buf = [0u8; 8];
/// region.read_at(0, &mut buf)?;
/// assert_eq!(&buf, b"hello\0\0\0");
/// assert!(region.write_at(60, b"world").is_err()); // 60..65 is past the end: nothing written
///
/// // A stream over the region: std::io::{Read, Write, Seek}, bounded by the region.
/// let mut stream = region.stream();
/// stream.seek(SeekFrom::Start(5))?;
/// write!(stream, ", world")?;
/// stream.rewind()?;
/// let mut text = String::new();
/// stream.take(12).read_to_string(&mut text)?;
/// assert_eq!(text, "hello, world");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SharedBytes {
    handle: EntryHandle,
}

impl Store {
    /// The byte region `name` of `len` bytes, created zero-filled if it does not exist yet. The
    /// zeros cost nothing: fresh store space is already zero, and stays sparse on disk until
    /// written. An existing region is opened as it is, whatever its length (check
    /// [`SharedBytes::len`]); an entry of another kind is [`Error::KindMismatch`].
    pub fn bytes_or_init(&self, name: &str, len: u64) -> Result<SharedBytes> {
        let found = self.inner().find_or_create(name, EntryKind::Bytes, &u8::LAYOUT, len, || vec![0])?;
        SharedBytes::open(self, found)
    }

    /// The existing byte region `name`: [`Error::NotFound`] if there is none,
    /// [`Error::KindMismatch`] if it is an object or an array.
    pub fn bytes(&self, name: &str) -> Result<SharedBytes> {
        let found = self.inner().find(name)?;
        SharedBytes::open(self, found)
    }
}

impl SharedBytes {
    fn open(store: &Store, found: Found) -> Result<SharedBytes> {
        store.typed::<u8>(found, EntryKind::Bytes).map(|handle| SharedBytes { handle })
    }

    /// The region's name in the store.
    pub fn name(&self) -> &str {
        self.handle.name()
    }

    /// The region's length in bytes.
    pub fn len(&self) -> u64 {
        self.handle.entry.count
    }

    /// Whether the region has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Changes the region's length to `new_len` bytes: the first `min(len, new_len)` are kept,
    /// new ones are zero. Crash-atomic, and other handles get
    /// [`Error::Moved`](crate::Error::Moved), as [`SharedArray::resize`](crate::SharedArray::resize)
    /// describes.
    pub fn resize(&mut self, new_len: u64) -> Result<()> {
        self.handle = self.handle.resize::<u8>(new_len, &[0])?;
        Ok(())
    }

    /// Bounds-checks bytes `offset..offset + count` and returns `offset` as an index.
    fn check(&self, what: &'static str, offset: u64, count: usize) -> Result<usize> {
        let len = self.len();
        let end = offset.checked_add(count as u64);
        match (end, usize::try_from(offset)) {
            (Some(end), Ok(at)) if end <= len => Ok(at),
            _ => Err(Error::OutOfBounds {
                name: self.name().to_owned(),
                what,
                start: offset,
                end: end.unwrap_or(u64::MAX),
                len,
            }),
        }
    }

    /// Copies bytes `offset..offset + out.len()` into `out`, under the region's shared lock.
    pub fn read_at(&self, offset: u64, out: &mut [u8]) -> Result<()> {
        let at = self.check("read_at", offset, out.len())?;
        out.copy_from_slice(&self.handle.read::<u8>(at, out.len(), Wait::Forever, None)?);
        Ok(())
    }

    /// Copies `data` into bytes `offset..offset + data.len()`, under the region's exclusive lock.
    /// If the range reaches past the end, nothing is written.
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        let at = self.check("write_at", offset, data.len())?;
        self.handle.overwrite(at, data)
    }

    /// A shared guard over the whole region: `&[u8]` while writers wait.
    pub fn read(&self) -> Result<ReadGuard<'_, [u8]>> {
        self.handle.read::<u8>(0, self.len() as usize, Wait::Forever, None)
    }

    /// Like [`read`](Self::read), but fails with [`Error::WouldBlock`] instead of waiting.
    pub fn try_read(&self) -> Result<ReadGuard<'_, [u8]>> {
        self.handle.read::<u8>(0, self.len() as usize, Wait::Never, None)
    }

    /// Like [`read`](Self::read), but fails with [`Error::Timeout`] after `timeout`.
    pub fn read_timeout(&self, timeout: Duration) -> Result<ReadGuard<'_, [u8]>> {
        self.handle.read::<u8>(0, self.len() as usize, Wait::timeout(timeout), Some(timeout))
    }

    /// An exclusive guard over the whole region: `&mut [u8]` while everyone else waits.
    pub fn write(&self) -> Result<WriteGuard<'_, [u8]>> {
        self.handle.write::<u8>(0, self.len() as usize, Wait::Forever, None)
    }

    /// Like [`write`](Self::write), but fails with [`Error::WouldBlock`] instead of waiting.
    pub fn try_write(&self) -> Result<WriteGuard<'_, [u8]>> {
        self.handle.write::<u8>(0, self.len() as usize, Wait::Never, None)
    }

    /// Like [`write`](Self::write), but fails with [`Error::Timeout`] after `timeout`.
    pub fn write_timeout(&self, timeout: Duration) -> Result<WriteGuard<'_, [u8]>> {
        self.handle.write::<u8>(0, self.len() as usize, Wait::timeout(timeout), Some(timeout))
    }

    /// A view of bytes `range` (for example `16..32`, `..8`, `100..`): `read_at`, `write_at`,
    /// `get`, `set` and guards relative to the view's start and checked against its end. A range
    /// that is reversed or reaches past the region's end is [`Error::OutOfBounds`]. Views index
    /// with `usize`, like every [`ArrayView`].
    pub fn view(&self, range: impl RangeBounds<u64>) -> Result<ArrayView<'_, u8>> {
        let (start, end) = view::resolve(range.start_bound().cloned(), range.end_bound().cloned(), self.len());
        ArrayView::new(&self.handle, self.name(), start, end, self.len())
    }

    /// A [`ByteStream`] over the whole region, at position 0: `std::io::{Read, Write, Seek}`
    /// bounded by the region (the typed `CreateViewStream()`). The same as
    /// [`stream_range(..)`](Self::stream_range), which cannot fail. The stream holds its own
    /// handle, so it may outlive `self`.
    pub fn stream(&self) -> ByteStream {
        ByteStream::new(self.clone(), 0..self.len())
    }

    /// A [`ByteStream`] over bytes `range` of the region (for example `16..32`, `..8`, `100..`), at
    /// position 0: the typed `CreateViewStream(offset, size)`, which is `stream_range(offset..offset
    /// + size)`.
    ///
    /// The stream sees only the window: its positions count from the window's start, reads stop
    /// at the window's end, [`SeekFrom::End`](std::io::SeekFrom::End) counts from that end, and a
    /// write that would reach past it fails with
    /// [`StorageFull`](std::io::ErrorKind::StorageFull) and writes nothing, exactly as
    /// [`stream`](Self::stream) treats the end of the region. A range that is reversed or reaches
    /// past the region's end is [`Error::OutOfBounds`]; an empty range gives a stream at its end.
    /// The stream holds its own handle, so it may outlive `self`.
    ///
    /// ```
    /// use std::io::{Read, Seek, SeekFrom, Write};
    /// use shmstore::Store;
    ///
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open_or_create(dir.path().join("window.shm"), 1 << 20)?;
    /// let region = store.bytes_or_init("records", 64)?;
    ///
    /// let mut second = region.stream_range(16..32)?; // the second 16-byte record
    /// second.write_all(b"record two")?;
    /// assert!(second.write_all(b", too long").is_err()); // 10 + 10 > 16: nothing is written
    /// second.seek(SeekFrom::End(-6))?; // 6 bytes before the window's end
    /// assert_eq!(second.position(), 10);
    ///
    /// let mut text = [0u8; 10];
    /// region.read_at(16, &mut text)?; // the window's position 0 is byte 16 of the region
    /// assert_eq!(&text, b"record two");
    /// assert!(region.stream_range(60..70).is_err()); // the window must fit
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stream_range(&self, range: impl RangeBounds<u64>) -> Result<ByteStream> {
        let len = self.len();
        let (start, end) = view::resolve(range.start_bound().cloned(), range.end_bound().cloned(), len);
        if start > end || end > len {
            return Err(Error::OutOfBounds { name: self.name().to_owned(), what: "stream_range", start, end, len });
        }
        Ok(ByteStream::new(self.clone(), start..end))
    }

    /// Whether a writer died holding this region's write lock since the flag was last cleared
    /// ([`clear_interrupted`](Self::clear_interrupted)): its last write may be half done.
    ///
    /// A region is written in place, with no rollback: a process killed in the middle of a
    /// `write_at`, a stream write or a write guard leaves the bytes it was writing as they were at
    /// that instant, some new and some old. Readers see them as soon as they can lock the region
    /// again; every earlier write is intact. In robust lock mode (the default) the next process to
    /// lock the region learns that the holder died and sets this flag first; in OFD lock mode the
    /// kernel releases a dead writer's lock silently, and the flag stays `false`. See
    /// [`SharedArray::interrupted`](crate::SharedArray::interrupted).
    pub fn interrupted(&self) -> Result<bool> {
        self.handle.interrupted()
    }

    /// Clears the [`interrupted`](Self::interrupted) flag, once the application has repaired or
    /// accepted what a dead writer left. Takes the write lock for a moment.
    pub fn clear_interrupted(&self) -> Result<()> {
        self.handle.clear_interrupted()
    }

    /// The current [`Version`]: it changes with every write, in any process.
    pub fn version(&self) -> Version {
        self.handle.version()
    }

    /// Sleeps until the region is written (by any thread or process) after `since`, and returns
    /// the new version; after `timeout` with no write, fails with [`Error::Timeout`] whose `waited_for`
    /// is [`WaitedFor::Change`](crate::WaitedFor::Change) (the one timeout error of the API).
    pub fn wait_for_change(&self, since: Version, timeout: Duration) -> Result<Version> {
        self.handle.wait_changed(since, Some(timeout))
    }

    /// This handle, with writes synced to disk ([`Durability::PowerLoss`]) or not.
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.handle.durability = durability;
        self
    }
}

impl Clone for SharedBytes {
    fn clone(&self) -> Self {
        SharedBytes { handle: self.handle.clone() }
    }
}

impl fmt::Debug for SharedBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBytes").field("name", &self.name()).field("len", &self.len()).finish()
    }
}

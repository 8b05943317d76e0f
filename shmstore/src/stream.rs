//! [`ByteStream`]: `std::io::{Read, Write, Seek}` over a byte region or a window of one, bounded
//! by it (the typed `CreateViewStream`).

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;

use crate::bytes::SharedBytes;
use crate::error::Error;

/// A cursor over a [`SharedBytes`] region, made by [`SharedBytes::stream`], or over a window of
/// one, made by [`SharedBytes::stream_range`]: `std::io::Read`, `Write` and `Seek`, bounded by the
/// region or the window, so it works with `write!`, `io::copy`, `read_to_string`, `BufReader` and
/// the rest of `std::io`.
///
/// A stream over a window (.NET's `CreateViewStream(offset, size)`) behaves exactly like a stream
/// over a region that holds only the window's bytes: positions count from the window's start,
/// [`SeekFrom::End`] counts from its end, and the bytes outside it can be neither read nor written
/// through the stream. Below, "the end" is the end of the window, which for
/// [`stream`](SharedBytes::stream) is the end of the region.
///
/// The rules, like [`std::io::Cursor`] over a fixed-length buffer except that it never writes
/// part of a buffer:
///
/// - **Reads** stop at the end: a read at or past the end returns `Ok(0)` (end of file).
///   [`read_exact`](Read::read_exact) either fills the whole buffer or fails with
///   [`UnexpectedEof`](io::ErrorKind::UnexpectedEof) without moving the position.
/// - **Writes** never extend or truncate: a write that does not fit entirely between the position
///   and the end fails with [`StorageFull`](io::ErrorKind::StorageFull), writes nothing and leaves
///   the position where it was; a write that fits is written whole. So
///   [`write_all`](Write::write_all) of too much data is an error, not a silent truncation. (A
///   multi-part write such as `write!` or [`io::copy`] makes several writes: the parts before the
///   one that did not fit have landed.) Writing an empty buffer does nothing and returns `Ok(0)`.
/// - **Seeking** anywhere at or after 0 is allowed, past the end too (reads there return 0, writes
///   fail); seeking before 0 fails with [`InvalidInput`](io::ErrorKind::InvalidInput).
///
/// **A stream is not a transaction.** Each `read` or `write` call takes the region's lock (shared
/// or exclusive) for its own duration only, so another thread or process may write the region
/// between two calls; use [`SharedBytes::write`] or [`SharedBytes::read`] guards to hold the lock
/// across several operations. (`read_to_end`, `read_to_string` and `read_exact` copy under one
/// lock.) [`flush`](Write::flush) does nothing: there is no buffer, every write is visible to every
/// process as soon as it returns. Use [`Store::flush`](crate::Store::flush), or a handle with
/// [`Durability::PowerLoss`](crate::Durability::PowerLoss), to reach the disk.
///
/// Errors from the store (a read-only store, a lock failure) come back as `io::Error`s wrapping
/// the [`shmstore::Error`](crate::Error), which `io::Error::get_ref` and `downcast_ref` recover.
///
/// ```
/// use std::io::{Read, Seek, SeekFrom, Write};
/// use shmstore::Store;
///
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open_or_create(dir.path().join("stream.shm"), 1 << 20)?;
/// let mut stream = store.bytes_or_init("log", 16)?.stream();
///
/// stream.write_all(b"0123456789")?;
/// assert_eq!(stream.position(), 10);
/// let err = stream.write_all(b"abcdefgh").unwrap_err(); // 10 + 8 > 16: nothing is written
/// assert_eq!(err.kind(), std::io::ErrorKind::StorageFull);
/// stream.write_all(b"abcdef")?; // exactly to the end
///
/// stream.seek(SeekFrom::End(-6))?;
/// let mut tail = String::new();
/// stream.read_to_string(&mut tail)?;
/// assert_eq!(tail, "abcdef");
/// assert_eq!(stream.read(&mut [0u8; 4])?, 0); // end of the region
/// assert!(stream.seek(SeekFrom::Current(-100)).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct ByteStream {
    region: SharedBytes,
    /// The first byte of the window, as an offset in the region.
    start: u64,
    /// The window's length: `start + len` is at most the region's length.
    len: u64,
    /// The position, counted from `start`; it may lie past `len`.
    pos: u64,
}

impl ByteStream {
    /// A stream over bytes `window` of `region`, at position 0. The caller has checked that the
    /// window lies within the region.
    pub(crate) fn new(region: SharedBytes, window: Range<u64>) -> ByteStream {
        debug_assert!(window.start <= window.end && window.end <= region.len());
        ByteStream { region, start: window.start, len: window.end - window.start, pos: 0 }
    }

    /// The position of the next read or write, in bytes from the start of the stream's window (the
    /// start of the region, for [`SharedBytes::stream`]). It may lie past the end.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The bytes of the region the stream reads and writes, as offsets in the region: `0..len` for
    /// [`SharedBytes::stream`], the window for [`SharedBytes::stream_range`]. Position 0 of the
    /// stream is byte `range().start` of the region.
    pub fn range(&self) -> Range<u64> {
        self.start..self.start + self.len
    }

    /// Moves to `pos`, like [`SeekFrom::Start`].
    pub fn set_position(&mut self, pos: u64) {
        self.pos = pos;
    }

    /// The region the stream reads and writes.
    pub fn get_ref(&self) -> &SharedBytes {
        &self.region
    }

    /// The region, dropping the stream.
    pub fn into_inner(self) -> SharedBytes {
        self.region
    }

    /// Bytes from the position to the end (0 past the end), as a buffer length.
    fn remaining(&self) -> io::Result<usize> {
        let n = self.len.saturating_sub(self.pos);
        usize::try_from(n).map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, "the region is too large to copy"))
    }

    /// The region offset of the position. Only called when the position is at or before the end,
    /// so it cannot overflow: `start + pos <= start + len <= region.len()`.
    fn offset(&self) -> u64 {
        self.start + self.pos
    }

    /// What the stream covers, for messages: "byte region `log`", or "bytes 16..32 of byte region
    /// `log`" for a window that is not the whole region.
    fn describe(&self) -> String {
        if self.start == 0 && self.len == self.region.len() {
            format!("byte region `{}`", self.region.name())
        } else {
            format!(
                "the stream's window, bytes {}..{} of byte region `{}`,",
                self.start,
                self.start + self.len,
                self.region.name()
            )
        }
    }
}

/// A store error as an `io::Error` of a fitting kind, keeping the error itself as the source.
fn to_io(e: Error) -> io::Error {
    let kind = match &e {
        Error::Io { source, .. } => source.kind(),
        Error::WouldBlock { .. } => io::ErrorKind::WouldBlock,
        Error::Timeout { .. } => io::ErrorKind::TimedOut,
        Error::ReadOnly { .. } => io::ErrorKind::PermissionDenied,
        Error::OutOfBounds { .. } => io::ErrorKind::InvalidInput,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e)
}

impl Read for ByteStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.remaining()?.min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        self.region.read_at(self.offset(), &mut buf[..n]).map_err(to_io)?;
        self.pos += n as u64;
        Ok(n)
    }

    /// Copies everything from the position to the end under one lock: a consistent snapshot.
    fn read_to_end(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        let n = self.remaining()?;
        let start = buf.len();
        buf.try_reserve(n).map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, "no memory for the copy"))?;
        buf.resize(start + n, 0);
        if n > 0 {
            if let Err(e) = self.region.read_at(self.offset(), &mut buf[start..]) {
                buf.truncate(start);
                return Err(to_io(e));
            }
        }
        self.pos += n as u64;
        Ok(n)
    }

    /// Like [`read_to_end`](Self::read_to_end); if the bytes are not UTF-8, `buf` and the position
    /// are left as they were (as [`std::io::Cursor`] does).
    fn read_to_string(&mut self, buf: &mut String) -> io::Result<usize> {
        let mut bytes = Vec::new();
        let pos = self.pos;
        self.read_to_end(&mut bytes)?;
        match String::from_utf8(bytes) {
            Ok(text) => {
                buf.push_str(&text);
                Ok(text.len())
            }
            Err(_) => {
                self.pos = pos;
                Err(io::Error::new(io::ErrorKind::InvalidData, "stream did not contain valid UTF-8"))
            }
        }
    }

    /// Fills all of `buf` under one lock, or fails with `UnexpectedEof` without moving the position
    /// if fewer bytes are left.
    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        if self.remaining()? < buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} has {} bytes after position {}, fewer than the {} asked for",
                    self.describe(),
                    self.len.saturating_sub(self.pos),
                    self.pos,
                    buf.len()
                ),
            ));
        }
        if !buf.is_empty() {
            self.region.read_at(self.offset(), buf).map_err(to_io)?;
            self.pos += buf.len() as u64;
        }
        Ok(())
    }
}

impl Write for ByteStream {
    /// Writes all of `buf`, or nothing: see [`ByteStream`].
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let len = self.len;
        let end = self.pos.checked_add(buf.len() as u64).filter(|&end| end <= len);
        let Some(end) = end else {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!(
                    "{} is {len} bytes long: writing {} bytes at position {} would end past it; \
                     nothing was written (a ByteStream never truncates a write)",
                    self.describe(),
                    buf.len(),
                    self.pos
                ),
            ));
        };
        self.region.write_at(self.offset(), buf).map_err(to_io)?;
        self.pos = end;
        Ok(buf.len())
    }

    /// Does nothing: writes are not buffered.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for ByteStream {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let (base, offset) = match to {
            SeekFrom::Start(pos) => {
                self.pos = pos;
                return Ok(pos);
            }
            SeekFrom::End(offset) => (self.len, offset),
            SeekFrom::Current(offset) => (self.pos, offset),
        };
        match base.checked_add_signed(offset) {
            Some(pos) => {
                self.pos = pos;
                Ok(pos)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                if offset < 0 {
                    format!("cannot seek {offset} bytes from position {base}: that is before the start of the stream")
                } else {
                    format!("cannot seek {offset} bytes from position {base}: the position would overflow a u64")
                },
            )),
        }
    }

    fn stream_position(&mut self) -> io::Result<u64> {
        Ok(self.pos)
    }
}

//! The file mapping: the one place that turns offsets into pointers.
//!
//! Everything above this module speaks in byte offsets. [`Mapping`] checks every offset against
//! the mapped length (and alignment, for typed access) before it hands out a pointer or an atomic,
//! so a corrupt file or a bad offset becomes an error, never an access outside the mapping.
//!
//! # The outside world
//!
//! A shared mapping can be changed at any moment by any process that can write the file. What
//! this module guarantees holds against anyone: it never hands out a pointer or an atomic outside
//! the mapping, because every offset is checked against the mapped length (and alignment) when it
//! is turned into one, and a mapping is never unmapped while its store lives.
//!
//! Everything else assumes that every writer of the file *cooperates*: uses shmstore's byte-range
//! locks and the format's atomics, and never shrinks the file. Against such writers, the locks and
//! atomics make every access race-free, so the references handed out into the mapping are sound.
//! Against a writer that ignores them, nothing can be: validation happens when a value is read
//! (a guard validates once, when it is taken), so such a writer can change a validated `bool`,
//! enum or `FixedStr` under a live guard's `&T`, or race with a copy; in Rust's memory model both
//! are undefined behaviour, which no later check can undo. What validation does catch is bytes
//! left invalid *before* the read (by a writer killed mid-write, or a file written by anything at
//! rest): they give [`Error::InvalidValue`](crate::Error::InvalidValue), never a `T`. A process
//! that *truncates* the file makes the kernel deliver `SIGBUS` on the next access to the lost
//! pages, which no library can intercept soundly; so every [`Store`](crate::Store) holds a shared
//! `flock` on its file for its whole life, and tools that shrink or replace a store file must take
//! the exclusive `flock` first. `docs/threat-model-draft.md` states the whole threat model.

use std::fs::File;
use std::io;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

use memmap2::{MmapOptions, MmapRaw};

use crate::sys::{self, sync::SyncOp};

/// A shared mapping of the first `len` bytes of a store file.
#[derive(Debug)]
pub(crate) struct Mapping {
    raw: MmapRaw,
}

impl Mapping {
    /// Maps `len` bytes of `file`, writable unless `read_only`.
    pub(crate) fn new(file: &File, len: u64, read_only: bool) -> io::Result<Mapping> {
        let len = usize::try_from(len).map_err(|_| io::Error::other("store is larger than the address space"))?;
        let mut opts = MmapOptions::new();
        opts.len(len);
        let raw = if read_only { opts.map_raw_read_only(file)? } else { opts.map_raw(file)? };
        Ok(Mapping { raw })
    }

    /// The mapped length in bytes.
    #[inline]
    pub(crate) fn len(&self) -> u64 {
        self.raw.len() as u64
    }

    /// The address of `offset`, if `offset..offset + len` lies inside the mapping and `offset`
    /// is a multiple of `align` (a power of two). The mapping starts page-aligned, so alignment of
    /// the offset is alignment of the address.
    #[inline]
    pub(crate) fn ptr(&self, offset: u64, len: u64, align: u64) -> Option<NonNull<u8>> {
        let end = offset.checked_add(len)?;
        if end > self.len() || !align.is_power_of_two() || !offset.is_multiple_of(align) || align > 4096 {
            return None;
        }
        // SAFETY: `offset <= end <= len`, so the result stays within (or one past the end of) the
        // mapped allocation, and `offset` fits in `usize` because the mapped length does.
        let p = unsafe { self.raw.as_mut_ptr().add(offset as usize) };
        NonNull::new(p)
    }

    /// Copies `out.len()` bytes starting at `offset` out of the mapping. `false` if out of bounds.
    ///
    /// Used for the immutable parts of headers and records (written once, before being published
    /// with a release store that the caller has acquired).
    pub(crate) fn read(&self, offset: u64, out: &mut [u8]) -> bool {
        let Some(src) = self.ptr(offset, out.len() as u64, 1) else { return false };
        // SAFETY: `ptr` checked that `out.len()` bytes from `src` lie in the mapping, which stays
        // mapped for `&self`'s lifetime; `out` is a distinct, exclusively borrowed buffer, so the
        // ranges cannot overlap. The bytes are plain `u8`, valid in any pattern.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), out.as_mut_ptr(), out.len()) };
        true
    }

    /// Copies `bytes` into the mapping at `offset`. `false` if out of bounds.
    ///
    /// The caller must hold the lock that gives it the range: the catalog lock for records and new
    /// data, or the entry's exclusive lock for its data. The mapping must be writable.
    pub(crate) fn write(&self, offset: u64, bytes: &[u8]) -> bool {
        let Some(dst) = self.ptr(offset, bytes.len() as u64, 1) else { return false };
        // SAFETY: `ptr` checked the bounds; the mapping is writable (callers only write to
        // read-write stores) and lives for `&self`; `bytes` is ordinary memory outside the mapping
        // or, if inside, the caller's lock guarantees no one else touches either range.
        unsafe { std::ptr::copy(bytes.as_ptr(), dst.as_ptr(), bytes.len()) };
        true
    }

    /// The `AtomicU64` at `offset`, which must be in bounds and 8-aligned.
    #[inline]
    pub(crate) fn atomic_u64(&self, offset: u64) -> Option<&AtomicU64> {
        let p = self.ptr(offset, 8, 8)?;
        // SAFETY: the pointer is in bounds for 8 bytes, 8-aligned, and valid for the lifetime of
        // `&self` (the mapping). Every process accesses these words only atomically (they are the
        // format's live words), and any bit pattern is a valid `u64`.
        Some(unsafe { AtomicU64::from_ptr(p.as_ptr().cast()) })
    }

    /// The `AtomicU32` at `offset`, which must be in bounds and 4-aligned.
    #[inline]
    pub(crate) fn atomic_u32(&self, offset: u64) -> Option<&AtomicU32> {
        let p = self.ptr(offset, 4, 4)?;
        // SAFETY: as for `atomic_u64`, for a 4-byte, 4-aligned word.
        Some(unsafe { AtomicU32::from_ptr(p.as_ptr().cast()) })
    }

    /// The `words` consecutive `AtomicU64`s at `offset`, which must be in bounds and 8-aligned.
    /// The data slots of double-buffered objects are only ever accessed through these (or under an
    /// entry lock that excludes every writer), so concurrent readers and committers never race
    /// non-atomically.
    #[inline]
    pub(crate) fn atomic_words(&self, offset: u64, words: usize) -> Option<&[AtomicU64]> {
        let p = self.ptr(offset, (words as u64).checked_mul(8)?, 8)?;
        // SAFETY: `ptr` checked that `words * 8` bytes from `p` are in the mapping and 8-aligned;
        // the mapping lives as long as `&self`; `AtomicU64` has the size and alignment of `u64`
        // and every bit pattern is valid; shared access through atomics is always sound.
        Some(unsafe { std::slice::from_raw_parts(p.as_ptr().cast::<AtomicU64>(), words) })
    }

    /// Asks the CPU to start loading the cache lines of `offset..offset + len` (if that lies
    /// inside the mapping), so that the loads that follow find them, or find them on their way:
    /// a hint that reads nothing, changes nothing and cannot fault (a line whose page this
    /// process has not touched yet is simply not fetched).
    #[inline]
    pub(crate) fn prefetch(&self, offset: u64, len: u64) {
        #[cfg(target_arch = "x86_64")]
        if let Some(p) = self.ptr(offset, len, 1) {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            for line in (0..len).step_by(64) {
                // SAFETY: `_mm_prefetch` is `unsafe` only because it is a `target_feature`
                // function, and SSE, the feature it needs, is part of every x86_64 target. A
                // prefetch does not access memory in the sense of the language (it neither reads
                // nor writes, and never faults), so any address would do; this one lies inside
                // the mapping anyway (`ptr` checked `offset..offset + len`, and `line < len`).
                unsafe { _mm_prefetch::<_MM_HINT_T0>(p.as_ptr().wrapping_add(line as usize).cast()) };
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (offset, len);
    }

    /// Writes dirty pages of `offset..offset + len` back to the file found at `path`, and waits
    /// until they are on disk (`msync(MS_SYNC)`, widened to whole pages). The file's length is not
    /// covered: after growth, use [`sys::sync::fdatasync`].
    ///
    /// `path` is only reported to the sync hook (see `sys/sync.rs`).
    pub(crate) fn flush_range(&self, path: &Path, offset: u64, len: u64) -> io::Result<()> {
        let (Ok(start), Ok(count)) = (usize::try_from(offset), usize::try_from(len)) else {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        };
        sys::sync::around(path, SyncOp::Msync { offset, len }, || self.raw.flush_range(start, count))
    }

    /// Writes every dirty page of the mapping back to the file found at `path`; see
    /// [`flush_range`](Self::flush_range).
    pub(crate) fn flush(&self, path: &Path) -> io::Result<()> {
        sys::sync::around(path, SyncOp::Msync { offset: 0, len: self.len() }, || self.raw.flush())
    }
}

/// Every mapping a store has made of its file, the newest one current.
///
/// When another process grows the store, this process maps the file again, larger. The older,
/// smaller mappings stay mapped until the store itself is dropped, so a reference or guard into
/// one of them (whose lifetime is bounded by the store's) never dangles, and no access ever lands
/// in an unmapped region. Growth is geometric, so the extra address space is at most the size of
/// the newest mapping, and the pages themselves are shared: they are the same file pages.
#[derive(Debug)]
pub(crate) struct Mappings {
    /// The newest mapping: always one of the boxes in `all`.
    current: AtomicPtr<Mapping>,
    /// Owns every mapping. The boxes are what keeps `&Mapping`s valid: the vector may move its
    /// elements when it grows, a box's contents never move.
    #[allow(clippy::vec_box)]
    all: Mutex<Vec<Box<Mapping>>>,
}

impl Mappings {
    /// A set holding the first mapping.
    pub(crate) fn new(first: Mapping) -> Mappings {
        let mut first = Box::new(first);
        let current = AtomicPtr::new(&mut *first as *mut Mapping);
        Mappings { current, all: Mutex::new(vec![first]) }
    }

    /// The newest mapping.
    #[inline]
    pub(crate) fn current(&self) -> &Mapping {
        // SAFETY: `current` always points into a `Box<Mapping>` owned by `self.all` (set in `new`
        // and `push`), and boxes are only dropped with `self`, so the pointee is valid and not
        // mutably borrowed for as long as `&self` is. `Mapping` is `Sync`.
        unsafe { &*self.current.load(Ordering::Acquire) }
    }

    /// Keeps every mapping mapped for the rest of the process's life, even after `self` is
    /// dropped: for a store whose memory a thread still refers to outside Rust's view (a robust
    /// mutex on the thread's robust list, left held by a leaked guard).
    pub(crate) fn leak(&self) {
        let mut all = self.all.lock().unwrap_or_else(|e| e.into_inner());
        for mapping in all.drain(..) {
            std::mem::forget(mapping);
        }
    }

    /// Makes `next` the newest mapping, unless a larger one is already current; returns the newest.
    pub(crate) fn push(&self, next: Mapping) -> &Mapping {
        let mut all = self.all.lock().unwrap_or_else(|e| e.into_inner());
        if next.len() > self.current().len() {
            let mut next = Box::new(next);
            self.current.store(&mut *next as *mut Mapping, Ordering::Release);
            all.push(next);
        }
        self.current()
    }
}

/// A piece of a store's mapping located once, to be used many times without looking it up again.
///
/// It stays valid for as long as the [`Mappings`] it came from: mappings are only unmapped when
/// the store is dropped. Whoever keeps one must keep that store alive, which is why reading it is
/// `unsafe`.
#[derive(Debug)]
pub(crate) struct Located<T: ?Sized> {
    ptr: NonNull<T>,
}

impl<T: ?Sized> Clone for Located<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: ?Sized> Copy for Located<T> {}

// SAFETY: a `Located` is only a way to reach a `T` that lives in shared memory and is itself only
// handed out as `&T`; the pointees are atomics (`Sync`), so reaching them from any thread is fine.
unsafe impl<T: ?Sized + Sync> Send for Located<T> {}
// SAFETY: as above.
unsafe impl<T: ?Sized + Sync> Sync for Located<T> {}

impl<T: ?Sized> Located<T> {
    /// The located value.
    ///
    /// # Safety
    ///
    /// The store whose [`Mappings`] produced this (through [`Mapping::locate_u64`] and friends)
    /// must be alive for all of `'a`.
    #[inline]
    pub(crate) unsafe fn get<'a>(self) -> &'a T {
        // SAFETY: the pointer came from a reference into a mapping that stays mapped while its
        // store lives (see `Mappings`), which the caller guarantees for `'a`.
        unsafe { self.ptr.as_ref() }
    }

    /// A `T` that is not in a mapping but lives forever (a stand-in, such as a word that never
    /// changes where a mapping has none).
    pub(crate) fn of_static(value: &'static T) -> Located<T> {
        Located { ptr: NonNull::from(value) }
    }

    /// The located address, for the unsafe copies of `view` (which state their own contracts).
    pub(crate) fn ptr(self) -> NonNull<u8> {
        self.ptr.cast()
    }
}

impl Mapping {
    /// [`Mapping::atomic_u64`], located for later use.
    pub(crate) fn locate_u64(&self, offset: u64) -> Option<Located<AtomicU64>> {
        self.atomic_u64(offset).map(|r| Located { ptr: NonNull::from(r) })
    }

    /// [`Mapping::atomic_u32`], located for later use.
    pub(crate) fn locate_u32(&self, offset: u64) -> Option<Located<AtomicU32>> {
        self.atomic_u32(offset).map(|r| Located { ptr: NonNull::from(r) })
    }

    /// A `T` at `offset`, located for later use, if `offset..offset + size_of::<T>()` lies in the
    /// mapping and `offset` is aligned for `T`. Whoever reads it as a `&T` proves that the bytes
    /// are a valid `T` and that nobody writes them but through `T`'s atomics.
    pub(crate) fn locate<T>(&self, offset: u64) -> Option<Located<T>> {
        let ptr = self.ptr(offset, std::mem::size_of::<T>() as u64, std::mem::align_of::<T>() as u64)?;
        Some(Located { ptr: ptr.cast() })
    }

    /// [`Mapping::atomic_words`], located for later use.
    pub(crate) fn locate_words(&self, offset: u64, words: usize) -> Option<Located<[AtomicU64]>> {
        self.atomic_words(offset, words).map(|r| Located { ptr: NonNull::from(r) })
    }
}

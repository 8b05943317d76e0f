//! Typed views over mapped bytes: the read and write guards.
//!
//! A guard is a typed pointer into the mapping plus the lock hold that makes dereferencing it
//! sound. Guards are only built by [`crate::handle`], which proves the construction contract
//! (bounds, alignment, validity, lock held) at the single place where it creates them.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use std::mem::MaybeUninit;
use std::sync::atomic::AtomicU64;

use crate::commit::Durability;
use crate::error::{Error, Result};
use crate::handle::{EntryHandle, Hold};
use crate::layout::{InvalidValue, SharedLayout};
use crate::seqlock;

/// A shared lock on an entry, giving `&T` (or `&[T]` for arrays) for as long as it lives.
///
/// Returned by [`Shared::read`](crate::Shared::read) and
/// [`SharedArray::read`](crate::SharedArray::read). Other threads and processes may read at the
/// same time; writers wait until every read guard is dropped.
pub struct ReadGuard<'a, T: ?Sized> {
    ptr: NonNull<T>,
    _hold: Hold<'a>,
    _marker: PhantomData<&'a T>,
}

/// An exclusive lock on an entry, giving `&mut T` (or `&mut [T]`) for as long as it lives.
///
/// Returned by [`Shared::write`](crate::Shared::write) and
/// [`SharedArray::write`](crate::SharedArray::write).
///
/// For an object without atomics, the guard works on a private copy of the value and **commits**
/// it when dropped: atomically, so that a panic while the guard is held, an
/// [`abort`](Self::abort), or the death of the process at any instant leaves the previous value in
/// place. [`commit`](Self::commit) does the same as dropping the guard, but
/// reports errors (a failed `msync` under [`Durability::PowerLoss`](crate::Durability::PowerLoss)).
///
/// Arrays and objects holding atomics are changed **in place**: every change is visible at once,
/// and a process killed while holding the guard can leave the value partly changed.
pub struct WriteGuard<'a, T: ?Sized> {
    target: Target<T>,
    handle: &'a EntryHandle,
    hold: Hold<'a>,
    finished: bool,
    /// Whether the thread was already unwinding when the guard was taken (a guard used by a
    /// destructor during a panic): only a panic that starts while the guard is held rolls back.
    panicking_at_start: bool,
    _marker: PhantomData<&'a mut T>,
}

/// Publishes a staged value of a double-buffered object.
type Publish<T> = fn(&EntryHandle, &Hold<'_>, &T, Durability) -> Result<()>;

enum Target<T: ?Sized> {
    /// The bytes in the mapping.
    InPlace(NonNull<T>),
    /// A private copy, published on commit.
    Staged { value: Box<T>, publish: Publish<T> },
}

impl<'a, T: ?Sized> ReadGuard<'a, T> {
    /// # Safety
    ///
    /// For all of `'a`: `ptr` is aligned and points into a live mapping, every byte it covers is
    /// a valid `T`, and `hold` is a shared (or exclusive) lock on the entry that owns those bytes,
    /// so that no cooperating thread or process writes them while the guard exists.
    pub(crate) unsafe fn new(ptr: NonNull<T>, hold: Hold<'a>) -> Self {
        ReadGuard { ptr, _hold: hold, _marker: PhantomData }
    }
}

impl<'a, T> ReadGuard<'a, [T]> {
    /// The guard of the slice's first element, or `None` if the slice is empty.
    pub(crate) fn into_first(self) -> Option<ReadGuard<'a, T>> {
        (!self.ptr.is_empty()).then(|| ReadGuard { ptr: self.ptr.cast::<T>(), _hold: self._hold, _marker: PhantomData })
    }
}

impl<'a, T: ?Sized> WriteGuard<'a, T> {
    /// A guard that changes the bytes in place.
    ///
    /// # Safety
    ///
    /// As for [`ReadGuard::new`], with `hold` the exclusive lock of `handle`'s entry and the
    /// mapping writable, so that nobody else reads or writes the bytes while the guard exists.
    pub(crate) unsafe fn in_place(ptr: NonNull<T>, handle: &'a EntryHandle, hold: Hold<'a>) -> Self {
        WriteGuard {
            target: Target::InPlace(ptr),
            handle,
            hold,
            finished: false,
            panicking_at_start: std::thread::panicking(),
            _marker: PhantomData,
        }
    }

    /// Commits the change now and reports whether it reached the durability the handle asks for.
    /// Dropping the guard commits too, but cannot report errors.
    pub fn commit(mut self) -> Result<()> {
        self.finish(true)
    }

    /// Discards the change: the entry keeps the value it had before the guard was taken.
    ///
    /// Only double-buffered objects can do this. For an entry changed in place (an array, or an
    /// object holding atomics), the changes are already visible, so this returns
    /// [`Error::RollbackUnsupported`](crate::Error::RollbackUnsupported) and keeps them.
    pub fn abort(mut self) -> Result<()> {
        match self.target {
            Target::Staged { .. } => {
                self.finished = true;
                Ok(())
            }
            Target::InPlace(_) => {
                self.finish(true)?;
                Err(Error::RollbackUnsupported { name: self.handle.name().to_owned() })
            }
        }
    }

    fn finish(&mut self, commit: bool) -> Result<()> {
        self.finished = true;
        let durability = self.handle.durability;
        match &self.target {
            Target::Staged { value, publish } if commit => publish(self.handle, &self.hold, value, durability),
            Target::Staged { .. } => Ok(()),
            // Whatever happened, the bytes may have changed: record it.
            Target::InPlace(_) => self.handle.changed_in_place(&self.hold, durability),
        }
    }
}

impl<'a, T: SharedLayout> WriteGuard<'a, T> {
    /// A guard over a private copy of a double-buffered object's value, published by
    /// [`EntryHandle::publish`] on commit. `hold` is the entry's exclusive lock.
    pub(crate) fn staged(value: T, handle: &'a EntryHandle, hold: Hold<'a>) -> Self {
        let publish: Publish<T> =
            |handle, hold, value, durability| handle.publish(hold, value_bytes(value), durability);
        WriteGuard {
            target: Target::Staged { value: Box::new(value), publish },
            handle,
            hold,
            finished: false,
            panicking_at_start: std::thread::panicking(),
            _marker: PhantomData,
        }
    }
}

impl<T: ?Sized> Drop for WriteGuard<'_, T> {
    fn drop(&mut self) {
        if !self.finished {
            // A panic inside the guard rolls back; otherwise commit. Errors can only be reported by
            // `commit()`; here the change is at least published to every process.
            let panic_while_held = std::thread::panicking() && !self.panicking_at_start;
            let _ = self.finish(!panic_while_held);
        }
    }
}

impl<T: ?Sized> Deref for ReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the constructor's contract: aligned, in a live mapping, a valid `T`, and shared
        // access guaranteed by the lock this guard holds until it drops.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: ?Sized> Deref for WriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        match &self.target {
            // SAFETY: the `in_place` contract, with the exclusive lock held for the guard's life.
            Target::InPlace(ptr) => unsafe { ptr.as_ref() },
            Target::Staged { value, .. } => value,
        }
    }
}

impl<T: ?Sized> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        match &mut self.target {
            // SAFETY: the `in_place` contract: the exclusive lock means no other reference to these
            // bytes exists anywhere while this guard lives, and `&mut self` makes this the only one
            // handed out by the guard. Safe code can only store valid `T` values through it.
            Target::InPlace(ptr) => unsafe { ptr.as_mut() },
            Target::Staged { value, .. } => value,
        }
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for ReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for WriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// Views `len` bytes at `ptr` as a byte slice, to validate them before they are typed.
///
/// # Safety
///
/// `ptr..ptr + len` lies in a live mapping for `'a`, and the caller holds a lock on the entry that
/// owns those bytes, so that no cooperating writer changes them during `'a`.
pub(crate) unsafe fn bytes<'a>(ptr: NonNull<u8>, len: usize) -> &'a [u8] {
    // SAFETY: forwarded from this function's contract; `u8` is valid for any byte.
    unsafe { std::slice::from_raw_parts(ptr.as_ptr(), len) }
}

/// The bytes of a value, to copy it into the file.
pub(crate) fn value_bytes<T: SharedLayout>(value: &T) -> &[u8] {
    slice_bytes(std::slice::from_ref(value))
}

/// The bytes of a slice of values, to copy them into the file.
pub(crate) fn slice_bytes<T: SharedLayout>(values: &[T]) -> &[u8] {
    // SAFETY: `SharedLayout` guarantees `T` has no padding, so all `size_of_val(values)` bytes
    // behind `values` are initialised; `u8` has no alignment or validity requirement; the slice
    // borrows `values`, so it cannot outlive them. Atomics inside `T` are read non-atomically here,
    // which is sound because `values` is the caller's own memory, not the shared mapping, and the
    // shared borrow excludes writers for its duration.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values)) }
}

/// A value being assembled from bytes: zero-initialised storage for a `T` that is only read as a
/// `T` once its bytes pass `T`'s layout validation.
pub(crate) struct Staging<T> {
    buf: MaybeUninit<T>,
}

/// Whether `T`'s bytes need validating, decided at compile time for each `T`.
struct NeedsValidation<T>(PhantomData<T>);

impl<T: SharedLayout> NeedsValidation<T> {
    const VALUE: bool = T::LAYOUT.needs_validation();
}

impl<T: SharedLayout> Staging<T> {
    /// Storage whose bytes are all zero.
    pub(crate) fn zeroed() -> Self {
        Staging { buf: MaybeUninit::zeroed() }
    }

    /// Storage filled from `words` of shared memory with atomic loads, or `None` if they do not
    /// cover a `T`. Every byte of the storage is written.
    #[inline(always)]
    pub(crate) fn from_words(words: &[AtomicU64]) -> Option<Self> {
        let size = std::mem::size_of::<T>();
        if words.len() * 8 < size {
            return None;
        }
        let mut buf = MaybeUninit::<T>::uninit();
        let dst = buf.as_mut_ptr().cast::<u8>();
        let full = size / 8;
        for (i, word) in words[..full].iter().enumerate() {
            // SAFETY: `i * 8 + 8 <= size`, so the 8 bytes written lie inside `buf`; unaligned
            // writes have no alignment requirement; `buf` is a local that nothing else accesses.
            unsafe { dst.add(i * 8).cast::<u64>().write_unaligned(seqlock::load_word(word)) };
        }
        let tail = size % 8;
        if tail > 0 {
            let last = seqlock::load_word(&words[full]).to_ne_bytes();
            // SAFETY: the `tail` bytes from `full * 8` are the last bytes of `buf`; `last` is a
            // distinct local array of 8 >= `tail` bytes.
            unsafe { std::ptr::copy_nonoverlapping(last.as_ptr(), dst.add(full * 8), tail) };
        }
        // Every one of the `size` bytes was written above.
        Some(Staging { buf })
    }

    /// The storage as bytes, to fill.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: `buf` has `size_of::<T>()` bytes, all initialised (by `zeroed`, or every byte
        // written by `from_words`, then only ever overwritten with other bytes); `u8` has no alignment or validity requirement; the slice
        // borrows `self` mutably, so nothing else can observe the storage meanwhile.
        unsafe { std::slice::from_raw_parts_mut(self.buf.as_mut_ptr().cast::<u8>(), std::mem::size_of::<T>()) }
    }

    /// The value, if the bytes are a valid `T`.
    #[inline(always)]
    pub(crate) fn into_value(mut self) -> Result<T, InvalidValue> {
        if NeedsValidation::<T>::VALUE {
            T::LAYOUT.validate(self.bytes_mut())?;
        }
        // SAFETY: every byte is initialised (see `bytes_mut`), and the bytes are a valid `T`:
        // either `T` has no invalid bit patterns, or `T::LAYOUT.validate` just accepted them,
        // which the `SharedLayout` contract makes sufficient.
        Ok(unsafe { self.buf.assume_init() })
    }
}

//! Typed views over mapped bytes: the read and write guards.
//!
//! A guard is a typed pointer into the mapping plus the lock hold that makes dereferencing it
//! sound. Guards are only built by [`crate::entry::handle`], which proves the construction contract
//! (bounds, alignment, validity, lock held) at the single place where it creates them.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use crate::entry::handle::{EntryHandle, Hold};
use crate::entry::staging::{owned_bytes, StagedCopy};
use crate::error::{Error, Result};
use crate::layout::SharedLayout;
use crate::options::Durability;

/// A shared lock on an entry, giving `&T` (or `&[T]` for arrays) for as long as it lives.
///
/// Returned by [`Shared::read`](crate::Shared::read) and
/// [`SharedArray::read`](crate::SharedArray::read). Other threads and processes may read at the
/// same time; writers wait until every read guard is dropped.
///
/// One exception: in robust lock mode ([`LockMode::Robust`](crate::LockMode::Robust)), a read
/// guard on a double-buffered object (one without atomics) holds a validated copy of the value
/// as it was when the guard was taken, and no lock: writers do not wait for it, and
/// [`load`](crate::Shared::load) may show a newer value while it lives.
pub struct ReadGuard<'a, T: ?Sized> {
    ptr: NonNull<T>,
    _hold: Option<Hold<'a>>,
    /// The copy `ptr` points into, for a guard that pins a copy instead of holding a lock.
    _pinned: Option<Pinned<T>>,
    _marker: PhantomData<&'a T>,
}

/// A heap copy a [`ReadGuard`] points into: freed when the guard drops. (Not a `Box`, which
/// would claim unique access to the value while the guard hands out shared references to it.)
struct Pinned<T: ?Sized>(NonNull<T>);

impl<T: ?Sized> Drop for Pinned<T> {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `Box::into_raw` (in `ReadGuard::pinned`) and is freed
        // only here, once; the guard that handed out references to it is being dropped.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
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
/// and a process killed while holding the guard can leave the value partly changed. Objects made
/// *only* of atomics ([`AllAtomic`](crate::AllAtomic) types, which
/// [`Shared::get`](crate::Shared::get) hands out without a lock) are the exception: the guard
/// works on a private copy, which its commit stores back one atomic at a time (so an abort or a
/// panic discards it, and a process killed during the commit can leave some atomics stored and
/// others not).
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
type Publish<T> = fn(&EntryHandle, &Hold<'_>, &mut T, Durability) -> Result<()>;

enum Target<T: ?Sized> {
    /// The bytes in the mapping.
    InPlace(NonNull<T>),
    /// A private copy, published on commit.
    Staged { value: StagedCopy<T>, publish: Publish<T> },
}

impl<'a, T: ?Sized> ReadGuard<'a, T> {
    /// # Safety
    ///
    /// For all of `'a`: `ptr` is aligned and points into a live mapping, every byte it covers is
    /// a valid `T`, and `hold` is a shared (or exclusive) lock on the entry that owns those bytes,
    /// so that no cooperating thread or process writes them while the guard exists.
    pub(crate) unsafe fn new(ptr: NonNull<T>, hold: Hold<'a>) -> Self {
        ReadGuard { ptr, _hold: Some(hold), _pinned: None, _marker: PhantomData }
    }
}

impl<'a, T> ReadGuard<'a, T> {
    /// A guard over a copy of a value (validated by the caller: it is a `T`), holding no lock.
    pub(crate) fn pinned(value: T) -> Self {
        let ptr = NonNull::from(Box::leak(Box::new(value)));
        ReadGuard { ptr, _hold: None, _pinned: Some(Pinned(ptr)), _marker: PhantomData }
    }
}

impl<'a, T> ReadGuard<'a, [T]> {
    /// A guard over a copy of values (validated by the caller), holding no lock.
    pub(crate) fn pinned_slice(values: Box<[T]>) -> Self {
        let ptr = NonNull::from(Box::leak(values));
        ReadGuard { ptr, _hold: None, _pinned: Some(Pinned(ptr)), _marker: PhantomData }
    }
}

impl<'a, T> ReadGuard<'a, [T]> {
    /// The guard of the slice's first element, or `None` if the slice is empty.
    pub(crate) fn into_first(self) -> Option<ReadGuard<'a, T>> {
        if self.ptr.is_empty() {
            return None;
        }
        let ptr = self.ptr.cast::<T>();
        // A copy of one or more values: the first one's guard takes over the allocation, which
        // it frees as a `Box<T>`. Only a copy of exactly one value has the layout of a `T`.
        let pinned = match self._pinned {
            Some(copy) if self.ptr.len() == 1 => {
                std::mem::forget(copy);
                Some(Pinned(ptr))
            }
            Some(_) => return None,
            None => None,
        };
        Some(ReadGuard { ptr, _hold: self._hold, _pinned: pinned, _marker: PhantomData })
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
    /// Only objects whose guard works on a copy can do this: double-buffered objects, and objects
    /// made only of atomics. For an entry changed in place (an array, or an object holding atomics
    /// and other fields), the changes are already visible, so this returns
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
        // A guard inherited by a forked child: the lock is its parent's, not the child's, so
        // nothing may be published or recorded under it.
        if self.hold.forked() {
            return Err(Error::Forked { path: self.handle.store.path.clone() });
        }
        let durability = self.handle.durability;
        match &mut self.target {
            Target::Staged { value, publish } if commit => {
                // SAFETY: the copy is an initialised `T` that only this guard reaches, and
                // `&mut self` excludes every other use of it during the call.
                publish(self.handle, &self.hold, unsafe { value.value.as_mut() }, durability)
            }
            Target::Staged { .. } => Ok(()),
            // Whatever happened, the bytes may have changed: record it.
            Target::InPlace(_) => self.handle.changed_in_place(&self.hold, durability),
        }
    }
}

impl<'a, T: SharedLayout> WriteGuard<'a, T> {
    /// A guard over a private copy of an object's value, written back by `publish` on commit
    /// (and discarded by an abort or a panic). `hold` is the entry's exclusive lock.
    pub(crate) fn staged_with(value: T, handle: &'a EntryHandle, hold: Hold<'a>, publish: Publish<T>) -> Self {
        Self::staged_copy(StagedCopy::new(value), handle, hold, publish)
    }

    /// A guard over `copy`, a private copy of a double-buffered object's value, published by
    /// [`EntryHandle::publish`] on commit. `hold` is the entry's exclusive lock.
    #[inline(always)]
    pub(crate) fn staged_commit(copy: StagedCopy<T>, handle: &'a EntryHandle, hold: Hold<'a>) -> Self {
        let publish: Publish<T> =
            |handle, hold, value, durability| handle.publish_inline(hold, owned_bytes(value), durability);
        Self::staged_copy(copy, handle, hold, publish)
    }

    #[inline(always)]
    fn staged_copy(copy: StagedCopy<T>, handle: &'a EntryHandle, hold: Hold<'a>, publish: Publish<T>) -> Self {
        WriteGuard {
            target: Target::Staged { value: copy, publish },
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
        // In a forked child, do nothing at all (see `finish`): not even build the error.
        if !self.finished && !self.hold.forked() {
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
            // SAFETY: the copy is an initialised `T` that only this guard reaches; the reference
            // borrows the guard.
            Target::Staged { value, .. } => unsafe { value.value.as_ref() },
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
            // SAFETY: as in `deref`, and `&mut self` makes this the only reference handed out.
            Target::Staged { value, .. } => unsafe { value.value.as_mut() },
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

//! Typed views over mapped bytes: the read and write guards.
//!
//! A guard is a typed pointer into the mapping plus the lock hold that makes dereferencing it
//! sound. Guards are only built by [`crate::handle`], which proves the construction contract
//! (bounds, alignment, validity, lock held) at the single place where it creates them.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use crate::handle::Hold;
use crate::layout::SharedLayout;

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
/// [`SharedArray::write`](crate::SharedArray::write). Changes are made in place; dropping the
/// guard releases the lock.
pub struct WriteGuard<'a, T: ?Sized> {
    ptr: NonNull<T>,
    _hold: Hold<'a>,
    _marker: PhantomData<&'a mut T>,
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

impl<'a, T> WriteGuard<'a, [T]> {
    /// The guard of the slice's first element, or `None` if the slice is empty.
    pub(crate) fn into_first(self) -> Option<WriteGuard<'a, T>> {
        (!self.ptr.is_empty()).then(|| WriteGuard {
            ptr: self.ptr.cast::<T>(),
            _hold: self._hold,
            _marker: PhantomData,
        })
    }
}

impl<'a, T: ?Sized> WriteGuard<'a, T> {
    /// # Safety
    ///
    /// As for [`ReadGuard::new`], with `hold` an exclusive lock and the mapping writable, so that
    /// nobody else reads or writes the bytes while the guard exists.
    pub(crate) unsafe fn new(ptr: NonNull<T>, hold: Hold<'a>) -> Self {
        WriteGuard { ptr, _hold: hold, _marker: PhantomData }
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
        // SAFETY: the constructor's contract, with the exclusive lock held for the guard's life.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: ?Sized> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the constructor's contract: the exclusive lock means no other reference to these
        // bytes exists anywhere while this guard lives, and `&mut self` makes this the only one
        // handed out by the guard. Safe code can only store valid `T` values through it.
        unsafe { self.ptr.as_mut() }
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

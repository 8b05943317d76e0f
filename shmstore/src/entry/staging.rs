//! The bytes of values on their way into and out of the mapping: a value's bytes to copy into the
//! file ([`value_bytes`], [`slice_bytes`], [`owned_bytes`]), and [`Staging`], where a value read
//! from the file is assembled and validated before it becomes a `T`. The copies themselves, shaped
//! by where a value's atomics are, live below in [`crate::file::copy`].

use std::marker::PhantomData;

use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

use crate::entry::seqlock;
use crate::error::Result;
use crate::layout::{InvalidValue, SharedLayout};

/// The bytes of a value, to copy them into the file.
///
/// `T: Copy` is what makes this sound for a *shared* borrow: a `Copy` type holds no `UnsafeCell`
/// (`UnsafeCell` is not `Copy`, and neither is anything containing it), so nothing can change the
/// bytes behind `&T` while they are read. A value holding atomics is shared on purpose, and another
/// thread may `fetch_add` it through its own `&T` at any moment; copy such a value with
/// [`owned_bytes`], which needs `&mut`.
pub(crate) fn value_bytes<T: SharedLayout + Copy>(value: &T) -> &[u8] {
    slice_bytes(std::slice::from_ref(value))
}

/// The bytes of a slice of values, to copy them into the file. See [`value_bytes`] for why `T`
/// must be `Copy`.
pub(crate) fn slice_bytes<T: SharedLayout + Copy>(values: &[T]) -> &[u8] {
    debug_assert!(!T::LAYOUT.contains_atomics(), "the SharedLayout contract: atomics are never Copy");
    // SAFETY: `SharedLayout` guarantees `T` has no padding, so all `size_of_val(values)` bytes
    // behind `values` are initialised; `u8` has no alignment or validity requirement; the slice
    // borrows `values`, so it cannot outlive them. No byte can change while it is read: `T: Copy`
    // means `T` contains no `UnsafeCell` (atomics included, which are not `Copy`), so the bytes
    // behind a shared borrow are immutable for as long as the borrow (and so the returned slice)
    // lives, whoever else holds a `&T` to them, in this thread or another.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values)) }
}

/// The bytes of a value the caller has exclusive access to, to copy them into the file. Unlike
/// [`value_bytes`], `T` may hold atomics: the exclusive borrow proves that no other thread can
/// reach them while the bytes are read (as with `AtomicU64::get_mut`).
pub(crate) fn owned_bytes<T: SharedLayout>(value: &mut T) -> &[u8] {
    let len = std::mem::size_of::<T>();
    let ptr = (value as *mut T).cast::<u8>();
    // SAFETY: `SharedLayout` guarantees `T` has no padding, so all `size_of::<T>()` bytes behind
    // `value` are initialised, and `u8` has no alignment or validity requirement. The slice
    // reborrows the exclusive borrow `value` for its whole life, so no other reference to these
    // bytes, shared or not, can be used while it exists: plain reads cannot race with anything,
    // even for bytes that belong to atomics.
    unsafe { std::slice::from_raw_parts(ptr, len) }
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
        let mut buf = MaybeUninit::<T>::uninit();
        Self::fill(&mut buf, words).then_some(Staging { buf })
    }

    /// Fills `buf` from `words` of shared memory with atomic loads, writing every one of its
    /// bytes, and returns `true`; or returns `false`, writing nothing, if they do not cover a `T`.
    /// [`from_filled`](Self::from_filled) then makes a `Staging` of it.
    #[inline(always)]
    pub(crate) fn fill(buf: &mut MaybeUninit<T>, words: &[AtomicU64]) -> bool {
        let size = std::mem::size_of::<T>();
        if words.len() * 8 < size {
            return false;
        }
        let dst = buf.as_mut_ptr().cast::<u8>();
        let full = size / 8;
        for (i, word) in words[..full].iter().enumerate() {
            // SAFETY: `i * 8 + 8 <= size`, so the 8 bytes written lie inside `buf`; unaligned
            // writes have no alignment requirement; `buf` is exclusively borrowed.
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
        true
    }

    /// The storage `fill` filled.
    ///
    /// # Safety
    ///
    /// [`fill`](Self::fill) returned `true` for `buf`, which was not changed since.
    #[inline(always)]
    pub(crate) unsafe fn from_filled(buf: MaybeUninit<T>) -> Self {
        Staging { buf }
    }

    /// Checks that the bytes [`fill`](Self::fill) wrote into `buf` are a valid `T`.
    ///
    /// # Safety
    ///
    /// [`fill`](Self::fill) returned `true` for `buf`, which was not changed since.
    #[inline(always)]
    pub(crate) unsafe fn validate_filled(buf: &MaybeUninit<T>) -> Result<(), InvalidValue> {
        if NeedsValidation::<T>::VALUE {
            // SAFETY: `fill` wrote every one of the `size_of::<T>()` bytes of `buf` (the
            // caller's contract); `u8` has no alignment or validity requirement; the slice
            // borrows `buf`, so nothing changes it meanwhile.
            let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), std::mem::size_of::<T>()) };
            T::LAYOUT.validate(bytes)?;
        }
        Ok(())
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

/// The unit of a write guard's room: 64 bytes, aligned to 64, so that a room holds any value
/// whose alignment is at most 64.
#[repr(C, align(64))]
pub(crate) struct Line([u8; 64]);

/// The size and alignment of a [`Line`].
pub(crate) const LINE: usize = std::mem::size_of::<Line>();

thread_local! {
    /// The room the next write guard of this thread takes, while no guard uses it.
    static SPARE: std::cell::Cell<Option<Box<[MaybeUninit<Line>]>>> = const { std::cell::Cell::new(None) };
}

/// A room of at least `lines` lines for a write guard: this thread's spare one (made, or made
/// larger, if it has no room), so that a guard makes no allocation. Give it back with
/// [`give_back_room`]. (A raw pointer, not a `Box`, so that moving the guard that owns it claims
/// nothing about the memory it points to.)
#[inline]
pub(crate) fn take_room(lines: usize) -> NonNull<[MaybeUninit<Line>]> {
    let room = match SPARE.try_with(|spare| spare.take()).ok().flatten() {
        Some(room) if room.len() >= lines => room,
        _ => Box::new_uninit_slice(lines),
    };
    NonNull::from(Box::leak(room))
}

/// Keeps `room` as this thread's spare one, or the larger of it and one a nested guard gave back
/// meanwhile. (While the thread is being torn down, the room is simply freed.)
///
/// # Safety
///
/// `room` came from [`take_room`], whole, and nothing uses it any more.
#[inline]
pub(crate) unsafe fn give_back_room(room: NonNull<[MaybeUninit<Line>]>) {
    // SAFETY: `take_room` made `room` with `Box::leak` of a boxed slice of this length, and the
    // caller gives it back once, when nothing uses it.
    let room = unsafe { Box::from_raw(room.as_ptr()) };
    let _ = SPARE.try_with(|spare| {
        let kept = match spare.take() {
            Some(other) if other.len() > room.len() => other,
            _ => room,
        };
        spare.set(Some(kept));
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    /// `Staging::from_words` copies every byte of values of every size from 1 to 40 bytes: pairs
    /// of words, an odd last word and a tail of fewer than 8 bytes.
    #[test]
    fn staging_from_words_copies_every_byte() {
        fn check<const N: usize>() {
            let words: Vec<AtomicU64> = (0..6u64)
                .map(|w| AtomicU64::new(u64::from_ne_bytes(std::array::from_fn(|b| (w * 8 + b as u64 + 1) as u8))))
                .collect();
            let staging = Staging::<[u8; N]>::from_words(&words).expect("6 words cover 40 bytes");
            let value = staging.into_value().unwrap();
            let expected: [u8; N] = std::array::from_fn(|i| (i + 1) as u8);
            assert_eq!(value, expected, "{N} bytes");
            let short = &words[..N.div_ceil(8) - 1];
            assert!(Staging::<[u8; N]>::from_words(short).is_none(), "{N} bytes from one word too few");
        }
        check::<1>();
        check::<7>();
        check::<8>();
        check::<9>();
        check::<16>();
        check::<17>();
        check::<24>();
        check::<31>();
        check::<32>();
        check::<40>();
    }
}

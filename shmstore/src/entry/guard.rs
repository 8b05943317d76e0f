//! Typed views over mapped bytes: the read and write guards.
//!
//! A guard is a typed pointer into the mapping plus the lock hold that makes dereferencing it
//! sound. Guards are only built by [`crate::entry::handle`], which proves the construction contract
//! (bounds, alignment, validity, lock held) at the single place where it creates them.

use std::fmt;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use crate::entry::handle::{EntryHandle, Hold};
use crate::entry::staging::{self, owned_bytes, Line, LINE};
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
    /// The guard's state, in a room of its own ([`Body`]). One pointer, so that returning the
    /// guard in a `Result` and moving it into the caller's variable copies one word.
    body: NonNull<Body<'a, T>>,
    _marker: PhantomData<(&'a mut T, Hold<'a>)>,
}

/// A write guard's state. It lies at the start of a buffer taken from this thread's spare one
/// ([`staging::take_room`]), followed there by the guard's private copy of the value, if it has
/// one.
///
/// Why not in the guard itself: a guard is built field by field and then moved (out of the
/// `Result`, into the caller's variable), and such a move copies 16 bytes at a time. A 16-byte
/// load of bytes just written by narrower stores cannot be served from the store buffer, and
/// waits for them to reach the cache: three such stalls cost a guard of about 130 bytes some
/// 20 ns, half of its time. A guard of one pointer moves with one word-wide load.
struct Body<'a, T: ?Sized> {
    handle: &'a EntryHandle,
    hold: Hold<'a>,
    /// The value: in the mapping (in place), or the private copy (staged).
    target: NonNull<T>,
    /// For a private copy, how it is published on commit; `None` for a guard in place.
    publish: Option<Publish<T>>,
    /// For a private copy in a `Box` of its own (a value aligned beyond a [`Line`]) instead of
    /// in the room after the body: the function that frees that box (as the `Box<T>` it was
    /// made as: the guard's drop, generic over an unsized `T` too, cannot name `T`'s layout).
    free_box: Option<FreeBox>,
    finished: bool,
    /// Whether the thread was already unwinding when the guard was taken (a guard used by a
    /// destructor during a panic): only a panic that starts while the guard is held rolls back.
    panicking_at_start: bool,
    /// The length, in lines, of the room the body lies at the start of.
    lines: usize,
}

/// Publishes a staged value of a double-buffered object.
type Publish<T> = fn(&EntryHandle, &Hold<'_>, &mut T, Durability) -> Result<()>;

/// What [`WriteGuard::staged`] has made while the guard's body is not finished: dropped (on an
/// early return or an unwinding panic), it releases the hold, frees the boxed copy and gives the
/// room back; forgotten once the guard owns them.
struct Unfinished<'a, T> {
    /// The initialised hold in the room's body.
    hold: Option<NonNull<Hold<'a>>>,
    /// The copy's own box, for a value aligned beyond a line.
    boxed: Option<NonNull<MaybeUninit<T>>>,
    room: NonNull<[MaybeUninit<Line>]>,
}

impl<T> Drop for Unfinished<'_, T> {
    fn drop(&mut self) {
        // SAFETY: `staged` sets `hold` once the hold is initialised, `boxed` once the box is
        // made, and forgets this value once the guard owns them: here nothing else uses them
        // (the references `staged` made to them are dead, their function having returned or
        // unwound). Each is released once: the hold (which releases the lock), the box (as the
        // `Box<MaybeUninit<T>>` it was made as), and the room, from `take_room`.
        unsafe {
            if let Some(hold) = self.hold {
                std::ptr::drop_in_place(hold.as_ptr());
            }
            if let Some(value) = self.boxed {
                free_box::<T>(value.cast());
            }
            staging::give_back_room(self.room);
        }
    }
}

/// Frees a guard's boxed private copy: [`free_box::<T>`](free_box) for the guard's `T`.
type FreeBox = unsafe fn(NonNull<u8>);

/// Frees the private copy at `value`, a `Box<MaybeUninit<T>>` made by [`WriteGuard::staged`].
///
/// # Safety
///
/// `value` came from `Box::leak` of a `Box<MaybeUninit<T>>` and nothing uses it any more; it is
/// freed only here, once. (Freeing it as a `MaybeUninit<T>` drops nothing, and `T`, being
/// `SharedLayout`, has no drop glue anyway.)
unsafe fn free_box<T>(value: NonNull<u8>) {
    // SAFETY: the contract above: the box's own type, hence its layout.
    drop(unsafe { Box::from_raw(value.as_ptr().cast::<MaybeUninit<T>>()) });
}

/// How many [`Line`]s a `Body<T>` takes at the start of its room.
const fn body_lines<T: ?Sized>() -> usize {
    std::mem::size_of::<Body<'static, T>>().div_ceil(LINE)
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
        let room = staging::take_room(body_lines::<T>());
        let body = room.cast::<Body<'a, T>>();
        // SAFETY: a room of at least `body_lines::<T>()` lines, aligned to 64, which no other
        // guard uses: a body fits at its start and is aligned there (its fields are words and
        // pointers). The hold is written before the rest of the body, as `finish_body` requires;
        // `ptr` meets `finish_body`'s contract by this function's.
        unsafe {
            (&raw mut (*body.as_ptr()).hold).write(hold);
            Self::finish_body(room, handle, ptr, None, None)
        }
    }

    /// Writes the body's fields other than the hold into `room`, and makes the guard of it.
    ///
    /// # Safety
    ///
    /// `room` came from [`staging::take_room`] and holds at least `body_lines::<T>()` lines,
    /// the first of which nothing else uses; the body's `hold` there is initialised, and is the
    /// exclusive lock of `handle`'s entry. `target` is valid for the guard as the callers'
    /// contracts say (`in_place`'s, or an initialised private copy in the room or, with
    /// `free_box`, in a box that `free_box` frees, that only the guard reaches).
    #[inline(always)]
    unsafe fn finish_body(
        room: NonNull<[MaybeUninit<Line>]>,
        handle: &'a EntryHandle,
        target: NonNull<T>,
        publish: Option<Publish<T>>,
        free_box: Option<FreeBox>,
    ) -> Self {
        let lines = room.len();
        let body = room.cast::<Body<'a, T>>().as_ptr();
        let panicking_at_start = std::thread::panicking();
        // SAFETY: the room starts with room for a `Body`, aligned for it (the caller's
        // contract), of which only `hold` is initialised: each other field is written once,
        // through a raw pointer that makes no reference to the partly written body. Then every
        // field is initialised.
        unsafe {
            (&raw mut (*body).handle).write(handle);
            (&raw mut (*body).target).write(target);
            (&raw mut (*body).publish).write(publish);
            (&raw mut (*body).free_box).write(free_box);
            (&raw mut (*body).finished).write(false);
            (&raw mut (*body).panicking_at_start).write(panicking_at_start);
            (&raw mut (*body).lines).write(lines);
        }
        WriteGuard { body: room.cast(), _marker: PhantomData }
    }

    fn body(&self) -> &Body<'a, T> {
        // SAFETY: the body was written by `finish_body` (the hold before it) and lives until the
        // guard drops; the guard is its only owner, and `&self` excludes `&mut` uses of it
        // meanwhile.
        unsafe { self.body.as_ref() }
    }

    fn body_mut(&mut self) -> &mut Body<'a, T> {
        // SAFETY: as in `body`, with `&mut self` making this the only reference.
        unsafe { self.body.as_mut() }
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
        if self.body().publish.is_some() {
            self.body_mut().finished = true;
            return Ok(());
        }
        self.finish(true)?;
        Err(Error::RollbackUnsupported { name: self.body().handle.name().to_owned() })
    }

    fn finish(&mut self, commit: bool) -> Result<()> {
        let body = self.body_mut();
        body.finished = true;
        // A guard inherited by a forked child: the lock is its parent's, not the child's, so
        // nothing may be published or recorded under it.
        if body.hold.forked() {
            return Err(Error::Forked { path: body.handle.store.path.clone() });
        }
        let durability = body.handle.durability;
        match body.publish {
            // SAFETY: the copy is an initialised `T` that only this guard reaches, and
            // `&mut self` excludes every other use of it during the call.
            Some(publish) if commit => publish(body.handle, &body.hold, unsafe { body.target.as_mut() }, durability),
            Some(_) => Ok(()),
            // Whatever happened, the bytes may have changed: record it.
            None => body.handle.changed_in_place(&body.hold, durability),
        }
    }
}

impl<'a, T: SharedLayout> WriteGuard<'a, T> {
    /// A guard over a private copy of an object's value, written back by `publish` on commit
    /// (and discarded by an abort or a panic). `hold` is the entry's exclusive lock.
    pub(crate) fn staged_with(value: T, handle: &'a EntryHandle, hold: Hold<'a>, publish: Publish<T>) -> Self {
        let lock = |slot: &mut MaybeUninit<Hold<'a>>| {
            slot.write(hold);
            Ok(())
        };
        let fill = |_: &Hold<'a>, slot: &mut MaybeUninit<T>| {
            slot.write(value);
            Ok(())
        };
        match Self::staged::<std::convert::Infallible>(handle, lock, publish, fill) {
            Ok(guard) => guard,
            Err(e) => match e {},
        }
    }

    /// A guard over a private copy of a double-buffered object's value: `lock` takes the
    /// entry's exclusive lock (writing the hold into the slot it is given), `fill` makes the copy
    /// under it, and [`EntryHandle::publish_inline`] publishes it on commit.
    #[inline(always)]
    pub(crate) fn staged_commit(
        handle: &'a EntryHandle,
        lock: impl FnOnce(&mut MaybeUninit<Hold<'a>>) -> Result<()>,
        fill: impl FnOnce(&Hold<'a>, &mut MaybeUninit<T>) -> Result<()>,
    ) -> Result<Self> {
        let publish: Publish<T> =
            |handle, hold, value, durability| handle.publish_inline(hold, owned_bytes(value), durability);
        Self::staged(handle, lock, publish, fill)
    }

    /// A guard over a private copy, published by `publish` on commit. `lock` writes the hold of
    /// the entry's exclusive lock into the slot it is given (in the guard's room, where it stays:
    /// it is not copied) or fails; then `fill` writes every byte of the copy under it, or fails,
    /// and the lock is released.
    #[inline(always)]
    fn staged<E>(
        handle: &'a EntryHandle,
        lock: impl FnOnce(&mut MaybeUninit<Hold<'a>>) -> Result<(), E>,
        publish: Publish<T>,
        fill: impl FnOnce(&Hold<'a>, &mut MaybeUninit<T>) -> Result<(), E>,
    ) -> Result<Self, E> {
        let head = body_lines::<T>();
        let boxed = std::mem::align_of::<T>() > LINE;
        let lines = if boxed { head } else { head + std::mem::size_of::<T>().div_ceil(LINE) };
        let room = staging::take_room(lines);
        let body = room.cast::<Body<'a, T>>().as_ptr();
        // SAFETY: the room's first `head` lines are free, aligned to 64, and a `Body` fits there
        // (see `in_place`): this is the address of its `hold` field, taken without making a
        // reference to the (uninitialised) body. Every reference to the hold below is made from
        // this pointer, which `unfinished` keeps too.
        let hold_ptr = unsafe { NonNull::new_unchecked(&raw mut (*body).hold) };
        // Until the body is finished, an error or an unwinding panic out of `lock` or `fill`
        // gives everything back: the hold (releasing the lock), the boxed copy, the room.
        let mut unfinished = Unfinished::<'a, T> { hold: None, boxed: None, room };
        // SAFETY: as above; `MaybeUninit` has the layout of a `Hold`, and nothing else reaches
        // the slot while `lock` fills it.
        lock(unsafe { hold_ptr.cast::<MaybeUninit<Hold<'a>>>().as_mut() })?;
        unfinished.hold = Some(hold_ptr);
        // SAFETY: `lock` succeeded, so it initialised the hold; only shared uses follow until
        // the guard owns it.
        let hold = unsafe { hold_ptr.as_ref() };
        let value: NonNull<MaybeUninit<T>> = if boxed {
            let value = NonNull::from(Box::leak(Box::<T>::new_uninit()));
            unfinished.boxed = Some(value);
            value
        } else {
            // SAFETY: the room has at least `head + size_of::<T>().div_ceil(64)` lines: the value
            // lies in the ones after the body, inside the room, aligned to a line, which is at
            // least `T`'s alignment here.
            unsafe { room.cast::<Line>().add(head).cast() }
        };
        // SAFETY: the value's memory is this guard's alone (a fresh box, or lines of a room
        // nobody else uses), and a `MaybeUninit` may hold any bytes.
        fill(hold, unsafe { &mut *value.as_ptr() })?;
        // From here on the guard owns them all.
        std::mem::forget(unfinished);
        let free: Option<FreeBox> = if boxed { Some(free_box::<T>) } else { None };
        // SAFETY: the room's first lines hold the body, of which the hold is initialised (the
        // entry's exclusive lock, taken by `lock`); the value is initialised (`fill` succeeded)
        // and only this guard reaches it: in the room, or in the box `free_box::<T>` frees.
        Ok(unsafe { Self::finish_body(room, handle, value.cast(), Some(publish), free) })
    }
}

impl<T: ?Sized> Drop for WriteGuard<'_, T> {
    fn drop(&mut self) {
        let body = self.body();
        // In a forked child, do nothing at all (see `finish`): not even build the error.
        if !body.finished && !body.hold.forked() {
            // A panic inside the guard rolls back; otherwise commit. Errors can only be reported by
            // `commit()`; here the change is at least published to every process.
            let panic_while_held = std::thread::panicking() && !body.panicking_at_start;
            let _ = self.finish(!panic_while_held);
        }
        let lines = self.body().lines;
        let room = NonNull::slice_from_raw_parts(self.body.cast::<MaybeUninit<Line>>(), lines);
        let (free, target) = (self.body().free_box, self.body().target);
        // SAFETY: the body was written by `finish_body` (the hold before it) and is dropped only
        // here, once: this releases the lock (after the commit above). A private copy is a
        // `SharedLayout` value, which has no drop glue; its box, if it has one, is freed by the
        // `free_box` made for it, and the room is given back: the guard, their only owner, is
        // going away. `room` is the room `finish_body` wrote the body into: its start, and the
        // length recorded there.
        unsafe {
            std::ptr::drop_in_place(self.body.as_ptr());
            if let Some(free) = free {
                free(target.cast());
            }
            staging::give_back_room(room);
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
        // SAFETY: in place, the `in_place` contract, with the exclusive lock held for the guard's
        // life; a private copy is an initialised `T` that only this guard reaches. The reference
        // borrows the guard.
        unsafe { self.body().target.as_ref() }
    }
}

impl<T: ?Sized> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; in place, the exclusive lock means no other reference to these
        // bytes exists anywhere while this guard lives. `&mut self` makes this the only reference
        // handed out by the guard, and safe code can only store valid `T` values through it.
        unsafe { self.body_mut().target.as_mut() }
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

//! [`Shared<T>`]: a typed handle to one object in a store.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use crate::entry::commit::{Version, OPTIMISTIC_TRIES};
use crate::entry::guard::{ReadGuard, WriteGuard};
use crate::entry::handle::EntryHandle;
use crate::entry::staging;
use crate::error::Result;
use crate::file::lock::Wait;
use crate::guard_free::AtomicValue;
use crate::layout::{AllAtomic, SharedLayout};
use crate::options::Durability;

/// A typed handle to a named object in a [`Store`](crate::Store).
///
/// Made by [`Store::object_or_init`](crate::Store::object_or_init) or
/// [`Store::object`](crate::Store::object), which check the stored layout against `T` once. The
/// handle caches the object's location: every access afterwards is a lock and a pointer.
///
/// Guards lock the object against other threads *and* other processes: [`read`](Self::read)
/// shares, [`write`](Self::write) excludes. The locks are robust mutexes in the file (or kernel
/// byte-range locks in [OFD lock mode](crate::LockMode::Ofd)), recovered when their holder dies.
/// In robust lock mode a double-buffered object's [`read`](Self::read) guard holds a copy of the
/// value and no lock.
///
/// # Commits and reads
///
/// An object is **double-buffered** unless its type holds atomics: every write
/// ([`write`](Self::write) guard, [`store`](Self::store), [`update`](Self::update)) is a
/// *commit* that becomes visible all at once, to every process, when it is published. A panic
/// inside a write guard, an [`abort`](crate::WriteGuard::abort), or a process killed at any
/// instant (even by `SIGKILL`) leaves the last published value intact. [`load`](Self::load) is
/// lock-free: no system call, no lock, a few nanoseconds. How far a commit goes before it returns
/// (the page cache, or the disk) is its [`Durability`].
///
/// An object whose type holds atomics exists to be changed in place by several processes at once
/// (through a [`read`](Self::read) guard, which gives `&T`), so it is kept in **one** slot and
/// updated in place: no rollback, and no atomicity across a crash for its non-atomic fields.
/// [`is_double_buffered`](Self::is_double_buffered) and
/// [`EntryInfo::slots`](crate::EntryInfo::slots) tell which kind an object is.
///
/// # Atomics: no guard at all, or one guard for a batch
///
/// An object made **only** of atomics (an [`AllAtomic`] type: every field an atomic, an array of
/// atomics or a struct of those) needs no guard: [`get`](Self::get) gives `&T` with no lock and no
/// system call, so `counters.get()?.hits.fetch_add(1, Relaxed)` costs about what the `fetch_add`
/// costs. An object that holds anything else beside its atomics needs a guard:
///
/// An atomic operation costs nanoseconds; the guard around it does not. Every
/// [`read`](Self::read) takes and releases the object's lock (tens of nanoseconds in robust lock
/// mode; two system calls, on the order of a microsecond, in OFD mode), so
/// `counters.read()?.hits.fetch_add(1, Relaxed)` pays that on every call, many times the cost of
/// the `fetch_add`. Take one guard and do a batch of operations through it: each then costs what
/// the atomic costs (a few nanoseconds). While the guard is held, other threads' and processes'
/// read guards, and their atomic operations, go on; only writers ([`write`](Self::write),
/// [`store`](Self::store), [`update`](Self::update), a migration) wait for it.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
/// use shmstore::{SharedLayout, Store};
///
/// #[derive(SharedLayout)]
/// #[repr(C)]
/// struct Hits { hits: AtomicU64, misses: AtomicU64 }
///
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open_or_create(dir.path().join("hits.shm"), 1 << 20)?;
/// let counters = store.object_or_init("hits", || Hits { hits: AtomicU64::new(0), misses: AtomicU64::new(0) })?;
///
/// let batch = counters.read()?; // one lock for the whole batch
/// for i in 0..1000 {
///     if i % 10 == 0 { batch.misses.fetch_add(1, Relaxed); } else { batch.hits.fetch_add(1, Relaxed); }
/// }
/// drop(batch);
/// assert_eq!(counters.read()?.hits.load(Relaxed), 900);
/// # Ok::<(), shmstore::Error>(())
/// ```
///
/// # Example
///
/// ```
/// use shmstore::{SharedLayout, Store};
///
/// #[derive(SharedLayout, Clone, Copy, Debug, Default, PartialEq)]
/// #[repr(C)]
/// struct Stats { requests: u64, errors: u64 }
///
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open_or_create(dir.path().join("stats.shm"), 1 << 20)?;
/// let stats = store.object_or_init("stats", Stats::default)?;
///
/// stats.write()?.requests += 1;                       // exclusive guard
/// let seen = stats.update(|s| { s.errors += 1; s.errors })?; // read-modify-write
/// assert_eq!(seen, 1);
/// assert_eq!(stats.read()?.requests, 1);              // shared guard
/// stats.store(Stats { requests: 10, ..stats.load()? })?;
/// assert_eq!(stats.load()?, Stats { requests: 10, errors: 1 });
/// # Ok::<(), shmstore::Error>(())
/// ```
pub struct Shared<T: SharedLayout> {
    pub(crate) handle: EntryHandle,
    /// For an object made only of atomics, where [`get`](Self::get) finds it.
    atomic: Option<AtomicValue<T>>,
    _type: PhantomData<fn() -> T>,
}

impl<T: SharedLayout> Shared<T> {
    pub(crate) fn new(handle: EntryHandle) -> Self {
        let atomic = handle.locate_all_atomic::<T>();
        Shared { handle, atomic, _type: PhantomData }
    }

    /// The object's name in the store.
    pub fn name(&self) -> &str {
        self.handle.name()
    }

    fn read_with(&self, wait: Wait, timeout: Option<Duration>) -> Result<ReadGuard<'_, T>> {
        self.handle.read_object::<T>(wait, timeout)
    }

    #[inline(always)]
    fn write_with(&self, wait: Wait, timeout: Option<Duration>) -> Result<WriteGuard<'_, T>> {
        if const { T::LAYOUT.is_all_atomic() } {
            // `get()` users may hold `&T` at any time: no `&mut T` into the mapping.
            return self.handle.write_all_atomic::<T>(wait, timeout);
        }
        if self.handle.entry.slot_count == 2 {
            return self.handle.write_staged::<T>(wait, timeout);
        }
        self.handle.write_object::<T>(wait, timeout)
    }

    /// A shared guard: `&T` for as long as it lives, while writers (in any process) wait. (In
    /// robust lock mode, a double-buffered object's guard holds a copy of the value instead, and
    /// writers do not wait: see [`ReadGuard`].)
    pub fn read(&self) -> Result<ReadGuard<'_, T>> {
        self.read_with(Wait::Forever, None)
    }

    /// Like [`read`](Self::read), but fails with [`Error::WouldBlock`](crate::Error::WouldBlock)
    /// instead of waiting for a writer.
    pub fn try_read(&self) -> Result<ReadGuard<'_, T>> {
        self.read_with(Wait::Never, None)
    }

    /// Like [`read`](Self::read), but fails with [`Error::Timeout`](crate::Error::Timeout) after
    /// `timeout`.
    pub fn read_timeout(&self, timeout: Duration) -> Result<ReadGuard<'_, T>> {
        self.read_with(Wait::timeout(timeout), Some(timeout))
    }

    /// An exclusive guard: `&mut T` for as long as it lives, while everyone else waits.
    #[inline]
    pub fn write(&self) -> Result<WriteGuard<'_, T>> {
        self.write_with(Wait::Forever, None)
    }

    /// Like [`write`](Self::write), but fails with
    /// [`Error::WouldBlock`](crate::Error::WouldBlock) instead of waiting.
    pub fn try_write(&self) -> Result<WriteGuard<'_, T>> {
        self.write_with(Wait::Never, None)
    }

    /// Like [`write`](Self::write), but fails with [`Error::Timeout`](crate::Error::Timeout)
    /// after `timeout`.
    pub fn write_timeout(&self, timeout: Duration) -> Result<WriteGuard<'_, T>> {
        self.write_with(Wait::timeout(timeout), Some(timeout))
    }

    /// A copy of the current value.
    ///
    /// For an object without atomics this is an optimistic, lock-free read: no lock and no system
    /// call, a retry if a commit raced with the copy, and the shared lock after
    /// [`OPTIMISTIC_TRIES`](crate::OPTIMISTIC_TRIES) lost races, so it cannot starve.
    #[inline(always)]
    pub fn load(&self) -> Result<T>
    where
        T: Copy,
    {
        // One optimistic try, inlined: no version, no error path. Everything else (a lost race, a
        // migration, invalid bytes, an object with one slot) goes the cold way, which writes its
        // value to memory of its own: had it returned the `Result` itself, both ways would build
        // it in one place in memory, and the fast way could not keep its words in registers.
        let mut slow = std::mem::MaybeUninit::<T>::uninit();
        match self.handle.load_fast::<T>() {
            Some(value) => Ok(value),
            None => match self.load_slow(&mut slow) {
                Ok(value) => Ok(*value),
                Err(e) => Err(e),
            },
        }
    }

    /// `load()` after its first optimistic try failed or could not be made: the value, written
    /// into `out`.
    #[cold]
    #[inline(never)]
    fn load_slow<'o>(&self, out: &'o mut std::mem::MaybeUninit<T>) -> Result<&'o mut T>
    where
        T: Copy,
    {
        let (value, _) = self.load_versioned_with(OPTIMISTIC_TRIES - 1)?;
        Ok(out.write(value))
    }

    /// A copy of the current value and the [`Version`] it belongs to.
    #[inline(always)]
    pub fn load_versioned(&self) -> Result<(T, Version)>
    where
        T: Copy,
    {
        self.load_versioned_with(OPTIMISTIC_TRIES)
    }

    #[inline(always)]
    fn load_versioned_with(&self, tries: u32) -> Result<(T, Version)>
    where
        T: Copy,
    {
        if self.handle.entry.slot_count == 2 {
            return self.handle.load_optimistic::<T>(tries);
        }
        // Only objects holding atomics have one slot, and a `Copy` type holds none (see the
        // `SharedLayout` contract), so this copy under the shared lock races with nothing.
        let guard = self.read()?;
        Ok((*guard, self.handle.version()))
    }

    /// Whether a writer died holding this object's write lock since the flag was last cleared
    /// ([`clear_interrupted`](Self::clear_interrupted)), so that the value may be half changed.
    ///
    /// Only an object holding atomics can be: it is changed in place, through its atomics, and a
    /// write guard killed midway leaves whatever stores it had made. A double-buffered object
    /// never shows a half-done commit (its dead writer only touched the inactive copy), so the
    /// flag stays `false`. In robust lock mode (the default) the next process to lock the object
    /// learns that the holder died and sets the flag first; in OFD lock mode it stays `false`.
    /// See [`SharedArray::interrupted`](crate::SharedArray::interrupted).
    pub fn interrupted(&self) -> Result<bool> {
        self.handle.interrupted()
    }

    /// Clears the [`interrupted`](Self::interrupted) flag, once the application has repaired or
    /// accepted the value. Takes the write lock for a moment.
    pub fn clear_interrupted(&self) -> Result<()> {
        self.handle.clear_interrupted()
    }

    /// The current [`Version`]: it changes with every commit, in any process.
    pub fn version(&self) -> Version {
        self.handle.version()
    }

    /// Sleeps until another commit than `since` is published (by any thread or process), then
    /// returns the new value and its version. Returns at once if the object has already moved
    /// past `since`; after `timeout` with no commit, fails with
    /// [`Error::Timeout`](crate::Error::Timeout) whose `waited_for` is
    /// [`WaitedFor::Change`](crate::WaitedFor::Change) (the one timeout error of the API). The
    /// wake-up is immediate (a futex shared by every process mapping the file), except on a
    /// read-only store, whose waiters re-check every 2 ms.
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmstore::{Error, WaitedFor};
    /// # use shmstore::Store;
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = Store::open_or_create(dir.path().join("w.shm"), 1 << 20)?;
    /// let ticks = store.object_or_init("ticks", || 0u64)?;
    /// let (_, seen) = ticks.load_versioned()?;
    ///
    /// let writer = ticks.clone();
    /// std::thread::spawn(move || writer.store(42));
    /// let (value, now) = ticks.wait_for_change(seen, Duration::from_secs(5))?;
    /// assert_eq!(value, 42);
    /// assert!(now > seen);
    /// let quiet = ticks.wait_for_change(now, Duration::from_millis(10)); // nothing new
    /// assert!(matches!(quiet, Err(Error::Timeout { waited_for: WaitedFor::Change, .. })));
    /// # Ok::<(), shmstore::Error>(())
    /// ```
    pub fn wait_for_change(&self, since: Version, timeout: Duration) -> Result<(T, Version)>
    where
        T: Copy,
    {
        self.handle.wait_changed(since, Some(timeout))?;
        self.load_versioned()
    }

    /// Replaces the value, as one commit. The old value is not read, so this also repairs an
    /// object whose bytes are not a valid `T` ([`Error::InvalidValue`](crate::Error::InvalidValue)).
    pub fn store(&self, mut value: T) -> Result<()> {
        if const { T::LAYOUT.is_all_atomic() } {
            // `get()` users may use the atomics meanwhile: store them atomically.
            return self.handle.overwrite_all_atomic::<T>(staging::owned_bytes(&mut value));
        }
        if self.handle.entry.slot_count == 2 {
            return self.handle.store_object(&mut value);
        }
        self.handle.overwrite(0, staging::owned_bytes(&mut value))
    }

    /// Runs `f` on the value under the write lock and commits the result, returning what `f`
    /// returns: an atomic read-modify-write across threads and processes. If `f` panics, nothing
    /// is committed.
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<R> {
        if self.handle.entry.slot_count == 2 {
            return self.handle.update_object(f);
        }
        let mut guard = self.write()?;
        let result = f(&mut guard);
        guard.commit()?;
        Ok(result)
    }

    /// `&T` with no guard and no lock, for an object made entirely of atomics: each use then costs
    /// what the atomic operation costs, so a shared counter costs a `fetch_add`.
    ///
    /// Only types that implement [`AllAtomic`] have it (the derive implements it for every struct
    /// whose fields are all atomics or arrays or structs of them); for any other type, use a
    /// [`read`](Self::read) guard. Atomics synchronise themselves, so no lock is needed: every
    /// other access to the object, in any process, is atomic too (writes through
    /// [`write`](Self::write), [`store`](Self::store) and [`update`](Self::update) store the value
    /// back one atomic at a time, and still exclude each other and read guards; they do not wait
    /// for `get()` users, and an operation made through `get()` between a write guard's copy and
    /// its commit is overwritten by the commit).
    ///
    /// Each call checks that the object still lives where the handle found it, and fails as every
    /// other access does if not: [`Error::LayoutMismatch`](crate::Error::LayoutMismatch) once it
    /// has been migrated. A reference obtained before then stays valid (it is bound to the
    /// handle, and the object's bytes are never reused while the store is open) but keeps
    /// pointing at the old object, which nobody else uses any more: changes made through it are
    /// no longer seen by anyone. Call `get()` again rather than keeping the reference across
    /// migrations. On a read-only store it fails with [`Error::ReadOnly`](crate::Error::ReadOnly),
    /// as a read guard on a type holding atomics does. A process killed at any instant leaves
    /// every atomic as its last completed operation left it. Operations through the reference
    /// are not commits: like those made through a read guard, they do not change the object's
    /// [`Version`] or wake [`wait_for_change`](Self::wait_for_change).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    /// use shmstore::{SharedLayout, Store};
    ///
    /// #[derive(SharedLayout)]
    /// #[repr(C)]
    /// struct Hits { hits: AtomicU64, misses: AtomicU64 }
    ///
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open_or_create(dir.path().join("hits.shm"), 1 << 20)?;
    /// let counters = store.object_or_init("hits", || Hits { hits: AtomicU64::new(0), misses: AtomicU64::new(0) })?;
    ///
    /// for i in 0..1000 {
    ///     let c = counters.get()?; // no lock, no system call
    ///     if i % 10 == 0 { c.misses.fetch_add(1, Relaxed); } else { c.hits.fetch_add(1, Relaxed); }
    /// }
    /// assert_eq!(counters.get()?.hits.load(Relaxed), 900);
    /// # Ok::<(), shmstore::Error>(())
    /// ```
    ///
    /// A type with any other field does not have it:
    ///
    /// ```compile_fail,E0277
    /// # use std::sync::atomic::AtomicU64;
    /// # use shmstore::{SharedLayout, Store};
    /// #[derive(SharedLayout)]
    /// #[repr(C)]
    /// struct Mixed { hits: AtomicU64, limit: u64 }
    /// # let store = Store::open_or_create("mixed.shm", 1 << 20)?;
    /// let mixed = store.object_or_init("mixed", || Mixed { hits: AtomicU64::new(0), limit: 10 })?;
    /// mixed.get()?; // error: `u64` is not made entirely of atomics
    /// # Ok::<(), shmstore::Error>(())
    /// ```
    #[inline(always)]
    pub fn get(&self) -> Result<&T>
    where
        T: AllAtomic,
    {
        const { assert!(T::LAYOUT.is_all_atomic(), "an `AllAtomic` type whose layout is not all atomics") };
        let Some(at) = &self.atomic else { return Err(self.handle.get_refused()) };
        // SAFETY: the state (or forwarding) and serial words were located in this store's mapping
        // when the handle was made, and `self.handle` keeps the store, hence the mapping, alive
        // for as long as `self` is borrowed; they are atomics, valid with any bits.
        let (moved, serial) = unsafe { (at.moved.get(), at.serial.map(|serial| serial.get())) };
        self.handle.check_all_atomic_current(moved, serial)?;
        if const { T::LAYOUT.needs_validation() } {
            // A type holding an `AtomicBool`, whose byte must be 0 or 1, from a file that may
            // have been crafted before it was opened (cooperating writers only store 0 or 1).
            self.handle.validate_all_atomic(&at.value)?;
        }
        // SAFETY: located as above, with `T`'s size and alignment, so the reference (bounded by
        // the borrow of `self`) stays in a live mapping. Its bytes are all atomics
        // (`T: AllAtomic`), which every cooperating thread and process only ever accesses through
        // atomic operations (see `guard_free.rs`), so a shared reference races with nothing; they
        // are a valid `T`: any bits are valid for integer atomics, and an `AtomicBool`'s byte was
        // just validated.
        Ok(unsafe { at.value.get() })
    }

    /// This handle, committing with `durability` instead of the store's default.
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.handle.durability = durability;
        self
    }

    /// Whether this object is double-buffered: commits are crash-atomic and reads lock-free. Objects
    /// holding atomics are updated in place instead.
    pub fn is_double_buffered(&self) -> bool {
        self.handle.entry.slot_count == 2
    }
}

impl<T: SharedLayout> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared { handle: self.handle.clone(), atomic: self.atomic, _type: PhantomData }
    }
}

impl<T: SharedLayout> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").field("name", &self.name()).field("type", &T::LAYOUT.display_name()).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;
    use std::sync::Arc;

    use crate::entry::commit::{Step, STEP_HOOK};
    use crate::{Store, OPTIMISTIC_TRIES};

    /// The scheduler state of thread `tid` of this process (`S` when asleep), `None` once it ended.
    fn thread_state(tid: i32) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
        stat[stat.rfind(')')? + 1..].trim_start().chars().next()
    }

    enum Order {
        /// Commit this value, then acknowledge.
        Commit(u64),
        /// Take a write guard, acknowledge, and commit 999 through it once the reader is done or
        /// asleep (waiting for the guard's lock).
        Hold,
    }

    /// Runs one `load()` that loses its first `lost` optimistic races: a helper thread commits
    /// while the read is between its copy and its check (the `OptimisticCopied` hook). At the last
    /// try the helper also takes a write guard. A `load` that is still lock-free returns the last
    /// value committed; one that fell back to the shared lock waits for the guard, and returns the
    /// 999 committed through it. Returns the value and the number of optimistic tries.
    fn load_losing(lost: u32) -> (u64, u32) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_create(dir.path().join("races.shm"), 1 << 20).unwrap();
        let obj = store.object_or_init("n", || 0u64).unwrap();
        // SAFETY: `gettid` has no preconditions.
        let reader_tid = unsafe { libc::gettid() };
        let (hook_returned, reader_done) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let (order_tx, order_rx) = mpsc::channel::<Order>();
        let (ack_tx, ack_rx) = mpsc::channel::<()>();

        let helper = {
            let (obj, hook_returned, reader_done) = (obj.clone(), hook_returned.clone(), reader_done.clone());
            std::thread::spawn(move || {
                for order in order_rx {
                    match order {
                        Order::Commit(n) => obj.store(n).unwrap(),
                        Order::Hold => {
                            let mut guard = obj.write().unwrap();
                            ack_tx.send(()).unwrap();
                            // Once the hook has returned, the reader either finishes or, if it
                            // fell back to the lock, sleeps waiting for this guard: it has nothing
                            // else to sleep on.
                            while !hook_returned.load(Ordering::SeqCst) {
                                std::thread::yield_now();
                            }
                            while !reader_done.load(Ordering::SeqCst) && thread_state(reader_tid) != Some('S') {
                                std::thread::yield_now();
                            }
                            *guard = 999;
                            drop(guard);
                            return;
                        }
                    }
                    ack_tx.send(()).unwrap();
                }
            })
        };

        let tries = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let (counted, returned) = (tries.clone(), hook_returned.clone());
        STEP_HOOK.with(|h| {
            *h.borrow_mut() = Some(Box::new(move |step| {
                if step != Step::OptimisticCopied {
                    return;
                }
                let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
                if n <= lost {
                    order_tx.send(Order::Commit(u64::from(n))).unwrap();
                    ack_rx.recv().unwrap();
                }
                if n == OPTIMISTIC_TRIES {
                    order_tx.send(Order::Hold).unwrap();
                    ack_rx.recv().unwrap();
                    returned.store(true, Ordering::SeqCst);
                }
            }))
        });
        let value = obj.load();
        reader_done.store(true, Ordering::SeqCst);
        STEP_HOOK.with(|h| *h.borrow_mut() = None);
        helper.join().unwrap();
        (value.unwrap(), tries.load(Ordering::SeqCst))
    }

    /// `load()` stays lock-free through `OPTIMISTIC_TRIES - 1` lost races (its last try wins, even
    /// while a writer holds the lock), and takes the shared lock after `OPTIMISTIC_TRIES` of them.
    #[test]
    fn load_takes_the_shared_lock_after_optimistic_tries_lost_races() {
        let last = OPTIMISTIC_TRIES - 1;
        assert_eq!(load_losing(last), (u64::from(last), OPTIMISTIC_TRIES), "the last try must win without a lock");
        assert_eq!(load_losing(OPTIMISTIC_TRIES), (999, OPTIMISTIC_TRIES), "after every try lost, the lock");
    }
}

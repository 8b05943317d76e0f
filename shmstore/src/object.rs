//! [`Shared<T>`]: a typed handle to one object in a store.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use crate::commit::{Durability, Version};
use crate::error::Result;
use crate::handle::EntryHandle;
use crate::layout::SharedLayout;
use crate::lock::Wait;
use crate::view::{self, ReadGuard, WriteGuard};

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
/// # Atomics: hold one guard for a batch
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
    _type: PhantomData<fn() -> T>,
}

impl<T: SharedLayout> Shared<T> {
    pub(crate) fn new(handle: EntryHandle) -> Self {
        Shared { handle, _type: PhantomData }
    }

    /// The object's name in the store.
    pub fn name(&self) -> &str {
        self.handle.name()
    }

    fn read_with(&self, wait: Wait, timeout: Option<Duration>) -> Result<ReadGuard<'_, T>> {
        self.handle.read_object::<T>(wait, timeout)
    }

    fn write_with(&self, wait: Wait, timeout: Option<Duration>) -> Result<WriteGuard<'_, T>> {
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
        self.load_versioned().map(|(value, _)| value)
    }

    /// A copy of the current value and the [`Version`] it belongs to.
    #[inline(always)]
    pub fn load_versioned(&self) -> Result<(T, Version)>
    where
        T: Copy,
    {
        if self.handle.entry.slot_count == 2 {
            return self.handle.load_optimistic::<T>();
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
        self.handle.overwrite(0, view::owned_bytes(&mut value))
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
        Shared { handle: self.handle.clone(), _type: PhantomData }
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

    use crate::commit::{Step, STEP_HOOK};
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

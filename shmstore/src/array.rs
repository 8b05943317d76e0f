//! [`SharedArray<T>`]: a typed handle to a fixed-length array in a store.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use crate::entry::commit::Version;
use crate::entry::guard::{ReadGuard, WriteGuard};
use crate::entry::handle::EntryHandle;
use crate::entry::staging;
use crate::error::Result;
use crate::file::lock::Wait;
use crate::layout::SharedLayout;
use crate::options::Durability;

/// A typed handle to a named array in a [`Store`](crate::Store): the type-safe
/// `CreateViewAccessor(...).ReadArray/WriteArray`.
///
/// Every access is bounds-checked: a range past the end is
/// [`Error::OutOfBounds`](crate::Error::OutOfBounds), never a short copy. Guards and copies lock
/// the array against other threads and processes, like [`Shared`](crate::Shared).
///
/// Arrays are updated in place: every write is visible at once, and a process killed in the middle
/// of a `write_at` can leave that range partly written (objects, by contrast, commit atomically).
/// Every write bumps the array's [`Version`], so readers can wait for changes.
///
/// ```
/// use shmstore::Store;
///
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open_or_create(dir.path().join("samples.shm"), 1 << 20)?;
/// let samples = store.array_or_init::<f64>("samples", 1000, 0.0)?;
///
/// samples.write_at(2, &[1.0, 2.0])?;
/// let mut buf = [0.0; 4];
/// samples.read_at(0, &mut buf)?;
/// assert_eq!(buf, [0.0, 0.0, 1.0, 2.0]);
/// assert!(samples.write_at(999, &[1.0, 2.0]).is_err()); // one past the end
///
/// samples.write()?[10] = 5.0;
/// let total: f64 = samples.read()?.iter().sum();
/// assert_eq!(total, 8.0);
/// # Ok::<(), shmstore::Error>(())
/// ```
pub struct SharedArray<T: SharedLayout> {
    pub(crate) handle: EntryHandle,
    _type: PhantomData<fn() -> T>,
}

impl<T: SharedLayout> SharedArray<T> {
    pub(crate) fn new(handle: EntryHandle) -> Self {
        SharedArray { handle, _type: PhantomData }
    }

    /// The array's name in the store.
    pub fn name(&self) -> &str {
        self.handle.name()
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.handle.entry.count as usize
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Changes the array's length to `new_len`: the first `min(len, new_len)` elements are kept,
    /// and the new ones set to `fill`. It is crash-atomic: the array is rebuilt in new space and
    /// switched to with one store, so every process sees either the old array or the new one,
    /// whatever happens to this one. The old space is reused by later entries.
    ///
    /// This handle follows the change. Every other handle of the array (clones, and handles in
    /// other processes) fails with [`Error::Moved`](crate::Error::Moved) on its next access:
    /// open it again with [`Store::array`](crate::Store::array) to see the new length. (It takes
    /// `&mut self` for that reason: a guard borrowed from this handle cannot outlive the change.)
    ///
    /// It takes the array's write lock, so it waits for guards held in other threads and
    /// processes.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = shmstore::Store::open_or_create(dir.path().join("resize.shm"), 1 << 20)?;
    /// let mut samples = store.array_or_init::<u32>("samples", 3, 7)?;
    /// samples.resize(5, 0)?;
    /// assert_eq!(&*samples.read()?, &[7, 7, 7, 0, 0]);
    /// samples.resize(2, 0)?;
    /// assert_eq!(store.array::<u32>("samples")?.len(), 2);
    /// # Ok::<(), shmstore::Error>(())
    /// ```
    pub fn resize(&mut self, new_len: usize, fill: T) -> Result<()>
    where
        T: Copy,
    {
        self.handle = self.handle.resize::<T>(new_len as u64, staging::value_bytes(&fill))?;
        Ok(())
    }

    /// A shared guard over the whole array: `&[T]` while writers wait.
    pub fn read(&self) -> Result<ReadGuard<'_, [T]>> {
        self.handle.read::<T>(0, self.len(), Wait::Forever, None)
    }

    /// Like [`read`](Self::read), but fails with
    /// [`Error::WouldBlock`](crate::Error::WouldBlock) instead of waiting.
    pub fn try_read(&self) -> Result<ReadGuard<'_, [T]>> {
        self.handle.read::<T>(0, self.len(), Wait::Never, None)
    }

    /// Like [`read`](Self::read), but fails with [`Error::Timeout`](crate::Error::Timeout) after
    /// `timeout`.
    pub fn read_timeout(&self, timeout: Duration) -> Result<ReadGuard<'_, [T]>> {
        self.handle.read::<T>(0, self.len(), Wait::timeout(timeout), Some(timeout))
    }

    /// An exclusive guard over the whole array: `&mut [T]` while everyone else waits.
    pub fn write(&self) -> Result<WriteGuard<'_, [T]>> {
        self.handle.write::<T>(0, self.len(), Wait::Forever, None)
    }

    /// Like [`write`](Self::write), but fails with
    /// [`Error::WouldBlock`](crate::Error::WouldBlock) instead of waiting.
    pub fn try_write(&self) -> Result<WriteGuard<'_, [T]>> {
        self.handle.write::<T>(0, self.len(), Wait::Never, None)
    }

    /// Like [`write`](Self::write), but fails with [`Error::Timeout`](crate::Error::Timeout)
    /// after `timeout`.
    pub fn write_timeout(&self, timeout: Duration) -> Result<WriteGuard<'_, [T]>> {
        self.handle.write::<T>(0, self.len(), Wait::timeout(timeout), Some(timeout))
    }

    /// Copies elements `index..index + out.len()` into `out`.
    pub fn read_at(&self, index: usize, out: &mut [T]) -> Result<()>
    where
        T: Copy,
    {
        self.handle.check_range("read_at", index, out.len())?;
        // A plain copy out of the mapping is race-free here: the guard holds the shared lock, so
        // no cooperating writer changes these elements, and `T: Copy` means they hold no atomics
        // (nor any other `UnsafeCell`), the only bytes other readers may change meanwhile.
        out.copy_from_slice(&self.handle.read::<T>(index, out.len(), Wait::Forever, None)?);
        Ok(())
    }

    /// Copies `values` into elements `index..index + values.len()`. The old elements are not
    /// read, so this also repairs elements that are not valid `T`s.
    ///
    /// `T` must be `Copy`, so that nothing can change `values` while they are copied: types
    /// holding atomics (which are not `Copy`) can change behind a shared borrow, so an array of
    /// them is written with [`set`](Self::set) (which takes the value itself), a
    /// [`write`](Self::write) guard or [`update`](Self::update).
    pub fn write_at(&self, index: usize, values: &[T]) -> Result<()>
    where
        T: Copy,
    {
        self.handle.check_range("write_at", index, values.len())?;
        self.handle.overwrite(index, staging::slice_bytes(values))
    }

    /// A copy of element `index`.
    pub fn get(&self, index: usize) -> Result<T>
    where
        T: Copy,
    {
        self.handle.check_range("index", index, 1)?;
        // Race-free for the reasons given in `read_at`.
        Ok(self.handle.read::<T>(index, 1, Wait::Forever, None)?[0])
    }

    /// Sets element `index` to `value`.
    pub fn set(&self, index: usize, mut value: T) -> Result<()> {
        self.handle.check_range("index", index, 1)?;
        self.handle.overwrite(index, staging::owned_bytes(&mut value))
    }

    /// Runs `f` on elements `index..index + len` under the write lock and returns its result.
    pub fn update<R>(&self, index: usize, len: usize, f: impl FnOnce(&mut [T]) -> R) -> Result<R> {
        self.handle.check_range("update", index, len)?;
        self.handle.update_range(index, len, f)
    }

    /// Whether a writer died holding this array's write lock since the flag was last cleared
    /// ([`clear_interrupted`](Self::clear_interrupted)): its last write may be half done.
    ///
    /// An array is changed in place, with no rollback. A process killed in the middle of a
    /// `write_at`, `set`, `update_range` or a write guard leaves the elements it was writing as
    /// they were at that instant: some new, some old, and an element being copied possibly part
    /// old, part new (bytes that are no valid value of the type are refused on read with
    /// [`Error::InvalidValue`](crate::Error::InvalidValue), never handed out). Readers see that
    /// state as soon as they can lock the array again; elements the writer did not reach, and
    /// every earlier write, are intact.
    ///
    /// In robust lock mode ([`LockMode::Robust`](crate::LockMode::Robust), the default) the next
    /// process to lock the array is told by the mutex that its holder died, and sets this flag
    /// before its own access proceeds, so every later reader can tell, and repair or accept the
    /// data. In OFD lock mode the kernel releases a dead writer's lock without telling anyone, so
    /// the flag stays `false`.
    ///
    /// ```
    /// # use shmstore::Store;
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = Store::open_or_create(dir.path().join("i.shm"), 1 << 20)?;
    /// let samples = store.array_or_init::<u64>("samples", 4, 0)?;
    /// if samples.interrupted()? {
    ///     // A writer died mid-write: check the data (here: start over), then say so.
    ///     samples.write_at(0, &[0; 4])?;
    ///     samples.clear_interrupted()?;
    /// }
    /// # Ok::<(), shmstore::Error>(())
    /// ```
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

    /// Sleeps until the array is written (by any thread or process) after `since`, and returns the
    /// new version; after `timeout` with no write, fails with [`Error::Timeout`](crate::Error::Timeout)
    /// whose `waited_for` is [`WaitedFor::Change`](crate::WaitedFor::Change) (the one timeout error
    /// of the API).
    pub fn wait_for_change(&self, since: Version, timeout: Duration) -> Result<Version> {
        self.handle.wait_changed(since, Some(timeout))
    }

    /// This handle, with writes synced to disk ([`Durability::PowerLoss`]) or not.
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.handle.durability = durability;
        self
    }
}

impl<T: SharedLayout> Clone for SharedArray<T> {
    fn clone(&self) -> Self {
        SharedArray { handle: self.handle.clone(), _type: PhantomData }
    }
}

impl<T: SharedLayout> fmt::Debug for SharedArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedArray")
            .field("name", &self.name())
            .field("type", &T::LAYOUT.display_name())
            .field("len", &self.len())
            .finish()
    }
}

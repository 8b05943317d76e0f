//! [`Shared<T>`]: a typed handle to one object in a store.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use crate::error::Result;
use crate::handle::EntryHandle;
use crate::layout::SharedLayout;
use crate::lock::Wait;
use crate::view::{ReadGuard, WriteGuard};

/// A typed handle to a named object in a [`Store`](crate::Store).
///
/// Made by [`Store::object_or_init`](crate::Store::object_or_init) or
/// [`Store::object`](crate::Store::object), which check the stored layout against `T` once. The
/// handle caches the object's location: every access afterwards is a lock and a pointer.
///
/// Guards lock the object against other threads *and* other processes: [`read`](Self::read)
/// shares, [`write`](Self::write) excludes. The locks are kernel byte-range locks, released by the
/// kernel if the holder dies.
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
    handle: EntryHandle,
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
        let guard = self.handle.read::<T>(0, 1, wait, timeout)?;
        Ok(guard.into_first().expect("an object guard covers exactly one value"))
    }

    fn write_with(&self, wait: Wait, timeout: Option<Duration>) -> Result<WriteGuard<'_, T>> {
        let guard = self.handle.write::<T>(0, 1, wait, timeout)?;
        Ok(guard.into_first().expect("an object guard covers exactly one value"))
    }

    /// A shared guard: `&T` for as long as it lives, while writers (in any process) wait.
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
    pub fn load(&self) -> Result<T>
    where
        T: Copy,
    {
        Ok(*self.read()?)
    }

    /// Replaces the value. The old value is not read, so this also repairs an object whose bytes
    /// are not a valid `T` ([`Error::InvalidValue`](crate::Error::InvalidValue)).
    pub fn store(&self, value: T) -> Result<()> {
        self.handle.overwrite(0, std::slice::from_ref(&value))
    }

    /// Runs `f` on the value under the write lock and returns what `f` returns: an atomic
    /// read-modify-write across threads and processes.
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<R> {
        let mut guard = self.write()?;
        Ok(f(&mut guard))
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

//! [`ArrayView`]: a bounds-checked window onto a sub-range of a [`SharedArray`] or a
//! [`SharedBytes`](crate::SharedBytes) region: the typed `CreateViewAccessor(offset, length)`.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Bound, Range, RangeBounds};
use std::time::Duration;

use crate::array::SharedArray;
use crate::entry::commit::Version;
use crate::entry::guard::{ReadGuard, WriteGuard};
use crate::entry::handle::EntryHandle;
use crate::entry::staging;
use crate::error::{Error, Result};
use crate::file::lock::Wait;
use crate::layout::SharedLayout;

/// A window onto elements `start..start + len` of a [`SharedArray<T>`] (or of a byte region, with
/// `T = u8`), made by [`SharedArray::view`] or [`SharedBytes::view`](crate::SharedBytes::view).
///
/// Every index is relative to the view's start and checked against the view's length, so code
/// handed a view cannot touch elements outside it: an out-of-view access is
/// [`Error::OutOfBounds`] whose `name` is the entry's name followed by the view's range
/// (`samples[10..20]`), and whose `start`, `end` and `len` count from the view's start. Guards
/// cover just the view's elements.
///
/// A view borrows the handle it came from, like a slice borrows its vector: it costs nothing to
/// make (no reference counts, no lookup), is `Copy`, and cannot outlive the array. Guards taken
/// through it borrow the array, not the view, so `samples.view(0..10)?.read()?` works. To keep a
/// window for longer, or send it to another thread, keep a clone of the [`SharedArray`] (handles
/// are cheap to clone) and the range, and make the view where it is used.
///
/// Locking is per entry, not per view: a view's write guard holds the whole array's exclusive
/// lock, and a write through a view bumps the array's [`Version`].
///
/// ```
/// use shmstore::Store;
///
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open_or_create(dir.path().join("views.shm"), 1 << 20)?;
/// let samples = store.array_or_init::<f64>("samples", 100, 0.0)?;
///
/// let window = samples.view(10..20)?; // elements 10..20
/// assert_eq!(window.len(), 10);
/// window.write_at(2, &[1.5, 2.5])?; // elements 12 and 13
/// assert_eq!(samples.get(12)?, 1.5);
/// assert!(window.set(10, 9.0).is_err()); // index 10 is past the view's end
/// assert!(samples.view(95..105).is_err()); // the view itself must fit
///
/// window.write()?.fill(7.0); // a guard over just the view
/// assert_eq!(samples.read()?.iter().filter(|&&x| x == 7.0).count(), 10);
/// # Ok::<(), shmstore::Error>(())
/// ```
pub struct ArrayView<'a, T: SharedLayout> {
    handle: &'a EntryHandle,
    /// The first element, counted from the start of the entry.
    start: usize,
    len: usize,
    _type: PhantomData<fn() -> T>,
}

/// The `start..end` a range selects from `0..len`, where an overflowing bound becomes `u64::MAX`
/// (so that it fails the bounds check instead of wrapping).
pub(crate) fn resolve(start: Bound<u64>, end: Bound<u64>, len: u64) -> (u64, u64) {
    let start = match start {
        Bound::Included(s) => s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match end {
        Bound::Included(e) => e.saturating_add(1),
        Bound::Excluded(e) => e,
        Bound::Unbounded => len,
    };
    (start, end)
}

impl<'a, T: SharedLayout> ArrayView<'a, T> {
    /// The view of elements `start..end` of `handle`'s entry, after checking that they lie within
    /// `0..len`, the range of the entry or view called `name`, which starts at element `base`.
    fn checked(handle: &'a EntryHandle, name: &str, base: usize, (start, end): (u64, u64), len: u64) -> Result<Self> {
        let fits = start <= end && end <= len;
        match (fits, usize::try_from(start), usize::try_from(end)) {
            (true, Ok(start), Ok(end)) => {
                Ok(ArrayView { handle, start: base + start, len: end - start, _type: PhantomData })
            }
            _ => Err(Error::OutOfBounds { name: name.to_owned(), what: "view", start, end, len }),
        }
    }

    /// The view of elements `start..end` of `handle`'s whole entry, named `name`, of `len` elements.
    pub(crate) fn new(handle: &'a EntryHandle, name: &str, start: u64, end: u64, len: u64) -> Result<Self> {
        Self::checked(handle, name, 0, (start, end), len)
    }

    /// The name of the entry the view looks into.
    pub fn name(&self) -> &'a str {
        self.handle.name()
    }

    /// The number of elements in the view.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the view has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The index in the whole array of the view's first element (the accessor's offset).
    pub fn start(&self) -> usize {
        self.start
    }

    /// The elements the view covers, as indices in the whole array.
    pub fn range(&self) -> Range<usize> {
        self.start..self.start + self.len
    }

    /// The view's name in errors: `entry[start..end]`.
    fn label(&self) -> String {
        format!("{}[{}..{}]", self.name(), self.start, self.start + self.len)
    }

    /// Bounds-checks `index..index + count` against the view and returns the absolute index.
    fn check(&self, what: &'static str, index: usize, count: usize) -> Result<usize> {
        match index.checked_add(count) {
            Some(end) if end <= self.len => Ok(self.start + index),
            end => Err(Error::OutOfBounds {
                name: self.label(),
                what,
                start: index as u64,
                end: end.map_or(u64::MAX, |e| e as u64),
                len: self.len as u64,
            }),
        }
    }

    /// A narrower view: `range` counts from this view's start and must lie within it.
    pub fn view(&self, range: impl RangeBounds<usize>) -> Result<ArrayView<'a, T>> {
        let bound = |b: Bound<&usize>| b.map(|&i| i as u64);
        let range = resolve(bound(range.start_bound()), bound(range.end_bound()), self.len as u64);
        Self::checked(self.handle, &self.label(), self.start, range, self.len as u64)
    }

    /// A shared guard over the view's elements: `&[T]` while writers (of any part of the array)
    /// wait.
    pub fn read(&self) -> Result<ReadGuard<'a, [T]>> {
        self.handle.read::<T>(self.start, self.len, Wait::Forever, None)
    }

    /// Like [`read`](Self::read), but fails with [`Error::WouldBlock`] instead of waiting.
    pub fn try_read(&self) -> Result<ReadGuard<'a, [T]>> {
        self.handle.read::<T>(self.start, self.len, Wait::Never, None)
    }

    /// Like [`read`](Self::read), but fails with [`Error::Timeout`] after `timeout`.
    pub fn read_timeout(&self, timeout: Duration) -> Result<ReadGuard<'a, [T]>> {
        self.handle.read::<T>(self.start, self.len, Wait::timeout(timeout), Some(timeout))
    }

    /// An exclusive guard over the view's elements: `&mut [T]`, while everyone else waits to
    /// access any part of the array.
    pub fn write(&self) -> Result<WriteGuard<'a, [T]>> {
        self.handle.write::<T>(self.start, self.len, Wait::Forever, None)
    }

    /// Like [`write`](Self::write), but fails with [`Error::WouldBlock`] instead of waiting.
    pub fn try_write(&self) -> Result<WriteGuard<'a, [T]>> {
        self.handle.write::<T>(self.start, self.len, Wait::Never, None)
    }

    /// Like [`write`](Self::write), but fails with [`Error::Timeout`] after `timeout`.
    pub fn write_timeout(&self, timeout: Duration) -> Result<WriteGuard<'a, [T]>> {
        self.handle.write::<T>(self.start, self.len, Wait::timeout(timeout), Some(timeout))
    }

    /// Copies the view's elements `index..index + out.len()` into `out`.
    pub fn read_at(&self, index: usize, out: &mut [T]) -> Result<()>
    where
        T: Copy,
    {
        let at = self.check("read_at", index, out.len())?;
        // Race-free as in `SharedArray::read_at`: shared lock held, and `T: Copy` holds no atomics.
        out.copy_from_slice(&self.handle.read::<T>(at, out.len(), Wait::Forever, None)?);
        Ok(())
    }

    /// Copies `values` into the view's elements `index..index + values.len()`; if they do not
    /// all fit in the view, nothing is written. `T` must be `Copy`, as for
    /// [`SharedArray::write_at`].
    pub fn write_at(&self, index: usize, values: &[T]) -> Result<()>
    where
        T: Copy,
    {
        let at = self.check("write_at", index, values.len())?;
        self.handle.overwrite(at, staging::slice_bytes(values))
    }

    /// A copy of the view's element `index`.
    pub fn get(&self, index: usize) -> Result<T>
    where
        T: Copy,
    {
        let at = self.check("index", index, 1)?;
        // Race-free as in `SharedArray::read_at`.
        Ok(self.handle.read::<T>(at, 1, Wait::Forever, None)?[0])
    }

    /// Sets the view's element `index` to `value`.
    pub fn set(&self, index: usize, mut value: T) -> Result<()> {
        let at = self.check("index", index, 1)?;
        self.handle.overwrite(at, staging::owned_bytes(&mut value))
    }

    /// Runs `f` on the view's elements `index..index + len` under the write lock and returns its
    /// result.
    pub fn update<R>(&self, index: usize, len: usize, f: impl FnOnce(&mut [T]) -> R) -> Result<R> {
        let at = self.check("update", index, len)?;
        self.handle.update_range(at, len, f)
    }

    /// The array's current [`Version`]. Versions are per entry: a write anywhere in the array,
    /// inside this view or not, changes it.
    pub fn version(&self) -> Version {
        self.handle.version()
    }

    /// Sleeps until the array is written (anywhere, by any thread or process) after `since`, and
    /// returns the new version; after `timeout` with no write, fails with [`Error::Timeout`] whose
    /// `waited_for` is [`WaitedFor::Change`](crate::WaitedFor::Change) (the one timeout error of the
    /// API).
    pub fn wait_for_change(&self, since: Version, timeout: Duration) -> Result<Version> {
        self.handle.wait_changed(since, Some(timeout))
    }
}

impl<T: SharedLayout> SharedArray<T> {
    /// A view of elements `range` (for example `10..20`, `..5`, `90..`): `read_at`, `write_at`,
    /// `get`, `set`, `update` and guards relative to the view's start and checked against its
    /// end; see [`ArrayView`]. A range that is reversed or reaches past the array's end is
    /// [`Error::OutOfBounds`].
    pub fn view(&self, range: impl RangeBounds<usize>) -> Result<ArrayView<'_, T>> {
        let bound = |b: Bound<&usize>| b.map(|&i| i as u64);
        let len = self.len() as u64;
        let (start, end) = resolve(bound(range.start_bound()), bound(range.end_bound()), len);
        ArrayView::new(&self.handle, self.name(), start, end, len)
    }
}

impl<T: SharedLayout> Clone for ArrayView<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: SharedLayout> Copy for ArrayView<'_, T> {}

impl<T: SharedLayout> fmt::Debug for ArrayView<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayView")
            .field("name", &self.name())
            .field("type", &T::LAYOUT.display_name())
            .field("range", &self.range())
            .finish()
    }
}

//! Crash-atomic commits, lock-free reads and change notification.
//!
//! # The protocol
//!
//! An object without atomics has two data slots and a sequence word `seq` in its catalog record;
//! the **active** slot is `seq & 1`. All accesses to the slots of such an object are atomic word
//! accesses, except plain reads made under the entry's shared lock (which excludes every writer).
//!
//! A **commit** runs under the entry's exclusive lock:
//! 1. the new value is copied into the inactive slot `(seq + 1) & 1`;
//! 2. with [`Durability::PowerLoss`], that slot is written to disk (`msync`);
//! 3. `seq` is bumped with a release store, which flips the active slot: this single store is the
//!    commit point;
//! 4. with [`Durability::PowerLoss`], the record holding `seq` is written to disk;
//! 5. waiters are woken, if there are any.
//!
//! A process killed before step 3 leaves `seq`, and so the previous value, untouched; one killed
//! after it has published a complete slot. A power loss before step 4 completes can lose the
//! commit, but never exposes a half-written slot, because the slot reached the disk before `seq`
//! changed.
//!
//! An **optimistic read** (a [`Shared::load`](crate::Shared::load)) takes no lock and makes no
//! system call: it reads `seq` (acquire), copies the slot `seq & 1` with atomic loads, issues an
//! acquire fence and re-reads `seq`. If `seq` did not move, no writer touched that slot during the
//! copy: the next writer writes the *other* slot, and the one after it (the first that can write
//! this slot again) starts only after the first one's `seq` store, and issues a release fence
//! before its first slot store, so a reader that sees any of its bytes also sees the new `seq`.
//! A reader that loses this race [`OPTIMISTIC_TRIES`] times in a row takes the shared lock
//! instead, so a stream of writers cannot starve it.
//!
//! The atomic accesses and fences of commits and optimistic reads live in `seqlock.rs`, generic
//! over the atomic word, so that the loom model of the protocol (`tests/loom.rs`) runs the very
//! functions and orderings this module uses.
//!
//! Entries updated in place (arrays, and objects holding atomics) bump `seq` after every write
//! too, so that versions and [`wait_for_change`](crate::Shared::wait_for_change) work for every
//! entry.
//!
//! **Waiting** uses a futex on the record's `futex` word (not process-private, so it works across
//! processes mapping the file). Waiters register in the record's `waiters` count; a committer bumps
//! `futex` and issues `FUTEX_WAKE` only if that count is non-zero, so commits pay one atomic
//! increment and no system call when nobody waits. A waiter on a read-only store cannot register
//! (its mapping is read-only), so it re-checks every 2 ms instead. A waiter killed while it sleeps
//! leaves the count raised: everything still works, but commits to that entry then always make the
//! wake-up system call.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::entry::guard::WriteGuard;
use crate::entry::handle::{EntryHandle, Hold};
use crate::entry::seqlock;
use crate::entry::staging::{owned_bytes, Staging};
use crate::error::{Error, Result, WaitedFor};
use crate::file::lock::{LockError, Wait};
use crate::file::lock_mode::READ_ONLY_POLL;
use crate::layout::SharedLayout;
use crate::options::Durability;
use crate::sys;

/// How many times an optimistic read retries before it takes the shared lock.
pub const OPTIMISTIC_TRIES: u32 = 64;

/// The commit sequence number of an entry: it grows by one with every commit, in every process.
///
/// Compare versions to tell whether anything changed since you last looked, and pass one to
/// [`Shared::wait_for_change`](crate::Shared::wait_for_change) to sleep until something does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub(crate) u64);

impl Version {
    /// The number of commits the entry has seen since it was created.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// The steps of a commit, in order; a test hook observes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) enum Step {
    /// The new value is in the inactive slot.
    SlotWritten,
    /// The inactive slot is on disk.
    SlotSynced,
    /// `seq` has been bumped: the commit is visible.
    Published,
    /// The record holding `seq` is on disk.
    RecordSynced,
    /// An optimistic read has copied the slot and is about to check whether `seq` moved (a test
    /// that commits here makes the read lose its race). Not a commit step.
    OptimisticCopied,
    /// An entry changed in place has its data on disk (before its version is bumped).
    DataSynced,
    /// A commit made the wake-up system call, because some process waits on the entry.
    Woke,
}

/// Something that watches the steps of commits (tests only).
#[cfg(test)]
pub(crate) type StepHook = Box<dyn FnMut(Step)>;

#[cfg(test)]
thread_local! {
    /// Called at each [`Step`] of a commit made by this thread (tests only).
    pub(crate) static STEP_HOOK: std::cell::RefCell<Option<StepHook>> = const { std::cell::RefCell::new(None) };
}

fn step(_step: Step) {
    #[cfg(test)]
    STEP_HOOK.with(|hook| {
        // A hook that reads or commits itself makes steps of its own: those are not reported.
        if let Some(hook) = hook.try_borrow_mut().ok().as_mut().and_then(|h| h.as_mut()) {
            hook(_step);
        }
    });
}

impl EntryHandle {
    fn live_u64(&self, offset: u64) -> &AtomicU64 {
        self.store.map().atomic_u64(self.at + offset).expect("records lie inside the mapping")
    }

    fn live_u32(&self, offset: u64) -> &AtomicU32 {
        self.store.map().atomic_u32(self.at + offset).expect("records lie inside the mapping")
    }

    /// The entry's sequence word.
    pub(crate) fn seq(&self) -> &AtomicU64 {
        self.live_u64(self.store.words.seq)
    }

    /// The entry's current version.
    pub(crate) fn version(&self) -> Version {
        Version(self.seq().load(Ordering::Acquire))
    }

    fn slot_offset(&self, seq: u64) -> u64 {
        self.entry.data_offset + seqlock::active(seq) as u64 * self.entry.slot_stride
    }

    /// The words of the slot at `offset` that hold `len` bytes, or `None` outside the mapping.
    fn slot_words(&self, offset: u64, len: usize) -> Option<&[AtomicU64]> {
        self.store.map().atomic_words(offset, len.div_ceil(8))
    }

    /// Copies the slot at `offset` into `out` with atomic loads (tests).
    #[cfg(test)]
    fn copy_out(&self, offset: u64, out: &mut [u8]) -> bool {
        self.slot_words(offset, out.len()).is_some_and(|words| seqlock::copy_out(words, out))
    }

    fn outside(&self) -> Error {
        self.store.corrupt(format!("entry `{}` points outside the mapping", self.entry.name))
    }

    /// `load()`'s fast path: one optimistic read of a double-buffered object, straight into a
    /// `T`, with no error path and no version. `None` when it cannot answer at once (not
    /// double-buffered, migrated, a commit raced with the copy, or bytes that fail validation):
    /// the caller then takes [`load_optimistic`](Self::load_optimistic) with one try fewer, which
    /// says why or retries.
    #[inline(always)]
    pub(crate) fn load_fast<T: SharedLayout>(&self) -> Option<T> {
        let (seq, slots, still) = self.hot()?;
        // Both slots cover a `T` (they were located for its layout): checked here, before the
        // read, the check does not depend on which slot is active, so the compiler can drop the
        // one `fill` makes (and hoist this one out of a caller's loop).
        let words = std::mem::size_of::<T>().div_ceil(8);
        if slots[0].len() < words || slots[1].len() < words {
            return None;
        }
        // As in `load_optimistic`: a reader that sees the `seq` bump of a migration, removal or
        // rename sees the entry marked, and leaves the answer to the slow path.
        let check = || if still.moved_away() { Err(()) } else { Ok(()) };
        // Filled in place, so that the words go from the loads to the caller's value with no
        // staging copy in between (one made with wider moves stalls on store forwarding).
        let mut buf = std::mem::MaybeUninit::<T>::uninit();
        let (filled, _) = seqlock::read(seq, slots, 1, check, |words| {
            let filled = Staging::<T>::fill(&mut buf, words);
            step(Step::OptimisticCopied);
            filled
        })
        .ok()??;
        if !filled {
            return None;
        }
        // SAFETY: `fill` returned `true` for `buf`, which nothing changed since.
        unsafe { Staging::from_filled(buf) }.into_value().ok()
    }

    /// A copy of the current value of a double-buffered object, without a lock if possible:
    /// up to `tries` optimistic reads, then the shared lock.
    #[inline(always)]
    pub(crate) fn load_optimistic<T: SharedLayout>(&self, tries: u32) -> Result<(T, Version)> {
        // Everything the loop touches was located when the handle was made: the sequence and
        // forwarding words, and both slots. (Mappings are never unmapped while the store lives,
        // so these stay valid even if the store grows meanwhile.)
        let Some((seq, slots, still)) = self.hot() else { return Err(self.outside()) };
        // A migration sets `moved_to` before it bumps `seq`: a reader that sees that bump sees
        // the move too, and never reads past the last value of the old type. (A migration never
        // touches the old slots, so a read that races with one returns the value as it was just
        // before it.)
        let check = || if still.moved_away() { self.check_current() } else { Ok(()) };
        loop {
            if let Some((staging, before)) = seqlock::read(seq, slots, tries, check, |words| {
                let staging = Staging::<T>::from_words(words);
                step(Step::OptimisticCopied);
                staging
            })? {
                let staging = staging.ok_or_else(|| self.outside())?;
                return Ok((self.finish_staging(staging)?, Version(before)));
            }
            // A read-only mapping in robust lock mode cannot take the lock (it lives in the
            // file): it keeps trying, letting the writers run in between.
            if !self.store.cannot_lock() {
                break;
            }
            std::thread::yield_now();
        }
        // Writers keep winning: queue up behind them instead.
        let hold = self.hold(false, Wait::Forever, None)?;
        self.read_slot::<T>(&hold)
    }

    /// Copies the active slot under `hold` (a shared or exclusive lock on this entry).
    ///
    /// Straight into a `T` (no staging copy, a copy of constant length for a double-buffered
    /// object): this is the first half of every `update` and write guard. The bytes are
    /// validated all the same: the lock keeps out cooperating writers only, and the file may
    /// have been crafted.
    #[inline(always)]
    pub(crate) fn read_slot<T: SharedLayout>(&self, hold: &Hold<'_>) -> Result<(T, Version)> {
        let mut buf = std::mem::MaybeUninit::<T>::uninit();
        let version = self.read_slot_into(hold, &mut buf)?;
        // SAFETY: `read_slot_into` succeeded: it wrote every byte of `buf`, and they are a valid
        // `T`.
        Ok((unsafe { buf.assume_init() }, version))
    }

    /// [`read_slot`](Self::read_slot) into `out`: when it succeeds, every byte of `out` is
    /// written, and they are a valid `T`.
    #[inline(always)]
    pub(crate) fn read_slot_into<T: SharedLayout>(
        &self,
        _hold: &Hold<'_>,
        out: &mut std::mem::MaybeUninit<T>,
    ) -> Result<Version> {
        let (before, filled) = match self.hot() {
            Some((seq, slots, _)) => {
                let before = seq.load(Ordering::Acquire);
                (before, Staging::<T>::fill(out, if seqlock::active(before) == 0 { slots[0] } else { slots[1] }))
            }
            None => {
                let before = self.seq().load(Ordering::Acquire);
                let words = self.slot_words(self.slot_offset(before), std::mem::size_of::<T>());
                (before, words.is_some_and(|words| Staging::<T>::fill(out, words)))
            }
        };
        if !filled {
            return Err(self.outside());
        }
        // SAFETY: `fill` returned `true` for `out`, which nothing changed since.
        unsafe { Staging::validate_filled(out) }.map_err(|invalid| self.invalid::<T>(invalid))?;
        Ok(Version(before))
    }

    #[cold]
    fn invalid<T: SharedLayout>(&self, invalid: crate::layout::InvalidValue) -> Error {
        Error::InvalidValue { name: self.entry.name.clone(), type_name: T::LAYOUT.display_name(), invalid }
    }

    /// `Shared::write` on a double-buffered object: a guard over a private copy of its value,
    /// committed when the guard drops.
    ///
    /// The lock writes its hold straight into the guard's room, where it stays (see
    /// [`Locks::write_into`](crate::file::lock::Locks::write_into)).
    #[inline(always)]
    pub(crate) fn write_staged<T: SharedLayout>(
        &self,
        wait: Wait,
        timeout: Option<Duration>,
    ) -> Result<WriteGuard<'_, T>> {
        let store = &*self.store;
        if store.read_only || self.entry.slot_count != 2 {
            // Refused: `hold` says why.
            let hold = self.hold(true, wait, timeout)?;
            return WriteGuard::staged_commit(
                self,
                |slot| {
                    slot.write(hold);
                    Ok(())
                },
                |hold, slot| self.read_slot_into(hold, slot).map(|_| ()),
            );
        }
        WriteGuard::staged_commit(
            self,
            |slot| {
                let lock = self.lock()?;
                store
                    .lock_state
                    .write_into(lock, &store.file, &store.scope, wait, false, slot)
                    .map_err(|e| self.lock_failed(Some(e), timeout))
            },
            |hold, slot| {
                self.check_current_locked()?;
                self.read_slot_into(hold, slot).map(|_| ())
            },
        )
    }

    #[inline(always)]
    fn finish_staging<T: SharedLayout>(&self, staging: Staging<T>) -> Result<T> {
        staging.into_value().map_err(|invalid| Error::InvalidValue {
            name: self.entry.name.clone(),
            type_name: T::LAYOUT.display_name(),
            invalid,
        })
    }

    /// `Shared::store` on a double-buffered object: the exclusive lock, and `value` committed.
    /// Generic, so that the copy into the slot has a constant length.
    #[inline]
    pub(crate) fn store_object<T: SharedLayout>(&self, value: &mut T) -> Result<()> {
        self.with_exclusive(|hold| self.publish_inline(hold, owned_bytes(value), self.durability))
    }

    /// Runs `f` under the exclusive lock of a double-buffered object (waiting as long as it
    /// takes), as [`hold`](Self::hold) would take it, with the same checks.
    ///
    /// The hold stays where the lock made it, and `f` borrows it there: a hold returned by value
    /// is copied at every level it passes (it is about a hundred bytes, written field by field,
    /// and read back whole, which stalls the processor), and a commit is short enough for that to
    /// show.
    #[inline(always)]
    pub(crate) fn with_exclusive<R>(&self, f: impl FnOnce(&Hold<'_>) -> Result<R>) -> Result<R> {
        let store = &*self.store;
        if store.read_only || self.entry.slot_count != 2 {
            // Refused (or an entry changed in place): `hold` says why, or takes the lock.
            return f(&self.hold(true, Wait::Forever, None)?);
        }
        let locked = store.lock_state.write(self.lock()?, &store.file, &store.scope, Wait::Forever, false);
        let hold = match &locked {
            Ok(hold) => hold,
            Err(_) => return Err(self.lock_failed(locked.err(), None)),
        };
        self.check_current_locked()?;
        f(hold)
    }

    /// What [`hold`](Self::hold) checks once it has the lock: a migration commits under this
    /// lock, so if the entry is current now, it stays so until the lock is released.
    #[inline(always)]
    fn check_current_locked(&self) -> Result<()> {
        if self.moved_away() {
            self.check_current()
        } else {
            Ok(())
        }
    }

    /// The error for a lock that [`with_exclusive`](Self::with_exclusive) or
    /// [`write_staged`](Self::write_staged) could not take, waiting at most `timeout`.
    #[cold]
    #[inline(never)]
    fn lock_failed(&self, error: Option<LockError>, timeout: Option<Duration>) -> Error {
        match error {
            Some(e) => self.store.entry_lock_error(e, &self.entry.name, true, timeout),
            None => self.outside(),
        }
    }

    /// Commits `bytes` (one value) to a double-buffered object. The caller holds `hold`, the
    /// entry's exclusive lock.
    #[inline]
    pub(crate) fn publish(&self, hold: &Hold<'_>, bytes: &[u8], durability: Durability) -> Result<()> {
        self.publish_inline(hold, bytes, durability)
    }

    /// [`publish`](Self::publish), inlined into its caller: for a caller whose `bytes` have a
    /// length known at compile time (one `T`), the copy becomes that many word stores.
    #[inline(always)]
    pub(crate) fn publish_inline(&self, _hold: &Hold<'_>, bytes: &[u8], durability: Durability) -> Result<()> {
        let Some((seq, slots, _)) = self.hot() else { return self.publish_located(bytes, durability) };
        let words = bytes.len().div_ceil(8);
        if durability != Durability::Process {
            return self.publish_located(bytes, durability);
        }
        // Both slots were located when the handle was made, for the entry's value size.
        // A select rather than an index, as in `seqlock::read`: indexing stores both slots to the
        // stack as an array, and reading a length back out of those 16-byte stores stalled.
        let slot = |next| if seqlock::active(next) == 0 { slots[0] } else { slots[1] }.get(..words).ok_or(());
        let written = || {
            step(Step::SlotWritten);
            Ok(())
        };
        if seqlock::commit(seq, bytes, slot, || (), written).is_err() {
            return Err(self.outside());
        }
        step(Step::Published);
        self.wake();
        Ok(())
    }

    /// [`publish`](Self::publish) out of line: for an entry located without its hot words, or a
    /// commit that syncs.
    #[cold]
    #[inline(never)]
    fn publish_located(&self, bytes: &[u8], durability: Durability) -> Result<()> {
        // Where the inactive slot lies, once `slot` has found it, for `written` to sync it.
        let target = std::cell::Cell::new(0);
        let hot = self.hot();
        let slot = |next| {
            target.set(self.slot_offset(next));
            match hot {
                // Both slots were located when the handle was made.
                Some((_, slots, _)) => slots[seqlock::active(next)].get(..bytes.len().div_ceil(8)),
                None => self.slot_words(target.get(), bytes.len()),
            }
            .ok_or_else(|| self.outside())
        };
        let written = || {
            step(Step::SlotWritten);
            if durability == Durability::PowerLoss {
                self.store.sync_range(target.get(), bytes.len() as u64)?;
                step(Step::SlotSynced);
            }
            Ok(())
        };
        let seq = hot.map_or_else(|| self.seq(), |(seq, _, _)| seq);
        seqlock::commit(seq, bytes, slot, || self.outside(), written)?;
        step(Step::Published);
        if durability == Durability::PowerLoss {
            self.store.sync_range(self.at, self.store.words.record_len)?;
            step(Step::RecordSynced);
        }
        self.wake();
        Ok(())
    }

    /// Records a change made in place (arrays, objects holding atomics): syncs the entry's data
    /// for [`Durability::PowerLoss`], bumps the version and wakes waiters. The caller holds `_hold`,
    /// the entry's exclusive lock.
    pub(crate) fn changed_in_place(&self, _hold: &Hold<'_>, durability: Durability) -> Result<()> {
        let synced = if durability == Durability::PowerLoss {
            let synced = self.store.sync_range(self.entry.data_offset, self.entry.data_len());
            step(Step::DataSynced);
            synced
        } else {
            Ok(())
        };
        self.seq().fetch_add(1, Ordering::Release);
        self.wake();
        synced
    }

    #[inline]
    fn wake(&self) {
        let (futex, waiters) = self
            .notify_words()
            .unwrap_or_else(|| (self.live_u32(self.store.words.futex), self.live_u32(self.store.words.waiters)));
        futex.fetch_add(1, Ordering::SeqCst);
        if waiters.load(Ordering::SeqCst) > 0 {
            sys::futex_wake(futex);
            step(Step::Woke);
        }
    }

    /// Sleeps until the entry's version differs from `since`, or `timeout` passes.
    pub(crate) fn wait_changed(&self, since: Version, timeout: Option<Duration>) -> Result<Version> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let futex = self.live_u32(self.store.words.futex);
        let waiters = self.live_u32(self.store.words.waiters);
        // A read-only mapping cannot register a waiter (the store would fault), so writers will not
        // know to wake it: it sleeps in short slices instead, and notices a commit within one.
        let registered = !self.store.read_only;
        if registered {
            waiters.fetch_add(1, Ordering::SeqCst);
        }
        let result = (|| loop {
            // Read the futex word before the version: a commit after this read changes the word,
            // so the wait below returns at once instead of missing it.
            let word = futex.load(Ordering::SeqCst);
            let now = self.seq().load(Ordering::Acquire);
            // A migrated entry never changes again under this record: say so instead of waiting.
            self.check_current()?;
            if now != since.0 {
                return Ok(Version(now));
            }
            let left = match deadline {
                None => None,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => {
                        return Err(Error::Timeout {
                            name: self.entry.name.clone(),
                            waited: timeout.unwrap_or_default(),
                            waited_for: WaitedFor::Change,
                        })
                    }
                },
            };
            let slice = if registered { left } else { Some(left.map_or(READ_ONLY_POLL, |l| l.min(READ_ONLY_POLL))) };
            sys::futex_wait(futex, word, slice).map_err(|e| self.store.io("futex wait", e))?;
        })();
        if registered {
            waiters.fetch_sub(1, Ordering::SeqCst);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SharedLayout, Store};
    use std::cell::RefCell;
    use std::rc::Rc;

    #[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Default)]
    #[repr(C)]
    struct Pair {
        a: u64,
        b: u64,
    }

    /// The publish order for power-loss durability: slot written, slot synced, then published,
    /// then the record synced; and at each step, what a reader of the file sees.
    #[test]
    fn power_loss_commit_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("order.shm");
        let store =
            Store::options().create(true).capacity(1 << 20).durability(Durability::PowerLoss).open(&path).unwrap();
        let pair = store.object_or_init("pair", || Pair { a: 1, b: 1 }).unwrap();
        let version = pair.version();

        // What a fresh reader of the file sees at each step: (step, published value, version).
        let seen: Rc<RefCell<Vec<(Step, Pair, u64)>>> = Rc::default();
        let (probe_path, log) = (path.clone(), seen.clone());
        STEP_HOOK.with(|h| {
            *h.borrow_mut() = Some(Box::new(move |step| {
                let reader = Store::options().read_only(true).open(&probe_path).unwrap();
                let handle = reader.object::<Pair>("pair").unwrap();
                let (value, version) = handle.load_versioned().unwrap();
                log.borrow_mut().push((step, value, version.get()));
            }))
        });
        pair.store(Pair { a: 2, b: 2 }).unwrap();
        STEP_HOOK.with(|h| *h.borrow_mut() = None);

        let old = Pair { a: 1, b: 1 };
        let new = Pair { a: 2, b: 2 };
        let v = version.get();
        assert_eq!(
            *seen.borrow(),
            vec![
                (Step::SlotWritten, old, v),
                (Step::SlotSynced, old, v),
                (Step::Published, new, v + 1),
                (Step::RecordSynced, new, v + 1),
            ]
        );
    }

    /// A load through a handle whose entry has been migrated is refused: the forwarding word is
    /// checked before the copy (not only when a lock is taken). The migration bumps the old
    /// record's version, by 2 for a double-buffered object so that its active slot stays put, by 1
    /// for an entry changed in place.
    #[test]
    fn a_migration_refuses_old_loads_and_wakes_old_waiters() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_create(dir.path().join("moved.shm"), 1 << 20).unwrap();
        let pair = store.object_or_init("pair", || Pair { a: 1, b: 2 }).unwrap();
        pair.store(Pair { a: 3, b: 4 }).unwrap();
        let (v, active) = (pair.version().get(), seqlock::active(pair.version().get()));
        store.migrate("pair", |p: Pair| [p.a, p.b, 0u64]).unwrap();
        assert_eq!(pair.version().get(), v + 2);
        assert_eq!(seqlock::active(pair.version().get()), active, "the old value stays in the active slot");
        assert!(matches!(pair.handle.load_optimistic::<Pair>(OPTIMISTIC_TRIES), Err(Error::LayoutMismatch { .. })));
        assert_eq!(store.object::<[u64; 3]>("pair").unwrap().load().unwrap(), [3, 4, 0]);

        let arr = store.array_or_init("arr", 4, 7u32).unwrap();
        let v = arr.version().get();
        store.migrate("arr", |x: u32| x as u64).unwrap();
        assert_eq!(arr.version().get(), v + 1);
    }

    /// Entries changed in place bump their version once per change; with power-loss durability
    /// their data is synced first, with process durability it is not.
    #[test]
    fn in_place_changes_bump_the_version_and_sync_only_for_power_loss() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_create(dir.path().join("inplace.shm"), 1 << 20).unwrap();
        let arr = store.array_or_init("arr", 4, 0u32).unwrap();
        for (durability, expected) in [(Durability::Process, vec![]), (Durability::PowerLoss, vec![Step::DataSynced])] {
            let arr = arr.clone().with_durability(durability);
            let v = arr.version().get();
            let steps: Rc<RefCell<Vec<Step>>> = Rc::default();
            let log = steps.clone();
            STEP_HOOK.with(|h| *h.borrow_mut() = Some(Box::new(move |s| log.borrow_mut().push(s))));
            arr.write_at(1, &[5, 6]).unwrap();
            STEP_HOOK.with(|h| *h.borrow_mut() = None);
            assert_eq!(*steps.borrow(), expected, "{durability:?}");
            assert_eq!(arr.version().get(), v + 1);
        }
    }

    /// A waiter registered on the entry is woken by the next commit: the committer bumps the
    /// futex word and, seeing a waiter, wakes it. (The wait has no useful timeout: if the wake-up
    /// were lost, this test would hang rather than pass late.)
    #[test]
    fn a_registered_waiter_is_woken_by_a_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_create(dir.path().join("wake.shm"), 1 << 20).unwrap();
        let pair = store.object_or_init("pair", || Pair { a: 1, b: 1 }).unwrap();
        let v = pair.version();
        let (waiters, futex) = (
            pair.handle.live_u32(pair.handle.store.words.waiters),
            pair.handle.live_u32(pair.handle.store.words.futex),
        );
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| pair.wait_for_change(v, Duration::from_secs(24 * 3600)));
            while waiters.load(Ordering::SeqCst) == 0 && !waiter.is_finished() {
                std::thread::yield_now();
            }
            let word = futex.load(Ordering::SeqCst);
            let steps: Rc<RefCell<Vec<Step>>> = Rc::default();
            let log = steps.clone();
            STEP_HOOK.with(|h| *h.borrow_mut() = Some(Box::new(move |s| log.borrow_mut().push(s))));
            pair.store(Pair { a: 2, b: 2 }).unwrap();
            STEP_HOOK.with(|h| *h.borrow_mut() = None);
            assert_eq!(futex.load(Ordering::SeqCst), word.wrapping_add(1), "a commit bumps the futex word");
            assert_eq!(
                *steps.borrow(),
                [Step::SlotWritten, Step::Published, Step::Woke],
                "and, seeing a waiter, wakes it"
            );
            let (value, seen) = waiter.join().unwrap().unwrap();
            assert_eq!((value, seen.get()), (Pair { a: 2, b: 2 }, v.get() + 1));
        });
        assert_eq!(waiters.load(Ordering::SeqCst), 0, "the waiter unregistered");
        // A version that is already stale returns at once, and a wait that sees no commit times out.
        assert_eq!(pair.handle.wait_changed(v, Some(Duration::ZERO)).unwrap().get(), v.get() + 1);
        assert!(matches!(
            pair.wait_for_change(pair.version(), Duration::ZERO),
            Err(Error::Timeout { waited_for: crate::error::WaitedFor::Change, .. })
        ));
    }

    /// Also: with nobody waiting, a commit makes no wake-up system call (no `Woke` step).
    #[test]
    fn process_durability_skips_the_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_create(dir.path().join("fast.shm"), 1 << 20).unwrap();
        let pair = store.object_or_init("pair", Pair::default).unwrap();
        let steps: Rc<RefCell<Vec<Step>>> = Rc::default();
        let log = steps.clone();
        STEP_HOOK.with(|h| *h.borrow_mut() = Some(Box::new(move |s| log.borrow_mut().push(s))));
        pair.update(|p| p.a = 5).unwrap();
        STEP_HOOK.with(|h| *h.borrow_mut() = None);
        assert_eq!(*steps.borrow(), vec![Step::SlotWritten, Step::Published]);
    }

    /// A sequence word at its maximum (a crafted file, or 2^64 commits) wraps to 0 on the next
    /// commit, which lands in slot 0; before, the commit overflowed and panicked in debug builds.
    #[test]
    fn a_commit_at_the_maximum_sequence_word_wraps() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_create(dir.path().join("wrap.shm"), 1 << 20).unwrap();
        let pair = store.object_or_init("pair", || Pair { a: 1, b: 1 }).unwrap();
        let h = &pair.handle;
        // With seq odd, slot 1 is active: put the current value there.
        let mut value = [0u8; 16];
        assert!(h.copy_out(h.slot_offset(0), &mut value));
        assert!(seqlock::copy_in(h.store.map().atomic_words(h.slot_offset(1), 2).unwrap(), &value));
        h.seq().store(u64::MAX, Ordering::Release);
        assert_eq!(pair.load().unwrap(), Pair { a: 1, b: 1 });
        pair.store(Pair { a: 2, b: 3 }).unwrap();
        assert_eq!(pair.version().get(), 0);
        assert_eq!(pair.load().unwrap(), Pair { a: 2, b: 3 });
        let mut slot0 = [0u8; 16];
        assert!(h.copy_out(h.slot_offset(0), &mut slot0));
        assert_eq!(u64::from_ne_bytes(slot0[8..].try_into().unwrap()), 3, "the wrapped commit went to slot 0");
        pair.update(|p| p.a = 4).unwrap();
        assert_eq!((pair.load().unwrap(), pair.version().get()), (Pair { a: 4, b: 3 }, 1));
    }

    #[test]
    fn slots_alternate_and_the_old_slot_keeps_the_previous_value() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_create(dir.path().join("alt.shm"), 1 << 20).unwrap();
        let pair = store.object_or_init("pair", || Pair { a: 1, b: 1 }).unwrap();
        let h = &pair.handle;
        for i in 2..6u64 {
            let before = h.seq().load(Ordering::Acquire);
            pair.store(Pair { a: i, b: i }).unwrap();
            assert_eq!(h.seq().load(Ordering::Acquire), before + 1);
            let mut old = [0u8; 16];
            assert!(h.copy_out(h.slot_offset(before), &mut old));
            assert_eq!(u64::from_ne_bytes(old[..8].try_into().unwrap()), i - 1, "the previous slot is untouched");
        }
    }
}

//! Robust mode: a robust, process-shared pthread mutex per entry (and one for the catalog), in the
//! mapping, and a reader bitmap for read guards on entries changed in place.
//!
//! # Writers
//!
//! A writer locks the entry's mutex: an atomic instruction when nobody holds it, a futex sleep
//! otherwise. If the previous holder died holding it, the mutex reports so (`EOWNERDEAD`) and is
//! repaired before the writer goes on:
//! - a **double-buffered** object needs nothing more: its dead writer only ever touched the
//!   inactive slot, which the next commit overwrites;
//! - an entry **changed in place** (an array, a byte region, an object holding atomics) may hold a
//!   half-done write: the recovering writer sets the block's `interrupted` word, which stays set
//!   until the application clears it.
//!
//! # Readers of entries changed in place
//!
//! A read guard on such an entry hands out `&[T]` into the live data, so it must exclude writers.
//! Each process owns one slot of the store's reader table ([`super::reader_table`]); a read sets
//! the process's bit in the block's 128-bit `readers` bitmap (four native-endian `u32` words, bit
//! `i` in word `i / 32`) and then checks the block's `writer` word; a writer, holding the mutex,
//! sets `writer` and then waits until the bitmap is empty. Both steps are sequentially
//! consistent, so either the reader sees the writer and backs off, or the writer sees the bit and
//! waits: never both inside. No system call is made unless one side has to wait.
//!
//! Threads of one process share its bit: an in-process count per entry sets it for the first
//! reader and clears it after the last. While a writer waits, new readers wait too (so a stream of
//! readers cannot starve it), except a thread that already reads the entry, which could otherwise
//! never let the writer in (the per-thread registry of [`super`] tells).
//!
//! Recovery, when a process dies:
//! - a dead **reader** leaves its bit set: a writer that has waited for a while probes the slot's
//!   liveness lock ([`super::reader_table::ReaderTable::is_dead`]) and clears the bits of dead
//!   slots;
//! - a dead **writer** leaves `writer` set: a reader that has waited for a while try-locks the
//!   mutex, and if it gets it (the writer is gone: a live writer holds the mutex for as long as
//!   `writer` is set), clears the flag.
//!
//! A process without a reader slot (all 128 taken, a read-only mapping) takes the mutex instead,
//! as a writer does, and a read of a double-buffered object (the fallback of a `load()` that kept
//! losing races) does too: such holds are exclusive, in the registry as well.
//!
//! # Lock epochs
//!
//! Every mutex records, beside it, the store's `lock_epoch` at which it was initialised. The
//! first process to open a store bumps the epoch ([`super::reset`]), and whoever first locks a
//! mutex of an older epoch initialises it (and clears the block's reader bitmap and `writer`
//! word, which can only hold what dead processes left) before anyone of the new epoch uses it. A
//! word left locked in the file by a process that is gone (a copied file, a reboot) is thus never
//! waited for, and never mistaken for a lock held by a new process that happens to have the same
//! thread id. The initialiser claims the epoch word with a compare-and-swap that records its
//! process id, so that a process killed mid-initialisation is taken over from instead of waited
//! for.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::reader_table::ReaderTable;
use super::{Held, Key, LockError, LockScope, Release as HeldRelease, Wait};
use crate::file::map::{Located, Mapping};
use crate::format::v2::{block, header};
use crate::sys;
use crate::sys::robust_mutex::{Acquired, MutexError, MutexWords, RobustMutex};

/// Marks an epoch word whose mutex is being initialised, by the process whose id fills the low
/// 32 bits. Epochs stay below it.
const INITIALISING: u64 = 1 << 63;

/// How long a waiter first sleeps before it checks for a dead counterpart (a dead reader's bit, a
/// dead writer's flag), doubling up to [`MAX_PATIENCE`]: a live counterpart wakes it long before.
const FIRST_PATIENCE: Duration = Duration::from_millis(1);
const MAX_PATIENCE: Duration = Duration::from_millis(64);

/// The largest lock epoch: epochs stay below [`INITIALISING`].
pub(crate) const MAX_EPOCH: u64 = INITIALISING - 1;

/// The place of one robust mutex in the file: its 64 bytes and the word recording the lock epoch
/// at which it was initialised.
#[derive(Debug)]
pub(crate) struct Site {
    mutex: Located<[AtomicU64]>,
    epoch: Located<AtomicU64>,
    /// Whether a thread of this process holds the mutex through this site: set after it is
    /// locked, cleared before it is unlocked (only by its holder, so plain stores suffice). A
    /// store dropped while it is set was left holding it by a leaked guard (`mem::forget`): see
    /// [`Locks::leaked`](super::Locks::leaked).
    held: AtomicU32,
}

impl Site {
    /// The mutex at `mutex` whose epoch word is at `epoch`, or `None` if either lies outside the
    /// mapping or is misaligned.
    pub(crate) fn locate(map: &Mapping, mutex: u64, epoch: u64) -> Option<Site> {
        Some(Site { mutex: map.locate_words(mutex, 8)?, epoch: map.locate_u64(epoch)?, held: AtomicU32::new(0) })
    }

    #[inline]
    fn words(&self) -> &MutexWords {
        // SAFETY: located in a mapping of the store that owns this site, which the owner of the
        // `Site` (a `Robust` or `BlockLock`, both kept by the store or its handles) keeps alive
        // while it is used.
        let words = unsafe { self.mutex.get() };
        words.try_into().expect("located as 8 words")
    }

    #[inline]
    fn epoch_word(&self) -> &AtomicU64 {
        // SAFETY: as in `words`.
        unsafe { self.epoch.get() }
    }

    /// The mutex, once [`ensure`](Self::ensure) has returned for the current epoch.
    #[inline]
    fn mutex(&self) -> RobustMutex<'_> {
        // SAFETY: callers reach this only after `ensure(epoch)` saw the epoch word equal to the
        // store's epoch (acquire), so the mutex was initialised in this epoch and that
        // initialisation happened before; it is not initialised again in this epoch (see
        // `ensure`), and the mapping lives as long as `self` is borrowed (see `words`).
        unsafe { RobustMutex::new(self.words()) }
    }

    /// Makes sure the mutex was initialised in `epoch`, initialising it (and running `also`, for
    /// the words the mutex guards) if it was not. Returns at once in the common case: one acquire
    /// load.
    #[inline]
    pub(crate) fn ensure(&self, epoch: u64, also: impl Fn()) -> Result<(), LockError> {
        let word = self.epoch_word();
        if word.load(Ordering::Acquire) == epoch {
            return Ok(());
        }
        // The slow path, once per mutex per epoch: `getpid` is a system call.
        let me = u64::from(std::process::id());
        loop {
            let seen = word.load(Ordering::Acquire);
            if seen == epoch {
                return Ok(());
            }
            if seen & INITIALISING != 0 {
                let owner = seen & u64::from(u32::MAX);
                // Another thread (of this or another process) is initialising: it takes a few
                // hundred nanoseconds, unless it was killed, in which case take over.
                if owner == me || sys::process_exists(owner as i32) {
                    std::thread::yield_now();
                    continue;
                }
            }
            if word.compare_exchange(seen, INITIALISING | me, Ordering::Acquire, Ordering::Relaxed).is_err() {
                continue;
            }
            // SAFETY: nobody uses this mutex: every user of this epoch waits above until the
            // epoch word holds `epoch`, which only the store below publishes, and users of older
            // epochs are gone (the epoch is bumped only by a process that had the store to
            // itself). The claim above makes this thread the only initialiser.
            let init = unsafe { sys::robust_mutex::init(self.words()) };
            if let Err(e) = init {
                word.store(seen, Ordering::Release);
                return Err(LockError::Io(e));
            }
            also();
            word.store(epoch, Ordering::Release);
            return Ok(());
        }
    }

    /// Locks the mutex (of the current epoch), honouring `wait`. A thread that holds it gets
    /// [`LockError::WouldDeadlock`] (the mutexes are of the ERRORCHECK type), whatever the wait.
    #[inline(always)]
    fn lock(&self, wait: Wait) -> Result<Acquired, LockError> {
        let mutex = self.mutex();
        let acquired = match wait {
            Wait::Forever => mutex.lock(None).map_err(lock_error),
            // A timed lock that has already timed out, rather than `try_lock`: it tells this
            // thread that it holds the mutex with both glibc and musl.
            Wait::Never => match mutex.lock(Some(Instant::now())) {
                Err(MutexError::TimedOut) => Err(LockError::WouldBlock),
                other => other.map_err(lock_error),
            },
            Wait::Until(deadline) => mutex.lock(Some(deadline)).map_err(lock_error),
        }?;
        self.held.store(1, Ordering::Relaxed);
        Ok(acquired)
    }

    /// Unlocks the mutex, which this thread holds (through [`lock`](Self::lock)).
    #[inline]
    fn unlock(&self) {
        self.held.store(0, Ordering::Relaxed);
        self.mutex().unlock();
    }

    /// Whether a thread of this process holds the mutex through this site.
    pub(crate) fn held(&self) -> bool {
        self.held.load(Ordering::Relaxed) != 0
    }
}

#[inline]
fn lock_error(e: MutexError) -> LockError {
    match e {
        MutexError::Busy => LockError::WouldBlock,
        MutexError::Deadlock => LockError::WouldDeadlock { held_exclusive: true },
        MutexError::TimedOut => LockError::Timeout,
        MutexError::NotRecoverable => LockError::NotRecoverable,
        MutexError::Os(e) => LockError::Io(e),
    }
}

/// The robust-mode state of one open store in this process: its lock epoch, the admin (catalog)
/// mutex and the reader table.
#[derive(Debug)]
pub(crate) struct Robust {
    /// The store's `lock_epoch`, fixed for as long as this process has the store open: only a
    /// process that has the store to itself changes it.
    epoch: u64,
    admin: Site,
    readers: ReaderTable,
}

impl Robust {
    /// The robust-mode state of the store mapped by `map` (writable or not) through `file`, whose
    /// open state says `epoch`. `None` if the header lies outside the mapping.
    ///
    /// The store that owns `map` must outlive this state's uses: it keeps pointers into it.
    pub(crate) fn new(map: &Mapping, file: &File, epoch: u64, writable: bool) -> io::Result<Option<Robust>> {
        let (Some(admin), Some(readers)) =
            (Site::locate(map, header::ADMIN_MUTEX, header::ADMIN_EPOCH), ReaderTable::new(map, file, writable)?)
        else {
            return Ok(None);
        };
        Ok(Some(Robust { epoch, admin, readers }))
    }

    /// The reader table.
    #[cfg(test)]
    pub(crate) fn readers(&self) -> &ReaderTable {
        &self.readers
    }

    /// Whether a thread of this process holds the admin mutex.
    pub(crate) fn admin_held(&self) -> bool {
        self.admin.held()
    }

    /// Takes the admin mutex, which serialises catalog changes, allocation and growth.
    pub(crate) fn admin<'a>(&'a self, scope: &'a LockScope, wait: Wait) -> Result<Held<'a>, LockError> {
        let (key, _) = scope.admit(header::ADMIN_MUTEX, true)?;
        self.admin.ensure(self.epoch, || {})?;
        let acquired = self.admin.lock(wait)?;
        Ok(Held::new(scope, key, true, HeldRelease::Robust(Release::mutex(&self.admin, None, acquired))))
    }
}

/// The lock words of one entry block, and this process's count of read holds on it. One per entry
/// per open store, shared by every handle of it.
#[derive(Debug)]
pub(crate) struct BlockLock {
    /// The block's offset: the lock's identity in the registry.
    offset: u64,
    site: Site,
    interrupted: Located<AtomicU32>,
    readers: [Located<AtomicU32>; 4],
    writer: Located<AtomicU32>,
    futex: Located<AtomicU32>,
    waiters: Located<AtomicU32>,
    /// Read holds of this process on the entry: its bit is set while this is non-zero.
    local_readers: Mutex<u32>,
}

impl BlockLock {
    /// The lock of the block at `offset`; `None` if the block lies outside the mapping.
    ///
    /// Its users say, at every acquisition, whether the entry is changed in place (an array, a
    /// byte region, an object holding atomics: readers use the bitmap, writers the `writer`
    /// word) or double-buffered: a block reused for another entry may change kind.
    ///
    /// The store that owns `map` must outlive the lock's uses: the lock keeps pointers into it.
    pub(crate) fn new(map: &Mapping, offset: u64) -> Option<BlockLock> {
        let at = |o: u64| offset.checked_add(o);
        let u32_at = |o: u64| at(o).and_then(|o| map.locate_u32(o));
        Some(BlockLock {
            offset,
            site: Site::locate(map, at(block::MUTEX)?, at(block::LOCK_EPOCH)?)?,
            interrupted: u32_at(block::INTERRUPTED)?,
            readers: [
                u32_at(block::READERS)?,
                u32_at(block::READERS + 4)?,
                u32_at(block::READERS + 8)?,
                u32_at(block::READERS + 12)?,
            ],
            writer: u32_at(block::WRITER)?,
            futex: u32_at(block::FUTEX)?,
            waiters: u32_at(block::WAITERS)?,
            local_readers: Mutex::new(0),
        })
    }

    fn word(&self, located: Located<AtomicU32>) -> &AtomicU32 {
        // SAFETY: located in the store's mapping, which the store keeps alive while this lock is
        // used (the contract of `new`).
        unsafe { located.get() }
    }

    fn readers_word(&self, k: usize) -> &AtomicU32 {
        self.word(self.readers[k])
    }

    fn writer(&self) -> &AtomicU32 {
        self.word(self.writer)
    }

    /// Whether a thread of this process holds the block's mutex through this lock.
    pub(crate) fn held(&self) -> bool {
        self.site.held()
    }

    /// The block's `interrupted` word (tests; the handles read it through the store): 1 after a
    /// writer of this (in-place) entry died holding its
    /// lock, until [`clear_interrupted`](Self::clear_interrupted).
    #[cfg(test)]
    pub(crate) fn interrupted(&self) -> bool {
        self.word(self.interrupted).load(Ordering::Acquire) != 0
    }

    /// Clears the `interrupted` word.
    #[cfg(test)]
    pub(crate) fn clear_interrupted(&self) {
        self.word(self.interrupted).store(0, Ordering::Release);
    }

    fn local(&self) -> MutexGuard<'_, u32> {
        // A counter updated without panicking in between: a poisoned mutex still holds it right.
        self.local_readers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Initialises the mutex if it is of an older epoch, clearing what dead processes of that
    /// epoch left in the block's lock words.
    #[inline]
    fn ensure(&self, ctx: &Robust) -> Result<(), LockError> {
        self.site.ensure(ctx.epoch, || {
            for k in 0..4 {
                self.readers_word(k).store(0, Ordering::Relaxed);
            }
            self.writer().store(0, Ordering::Relaxed);
        })
    }

    /// Takes the entry exclusively, for a writer, until the returned hold drops: the mutex, and for
    /// an entry changed in place, the `writer` word and an empty reader bitmap.
    ///
    /// For a double-buffered object the mutex is all there is to hold, and it tells a thread that
    /// already holds it (ERRORCHECK): such holds skip this thread's registry of holds, which only
    /// entries changed in place need (for their reader bits).
    #[inline]
    pub(crate) fn write<'a>(
        &'a self,
        ctx: &'a Robust,
        scope: &'a LockScope,
        wait: Wait,
        in_place: bool,
    ) -> Result<Held<'a>, LockError> {
        if !in_place {
            return self.mutex_only(ctx, scope, wait);
        }
        let (key, _) = scope.admit(self.offset, true)?;
        self.exclusive(ctx, scope, key, wait, in_place)
    }

    /// [`write`](Self::write), with the hold written into `out` (initialised when this returns
    /// `Ok`): for a caller that keeps the hold where the lock makes it, so that it is not copied
    /// (a write guard's room).
    #[inline(always)]
    pub(crate) fn write_into<'a>(
        &'a self,
        ctx: &'a Robust,
        scope: &'a LockScope,
        wait: Wait,
        in_place: bool,
        out: &mut std::mem::MaybeUninit<Held<'a>>,
    ) -> Result<(), LockError> {
        if in_place {
            out.write(self.write(ctx, scope, wait, in_place)?);
        } else {
            let acquired = self.lock_mutex_only(ctx, scope, wait)?;
            out.write(self.mutex_only_hold(scope, acquired));
        }
        Ok(())
    }

    /// The mutex alone, for a double-buffered object: not recorded in the registry.
    #[inline]
    fn mutex_only<'a>(&'a self, ctx: &'a Robust, scope: &'a LockScope, wait: Wait) -> Result<Held<'a>, LockError> {
        let acquired = self.lock_mutex_only(ctx, scope, wait)?;
        Ok(self.mutex_only_hold(scope, acquired))
    }

    /// Locks the mutex for [`mutex_only`](Self::mutex_only): refused in a forked child.
    #[inline(always)]
    fn lock_mutex_only(&self, ctx: &Robust, scope: &LockScope, wait: Wait) -> Result<Acquired, LockError> {
        if scope.forked() {
            return Err(LockError::Forked);
        }
        self.ensure(ctx)?;
        self.site.lock(wait)
    }

    /// The hold of the mutex [`lock_mutex_only`](Self::lock_mutex_only) locked.
    #[inline(always)]
    fn mutex_only_hold<'a>(&'a self, scope: &'a LockScope, acquired: Acquired) -> Held<'a> {
        Held::unregistered(scope, HeldRelease::Robust(Release::mutex(&self.site, None, acquired)))
    }

    fn exclusive<'a>(
        &'a self,
        ctx: &'a Robust,
        scope: &'a LockScope,
        key: Key,
        wait: Wait,
        in_place: bool,
    ) -> Result<Held<'a>, LockError> {
        self.ensure(ctx)?;
        let acquired = self.site.lock(wait)?;
        if !in_place {
            return Ok(Held::new(scope, key, true, HeldRelease::Robust(Release::mutex(&self.site, None, acquired))));
        }
        if acquired == Acquired::OwnerDied {
            self.word(self.interrupted).store(1, Ordering::SeqCst);
        }
        self.writer().store(1, Ordering::SeqCst);
        // Whatever the writer stores from now on comes after this fence: an optimistic reader
        // (a read-only mapping, which cannot lock) that sees any of it, and then issues an
        // acquire fence, sees `writer` set too (or `seq` moved), and retries.
        std::sync::atomic::fence(Ordering::Release);
        // From here on the release undoes everything, also if waiting for readers fails.
        let release = Release::mutex(&self.site, Some(self), acquired);
        if let Err(e) = self.wait_for_readers(ctx, wait) {
            release.release();
            return Err(e);
        }
        Ok(Held::new(scope, key, true, HeldRelease::Robust(release)))
    }

    /// Takes the entry shared, for a reader, until the returned hold drops. Re-entrant: a thread
    /// that already reads the entry gets it again at once, even with a writer waiting. Without a
    /// reader slot (or for a double-buffered object), the hold is the mutex, exclusive.
    pub(crate) fn read<'a>(
        &'a self,
        ctx: &'a Robust,
        scope: &'a LockScope,
        wait: Wait,
        in_place: bool,
    ) -> Result<Held<'a>, LockError> {
        if !in_place {
            return self.mutex_only(ctx, scope, wait);
        }
        let (key, mine) = scope.admit(self.offset, false)?;
        let slot = ctx.readers.slot(scope);
        let Some(slot) = slot else {
            // A thread that reads through another store of the same file holds the entry
            // shared; the mutex would not wait for it, but its writer would.
            if mine.shared > 0 {
                return Err(LockError::WouldDeadlock { held_exclusive: false });
            }
            return self.exclusive(ctx, scope, key, wait, in_place);
        };
        self.ensure(ctx)?;
        let (k, bit) = ((slot / 32) as usize, 1u32 << (slot % 32));
        let reentrant = mine.shared > 0;
        loop {
            {
                let mut local = self.local();
                if *local > 0 {
                    // The bit is set, and stays set while `local` is non-zero.
                    if reentrant || self.writer().load(Ordering::SeqCst) == 0 {
                        *local += 1;
                        return Ok(Held::new(
                            scope,
                            key,
                            false,
                            HeldRelease::Robust(Release::reader(self, ctx, k, bit)),
                        ));
                    }
                } else {
                    let word = self.readers_word(k);
                    word.fetch_or(bit, Ordering::SeqCst);
                    if self.writer().load(Ordering::SeqCst) == 0 {
                        *local = 1;
                        ctx.readers.count_bit(true);
                        return Ok(Held::new(
                            scope,
                            key,
                            false,
                            HeldRelease::Robust(Release::reader(self, ctx, k, bit)),
                        ));
                    }
                    word.fetch_and(!bit, Ordering::SeqCst);
                    sys::futex_wake(word);
                    // This thread reads the entry through another store of the file (another
                    // slot), which the waiting writer waits for: it would wait for this thread
                    // while this thread waited for it.
                    if reentrant {
                        return Err(LockError::WouldDeadlock { held_exclusive: false });
                    }
                }
            }
            self.wait_for_writer(wait)?;
        }
    }

    /// Waits (not holding the in-process count) until the `writer` word is clear: woken through
    /// the block's futex word when the writer lets go, and clearing a flag whose writer died.
    fn wait_for_writer(&self, wait: Wait) -> Result<(), LockError> {
        if let Wait::Never = wait {
            return if self.clear_stale_writer()? { Ok(()) } else { Err(LockError::WouldBlock) };
        }
        let futex = self.word(self.futex);
        let waiters = self.word(self.waiters);
        waiters.fetch_add(1, Ordering::SeqCst);
        let mut patience = FIRST_PATIENCE;
        let result = loop {
            // The futex word before the flag: a release after this load changes the word, so the
            // sleep below returns at once instead of missing it.
            let seen = futex.load(Ordering::SeqCst);
            if self.writer().load(Ordering::SeqCst) == 0 {
                break Ok(());
            }
            let nap = match nap(wait, patience) {
                Ok(nap) => nap,
                Err(e) => break Err(e),
            };
            match sys::futex_wait(futex, seen, Some(nap)) {
                Ok(true) => {}
                Ok(false) => {
                    match self.clear_stale_writer() {
                        Ok(true) => break Ok(()),
                        Ok(false) => {}
                        Err(e) => break Err(e),
                    }
                    patience = (patience * 2).min(MAX_PATIENCE);
                }
                Err(e) => break Err(LockError::Io(e)),
            }
        };
        waiters.fetch_sub(1, Ordering::SeqCst);
        result
    }

    /// Clears the `writer` word if no live writer is behind it: if the mutex can be taken, the
    /// writer that set the word is gone (a live one holds the mutex while the word is set). A
    /// writer that died holding it may have left a half-done write: `interrupted` is set.
    /// `Ok(true)` if the word is clear now.
    fn clear_stale_writer(&self) -> Result<bool, LockError> {
        if self.writer().load(Ordering::SeqCst) == 0 {
            return Ok(true);
        }
        let acquired = match self.site.mutex().try_lock() {
            Ok(acquired) => acquired,
            // Held by a live writer (possibly this thread, which would not be reading then).
            Err(MutexError::Busy | MutexError::Deadlock) => return Ok(false),
            Err(e) => return Err(lock_error(e)),
        };
        if acquired == Acquired::OwnerDied {
            self.word(self.interrupted).store(1, Ordering::SeqCst);
        }
        self.writer().store(0, Ordering::SeqCst);
        self.wake_waiters();
        self.site.mutex().unlock();
        Ok(true)
    }

    /// Waits, holding the mutex with `writer` set, until no reader slot has its bit set, clearing
    /// the bits of slots whose owners are dead.
    fn wait_for_readers(&self, ctx: &Robust, wait: Wait) -> Result<(), LockError> {
        let mut patience = FIRST_PATIENCE;
        let mut probe = false;
        loop {
            let busy = (0..4).find_map(|k| {
                let bits = self.readers_word(k).load(Ordering::SeqCst);
                (bits != 0).then_some((k, bits))
            });
            let Some((k, bits)) = busy else { return Ok(()) };
            if probe || matches!(wait, Wait::Never) {
                probe = false;
                if self.reclaim_dead(ctx, k, bits)? {
                    continue;
                }
                if let Wait::Never = wait {
                    return Err(LockError::WouldBlock);
                }
            }
            let nap = nap(wait, patience)?;
            match sys::futex_wait(self.readers_word(k), bits, Some(nap)) {
                Ok(true) => {}
                Ok(false) => {
                    probe = true;
                    patience = (patience * 2).min(MAX_PATIENCE);
                }
                Err(e) => return Err(LockError::Io(e)),
            }
        }
    }

    /// Clears the bits of `bits` (the value of readers word `k`) whose slots' owners are dead.
    /// `Ok(true)` if it cleared any.
    fn reclaim_dead(&self, ctx: &Robust, k: usize, bits: u32) -> Result<bool, LockError> {
        let mut cleared = false;
        for b in 0..32 {
            if bits & (1 << b) != 0 && ctx.readers.is_dead(k as u32 * 32 + b).map_err(LockError::Io)? {
                self.readers_word(k).fetch_and(!(1 << b), Ordering::SeqCst);
                cleared = true;
            }
        }
        Ok(cleared)
    }

    /// Wakes the processes waiting on the block's futex word (readers waiting for a writer to
    /// leave, and change waiters, who re-check and sleep again): no system call if none waits.
    fn wake_waiters(&self) {
        let futex = self.word(self.futex);
        futex.fetch_add(1, Ordering::SeqCst);
        if self.word(self.waiters).load(Ordering::SeqCst) > 0 {
            sys::futex_wake(futex);
        }
    }
}

/// How long a waiter may sleep before it checks for a dead counterpart, given `wait`:
/// [`LockError::Timeout`] once the deadline has passed.
fn nap(wait: Wait, patience: Duration) -> Result<Duration, LockError> {
    match wait {
        Wait::Forever => Ok(patience),
        Wait::Never => Err(LockError::WouldBlock),
        Wait::Until(deadline) => match deadline.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Ok(left.min(patience)),
            _ => Err(LockError::Timeout),
        },
    }
}

/// What dropping a robust-mode hold undoes.
#[derive(Debug)]
pub(crate) struct Release<'a> {
    how: How<'a>,
    owner_died: bool,
}

#[derive(Debug)]
enum How<'a> {
    /// The mutex of `site`; for an entry changed in place, also its block's `writer` word.
    Mutex { site: &'a Site, writer_of: Option<&'a BlockLock> },
    /// This process's bit (`bit` of readers word `k`) in `block`'s bitmap, counted in `table`.
    Reader { block: &'a BlockLock, table: &'a ReaderTable, k: usize, bit: u32 },
}

impl<'a> Release<'a> {
    #[inline]
    fn mutex(site: &'a Site, writer_of: Option<&'a BlockLock>, acquired: Acquired) -> Release<'a> {
        Release { how: How::Mutex { site, writer_of }, owner_died: acquired == Acquired::OwnerDied }
    }

    fn reader(block: &'a BlockLock, ctx: &'a Robust, k: usize, bit: u32) -> Release<'a> {
        Release { how: How::Reader { block, table: &ctx.readers, k, bit }, owner_died: false }
    }

    /// Whether the previous holder of the mutex died holding it.
    pub(crate) fn owner_died(&self) -> bool {
        self.owner_died
    }

    /// Undoes the hold. Called by the thread that took it, in the process that took it.
    #[inline]
    pub(crate) fn release(&self) {
        match self.how {
            How::Mutex { site, writer_of } => {
                if let Some(block) = writer_of {
                    // Before the unlock: once the mutex is free, the word may be the next
                    // writer's.
                    block.writer().store(0, Ordering::SeqCst);
                    block.wake_waiters();
                }
                site.unlock();
            }
            How::Reader { block, table, k, bit } => {
                let mut local = block.local();
                *local -= 1;
                if *local == 0 {
                    let word = block.readers_word(k);
                    word.fetch_and(!bit, Ordering::SeqCst);
                    table.count_bit(false);
                    if block.writer().load(Ordering::SeqCst) != 0 {
                        sys::futex_wake(word);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::lock::testing::Fixture;
    use crate::file::lock::with_registry;
    use std::sync::atomic::AtomicU32;

    /// Runs `f` on another thread (one that holds nothing) and returns its result.
    fn elsewhere<R: Send>(f: impl FnOnce() -> R + Send) -> R {
        std::thread::scope(|s| s.spawn(f).join().unwrap())
    }

    fn is_block(r: Result<Held<'_>, LockError>) -> bool {
        matches!(r, Err(LockError::WouldBlock))
    }

    #[test]
    fn writers_exclude_threads_in_both_kinds_of_entry() {
        let fx = Fixture::new();
        // Both locks and the counter made up front, so that the second round does not reuse
        // memory the first round's threads used (their scope's end orders that, invisibly to
        // TSan, which does not see std's scoped-thread join).
        let locks = [fx.block(0, false), fx.block(0, true)];
        let inside = AtomicU32::new(0);
        for lock in &locks {
            std::thread::scope(|s| {
                for _ in 0..4 {
                    s.spawn(|| {
                        for _ in 0..500 {
                            let held = lock.write(&fx.robust, &fx.scope, Wait::Forever).unwrap();
                            assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                            inside.fetch_sub(1, Ordering::SeqCst);
                            drop(held);
                        }
                    });
                }
            });
        }
    }

    #[test]
    fn readers_share_and_writers_exclude_them() {
        let fx = Fixture::new();
        let lock = fx.block(0, true);
        let (ctx, scope) = (&fx.robust, &fx.scope);
        let r1 = lock.read(ctx, scope, Wait::Never).unwrap();
        let slot = ctx.readers().slot(scope).unwrap();
        assert_ne!(
            fx.word32(0, block::READERS + 4 * u64::from(slot / 32)).load(Ordering::SeqCst) & (1 << (slot % 32)),
            0
        );
        elsewhere(|| {
            drop(lock.read(ctx, scope, Wait::Never).unwrap());
            assert!(is_block(lock.write(ctx, scope, Wait::Never)));
            let timed = lock.write(ctx, scope, Wait::timeout(Duration::from_millis(20)));
            assert!(matches!(timed, Err(LockError::Timeout)), "{timed:?}");
        });
        // The refused writers left nothing behind: the `writer` word is clear, the mutex free.
        assert_eq!(fx.word32(0, block::WRITER).load(Ordering::SeqCst), 0);
        drop(r1);
        assert_eq!(fx.word32(0, block::READERS).load(Ordering::SeqCst), 0, "the last reader cleared the bit");
        let w = lock.write(ctx, scope, Wait::Never).unwrap();
        assert_eq!(fx.word32(0, block::WRITER).load(Ordering::SeqCst), 1);
        elsewhere(|| {
            assert!(is_block(lock.read(ctx, scope, Wait::Never)));
            let timed = lock.read(ctx, scope, Wait::timeout(Duration::from_millis(20)));
            assert!(matches!(timed, Err(LockError::Timeout)), "{timed:?}");
            assert!(is_block(lock.write(ctx, scope, Wait::Never)));
        });
        drop(w);
        assert_eq!(fx.word32(0, block::WRITER).load(Ordering::SeqCst), 0);
        drop(lock.read(ctx, scope, Wait::Never).unwrap());
    }

    /// A writer waiting for a reader is let in when the reader lets go, and a reader waiting for a
    /// writer likewise: the wake-ups work (these waits have no deadline, so a lost wake-up would
    /// hang, or wait for a patience slice, never fail).
    #[test]
    fn waiters_are_woken() {
        let fx = Fixture::new();
        let lock = fx.block(0, true);
        let (ctx, scope) = (&fx.robust, &fx.scope);
        let value = AtomicU32::new(0);
        std::thread::scope(|s| {
            let r = lock.read(ctx, scope, Wait::Never).unwrap();
            let writer = s.spawn(|| {
                let _w = lock.write(ctx, scope, Wait::Forever).unwrap();
                value.store(1, Ordering::SeqCst);
            });
            while fx.word32(0, block::WRITER).load(Ordering::SeqCst) == 0 {
                std::thread::yield_now();
            }
            assert_eq!(value.load(Ordering::SeqCst), 0, "the writer waits for the reader");
            drop(r);
            writer.join().unwrap();
            assert_eq!(value.load(Ordering::SeqCst), 1);

            let w = lock.write(ctx, scope, Wait::Never).unwrap();
            let reader = s.spawn(|| {
                let _r = lock.read(ctx, scope, Wait::Forever).unwrap();
                value.load(Ordering::SeqCst)
            });
            while fx.word32(0, block::WAITERS).load(Ordering::SeqCst) == 0 {
                std::thread::yield_now();
            }
            value.store(2, Ordering::SeqCst);
            drop(w);
            assert_eq!(reader.join().unwrap(), 2, "the reader got in after the writer");
        });
    }

    /// The registry's rules hold in robust mode: re-entrant reads, and no request that could
    /// only wait for the thread itself.
    #[test]
    fn a_thread_never_waits_for_itself() {
        let fx = Fixture::new();
        let (ctx, scope) = (&fx.robust, &fx.scope);
        for in_place in [true, false] {
            let lock = fx.block(0, in_place);
            if in_place {
                let r1 = lock.read(ctx, scope, Wait::Never).unwrap();
                let r2 = lock.read(ctx, scope, Wait::Forever).unwrap();
                for wait in [Wait::Never, Wait::Forever] {
                    let refused = lock.write(ctx, scope, wait);
                    assert!(matches!(refused, Err(LockError::WouldDeadlock { held_exclusive: false })), "{refused:?}");
                }
                drop((r1, r2));
            }
            let w = lock.write(ctx, scope, Wait::Forever).unwrap();
            for wait in [Wait::Never, Wait::Forever] {
                let read = lock.read(ctx, scope, wait);
                assert!(matches!(read, Err(LockError::WouldDeadlock { held_exclusive: true })), "{read:?}");
                let write = lock.write(ctx, scope, wait);
                assert!(matches!(write, Err(LockError::WouldDeadlock { held_exclusive: true })), "{write:?}");
            }
            drop(w);
            elsewhere(|| drop(lock.write(ctx, scope, Wait::Never).unwrap()));
            drop(lock.write(ctx, scope, Wait::Never).unwrap());
        }
        let admin = ctx.admin(scope, Wait::Never).unwrap();
        assert!(matches!(ctx.admin(scope, Wait::Forever), Err(LockError::WouldDeadlock { held_exclusive: true })));
        elsewhere(|| assert!(is_block(ctx.admin(scope, Wait::Never))));
        drop(admin);
        assert!(with_registry(fx.scope.generation, |held| held.is_empty()).unwrap(), "every hold was removed");
    }

    /// A queued writer holds off new readers, but not a thread that already reads.
    #[test]
    fn a_reentrant_read_passes_a_queued_writer() {
        let fx = Fixture::new();
        let lock = fx.block(0, true);
        let (ctx, scope) = (&fx.robust, &fx.scope);
        let r1 = lock.read(ctx, scope, Wait::Never).unwrap();
        std::thread::scope(|s| {
            let writer = s.spawn(|| drop(lock.write(ctx, scope, Wait::Forever).unwrap()));
            while fx.word32(0, block::WRITER).load(Ordering::SeqCst) == 0 {
                std::thread::yield_now();
            }
            elsewhere(|| assert!(is_block(lock.read(ctx, scope, Wait::Never))));
            let r2 = lock.read(ctx, scope, Wait::Never).unwrap();
            let r3 = lock.read(ctx, scope, Wait::Forever).unwrap();
            drop((r1, r2, r3));
            writer.join().unwrap();
        });
    }

    /// A writer that dies holding the mutex (here: a thread that exits holding it) is recovered by
    /// the next writer; for an entry changed in place, the block's `interrupted` word says so
    /// until it is cleared, and the dead writer's `writer` word does not block readers.
    #[test]
    fn a_dead_writer_is_recovered() {
        let fx = Fixture::new();
        let (ctx, scope) = (&fx.robust, &fx.scope);
        for in_place in [false, true] {
            let lock = fx.block(u64::from(in_place), in_place);
            elsewhere(|| std::mem::forget(lock.write(ctx, scope, Wait::Forever).unwrap()));
            let w = lock.write(ctx, scope, Wait::Forever).unwrap();
            assert!(w.owner_died());
            assert_eq!(lock.interrupted(), in_place);
            drop(w);
            let w = lock.write(ctx, scope, Wait::Never).unwrap();
            assert!(!w.owner_died(), "repaired: the next holder finds it clean");
            drop(w);
            assert_eq!(lock.interrupted(), in_place, "interrupted stays until cleared");
            lock.clear_interrupted();
            assert!(!lock.interrupted());
        }
        // A reader meets the dead writer's `writer` word: it waits a moment, then finds the mutex
        // free, so the word stale, and clears it (the dead writer may have written half).
        let lock = fx.block(2, true);
        elsewhere(|| std::mem::forget(lock.write(ctx, scope, Wait::Forever).unwrap()));
        assert_eq!(fx.word32(2, block::WRITER).load(Ordering::SeqCst), 1);
        drop(lock.read(ctx, scope, Wait::Forever).unwrap());
        assert_eq!(fx.word32(2, block::WRITER).load(Ordering::SeqCst), 0);
        assert!(lock.interrupted());
        // Also without waiting at all.
        let lock = fx.block(3, true);
        elsewhere(|| std::mem::forget(lock.write(ctx, scope, Wait::Forever).unwrap()));
        drop(lock.read(ctx, scope, Wait::Never).unwrap());
        assert!(lock.interrupted());
    }

    /// A reader slot whose owner is dead (its liveness lock free) holds a writer up only until
    /// the writer probes it: the bit is cleared. A live owner's bit is waited for.
    #[test]
    fn a_dead_readers_bit_is_reclaimed() {
        let fx = Fixture::new();
        let (ctx, scope) = (&fx.robust, &fx.scope);
        let lock = fx.block(0, true);
        let readers = fx.word32(0, block::READERS + 4);
        // Slot 37 is nobody's: what a reader killed inside a guard leaves.
        readers.fetch_or(1 << 5, Ordering::SeqCst);
        drop(lock.write(ctx, scope, Wait::Forever).unwrap());
        assert_eq!(readers.load(Ordering::SeqCst), 0);
        readers.fetch_or(1 << 5, Ordering::SeqCst);
        drop(lock.write(ctx, scope, Wait::Never).unwrap());
        assert_eq!(readers.load(Ordering::SeqCst), 0, "also without waiting");
        // Slot 38 is held by a live owner (another description holds its liveness lock).
        let other = std::fs::OpenOptions::new().read(true).write(true).open(&fx.path).unwrap();
        let byte = crate::format::v2::header::READER_LOCK_BASE + 38;
        assert!(sys::lock_range(&other, byte, sys::LockKind::Exclusive, false).unwrap());
        readers.fetch_or(1 << 6, Ordering::SeqCst);
        assert!(is_block(lock.write(ctx, scope, Wait::Never)));
        let timed = lock.write(ctx, scope, Wait::timeout(Duration::from_millis(30)));
        assert!(matches!(timed, Err(LockError::Timeout)), "{timed:?}");
        assert_eq!(readers.load(Ordering::SeqCst), 1 << 6, "a live reader's bit is kept");
        drop(other);
        drop(lock.write(ctx, scope, Wait::Forever).unwrap());
        assert_eq!(readers.load(Ordering::SeqCst), 0);
    }

    /// A mutex and lock words left in the file by processes of an earlier session are reset at
    /// the first use after a reset: nothing hangs, and no reader waits for a ghost. The stale
    /// mutex here is a byte copy of one locked by this very thread (what a file copied while a
    /// process held a lock looks like to a new process that happens to get the same thread id).
    #[test]
    fn locks_of_an_earlier_epoch_are_reinitialised() {
        let fx = Fixture::new();
        let (ctx, scope) = (&fx.robust, &fx.scope);
        let (original, stale) = (fx.block(0, true), fx.block(1, true));
        original.ensure(ctx).unwrap();
        stale.ensure(ctx).unwrap();
        assert_eq!(original.site.lock(Wait::Forever).unwrap(), Acquired::Clean);
        for (from, to) in original.site.words().iter().zip(stale.site.words()) {
            to.store(from.load(Ordering::SeqCst), Ordering::SeqCst);
        }
        original.site.unlock();
        fx.word32(1, block::WRITER).store(1, Ordering::SeqCst);
        fx.word32(1, block::READERS + 12).store(1 << 31, Ordering::SeqCst);
        // In the same epoch the stale word is taken for a lock this thread holds (ERRORCHECK),
        // and would block any other thread forever.
        let refused = stale.write(ctx, scope, Wait::Never).map(drop);
        assert!(matches!(refused, Err(LockError::WouldDeadlock { .. })), "{refused:?}");
        elsewhere(|| assert!(is_block(stale.write(ctx, scope, Wait::Never))));
        let epoch = fx.state.lock_epoch;
        assert_eq!(fx.word64(1, block::LOCK_EPOCH).load(Ordering::SeqCst), epoch);
        // What the first opener of a copy of the file, or after a reboot, does.
        let fx = fx.reopen();
        assert_eq!(fx.state.lock_epoch, epoch + 1);
        let lock = fx.block(1, true);
        let (ctx, scope) = (&fx.robust, &fx.scope);
        drop(lock.read(ctx, scope, Wait::Never).unwrap());
        let w = lock.write(ctx, scope, Wait::Never).unwrap();
        assert!(!w.owner_died());
        drop(w);
        assert_eq!(fx.word64(1, block::LOCK_EPOCH).load(Ordering::SeqCst), epoch + 1);
        assert_eq!(fx.word32(1, block::READERS + 12).load(Ordering::SeqCst), 0);
        assert_eq!(fx.word32(1, block::WRITER).load(Ordering::SeqCst), 0);
    }

    /// An initialisation claimed by a process that died before finishing it is taken over.
    #[test]
    fn an_abandoned_initialisation_is_taken_over() {
        let fx = Fixture::new();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        fx.word64(0, block::LOCK_EPOCH).store(INITIALISING | u64::from(dead), Ordering::SeqCst);
        let lock = fx.block(0, true);
        drop(lock.write(&fx.robust, &fx.scope, Wait::Never).unwrap());
        assert_eq!(fx.word64(0, block::LOCK_EPOCH).load(Ordering::SeqCst), fx.state.lock_epoch);
    }
}

/// Real processes, killed with SIGKILL while they hold locks.
#[cfg(test)]
mod processes {
    use super::*;
    use crate::file::lock::testing::{child_role, kill, report_and_wait, spawn_child, Fixture};

    const CHILD: &str = "file::lock::robust::processes::child_main";

    /// What the children do: take a lock on test block 0 (in place) and wait to be killed.
    #[test]
    #[ignore = "a child process of the tests below"]
    fn child_main() {
        let Some((role, path)) = child_role() else { return };
        let fx = Fixture::join(&path);
        let lock = fx.block(0, true);
        match role.as_str() {
            "writer" => {
                let held = lock.write(&fx.robust, &fx.scope, Wait::Forever).unwrap();
                // Half a write: what a reader sees after this process is killed.
                fx.word64(0, block::SEQ).store(u64::MAX, Ordering::SeqCst);
                std::mem::forget(held);
                report_and_wait("writing");
            }
            "reader" => {
                let held = lock.read(&fx.robust, &fx.scope, Wait::Forever).unwrap();
                let slot = fx.robust.readers().slot(&fx.scope).unwrap();
                std::mem::forget(held);
                report_and_wait(&format!("reading {slot}"));
            }
            other => panic!("unknown role {other}"),
        }
    }

    /// A process killed inside a write is recovered from (`EOWNERDEAD`): the next writer gets the
    /// lock, and the entry is marked interrupted; and a reader meeting the dead writer's flag
    /// clears it instead of waiting forever.
    #[test]
    fn a_killed_writer_is_recovered() {
        for first in ["writer", "reader"] {
            let fx = Fixture::new();
            let (child, msg) = spawn_child(CHILD, "writer", &fx.path);
            assert_eq!(msg, "writing");
            kill(child);
            let lock = fx.block(0, true);
            let (ctx, scope) = (&fx.robust, &fx.scope);
            assert!(!lock.interrupted(), "nobody has found out yet");
            if first == "writer" {
                let w = lock.write(ctx, scope, Wait::Forever).unwrap();
                assert!(w.owner_died());
            } else {
                drop(lock.read(ctx, scope, Wait::Forever).unwrap());
                assert_eq!(fx.word32(0, block::WRITER).load(Ordering::SeqCst), 0);
            }
            assert!(lock.interrupted(), "{first}: the half-written entry is marked");
            let w = lock.write(ctx, scope, Wait::Never).unwrap();
            assert!(!w.owner_died());
        }
    }

    /// A process killed inside a read guard leaves its bit: the next writer probes the slot, finds
    /// its owner dead, clears the bit and gets in. The slot stays out of use (dirty) until a reset.
    #[test]
    fn a_killed_reader_is_reclaimed() {
        let fx = Fixture::new();
        let (child, msg) = spawn_child(CHILD, "reader", &fx.path);
        let slot: u32 = msg.strip_prefix("reading ").unwrap().parse().unwrap();
        let word = fx.word32(0, block::READERS + 4 * u64::from(slot / 32));
        assert_ne!(word.load(Ordering::SeqCst) & (1 << (slot % 32)), 0);
        let lock = fx.block(0, true);
        let (ctx, scope) = (&fx.robust, &fx.scope);
        assert!(matches!(lock.write(ctx, scope, Wait::Never), Err(LockError::WouldBlock)), "alive: waited for");
        kill(child);
        let w = lock.write(ctx, scope, Wait::Forever).unwrap();
        assert!(!w.owner_died() && !lock.interrupted(), "a dead reader changed nothing");
        assert_eq!(word.load(Ordering::SeqCst), 0);
        drop(w);
        assert_ne!(ctx.readers().slot(scope), Some(slot), "the dead reader's slot is dirty");
    }

    /// A file copied while a process held a lock in it (then killed) carries a locked mutex that
    /// no kernel will ever report dead. Its first opener resets the locks, and locking does not
    /// hang; the original file recovers through `EOWNERDEAD` as usual.
    #[test]
    fn a_copied_file_does_not_hang_its_first_opener() {
        let fx = Fixture::new();
        let (child, _) = spawn_child(CHILD, "writer", &fx.path);
        let copy = fx.path.with_extension("copy");
        std::fs::copy(&fx.path, &copy).unwrap();
        kill(child);
        let lock = fx.block(0, true);
        let w = lock.write(&fx.robust, &fx.scope, Wait::Forever).unwrap();
        assert!(w.owner_died());
        drop(w);
        // Without a reset, the copy's mutex is locked by a thread no kernel knows.
        let joined = Fixture::join(&copy);
        let stale = joined.block(0, true);
        assert!(matches!(stale.write(&joined.robust, &joined.scope, Wait::Never), Err(LockError::WouldBlock)));
        drop((stale, joined));
        let copy_file = std::fs::OpenOptions::new().read(true).write(true).open(&copy).unwrap();
        let map = Mapping::new(&copy_file, 64 << 10, false).unwrap();
        let state = crate::file::lock::reset::reset(&map, header::LockMode::Robust).unwrap();
        let scope = LockScope::of(&copy_file).unwrap();
        let robust = Robust::new(&map, &copy_file, state.lock_epoch, true).unwrap().unwrap();
        let lock = BlockLock::new(&map, crate::file::lock::testing::block(0)).unwrap();
        let w = lock.write(&robust, &scope, Wait::Never, true).unwrap();
        assert!(!w.owner_died(), "re-initialised, not recovered");
        drop(w);
        drop(lock.read(&robust, &scope, Wait::Never, true).unwrap());
        drop((lock, robust));
    }
}

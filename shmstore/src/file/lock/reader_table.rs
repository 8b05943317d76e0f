//! The reader table of robust mode: 128 slots in the header, each owned by at most one process,
//! whose bit in an entry's reader bitmap says that the process holds read guards on the entry.
//!
//! A process takes a slot the first time it takes a read guard on an entry changed in place. It
//! owns slot `i` by holding an exclusive OFD lock on the byte `2^61 + i` through a descriptor of
//! its own (opened anew, so that no other process shares its open file description); the kernel
//! releases that lock when the process dies, which is how a writer waiting for the slot's bit
//! tells a dead reader from a slow one ([`ReaderTable::is_dead`]): it try-locks the byte through
//! another description. (Taking the lock, rather than asking with `F_OFD_GETLK`, leaves no window
//! in which a new owner could register between the question and the answer.)
//!
//! A slot's `state` word says whether it is taken. A process that closes the store clears its
//! slot's `state` (all its bits are clear then) and closes its descriptor. A process that dies
//! leaves `state` set and bits in the bitmaps of the entries it was reading, which the writers of
//! those entries clear one entry at a time: the slot is then **dirty**, and stays unused until
//! the next reset (when a process opens the store with nobody else having it open), because
//! nobody can tell which entries still hold its bit. With all slots taken or dirty, readers take
//! the entry's mutex instead: correct, only without reader concurrency.
//!
//! A forked child inherits its parent's descriptor, and with it the slot's lock, until it `exec`s
//! (the descriptor is close-on-exec) or drops its copy of the store. The child never uses the slot
//! (a forked child's store refuses every lock), and a writer that finds a slot's lock held but its
//! registered process gone treats the slot as dead. A child that opens the store again registers a
//! slot of its own.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use super::LockScope;
use crate::file::map::{Located, Mapping};
use crate::format::v2::header::{READER_LOCK_BASE, READER_SLOTS, READER_SLOT_SIZE, READER_TABLE};
use crate::sys::{self, LockKind};

/// `state` of a free slot.
const FREE: u32 = 0;
/// `state` of a taken (or dirty) slot.
const TAKEN: u32 = 1;

/// The words of one slot: `pid: u32`, `state: u32`, `registered_unix_nanos: u64`.
#[derive(Debug, Clone, Copy)]
struct SlotWords {
    pid: Located<AtomicU32>,
    state: Located<AtomicU32>,
    since: Located<AtomicU64>,
}

/// This process's slot.
#[derive(Debug)]
struct Registered {
    index: u32,
    /// The [`sys::fork_generation`] that registered it: a forked child's copy is not its own.
    generation: u64,
    /// The descriptor holding the slot's lock.
    _fd: File,
}

/// The reader table of one open store, and this process's slot in it (registered lazily).
#[derive(Debug)]
pub(crate) struct ReaderTable {
    slots: Vec<SlotWords>,
    writable: bool,
    /// A descriptor of the store's own open file description, which never holds a slot lock:
    /// probes of other slots go through it, and the registration descriptor is opened from it.
    probe: File,
    mine: OnceLock<Option<Registered>>,
    /// Bits this process has set and not cleared yet (over all entries): if a guard was leaked
    /// (`mem::forget`), some stay set, and the slot must not be handed to another process.
    bits_set: AtomicUsize,
}

impl ReaderTable {
    /// The reader table of the store mapped by `map` (writable or not) through `file`; `None` if
    /// the table lies outside the mapping.
    ///
    /// The store that owns `map` must outlive the table's uses: it keeps pointers into it.
    pub(crate) fn new(map: &Mapping, file: &File, writable: bool) -> io::Result<Option<ReaderTable>> {
        let mut slots = Vec::with_capacity(READER_SLOTS as usize);
        for i in 0..u64::from(READER_SLOTS) {
            let at = READER_TABLE + i * READER_SLOT_SIZE;
            let (Some(pid), Some(state), Some(since)) =
                (map.locate_u32(at), map.locate_u32(at + 4), map.locate_u64(at + 8))
            else {
                return Ok(None);
            };
            slots.push(SlotWords { pid, state, since });
        }
        Ok(Some(ReaderTable {
            slots,
            writable,
            probe: file.try_clone()?,
            mine: OnceLock::new(),
            bits_set: AtomicUsize::new(0),
        }))
    }

    fn state(&self, i: u32) -> &AtomicU32 {
        // SAFETY: located in the store's mapping, which outlives this table's uses (`new`).
        unsafe { self.slots[i as usize].state.get() }
    }

    fn pid(&self, i: u32) -> &AtomicU32 {
        // SAFETY: as in `state`.
        unsafe { self.slots[i as usize].pid.get() }
    }

    fn since(&self, i: u32) -> &AtomicU64 {
        // SAFETY: as in `state`.
        unsafe { self.slots[i as usize].since.get() }
    }

    /// This process's slot, registered on first use; `None` if it has none (a read-only
    /// mapping, every slot taken or dirty, or the registration failed). `scope` is the store's,
    /// and not [`forked`](LockScope::forked) (the caller checked).
    pub(crate) fn slot(&self, scope: &LockScope) -> Option<u32> {
        self.mine.get_or_init(|| self.register(scope)).as_ref().map(|r| r.index)
    }

    fn register(&self, scope: &LockScope) -> Option<Registered> {
        if !self.writable {
            return None;
        }
        // A description of our own: `/proc/self/fd/N` opens the file anew.
        let fd = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/self/fd/{}", self.probe.as_raw_fd()))
            .ok()?;
        let pid = std::process::id();
        for i in 0..READER_SLOTS {
            if self.state(i).load(Ordering::Acquire) != FREE {
                continue;
            }
            let byte = READER_LOCK_BASE + u64::from(i);
            match sys::lock_range(&fd, byte, LockKind::Exclusive, false) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(_) => return None,
            }
            // Holding the lock: nobody else registers this slot now. Its owner may have died
            // since the check above, leaving it dirty.
            if self.state(i).load(Ordering::Acquire) != FREE {
                let _ = sys::unlock_range(&fd, byte);
                continue;
            }
            self.pid(i).store(pid, Ordering::Relaxed);
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
            self.since(i).store(now, Ordering::Relaxed);
            self.state(i).store(TAKEN, Ordering::Release);
            return Some(Registered { index: i, generation: scope.generation, _fd: fd });
        }
        None
    }

    /// Counts a bit this process set (`true`) or cleared (`false`) in some entry's bitmap.
    pub(crate) fn count_bit(&self, set: bool) {
        if set {
            self.bits_set.fetch_add(1, Ordering::Relaxed);
        } else {
            self.bits_set.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Whether the owner of slot `i` is dead, so that its bits may be cleared: its lock can be
    /// taken (and is released again at once), or the process that registered it is gone while a
    /// forked child keeps its descriptor open. This process's own slot is alive.
    pub(crate) fn is_dead(&self, i: u32) -> io::Result<bool> {
        if i >= READER_SLOTS {
            return Ok(false);
        }
        if self.mine.get().and_then(Option::as_ref).is_some_and(|r| r.index == i) {
            return Ok(false);
        }
        let byte = READER_LOCK_BASE + u64::from(i);
        if sys::lock_range(&self.probe, byte, LockKind::Exclusive, false)? {
            sys::unlock_range(&self.probe, byte)?;
            return Ok(true);
        }
        let pid = self.pid(i).load(Ordering::Relaxed);
        Ok(pid != 0 && i32::try_from(pid).is_ok_and(|pid| !sys::process_exists(pid)))
    }
}

impl Drop for ReaderTable {
    fn drop(&mut self) {
        let Some(Some(mine)) = self.mine.get() else { return };
        // In a forked child the slot is the parent's; and with a leaked guard's bit still set,
        // the slot must stay taken (dirty) so that no other process inherits that bit.
        if mine.generation == sys::fork_generation() && self.bits_set.load(Ordering::Relaxed) == 0 {
            self.pid(mine.index).store(0, Ordering::Relaxed);
            self.since(mine.index).store(0, Ordering::Relaxed);
            self.state(mine.index).store(FREE, Ordering::Release);
        }
        // The registration descriptor closes with `mine`, releasing the slot's lock.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::lock::testing::Fixture;
    use crate::file::lock::Wait;

    fn taken(fx: &Fixture) -> Vec<u32> {
        (0..READER_SLOTS).filter(|&i| fx.robust.readers().state(i).load(Ordering::SeqCst) != FREE).collect()
    }

    #[test]
    fn a_slot_is_registered_on_first_use_and_freed_on_close() {
        let fx = Fixture::new();
        let table = fx.robust.readers();
        assert!(taken(&fx).is_empty(), "nothing is registered before a read");
        let slot = table.slot(&fx.scope).unwrap();
        assert_eq!(table.slot(&fx.scope), Some(slot), "once per store");
        assert_eq!(taken(&fx), [slot]);
        assert_eq!(table.pid(slot).load(Ordering::SeqCst), std::process::id());
        assert!(!table.is_dead(slot).unwrap(), "this process's own slot is alive");
        // Another store of the file in this process takes another slot, which the first sees
        // alive (its liveness lock is held through another description).
        let other = ReaderTable::new(&fx.map, &fx.file, true).unwrap().unwrap();
        let second = other.slot(&fx.scope).unwrap();
        assert_ne!(second, slot);
        assert!(!table.is_dead(second).unwrap());
        drop(other);
        assert_eq!(taken(&fx), [slot], "a store that closes frees its slot");
        assert!(table.is_dead(second).unwrap(), "and its lock");
        // A free slot whose lock is free counts as dead, so stray bits of it are cleared.
        assert!(table.is_dead(READER_SLOTS - 1).unwrap());
    }

    /// A slot whose owner died (state taken, lock free) is dirty: never registered again until a
    /// reset, since entries may still hold its bit.
    #[test]
    fn dirty_slots_are_skipped_until_a_reset() {
        let fx = Fixture::new();
        let table = fx.robust.readers();
        for i in 0..3 {
            table.state(i).store(TAKEN, Ordering::SeqCst);
            table.pid(i).store(u32::MAX, Ordering::SeqCst);
        }
        assert_eq!(table.slot(&fx.scope), Some(3));
        let fx = fx.reopen();
        assert_eq!(taken(&fx), Vec::<u32>::new(), "the reset cleared the table");
        assert_eq!(fx.robust.readers().slot(&fx.scope), Some(0));
    }

    /// With every slot taken, readers take the entry's mutex instead: still excluded from writers,
    /// only not from each other.
    #[test]
    fn without_a_slot_readers_take_the_mutex() {
        let fx = Fixture::new();
        let table = fx.robust.readers();
        for i in 0..READER_SLOTS {
            table.state(i).store(TAKEN, Ordering::SeqCst);
        }
        assert_eq!(table.slot(&fx.scope), None);
        let lock = fx.block(0, true);
        let r = lock.read(&fx.robust, &fx.scope, Wait::Never).unwrap();
        assert_eq!(fx.word32(0, crate::format::v2::block::READERS).load(Ordering::SeqCst), 0, "no bit");
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(matches!(
                    lock.write(&fx.robust, &fx.scope, Wait::Never),
                    Err(crate::file::lock::LockError::WouldBlock)
                ));
                assert!(matches!(
                    lock.read(&fx.robust, &fx.scope, Wait::Never),
                    Err(crate::file::lock::LockError::WouldBlock)
                ));
            });
        });
        // Re-entrant reads cannot be granted on a mutex: refused rather than deadlocked.
        assert!(matches!(
            lock.read(&fx.robust, &fx.scope, Wait::Forever),
            Err(crate::file::lock::LockError::WouldDeadlock { held_exclusive: true })
        ));
        drop(r);
    }

    /// A read guard that was leaked (`mem::forget`) leaves its bit set: closing the store then
    /// keeps the slot taken, so that no other process inherits the bit.
    #[test]
    fn a_leaked_reader_bit_keeps_the_slot() {
        let fx = Fixture::new();
        let other = ReaderTable::new(&fx.map, &fx.file, true).unwrap().unwrap();
        let slot = other.slot(&fx.scope).unwrap();
        other.count_bit(true);
        drop(other);
        assert_eq!(taken(&fx), [slot]);
    }

    /// A read-only mapping cannot set bits: no slot.
    #[test]
    fn a_read_only_store_has_no_slot() {
        let fx = Fixture::new();
        let table = ReaderTable::new(&fx.map, &fx.file, false).unwrap().unwrap();
        assert_eq!(table.slot(&fx.scope), None);
        assert!(taken(&fx).is_empty());
    }
}

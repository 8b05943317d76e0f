//! OFD mode: one kernel byte-range lock per entry, shared for reads and exclusive for writes.
//!
//! Those locks belong to the open file description, which all threads of a process share, so they
//! neither exclude sibling threads nor count holders: two threads that both take the shared lock
//! hold it *once*, and the first to unlock would release it for both. A [`RangeLock`] therefore
//! keeps in-process state: the first local reader takes the kernel lock and the last one releases
//! it, a local writer excludes everyone, and waiting writers hold off new local readers so that
//! they cannot starve.

use std::fs::File;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Held, LockError, LockScope, Release, Wait};
use crate::sys::{self, LockKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    Unlocked,
    /// A thread is taking the kernel lock, shared or exclusive, with the state mutex released.
    Acquiring(LockKind),
    Shared,
    Exclusive,
}

#[derive(Debug)]
struct State {
    kernel: Kernel,
    readers: u32,
    writers_waiting: u32,
    sleepers: u32,
}

/// One lockable byte of a store file, shared by every handle to it in this process.
#[derive(Debug)]
pub(crate) struct RangeLock {
    offset: u64,
    state: Mutex<State>,
    cond: Condvar,
}

impl RangeLock {
    /// A lock on the byte at `offset`.
    pub(crate) fn new(offset: u64) -> RangeLock {
        RangeLock {
            offset,
            state: Mutex::new(State { kernel: Kernel::Unlocked, readers: 0, writers_waiting: 0, sleepers: 0 }),
            cond: Condvar::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is a handful of counters updated without panicking in between, so a poisoned
        // mutex still holds consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sleeps on the condition variable until woken, or fails if `wait` allows no (more) waiting.
    fn sleep<'a>(&'a self, mut st: MutexGuard<'a, State>, wait: Wait) -> Result<MutexGuard<'a, State>, LockError> {
        let left = match wait {
            Wait::Never => return Err(LockError::WouldBlock),
            Wait::Forever => None,
            Wait::Until(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Err(LockError::Timeout),
            },
        };
        st.sleepers += 1;
        let mut st = match left {
            None => self.cond.wait(st).unwrap_or_else(|e| e.into_inner()),
            Some(left) => self.cond.wait_timeout(st, left).unwrap_or_else(|e| e.into_inner()).0,
        };
        st.sleepers -= 1;
        Ok(st)
    }

    fn wake(&self, st: &State) {
        if st.sleepers > 0 {
            self.cond.notify_all();
        }
    }

    /// Takes the lock shared on `file` (whose scope is `scope`), until the returned hold drops.
    /// Re-entrant: a thread that already holds it shared gets it again at once, even with writers
    /// queued; one that holds it exclusively gets [`LockError::WouldDeadlock`].
    pub(crate) fn read<'a>(&'a self, file: &'a File, scope: &'a LockScope, wait: Wait) -> Result<Held<'a>, LockError> {
        let (key, mine) = scope.admit(self.offset, false)?;
        self.lock_shared(file, wait, mine.shared > 0)?;
        Ok(Held::new(scope, key, false, Release::Ofd { lock: self, file }))
    }

    /// Takes the lock exclusively on `file` (whose scope is `scope`), until the returned hold
    /// drops. A thread that already holds it, in either mode, gets [`LockError::WouldDeadlock`].
    pub(crate) fn write<'a>(&'a self, file: &'a File, scope: &'a LockScope, wait: Wait) -> Result<Held<'a>, LockError> {
        let (key, _) = scope.admit(self.offset, true)?;
        self.lock_exclusive(file, wait)?;
        Ok(Held::new(scope, key, true, Release::Ofd { lock: self, file }))
    }

    /// Releases one hold taken through `file`, shared or `exclusive`.
    pub(super) fn unlock(&self, file: &File, exclusive: bool) {
        if exclusive {
            self.unlock_exclusive(file);
        } else {
            self.unlock_shared(file);
        }
    }

    /// `reentrant`: this thread already holds the kernel lock shared (through this `RangeLock`
    /// or another description of the same file), so no writer anywhere can get it before this
    /// thread lets go: queued writers must not hold this request off.
    fn lock_shared(&self, file: &File, wait: Wait, reentrant: bool) -> Result<(), LockError> {
        let mut st = self.state();
        loop {
            match st.kernel {
                Kernel::Shared if st.writers_waiting == 0 || reentrant => {
                    st.readers += 1;
                    return Ok(());
                }
                Kernel::Unlocked => break,
                // Only through another description: a writer of this one is asking the kernel
                // for the lock this thread holds shared elsewhere, and this description can give
                // no reader the lock before that writer is through.
                Kernel::Acquiring(LockKind::Exclusive) if reentrant => {
                    return Err(LockError::WouldDeadlock { held_exclusive: false })
                }
                _ => st = self.sleep(st, wait)?,
            }
        }
        st.kernel = Kernel::Acquiring(LockKind::Shared);
        drop(st);
        let res = kernel_lock(file, self.offset, LockKind::Shared, wait);
        let mut st = self.state();
        match res {
            Ok(()) => {
                st.kernel = Kernel::Shared;
                st.readers = 1;
            }
            Err(_) => st.kernel = Kernel::Unlocked,
        }
        self.wake(&st);
        res
    }

    fn lock_exclusive(&self, file: &File, wait: Wait) -> Result<(), LockError> {
        let mut st = self.state();
        st.writers_waiting += 1;
        while st.kernel != Kernel::Unlocked {
            match self.sleep(st, wait) {
                Ok(next) => st = next,
                Err(e) => {
                    let mut st = self.state();
                    st.writers_waiting -= 1;
                    self.wake(&st);
                    return Err(e);
                }
            }
        }
        st.writers_waiting -= 1;
        st.kernel = Kernel::Acquiring(LockKind::Exclusive);
        drop(st);
        let res = kernel_lock(file, self.offset, LockKind::Exclusive, wait);
        let mut st = self.state();
        st.kernel = if res.is_ok() { Kernel::Exclusive } else { Kernel::Unlocked };
        self.wake(&st);
        res
    }

    fn unlock_shared(&self, file: &File) {
        let mut st = self.state();
        debug_assert!(st.kernel == Kernel::Shared && st.readers > 0);
        st.readers -= 1;
        if st.readers == 0 {
            release(file, self.offset);
            st.kernel = Kernel::Unlocked;
            self.wake(&st);
        }
    }

    fn unlock_exclusive(&self, file: &File) {
        let mut st = self.state();
        debug_assert!(st.kernel == Kernel::Exclusive);
        release(file, self.offset);
        st.kernel = Kernel::Unlocked;
        self.wake(&st);
    }
}

fn release(file: &File, offset: u64) {
    // Unlocking a range we hold fails only if the descriptor is gone, and the descriptor lives as
    // long as the store; there is nobody to report to from a guard's drop either way.
    let _ = sys::unlock_range(file, offset);
}

/// Takes the kernel lock, honouring `wait`. The kernel has no timed wait for these locks, so a
/// deadline polls with a non-blocking attempt and an exponential back-off from 20 µs to 5 ms.
fn kernel_lock(file: &File, offset: u64, kind: LockKind, wait: Wait) -> Result<(), LockError> {
    match wait {
        Wait::Forever => sys::lock_range(file, offset, kind, true).map(|_| ()).map_err(LockError::Io),
        Wait::Never => match sys::lock_range(file, offset, kind, false) {
            Ok(true) => Ok(()),
            Ok(false) => Err(LockError::WouldBlock),
            Err(e) => Err(LockError::Io(e)),
        },
        Wait::Until(deadline) => {
            let mut pause = Duration::from_micros(20);
            loop {
                match sys::lock_range(file, offset, kind, false) {
                    Ok(true) => return Ok(()),
                    Ok(false) => {}
                    Err(e) => return Err(LockError::Io(e)),
                }
                let now = Instant::now();
                if now >= deadline {
                    return Err(LockError::Timeout);
                }
                std::thread::sleep(pause.min(deadline - now));
                pause = (pause * 2).min(Duration::from_millis(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::with_registry;
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    fn open(path: &std::path::Path) -> (File, LockScope) {
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).unwrap();
        let scope = LockScope::of(&file).unwrap();
        (file, scope)
    }

    /// Runs `f` on another thread (one that holds nothing) and returns its result.
    fn elsewhere<R: Send>(f: impl FnOnce() -> R + Send) -> R {
        std::thread::scope(|s| s.spawn(f).join().unwrap())
    }

    #[test]
    fn local_readers_share_and_writers_exclude() {
        let dir = tempfile::tempdir().unwrap();
        let (file, scope) = open(&dir.path().join("f"));
        let lock = RangeLock::new(100);
        let r1 = lock.read(&file, &scope, Wait::Never).unwrap();
        elsewhere(|| {
            drop(lock.read(&file, &scope, Wait::Never).unwrap());
            assert!(matches!(lock.write(&file, &scope, Wait::Never), Err(LockError::WouldBlock)));
            let timed = lock.write(&file, &scope, Wait::timeout(Duration::from_millis(20)));
            assert!(matches!(timed, Err(LockError::Timeout)));
        });
        drop(r1);
        let w = lock.write(&file, &scope, Wait::Never).unwrap();
        elsewhere(|| assert!(matches!(lock.read(&file, &scope, Wait::Never), Err(LockError::WouldBlock))));
        drop(w);
        drop(lock.read(&file, &scope, Wait::Never).unwrap());
    }

    /// What a thread asks for while it holds the lock: reads again are granted, everything else is
    /// refused at once, whatever the wait, and nothing is left behind once the holds drop.
    #[test]
    fn a_thread_never_waits_for_itself() {
        let dir = tempfile::tempdir().unwrap();
        let (file, scope) = open(&dir.path().join("f"));
        let lock = RangeLock::new(100);
        let r1 = lock.read(&file, &scope, Wait::Never).unwrap();
        let r2 = lock.read(&file, &scope, Wait::Forever).unwrap();
        for wait in [Wait::Never, Wait::Forever, Wait::timeout(Duration::from_secs(3600))] {
            let refused = lock.write(&file, &scope, wait);
            assert!(matches!(refused, Err(LockError::WouldDeadlock { held_exclusive: false })), "{refused:?}");
        }
        drop((r1, r2));
        let w = lock.write(&file, &scope, Wait::Forever).unwrap();
        for wait in [Wait::Never, Wait::Forever] {
            let read = lock.read(&file, &scope, wait);
            assert!(matches!(read, Err(LockError::WouldDeadlock { held_exclusive: true })), "{read:?}");
            let write = lock.write(&file, &scope, wait);
            assert!(matches!(write, Err(LockError::WouldDeadlock { held_exclusive: true })), "{write:?}");
        }
        drop(w);
        // The refusals changed nothing: another thread can take it, and so can this one.
        elsewhere(|| drop(lock.write(&file, &scope, Wait::Never).unwrap()));
        drop(lock.write(&file, &scope, Wait::Never).unwrap());
        assert!(with_registry(scope.generation, |held| held.is_empty()).unwrap(), "every hold was removed");
    }

    /// A queued writer holds off new readers, but not a thread that already reads: the writer is
    /// waiting for that thread anyway.
    #[test]
    fn a_reentrant_read_passes_a_queued_writer() {
        let dir = tempfile::tempdir().unwrap();
        let (file, scope) = open(&dir.path().join("f"));
        let lock = RangeLock::new(100);
        let r1 = lock.read(&file, &scope, Wait::Never).unwrap();
        std::thread::scope(|s| {
            let writer = s.spawn(|| drop(lock.write(&file, &scope, Wait::Forever).unwrap()));
            // Wait for the writer to queue (a state this test then exercises, not a timing).
            while lock.state().writers_waiting == 0 {
                std::thread::yield_now();
            }
            // A new reader on another thread waits behind the writer...
            elsewhere(|| assert!(matches!(lock.read(&file, &scope, Wait::Never), Err(LockError::WouldBlock))));
            // ...but this thread's second read does not, with any wait.
            let r2 = lock.read(&file, &scope, Wait::Never).unwrap();
            let r3 = lock.read(&file, &scope, Wait::Forever).unwrap();
            drop((r1, r2, r3));
            writer.join().unwrap();
        });
    }

    /// Two opens of one file have two descriptions and two `RangeLock`s per byte, and the kernel
    /// would let a thread wait on one for what it holds through the other: the registry knows
    /// them as one lock. Other bytes and other files are other locks.
    #[test]
    fn holds_are_keyed_by_the_file_not_the_description() {
        let dir = tempfile::tempdir().unwrap();
        let (a, scope_a) = open(&dir.path().join("f"));
        let (b, scope_b) = open(&dir.path().join("f"));
        let (c, scope_c) = open(&dir.path().join("g"));
        let (lock_a, lock_b, lock_c) = (RangeLock::new(100), RangeLock::new(100), RangeLock::new(100));
        let r = lock_a.read(&a, &scope_a, Wait::Never).unwrap();
        let refused = lock_b.write(&b, &scope_b, Wait::Forever);
        assert!(matches!(refused, Err(LockError::WouldDeadlock { held_exclusive: false })), "{refused:?}");
        drop(lock_b.read(&b, &scope_b, Wait::Forever).unwrap());
        assert!(matches!(lock_b.write(&b, &scope_b, Wait::Never), Err(LockError::WouldDeadlock { .. })));
        let other_byte = RangeLock::new(101);
        drop(other_byte.write(&b, &scope_b, Wait::Never).unwrap());
        drop(lock_c.write(&c, &scope_c, Wait::Never).unwrap());
        drop(r);
        let w = lock_b.write(&b, &scope_b, Wait::Never).unwrap();
        let refused = lock_a.read(&a, &scope_a, Wait::Forever);
        assert!(matches!(refused, Err(LockError::WouldDeadlock { held_exclusive: true })), "{refused:?}");
        drop(w);
        drop(lock_a.write(&a, &scope_a, Wait::Never).unwrap());
    }

    /// A scope opened in another process generation (what a forked child sees) refuses every
    /// acquisition before touching the lock's state.
    #[test]
    fn a_scope_of_the_parent_refuses_to_lock() {
        let dir = tempfile::tempdir().unwrap();
        let (file, scope) = open(&dir.path().join("f"));
        let parent = LockScope { generation: scope.generation.wrapping_sub(1), ..scope };
        assert!(parent.forked() && !scope.forked());
        let lock = RangeLock::new(100);
        let w = lock.write(&file, &scope, Wait::Never).unwrap();
        assert!(matches!(lock.read(&file, &parent, Wait::Forever), Err(LockError::Forked)));
        assert!(matches!(lock.write(&file, &parent, Wait::Forever), Err(LockError::Forked)));
        drop(w);
    }

    #[test]
    fn writers_exclude_threads() {
        let dir = tempfile::tempdir().unwrap();
        let (file, scope) = open(&dir.path().join("f"));
        let (file, scope) = (Arc::new(file), Arc::new(scope));
        let lock = Arc::new(RangeLock::new(7));
        let inside = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (file, scope, lock, inside) = (file.clone(), scope.clone(), lock.clone(), inside.clone());
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        let held = lock.write(&file, &scope, Wait::Forever).unwrap();
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                        inside.fetch_sub(1, Ordering::SeqCst);
                        drop(held);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}

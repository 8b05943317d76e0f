//! Readers-writer locks that exclude both other processes and other threads.
//!
//! Across processes, each entry has a one-byte kernel lock range (see [`crate::sys`]); the kernel
//! drops it when the holder dies. Those locks belong to the open file description, which all
//! threads of a process share, so they neither exclude sibling threads nor count holders: two
//! threads that both take the shared lock hold it *once*, and the first to unlock would release it
//! for both. A [`RangeLock`] therefore keeps in-process state: the first local reader takes the
//! kernel lock and the last one releases it, a local writer excludes everyone, and waiting writers
//! hold off new local readers so that they cannot starve.

use std::fs::File;
use std::io;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::sys::{self, LockKind};

/// How long an acquisition may wait.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait {
    /// Until the lock is granted.
    Forever,
    /// Not at all.
    Never,
    /// Until the deadline.
    Until(Instant),
}

impl Wait {
    /// `Until(now + timeout)`.
    pub(crate) fn timeout(timeout: Duration) -> Wait {
        Instant::now().checked_add(timeout).map_or(Wait::Forever, Wait::Until)
    }
}

/// Why an acquisition failed.
#[derive(Debug)]
pub(crate) enum LockError {
    /// [`Wait::Never`] and the lock is held.
    WouldBlock,
    /// The deadline passed.
    Timeout,
    /// The kernel refused.
    Io(io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    Unlocked,
    Acquiring,
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

    /// Takes the lock shared, until the returned hold drops.
    pub(crate) fn read<'a>(&'a self, file: &'a File, wait: Wait) -> Result<Held<'a>, LockError> {
        self.lock_shared(file, wait).map(|()| Held { lock: self, file, exclusive: false })
    }

    /// Takes the lock exclusively, until the returned hold drops.
    pub(crate) fn write<'a>(&'a self, file: &'a File, wait: Wait) -> Result<Held<'a>, LockError> {
        self.lock_exclusive(file, wait).map(|()| Held { lock: self, file, exclusive: true })
    }

    fn lock_shared(&self, file: &File, wait: Wait) -> Result<(), LockError> {
        let mut st = self.state();
        loop {
            match st.kernel {
                Kernel::Shared if st.writers_waiting == 0 => {
                    st.readers += 1;
                    return Ok(());
                }
                Kernel::Unlocked => break,
                _ => st = self.sleep(st, wait)?,
            }
        }
        st.kernel = Kernel::Acquiring;
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
        st.kernel = Kernel::Acquiring;
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

/// A held [`RangeLock`], released when dropped (also when a panic unwinds past it).
#[derive(Debug)]
pub(crate) struct Held<'a> {
    lock: &'a RangeLock,
    file: &'a File,
    exclusive: bool,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if self.exclusive {
            self.lock.unlock_exclusive(self.file);
        } else {
            self.lock.unlock_shared(self.file);
        }
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
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[test]
    fn local_readers_share_and_writers_exclude() {
        let file = tempfile::tempfile().unwrap();
        let lock = RangeLock::new(100);
        let r1 = lock.read(&file, Wait::Never).unwrap();
        let r2 = lock.read(&file, Wait::Never).unwrap();
        assert!(matches!(lock.write(&file, Wait::Never), Err(LockError::WouldBlock)));
        drop(r1);
        assert!(matches!(lock.write(&file, Wait::timeout(Duration::from_millis(20))), Err(LockError::Timeout)));
        drop(r2);
        let w = lock.write(&file, Wait::Never).unwrap();
        assert!(matches!(lock.read(&file, Wait::Never), Err(LockError::WouldBlock)));
        drop(w);
        drop(lock.read(&file, Wait::Never).unwrap());
    }

    #[test]
    fn writers_exclude_threads() {
        let file = Arc::new(tempfile::tempfile().unwrap());
        let lock = Arc::new(RangeLock::new(7));
        let inside = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (file, lock, inside) = (file.clone(), lock.clone(), inside.clone());
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        let held = lock.write(&file, Wait::Forever).unwrap();
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

//! The lock mode of a version-2 store, and the open byte through which openers agree on it.
//!
//! Every opener takes an OFD lock on the *open byte* ([`OPEN_BYTE`](v2h::OPEN_BYTE)) and keeps it
//! shared for as long as it has the store mapped. An opener that gets it *exclusively* (without
//! waiting) knows that no other process has the store open: it resets the open state (a new
//! `lock_epoch`, the lock mode, the time) and converts its lock to shared, atomically. Others wait
//! for the shared lock, which the resetter holds exclusively only while it resets.
//!
//! [`join`] is where a resetter initialises the in-mapping locks of robust mode
//! ([`crate::file::lock::reset`]) and where a later opener is checked against what the resetter
//! recorded; [`crate::file::lock::Locks`] holds the one match on the mode per lock acquisition.

use std::sync::atomic::{fence, Ordering};
use std::time::Duration;

use crate::error::{Error, Result, WaitedFor};
use crate::file::lock::reset::{self, Mismatch};
use crate::file::lock::Wait;
use crate::file::state::StoreInner;
use crate::format::v2::header::{self as v2h, LockMode, OpenState, LOCK_ABI_LEN};
use crate::sys;

/// The open state a new store is created with: OFD mode, epoch 0 (the first opener resets it).
pub(crate) fn initial_state() -> OpenState {
    OpenState {
        lock_mode: LockMode::Ofd,
        lock_abi: [0; LOCK_ABI_LEN],
        pidns_dev: 0,
        pidns_ino: 0,
        lock_epoch: 0,
        reset_unix_nanos: 0,
    }
}

/// How often a waiter on a read-only store, which cannot ask writers to wake it, re-checks.
pub(crate) const READ_ONLY_POLL: Duration = Duration::from_millis(2);

/// The byte a read-only opener holds shared, for as long as it has the store mapped, instead of
/// the open byte: it pins the session's lock mode without holding off a reset.
pub(crate) const READ_ONLY_PIN: u64 = v2h::OPEN_BYTE + 1;

/// Takes the open byte for `store` (resetting its locks and open state first if this is the
/// first read-write opener) and returns the open state, whose lock mode the store uses.
/// `requested` is [`OpenOptions::lock_mode`](crate::OpenOptions::lock_mode): the mode a resetter
/// records (robust if `None`), and the mode a later opener insists on (any if `None`); a later
/// opener that could not share the recorded robust-mode mutexes (another libc or PID namespace)
/// is refused with [`Error::LockModeMismatch`] before it touches any lock.
///
/// A read-only opener cannot reset (it cannot write the header) and never writes a lock word:
/// in robust mode it reads without locks, and in OFD mode its kernel locks live outside the file.
/// So it holds [`READ_ONLY_PIN`] shared instead of the open byte, and is not checked against the
/// recorded ABI and namespace. Locks left in the file by processes that are gone (after a crash,
/// in a copied file) are then still reset by the next read-write opener, even while read-only
/// processes have the store open; that reset keeps the recorded lock mode while any does (their
/// reads follow it), and refuses an opener that asks for the other mode.
pub(crate) fn join(store: &StoreInner, requested: Option<LockMode>) -> Result<OpenState> {
    let io = |e| store.io("lock", e);
    let (file, shared, exclusive) = (&store.file, sys::LockKind::Shared, sys::LockKind::Exclusive);
    if store.read_only {
        sys::lock_range(file, READ_ONLY_PIN, shared, true).map_err(io)?;
        // Waits for a reset in progress to finish, so that the open state is whole.
        sys::lock_range(file, v2h::OPEN_BYTE, shared, true).map_err(io)?;
        let state = read_state(store);
        let _ = sys::unlock_range(file, v2h::OPEN_BYTE);
        let state = state?;
        return match requested {
            Some(mode) if mode != state.lock_mode => {
                Err(mismatch(store, Mismatch::Mode { file: state.lock_mode, requested: mode }))
            }
            _ => Ok(state),
        };
    }
    if sys::lock_range(file, v2h::OPEN_BYTE, exclusive, false).map_err(io)? {
        // Nobody else has the store open read-write: reset. Read-only openers pin the mode.
        let pinned = !sys::lock_range(file, READ_ONLY_PIN, exclusive, false).map_err(io)?;
        if !pinned {
            let _ = sys::unlock_range(file, READ_ONLY_PIN);
        }
        let recorded = read_state(store).ok().map(|s| s.lock_mode);
        let mode = match (pinned, recorded, requested) {
            (true, Some(recorded), _) => recorded,
            (_, _, Some(requested)) => requested,
            _ => reset::default_mode(),
        };
        let result = reset::reset(store.map(), mode).map_err(|e| store.io("reset locks", e));
        // Converting an exclusive OFD lock to a shared one is atomic: no other opener can slip
        // in between and reset again.
        let shared = sys::lock_range(file, v2h::OPEN_BYTE, shared, true).map_err(io);
        let state = result?;
        shared?;
        if let Some(requested) = requested.filter(|&r| r != state.lock_mode) {
            return Err(mismatch(store, Mismatch::Mode { file: state.lock_mode, requested }));
        }
        return Ok(state);
    }
    sys::lock_range(file, v2h::OPEN_BYTE, shared, true).map_err(io)?;
    let state = read_state(store)?;
    reset::admit(&state, requested).map_err(|m| mismatch(store, m))?;
    Ok(state)
}

/// Whether some process has the store open read-write (holds the open byte), as a read-only
/// opener asks before it trusts a lock word: if none has, every lock word in the file was left by
/// a process that is gone.
pub(crate) fn read_write_users(store: &StoreInner) -> Result<bool> {
    sys::range_is_locked(&store.file, v2h::OPEN_BYTE).map_err(|e| store.io("lock", e))
}

/// The error for an opener that may not lock `store` as its other processes do.
fn mismatch(store: &StoreInner, m: Mismatch) -> Error {
    let reason = match m {
        Mismatch::Mode { file, requested } => {
            format!("in {} lock mode, and this process asked for {} mode", file.as_str(), requested.as_str())
        }
        Mismatch::LockAbi { file, ours } => format!(
            "in robust lock mode with mutexes of another libc or architecture ({file}), and this process's are {ours}"
        ),
        Mismatch::PidNamespace { file, ours: Some(ours) } => format!(
            "in robust lock mode from another PID namespace (a container?): {file:?}, and this process's is {ours:?}"
        ),
        Mismatch::PidNamespace { file, ours: None } => {
            format!("in robust lock mode from PID namespace {file:?}, and this process cannot tell its own (no /proc)")
        }
    };
    Error::LockModeMismatch { path: store.path.clone(), reason }
}

/// The decoded open state of `store`.
fn read_state(store: &StoreInner) -> Result<OpenState> {
    let mut bytes = [0u8; v2h::OPEN_STATE_SIZE];
    if !store.map().read(v2h::OPEN_STATE_OFFSET, &mut bytes) {
        return Err(store.corrupt("the header lies outside the mapping".into()));
    }
    OpenState::decode(&bytes).map_err(|e| store.corrupt(format!("header: {e}")))
}

impl StoreInner {
    /// Copies `out.len()` bytes at `offset` of the entry changed in place whose block is at `at`
    /// (named `name`, values of shape `shape`), without its lock, for a process that cannot
    /// take it: a read-only mapping in robust lock mode. An optimistic read, as for
    /// double-buffered objects: the entry's `seq`, then its `writer` word (set by a writer,
    /// holding the mutex, before it changes anything, followed by a release fence), a copy with
    /// atomic loads, an acquire fence, and both words again; retried until no writer was in, and
    /// `check_current` before every try. While a writer is in, it sleeps on the entry's futex word
    /// in 2 ms slices (a read-only mapping cannot register as a waiter), honouring `wait`. A
    /// writer that died leaves its `writer` word set until a read-write process recovers the
    /// entry's lock; until then this waits (or times out).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn copy_unlocked<S: crate::file::copy::Shape>(
        &self,
        name: &str,
        at: u64,
        shape: &S,
        offset: u64,
        out: &mut [u8],
        wait: Wait,
        timeout: Option<Duration>,
        check_current: impl Fn() -> Result<()>,
    ) -> Result<()> {
        let map = self.map();
        let word = |o| map.atomic_u32(at + o);
        let located = (
            map.ptr(offset, out.len() as u64, 1),
            word(crate::format::v2::block::WRITER),
            word(crate::format::v2::block::FUTEX),
            map.atomic_u64(at + crate::format::v2::block::SEQ),
        );
        let (Some(src), Some(writer), Some(futex), Some(seq)) = located else {
            return Err(self.corrupt(format!("entry `{name}` points outside the mapping")));
        };
        loop {
            check_current()?;
            let seen = futex.load(Ordering::SeqCst);
            let before = seq.load(Ordering::Acquire);
            if writer.load(Ordering::SeqCst) != 0 && !self.stale_writer(at)? {
                let nap = match wait {
                    Wait::Never => return Err(Error::WouldBlock { name: name.to_owned() }),
                    Wait::Forever => READ_ONLY_POLL,
                    Wait::Until(deadline) => match deadline.checked_duration_since(std::time::Instant::now()) {
                        Some(left) if !left.is_zero() => left.min(READ_ONLY_POLL),
                        _ => {
                            return Err(Error::Timeout {
                                name: name.to_owned(),
                                waited: timeout.unwrap_or_default(),
                                waited_for: WaitedFor::Lock,
                            })
                        }
                    },
                };
                crate::sys::futex_wait(futex, seen, Some(nap)).map_err(|e| self.io("futex wait", e))?;
                continue;
            }
            // SAFETY: `src..src + out.len()` lies in the mapping (located above), which stays
            // mapped while `self` lives, and holds values of shape `shape` (the caller's word):
            // their atomics are read at their own width, their plain bytes, which writers change
            // by plain stores, as `copy_racy` reads them.
            unsafe { crate::file::copy::copy_racy_shaped(shape, src, out) };
            fence(Ordering::Acquire);
            let writer_in = writer.load(Ordering::Acquire) != 0 && !self.stale_writer(at)?;
            if !writer_in && seq.load(Ordering::Relaxed) == before {
                break;
            }
        }
        Ok(())
    }

    /// Whether the `writer` word of the block at `at`, found set, is a dead writer's, for a reader
    /// that cannot take the entry's lock (and so cannot clear it): the block's mutex is of an
    /// older lock epoch than the store's (a reset happened since; the next locker clears the
    /// word), or no process has the store open read-write (every lock word was left by a process
    /// that is gone, for instance in a file restored after a crash). A system call, on this slow
    /// path only.
    fn stale_writer(&self, at: u64) -> Result<bool> {
        let map = self.map();
        let epochs = (map.atomic_u64(at + crate::format::v2::block::LOCK_EPOCH), map.atomic_u64(v2h::ADMIN_EPOCH));
        if let (Some(block), Some(store)) = epochs {
            if block.load(Ordering::Acquire) != store.load(Ordering::Acquire) {
                return Ok(true);
            }
        }
        Ok(!read_write_users(self)?)
    }

    /// Copies `out.len()` bytes of the double-buffered object whose block is at `at` (named
    /// `name`) from `offset(seq)` in its active slot, without its lock: the optimistic read of
    /// `load()`, for a process that cannot take the lock (a read-only mapping in robust lock
    /// mode). Retried, yielding in between, until no commit raced with the copy.
    pub(crate) fn copy_double_buffered(
        &self,
        name: &str,
        at: u64,
        offset: impl Fn(u64) -> u64,
        out: &mut [u8],
        check_current: impl Fn() -> Result<()>,
    ) -> Result<()> {
        let map = self.map();
        let Some(seq) = map.atomic_u64(at + crate::format::v2::block::SEQ) else {
            return Err(self.corrupt(format!("entry `{name}` points outside the mapping")));
        };
        loop {
            check_current()?;
            let before = seq.load(Ordering::Acquire);
            let Some(src) = map.ptr(offset(before), out.len() as u64, 1) else {
                return Err(self.corrupt(format!("entry `{name}` points outside the mapping")));
            };
            // SAFETY: `src..src + out.len()` lies in the mapping (checked just above), which stays
            // mapped while `self` lives. Committers store the slot's words as `AtomicU64`s, which
            // `copy_racy` reads as such where they are whole (slots are 64-aligned).
            unsafe { crate::file::copy::copy_racy(src, out) };
            fence(Ordering::Acquire);
            if seq.load(Ordering::Relaxed) == before {
                return Ok(());
            }
            std::thread::yield_now();
        }
    }
}

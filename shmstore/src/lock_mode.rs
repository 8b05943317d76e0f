//! The lock mode of a version-2 store, and the open byte through which openers agree on it.
//!
//! Every opener takes an OFD lock on the *open byte* ([`OPEN_BYTE`](v2h::OPEN_BYTE)) and keeps it
//! shared for as long as it has the store mapped. An opener that gets it *exclusively* (without
//! waiting) knows that no other process has the store open: it resets the open state (a new
//! `lock_epoch`, the lock mode, the time) and converts its lock to shared, atomically. Others wait
//! for the shared lock, which the resetter holds exclusively only while it resets.
//!
//! [`join`] is where a resetter initialises the in-mapping locks of robust mode
//! ([`crate::lock::reset`]) and where a later opener is checked against what the resetter
//! recorded; [`crate::lock::Locks`] holds the one match on the mode per lock acquisition.

use crate::error::{Error, Result};
use crate::format::v2::header::{self as v2h, LockMode, OpenState, LOCK_ABI_LEN};
use crate::lock::reset::{self, Mismatch};
use crate::store::StoreInner;
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

/// Takes the open byte for `store` (resetting its locks and open state first if this is the
/// first opener and the store is writable) and returns the open state, whose lock mode the store
/// uses. `requested` is [`OpenOptions::lock_mode`](crate::OpenOptions::lock_mode): the mode a
/// resetter records (robust if `None`), and the mode a later opener insists on (any if `None`);
/// a later opener that could not share the recorded robust-mode mutexes (another libc or PID
/// namespace) is refused with [`Error::LockModeMismatch`] before it touches any lock.
///
/// A read-only opener never resets (it cannot write the header) and never locks in robust mode
/// (it cannot write a mutex), so it is not checked against the recorded ABI and namespace.
pub(crate) fn join(store: &StoreInner, requested: Option<LockMode>) -> Result<OpenState> {
    let io = |e| store.io("lock", e);
    let first = !store.read_only
        && sys::lock_range(&store.file, v2h::OPEN_BYTE, sys::LockKind::Exclusive, false).map_err(io)?;
    if first {
        let mode = requested.unwrap_or_else(reset::default_mode);
        let result = reset::reset(store.map(), mode).map_err(|e| store.io("reset locks", e));
        // Converting an exclusive OFD lock to a shared one is atomic: no other opener can slip
        // in between and reset again.
        let shared = sys::lock_range(&store.file, v2h::OPEN_BYTE, sys::LockKind::Shared, true).map_err(io);
        let state = result?;
        shared?;
        return Ok(state);
    }
    sys::lock_range(&store.file, v2h::OPEN_BYTE, sys::LockKind::Shared, true).map_err(io)?;
    let state = read_state(store)?;
    if store.read_only {
        return match requested {
            Some(mode) if mode != state.lock_mode => {
                Err(mismatch(store, Mismatch::Mode { file: state.lock_mode, requested: mode }))
            }
            _ => Ok(state),
        };
    }
    reset::admit(&state, requested).map_err(|m| mismatch(store, m))?;
    Ok(state)
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

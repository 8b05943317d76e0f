//! The lock mode of a version-2 store, and the open byte through which openers agree on it.
//!
//! Every opener takes an OFD lock on the *open byte* ([`OPEN_BYTE`](v2h::OPEN_BYTE)) and keeps it
//! shared for as long as it has the store mapped. An opener that gets it *exclusively* (without
//! waiting) knows that no other process has the store open: it resets the open state (a new
//! `lock_epoch`, the lock mode, the time) and converts its lock to shared, atomically. Others wait
//! for the shared lock, which the resetter holds exclusively only while it resets.
//!
//! This module is the seam for robust lock mode: [`join`] is where a resetter initialises
//! in-mapping locks, and [`StoreInner::entry_lock`] holds the one match on the mode for entry
//! locks. This build implements [`LockMode::Ofd`] only; a store whose open state records
//! [`LockMode::Robust`] is refused with an error saying so.

use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::format::v2::header::{self as v2h, LockMode, OpenState, LOCK_ABI_LEN};
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

/// Takes the open byte for `store` (resetting the open state first if this is the first opener
/// and the store is writable) and returns the lock mode the store uses.
pub(crate) fn join(store: &StoreInner) -> Result<LockMode> {
    let io = |e| store.io("lock", e);
    let first = !store.read_only
        && sys::lock_range(&store.file, v2h::OPEN_BYTE, sys::LockKind::Exclusive, false).map_err(io)?;
    if first {
        let result = reset(store);
        // Converting an exclusive OFD lock to a shared one is atomic: no other opener can slip
        // in between and reset again.
        let shared = sys::lock_range(&store.file, v2h::OPEN_BYTE, sys::LockKind::Shared, true).map_err(io);
        result?;
        shared?;
    } else {
        sys::lock_range(&store.file, v2h::OPEN_BYTE, sys::LockKind::Shared, true).map_err(io)?;
    }
    let state = read_state(store)?;
    match state.lock_mode {
        LockMode::Ofd => Ok(LockMode::Ofd),
        LockMode::Robust => Err(unsupported(store)),
    }
}

/// Resets the open state: nobody else has the store open. Keeps the recorded lock mode (a torn
/// or damaged open state, which only a crash during a reset leaves, becomes OFD mode).
fn reset(store: &StoreInner) -> Result<()> {
    let previous = read_state(store).ok();
    let mode = previous.map_or(LockMode::Ofd, |s| s.lock_mode);
    if mode != LockMode::Ofd {
        return Err(unsupported(store));
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let state = OpenState {
        lock_epoch: previous.map_or(1, |s| s.lock_epoch.wrapping_add(1)),
        reset_unix_nanos: now,
        ..initial_state()
    };
    if !store.map().write(v2h::OPEN_STATE_OFFSET, &state.encode()) {
        return Err(store.corrupt("the header lies outside the mapping".into()));
    }
    store.live_u64(v2h::ADMIN_EPOCH).store(state.lock_epoch, Ordering::Release);
    Ok(())
}

/// The decoded open state of `store`.
fn read_state(store: &StoreInner) -> Result<OpenState> {
    let mut bytes = [0u8; v2h::OPEN_STATE_SIZE];
    if !store.map().read(v2h::OPEN_STATE_OFFSET, &mut bytes) {
        return Err(store.corrupt("the header lies outside the mapping".into()));
    }
    OpenState::decode(&bytes).map_err(|e| store.corrupt(format!("header: {e}")))
}

/// The error for a store in a lock mode this build does not implement.
pub(crate) fn unsupported(store: &StoreInner) -> Error {
    store.corrupt(
        "the store uses robust lock mode, which this build of shmstore does not implement: open it with a build that does"
            .into(),
    )
}

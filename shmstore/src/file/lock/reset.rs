//! The first opener's reset, and the check every other opener makes against what it recorded.
//!
//! A process that opens a store while nobody else has it open (it got the exclusive OFD lock on
//! the open byte, `2^60`, without waiting) cannot meet anyone's lock in the file: whatever lock
//! words the file holds were left by processes that are gone, possibly on another boot or in
//! the file a copy was made from. It [`reset`]s them, without touching a single entry:
//! - it bumps the store's `lock_epoch`, so that every entry's mutex, initialised at an older
//!   epoch, is initialised again before its first use (`lock/robust.rs`), together with the
//!   entry's reader bitmap and writer word;
//! - it initialises the admin mutex, and clears the reader table;
//! - it records, in the open state, the lock mode of this session, and in robust mode the
//!   lock-ABI tag of its libc and its PID namespace.
//!
//! Every later opener (until the last one closes) checks that record ([`admit`]) and is refused,
//! before it touches any lock word, if it would lock differently: another mode, another mutex
//! layout (glibc and musl mutexes have the same size and different layouts), or another PID
//! namespace (thread ids, which robust mutexes store, collide across namespaces, which silently
//! breaks mutual exclusion). Such processes can share the store in OFD mode.

use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::robust::MAX_EPOCH;
use crate::file::map::Mapping;
use crate::format::v2::header::{
    LockMode, OpenState, ADMIN_EPOCH, ADMIN_MUTEX, LOCK_ABI_LEN, OPEN_STATE_OFFSET, OPEN_STATE_SIZE, READER_SLOTS,
    READER_SLOT_SIZE, READER_TABLE,
};
use crate::sys::robust_mutex;

/// The lock mode a resetting opener picks when it was not told one: robust, unless this process
/// cannot tell its PID namespace (no `/proc`), without which robust mode cannot refuse openers
/// from other namespaces.
pub(crate) fn default_mode() -> LockMode {
    if robust_mutex::pid_namespace().is_ok() {
        LockMode::Robust
    } else {
        LockMode::Ofd
    }
}

/// This build's lock-ABI tag, zero-padded as the open state stores it.
pub(crate) fn lock_abi_field() -> [u8; LOCK_ABI_LEN] {
    let mut field = [0u8; LOCK_ABI_LEN];
    let tag = robust_mutex::lock_abi().as_bytes();
    let n = tag.len().min(LOCK_ABI_LEN);
    field[..n].copy_from_slice(&tag[..n]);
    field
}

/// Resets the locks of the store mapped (writable) by `map` for a session in `mode`, and writes
/// the new open state, which it returns.
///
/// The caller holds the open byte exclusively: no other process has the store open, or can open
/// it before the caller downgrades that lock to shared.
pub(crate) fn reset(map: &Mapping, mode: LockMode) -> io::Result<OpenState> {
    let broken = || io::Error::other("the store's header lies outside its mapping");
    let mut bytes = [0u8; OPEN_STATE_SIZE];
    if !map.read(OPEN_STATE_OFFSET, &mut bytes) {
        return Err(broken());
    }
    // The new epoch must differ from every epoch a mutex in the file was initialised at: those
    // are at most the previous session's, which the open state holds (unless a reset was killed
    // before writing it; the admin mutex's epoch, written first, then has it).
    let admin_epoch = map.atomic_u64(ADMIN_EPOCH).ok_or_else(broken)?;
    let previous = OpenState::decode(&bytes).map_or(0, |s| s.lock_epoch);
    let mut epoch = previous.max(admin_epoch.load(Ordering::Acquire)).saturating_add(1);
    if epoch > MAX_EPOCH {
        // Only a crafted file gets here (2^63 resets).
        epoch = 1;
    }
    let (lock_abi, (pidns_dev, pidns_ino)) = match mode {
        LockMode::Robust => (lock_abi_field(), robust_mutex::pid_namespace()?),
        LockMode::Ofd => ([0; LOCK_ABI_LEN], (0, 0)),
    };
    if mode == LockMode::Robust {
        let admin = map.atomic_words(ADMIN_MUTEX, 8).ok_or_else(broken)?;
        // SAFETY: nobody else has the store open (the caller holds the open byte exclusively),
        // so nobody uses the admin mutex; openers learn of it through the open byte's lock, which
        // they take after this reset, and through the release store of its epoch below.
        unsafe { robust_mutex::init(admin.try_into().expect("8 words"))? };
        for i in 0..u64::from(READER_SLOTS) {
            let at = READER_TABLE + i * READER_SLOT_SIZE;
            let words = (map.atomic_u32(at), map.atomic_u32(at + 4), map.atomic_u64(at + 8));
            let (Some(pid), Some(state), Some(since)) = words else { return Err(broken()) };
            clear(pid, state, since);
        }
        admin_epoch.store(epoch, Ordering::Release);
    }
    let reset_unix_nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let state = OpenState { lock_mode: mode, lock_abi, pidns_dev, pidns_ino, lock_epoch: epoch, reset_unix_nanos };
    if !map.write(OPEN_STATE_OFFSET, &state.encode()) {
        return Err(broken());
    }
    Ok(state)
}

fn clear(pid: &AtomicU32, state: &AtomicU32, since: &AtomicU64) {
    pid.store(0, Ordering::Relaxed);
    state.store(0, Ordering::Relaxed);
    since.store(0, Ordering::Relaxed);
}

/// Why an opener may not lock a store the way the open state records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mismatch {
    /// The store's processes use `file`, this opener asked for `requested`.
    Mode {
        /// The session's mode.
        file: LockMode,
        /// The mode asked for.
        requested: LockMode,
    },
    /// Robust mode with another mutex ABI (another libc, or another architecture).
    LockAbi {
        /// The session's tag.
        file: String,
        /// This build's tag.
        ours: &'static str,
    },
    /// Robust mode from another PID namespace (or one this process cannot tell: `ours` is
    /// `None` without `/proc`).
    PidNamespace {
        /// The session's namespace (device, inode).
        file: (u64, u64),
        /// This process's.
        ours: Option<(u64, u64)>,
    },
}

/// Checks that this process may lock the store whose open state is `state` (written by the
/// session's first opener), having asked for `requested` (or nothing: then it follows the
/// store's mode). Returns the mode to use.
pub(crate) fn admit(state: &OpenState, requested: Option<LockMode>) -> Result<LockMode, Mismatch> {
    if let Some(requested) = requested.filter(|&r| r != state.lock_mode) {
        return Err(Mismatch::Mode { file: state.lock_mode, requested });
    }
    if state.lock_mode == LockMode::Ofd {
        return Ok(LockMode::Ofd);
    }
    let ours = robust_mutex::lock_abi();
    if state.lock_abi != lock_abi_field() {
        return Err(Mismatch::LockAbi { file: state.lock_abi_str().to_owned(), ours });
    }
    let file = (state.pidns_dev, state.pidns_ino);
    match robust_mutex::pid_namespace() {
        Ok(ns) if ns == file => Ok(LockMode::Robust),
        Ok(ns) => Err(Mismatch::PidNamespace { file, ours: Some(ns) }),
        Err(_) => Err(Mismatch::PidNamespace { file, ours: None }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::lock::testing::Fixture;
    use crate::format::v2::header::OPEN_STATE_SIZE;

    fn open_state(fx: &Fixture) -> OpenState {
        let mut bytes = [0u8; OPEN_STATE_SIZE];
        assert!(fx.map.read(OPEN_STATE_OFFSET, &mut bytes));
        OpenState::decode(&bytes).unwrap()
    }

    #[test]
    fn a_reset_records_the_session_and_bumps_the_epoch() {
        let fx = Fixture::new();
        let state = open_state(&fx);
        assert_eq!(state, fx.state);
        assert_eq!(state.lock_mode, LockMode::Robust);
        assert_eq!(state.lock_abi_str(), robust_mutex::lock_abi());
        assert_eq!((state.pidns_dev, state.pidns_ino), robust_mutex::pid_namespace().unwrap());
        assert_eq!(state.lock_epoch, 1);
        assert_eq!(fx.map.atomic_u64(ADMIN_EPOCH).unwrap().load(Ordering::SeqCst), 1);
        assert_eq!(admit(&state, None), Ok(LockMode::Robust));
        assert_eq!(admit(&state, Some(LockMode::Robust)), Ok(LockMode::Robust));
        let fx = fx.reopen();
        assert_eq!(open_state(&fx).lock_epoch, 2);
        // An OFD session records no ABI and no namespace, and keeps the epoch rising.
        let ofd = reset(&fx.map, LockMode::Ofd).unwrap();
        assert_eq!(
            (ofd.lock_mode, ofd.lock_abi, ofd.pidns_dev, ofd.lock_epoch),
            (LockMode::Ofd, [0; LOCK_ABI_LEN], 0, 3)
        );
        assert_eq!(admit(&ofd, None), Ok(LockMode::Ofd));
    }

    /// A reset killed after it initialised the admin mutex but before it wrote the open state
    /// (torn checksum) is followed by one whose epoch is still new.
    #[test]
    fn a_torn_reset_still_yields_a_new_epoch() {
        let fx = Fixture::new();
        fx.map.atomic_u64(ADMIN_EPOCH).unwrap().store(7, Ordering::SeqCst);
        assert!(fx.map.write(OPEN_STATE_OFFSET + 8, b"torn"));
        assert_eq!(reset(&fx.map, LockMode::Robust).unwrap().lock_epoch, 8);
    }

    /// Openers that would lock differently are refused, before touching any lock: another mode
    /// than asked for, another mutex ABI, another PID namespace.
    #[test]
    fn mismatching_openers_are_refused() {
        let fx = Fixture::new();
        let state = fx.state;
        assert_eq!(
            admit(&state, Some(LockMode::Ofd)),
            Err(Mismatch::Mode { file: LockMode::Robust, requested: LockMode::Ofd })
        );
        let mut musl = state;
        musl.lock_abi = [0; LOCK_ABI_LEN];
        let tag = "x86_64-linux-musl/pthread_mutex_t=40/kind=0x84";
        musl.lock_abi[..tag.len()].copy_from_slice(tag.as_bytes());
        match admit(&musl, None) {
            Err(Mismatch::LockAbi { file, ours }) => {
                assert_eq!(file, tag);
                assert_eq!(ours, robust_mutex::lock_abi());
            }
            other => panic!("{other:?}"),
        }
        let mut container = state;
        container.pidns_ino ^= 1;
        assert!(matches!(admit(&container, None), Err(Mismatch::PidNamespace { ours: Some(_), .. })));
        // An OFD session admits anyone who does not insist on robust mode.
        let ofd =
            OpenState { lock_mode: LockMode::Ofd, lock_abi: [0; LOCK_ABI_LEN], pidns_dev: 0, pidns_ino: 0, ..state };
        assert_eq!(admit(&ofd, None), Ok(LockMode::Ofd));
        assert!(matches!(admit(&ofd, Some(LockMode::Robust)), Err(Mismatch::Mode { .. })));
    }
}

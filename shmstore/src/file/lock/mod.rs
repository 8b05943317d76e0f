//! Readers-writer locks that exclude both other processes and other threads, in one of two modes.
//!
//! - **OFD mode** ([`ofd`]): each entry has a one-byte kernel lock range (see [`crate::sys`]),
//!   which the kernel drops when the holder dies. Two system calls per guard.
//! - **Robust mode** ([`robust`]): each entry's writers exclude each other with a robust,
//!   process-shared pthread mutex in the entry's block; readers of entries changed in place set
//!   their process's bit in the block's reader bitmap ([`reader_table`]). No system call when
//!   nobody waits. The first process to open the store resets every such lock ([`reset`]), and a
//!   process that could not share those mutexes (another libc, another PID namespace) is refused.
//!
//! # Requests a thread can never get
//!
//! Each thread keeps a registry of the locks it holds, keyed by the lock's identity in the *file*
//! (device, inode, lock byte or block), not by the in-process lock object: two
//! [`Store`](crate::Store)s of one file in one process have two lock objects per entry, but one
//! lock to fight over, and neither the kernel (`F_OFD_SETLKW`) nor a NORMAL pthread mutex detects
//! a deadlock between them. Before it waits, a request consults the registry:
//! - a read by a thread that already reads the entry is *re-entrant*: it is granted even if a
//!   writer is queued (the writer waits for this thread's first read anyway, so it could never go
//!   first);
//! - a write by a thread that holds the entry in any mode, and a read by a thread that writes it,
//!   can never be granted while that thread holds what it holds: they fail at once with
//!   [`LockError::WouldDeadlock`].
//!
//! Both modes keep these rules.
//!
//! # Processes and fork
//!
//! A forked child shares its parent's open file descriptions, hence its kernel locks, and inherits
//! a copy of this in-process state, possibly mid-acquisition (and, in robust mode, mutexes its
//! parent's threads hold, which the child can neither use nor release). Every [`LockScope`]
//! remembers the [`sys::fork_generation`] of the process that opened the store: in a child,
//! acquisitions fail with [`LockError::Forked`] before they touch anything, and a [`Held`] dropped
//! there does nothing, so that it never releases the parent's lock.

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::marker::PhantomData;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use crate::sys;

pub(crate) mod ofd;
pub(crate) mod reader_table;
pub(crate) mod reset;
pub(crate) mod robust;

pub(crate) use ofd::RangeLock;

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
    /// The store was opened by the parent of this process, before a `fork`.
    Forked,
    /// This thread holds the lock in a mode that the request would wait for forever.
    WouldDeadlock {
        /// Whether the lock this thread holds is exclusive.
        held_exclusive: bool,
    },
    /// Robust mode: the mutex was unlocked by a holder that did not repair it after its previous
    /// holder died (a foreign or corrupted writer; never this crate), so nobody can lock it until
    /// the store is reset, which happens when the next process opens it with nobody else having it
    /// open.
    NotRecoverable,
}

/// The open store file that locks are taken on, as the registry and the fork check know it: its
/// identity in the file system, and the process generation that opened it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LockScope {
    dev: u64,
    ino: u64,
    generation: u64,
}

impl LockScope {
    /// The scope of `file`, just opened by this process. Installs the `fork` handler first, so
    /// that every later `fork` is counted.
    pub(crate) fn of(file: &File) -> io::Result<LockScope> {
        sys::watch_forks()?;
        let meta = file.metadata()?;
        Ok(LockScope { dev: meta.dev(), ino: meta.ino(), generation: sys::fork_generation() })
    }

    /// Whether this process is a forked child of the one that opened the file: one atomic load.
    #[inline(always)]
    pub(crate) fn forked(&self) -> bool {
        sys::fork_generation() != self.generation
    }
}

/// A lock's identity in the file: what the per-thread registry counts holds of. Made only in the
/// process generation that opened the file, which it carries along for the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key {
    dev: u64,
    ino: u64,
    offset: u64,
    generation: u64,
}

/// How often this thread holds one lock.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Holds {
    /// Shared holds.
    pub(crate) shared: u32,
    /// Exclusive holds.
    pub(crate) exclusive: u32,
}

/// The locks this thread holds, by [`Key`]. A [`Held`] never leaves its thread (it is neither
/// `Send` nor `Sync`, and so is every guard holding one), so a hold is added and removed by the
/// same thread.
#[derive(Debug)]
struct Registry {
    /// The [`sys::fork_generation`] the holds were taken in: a forked child starts empty, since
    /// what its parent's thread held at the `fork` is not held by the child.
    generation: u64,
    /// A thread holds a handful of locks at most, so a vector beats a map.
    held: Vec<(Key, Holds)>,
}

thread_local! {
    static REGISTRY: RefCell<Registry> = const { RefCell::new(Registry { generation: 0, held: Vec::new() }) };
}

/// Runs `f` on this thread's registry, emptied first if it was filled in another process
/// generation than `generation` (the current one, which the caller just read): in the parent of
/// this forked child. `None` while the thread is being torn down (its registry is gone; nothing
/// waits then, so nothing is lost by not checking).
fn with_registry<R>(generation: u64, f: impl FnOnce(&mut Vec<(Key, Holds)>) -> R) -> Option<R> {
    REGISTRY
        .try_with(|registry| {
            let mut registry = registry.borrow_mut();
            if registry.generation != generation {
                registry.generation = generation;
                registry.held.clear();
            }
            f(&mut registry.held)
        })
        .ok()
}

/// What this thread holds of `key`.
pub(crate) fn holds(key: Key) -> Holds {
    with_registry(key.generation, |held| held.iter().find(|(k, _)| *k == key).map(|(_, h)| *h))
        .flatten()
        .unwrap_or_default()
}

/// Records that this thread took `key`.
pub(crate) fn add_hold(key: Key, exclusive: bool) {
    with_registry(key.generation, |held| {
        let holds = match held.iter_mut().find(|(k, _)| *k == key) {
            Some((_, holds)) => holds,
            None => {
                held.push((key, Holds::default()));
                &mut held.last_mut().expect("just pushed").1
            }
        };
        if exclusive {
            holds.exclusive += 1;
        } else {
            holds.shared += 1;
        }
    });
}

/// Records that this thread released `key`.
pub(crate) fn remove_hold(key: Key, exclusive: bool) {
    with_registry(key.generation, |held| {
        if let Some(i) = held.iter().position(|(k, _)| *k == key) {
            let holds = &mut held[i].1;
            let count = if exclusive { &mut holds.exclusive } else { &mut holds.shared };
            *count = count.saturating_sub(1);
            if holds.shared == 0 && holds.exclusive == 0 {
                held.swap_remove(i);
            }
        }
    });
}

impl LockScope {
    /// The registry key of the lock at `offset` (a lock byte in OFD mode, a block or the admin
    /// mutex in robust mode) in this scope; only for a scope that is not [`forked`](Self::forked).
    pub(crate) fn key(&self, offset: u64) -> Key {
        Key { dev: self.dev, ino: self.ino, offset, generation: self.generation }
    }

    /// The registry's verdict on a request for the lock at `offset` by this thread: its key and
    /// what the thread already holds of it, or the reason the request can never be granted.
    /// `Forked` comes first, before anything is touched.
    pub(crate) fn admit(&self, offset: u64, exclusive: bool) -> Result<(Key, Holds), LockError> {
        if self.forked() {
            return Err(LockError::Forked);
        }
        let key = self.key(offset);
        let mine = holds(key);
        if mine.exclusive > 0 || (exclusive && mine.shared > 0) {
            return Err(LockError::WouldDeadlock { held_exclusive: mine.exclusive > 0 });
        }
        Ok((key, mine))
    }
}

/// A held lock of either mode, released when dropped (also when a panic unwinds past it), except
/// in a forked child.
#[derive(Debug)]
pub(crate) struct Held<'a> {
    scope: &'a LockScope,
    /// The offset of the hold's key in this thread's registry (`scope.key(offset)`), if it is
    /// recorded there. (Only the offset: a hold is moved around, and the smaller it is, the
    /// cheaper that is.)
    key: Option<u64>,
    /// How the registry counts this hold.
    exclusive: bool,
    release: Release<'a>,
    /// Not `Send`: the hold is recorded in the registry of the thread that took it, and must be
    /// released by that thread (a robust mutex, too, can only be unlocked by its owner thread).
    _this_thread: PhantomData<*const ()>,
}

/// What dropping a [`Held`] undoes.
#[derive(Debug)]
pub(crate) enum Release<'a> {
    /// An OFD-mode hold of a [`RangeLock`] through `file`.
    Ofd {
        /// The lock.
        lock: &'a RangeLock,
        /// The descriptor its kernel lock was taken through.
        file: &'a File,
    },
    /// A robust-mode hold.
    Robust(robust::Release<'a>),
}

impl<'a> Held<'a> {
    /// Records, in this thread's registry, the hold `key` just acquired (`exclusive` or shared) in
    /// `scope`, and returns it; dropping it undoes `release`.
    pub(crate) fn new(scope: &'a LockScope, key: Key, exclusive: bool, release: Release<'a>) -> Held<'a> {
        debug_assert_eq!(key, scope.key(key.offset), "a key of the hold's own scope");
        add_hold(key, exclusive);
        Held { scope, key: Some(key.offset), exclusive, release, _this_thread: PhantomData }
    }

    /// An exclusive hold that the lock itself records (a robust mutex of the ERRORCHECK type
    /// tells its holder that it holds it), kept out of this thread's registry; dropping it undoes
    /// `release`.
    #[inline]
    pub(crate) fn unregistered(scope: &'a LockScope, release: Release<'a>) -> Held<'a> {
        Held { scope, key: None, exclusive: true, release, _this_thread: PhantomData }
    }

    /// Whether this process is a forked child of the one that took the lock: the lock is then the
    /// parent's, not this process's.
    #[inline]
    pub(crate) fn forked(&self) -> bool {
        self.scope.forked()
    }

    /// Robust mode: whether the previous holder of the mutex died holding it, so that an entry
    /// changed in place may hold a half-done write (the entry's `interrupted` word is set too).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn owner_died(&self) -> bool {
        matches!(&self.release, Release::Robust(r) if r.owner_died())
    }
}

impl Drop for Held<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.scope.forked() {
            // Inherited by a forked child: an OFD lock belongs to the open file description the
            // child shares with its parent, so unlocking it here would unlock the parent's hold;
            // a robust mutex and reader bit are the parent thread's; and the in-process state may
            // have been locked by a parent thread at the instant of the fork, never to be
            // unlocked here. Touch none of them.
            return;
        }
        if let Some(offset) = self.key {
            remove_hold(self.scope.key(offset), self.exclusive);
        }
        match &self.release {
            Release::Ofd { lock, file } => lock.unlock(file, self.exclusive),
            Release::Robust(release) => release.release(),
        }
    }
}

/// The locks of one open store, in its session's lock mode: the one place where the mode is
/// matched on, once per acquisition.
#[derive(Debug)]
pub(crate) enum Locks {
    /// OFD mode: the admin (catalog) lock is the kernel lock on `admin`'s byte.
    Ofd {
        /// The admin lock.
        admin: RangeLock,
    },
    /// Robust mode: the admin mutex, epochs and reader table.
    Robust(robust::Robust),
}

/// The lock of one entry, in the store's lock mode. One per entry per open store, shared by every
/// handle of the entry.
#[derive(Debug)]
pub(crate) enum EntryLock {
    /// OFD mode: the kernel lock on the entry's byte.
    Ofd(RangeLock),
    /// Robust mode: the mutex and reader words of the entry's block.
    Robust(robust::BlockLock),
}

impl Locks {
    /// The store's lock mode.
    pub(crate) fn mode(&self) -> crate::format::v2::header::LockMode {
        match self {
            Locks::Ofd { .. } => crate::format::v2::header::LockMode::Ofd,
            Locks::Robust(_) => crate::format::v2::header::LockMode::Robust,
        }
    }

    /// The lock of the entry whose OFD lock byte is `byte`: that byte in OFD mode; in robust
    /// mode, the mutex and words of the block the byte is derived from (format v2:
    /// `2^62 + block / 64`) in `map`, the store's mapping. `None` if the block lies outside it.
    ///
    /// The store that owns `map` must outlive the lock's uses (robust mode keeps pointers).
    pub(crate) fn entry(&self, map: &crate::file::map::Mapping, byte: u64) -> Option<EntryLock> {
        match self {
            Locks::Ofd { .. } => Some(EntryLock::Ofd(RangeLock::new(byte))),
            Locks::Robust(_) => {
                let block = byte.checked_sub(crate::format::v2::header::LOCK_BASE)?.checked_mul(64)?;
                robust::BlockLock::new(map, block).map(EntryLock::Robust)
            }
        }
    }

    /// Whether a thread of this process still holds, through this store, a robust mutex (the
    /// admin mutex, or one of `entries`, the store's entry locks): only a leaked guard
    /// (`mem::forget`) leaves one held when the store is dropped. The mutex is then on that
    /// thread's robust list, which glibc and the kernel walk: its memory must stay mapped, and
    /// must not be initialised again by a reset, for as long as the thread lives.
    pub(crate) fn leaked<'a>(&self, mut entries: impl Iterator<Item = &'a EntryLock>) -> bool {
        match self {
            Locks::Ofd { .. } => false,
            Locks::Robust(robust) => {
                robust.admin_held() || entries.any(|lock| matches!(lock, EntryLock::Robust(block) if block.held()))
            }
        }
    }

    /// Takes the admin lock exclusively (through `file`, in `scope`).
    pub(crate) fn admin<'a>(&'a self, file: &'a File, scope: &'a LockScope, wait: Wait) -> Result<Held<'a>, LockError> {
        match self {
            Locks::Ofd { admin } => admin.write(file, scope, wait),
            Locks::Robust(robust) => robust.admin(scope, wait),
        }
    }

    /// Takes `lock` (one of this store's entry locks, of an entry changed `in_place` or
    /// double-buffered) shared, for a reader.
    #[inline]
    pub(crate) fn read<'a>(
        &'a self,
        lock: &'a EntryLock,
        file: &'a File,
        scope: &'a LockScope,
        wait: Wait,
        in_place: bool,
    ) -> Result<Held<'a>, LockError> {
        match (self, lock) {
            (Locks::Robust(robust), EntryLock::Robust(block)) => block.read(robust, scope, wait, in_place),
            (_, EntryLock::Ofd(range)) => range.read(file, scope, wait),
            (Locks::Ofd { .. }, EntryLock::Robust(_)) => Err(mode_mix()),
        }
    }

    /// [`write`](Self::write), with the hold written into `out` (initialised when this returns
    /// `Ok`), for a caller that keeps it there: a write guard's room. In robust mode the lock
    /// writes the hold's words straight into `out`; a hold returned in a `Result` is copied out
    /// of it 16 bytes at a time, and a 16-byte load of words just written by two 8-byte stores
    /// waits for them to reach the cache (a store-forwarding stall, measured at a tenth of a
    /// write guard's time).
    #[inline(always)]
    pub(crate) fn write_into<'a>(
        &'a self,
        lock: &'a EntryLock,
        file: &'a File,
        scope: &'a LockScope,
        wait: Wait,
        in_place: bool,
        out: &mut std::mem::MaybeUninit<Held<'a>>,
    ) -> Result<(), LockError> {
        match (self, lock) {
            (Locks::Robust(robust), EntryLock::Robust(block)) => block.write_into(robust, scope, wait, in_place, out),
            _ => {
                out.write(self.write(lock, file, scope, wait, in_place)?);
                Ok(())
            }
        }
    }

    /// Takes `lock` (one of this store's entry locks, of an entry changed `in_place` or
    /// double-buffered) exclusively, for a writer.
    #[inline]
    pub(crate) fn write<'a>(
        &'a self,
        lock: &'a EntryLock,
        file: &'a File,
        scope: &'a LockScope,
        wait: Wait,
        in_place: bool,
    ) -> Result<Held<'a>, LockError> {
        match (self, lock) {
            (Locks::Robust(robust), EntryLock::Robust(block)) => block.write(robust, scope, wait, in_place),
            (_, EntryLock::Ofd(range)) => range.write(file, scope, wait),
            (Locks::Ofd { .. }, EntryLock::Robust(_)) => Err(mode_mix()),
        }
    }
}

/// An entry lock of one mode used with a store of the other: [`Locks::entry`] makes them in the
/// store's mode, so this never happens.
fn mode_mix() -> LockError {
    LockError::Io(io::Error::other("an entry lock of one lock mode was used with a store of the other"))
}

/// A store-like mapping for the lock modules' tests: a file laid out like a version-2 header
/// followed by entry blocks (only their lock words matter here), reset for robust mode.
#[cfg(test)]
pub(crate) mod testing {
    use std::fs::File;
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Child, Command, Stdio};

    use super::reset;
    use super::robust::{BlockLock, Robust};
    use super::{Held, LockError, LockScope, Wait};
    use crate::file::map::Mapping;
    use crate::format::v2::block::BLOCK_SIZE;
    use crate::format::v2::header::{LockMode, OpenState, DATA_OFFSET};

    /// The offset of test block `i`.
    pub(crate) fn block(i: u64) -> u64 {
        DATA_OFFSET + i * BLOCK_SIZE
    }

    /// An open test store: its file, mapping, scope and robust state (first: it must drop before
    /// the mapping it points into).
    pub(crate) struct Fixture {
        pub(crate) robust: Robust,
        pub(crate) _dir: tempfile::TempDir,
        pub(crate) path: std::path::PathBuf,
        pub(crate) file: File,
        pub(crate) map: Mapping,
        pub(crate) scope: LockScope,
        pub(crate) state: OpenState,
    }

    impl Fixture {
        /// A new 64 KiB store file, reset for robust mode.
        pub(crate) fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("locks.shm");
            let file =
                std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
            file.set_len(64 << 10).unwrap();
            Fixture::open(dir, path, file)
        }

        fn open(dir: tempfile::TempDir, path: std::path::PathBuf, file: File) -> Fixture {
            let map = Mapping::new(&file, 64 << 10, false).unwrap();
            let state = reset::reset(&map, LockMode::Robust).unwrap();
            let scope = LockScope::of(&file).unwrap();
            let robust = Robust::new(&map, &file, state.lock_epoch, true).unwrap().unwrap();
            Fixture { robust, _dir: dir, path, file, map, scope, state }
        }

        /// The same file opened again, as a new process's first open would (another description,
        /// mapping, and a reset).
        pub(crate) fn reopen(self) -> Fixture {
            let Fixture { _dir, path, .. } = self;
            let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
            Fixture::open(_dir, path, file)
        }

        /// Opens the existing store at `path` as a later opener does: no reset, the recorded
        /// epoch.
        pub(crate) fn join(path: &std::path::Path) -> Fixture {
            let file = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
            let map = Mapping::new(&file, 64 << 10, false).unwrap();
            let mut bytes = [0u8; crate::format::v2::header::OPEN_STATE_SIZE];
            assert!(map.read(crate::format::v2::header::OPEN_STATE_OFFSET, &mut bytes));
            let state = OpenState::decode(&bytes).unwrap();
            let scope = LockScope::of(&file).unwrap();
            let robust = Robust::new(&map, &file, state.lock_epoch, true).unwrap().unwrap();
            let dir = tempfile::tempdir().unwrap();
            Fixture { robust, _dir: dir, path: path.to_owned(), file, map, scope, state }
        }

        /// The lock of test block `i`, used as the lock of an entry changed in place or not.
        pub(crate) fn block(&self, i: u64, in_place: bool) -> TestLock {
            TestLock { lock: BlockLock::new(&self.map, block(i)).unwrap(), in_place }
        }

        /// The `u32` word at `offset` of test block `i`.
        pub(crate) fn word32(&self, i: u64, offset: u64) -> &std::sync::atomic::AtomicU32 {
            self.map.atomic_u32(block(i) + offset).unwrap()
        }

        /// The `u64` word at `offset` of test block `i`.
        pub(crate) fn word64(&self, i: u64, offset: u64) -> &std::sync::atomic::AtomicU64 {
            self.map.atomic_u64(block(i) + offset).unwrap()
        }
    }

    /// A block lock that remembers what kind of entry it is used for.
    pub(crate) struct TestLock {
        pub(crate) lock: BlockLock,
        pub(crate) in_place: bool,
    }

    impl TestLock {
        pub(crate) fn read<'a>(
            &'a self,
            ctx: &'a Robust,
            scope: &'a LockScope,
            wait: Wait,
        ) -> Result<Held<'a>, LockError> {
            self.lock.read(ctx, scope, wait, self.in_place)
        }

        pub(crate) fn write<'a>(
            &'a self,
            ctx: &'a Robust,
            scope: &'a LockScope,
            wait: Wait,
        ) -> Result<Held<'a>, LockError> {
            self.lock.write(ctx, scope, wait, self.in_place)
        }
    }

    impl std::ops::Deref for TestLock {
        type Target = BlockLock;
        fn deref(&self) -> &BlockLock {
            &self.lock
        }
    }

    /// The environment variable that makes `child_main` (an ignored test) play a role.
    const ROLE: &str = "SHMSTORE_LOCK_TEST_ROLE";
    /// The store path for the child.
    const PATH: &str = "SHMSTORE_LOCK_TEST_PATH";

    /// A child process of this test binary, running `test` (an ignored test that checks
    /// [`child_role`]) in `role` on the store at `path`. Returns the child and its first protocol
    /// line, which it prints once it is in position. Killed by the caller (or leaked as a zombie
    /// if the test panics first; `kill_on_drop` is not available for `std::process::Child`).
    pub(crate) fn spawn_child(test: &str, role: &str, path: &std::path::Path) -> (Child, String) {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([test, "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .env(PATH, path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = loop {
            match lines.next() {
                Some(Ok(line)) => match line.split_once("@@") {
                    Some((_, msg)) => break msg.to_owned(),
                    None => continue,
                },
                _ => panic!("child {role} exited before it was in position: {:?}", child.wait()),
            }
        };
        (child, line)
    }

    /// The role and store path this process was spawned with, if it is a child.
    pub(crate) fn child_role() -> Option<(String, std::path::PathBuf)> {
        Some((std::env::var(ROLE).ok()?, std::env::var_os(PATH)?.into()))
    }

    /// In a child: tells the parent `msg` and waits to be killed (or for the parent to go).
    pub(crate) fn report_and_wait(msg: &str) -> ! {
        println!("\n@@{msg}");
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        std::process::exit(0)
    }

    /// Kills `child` with SIGKILL and reaps it.
    pub(crate) fn kill(mut child: Child) {
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

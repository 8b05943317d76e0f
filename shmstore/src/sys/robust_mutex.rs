//! Robust, process-shared pthread mutexes that live in a shared mapping, and the two facts a store
//! records so that only processes able to share such a mutex ever touch one: the mutex ABI
//! ([`lock_abi`]) and the PID namespace ([`pid_namespace`]).
//!
//! A robust mutex records its owner's thread id in the lock word. When the owner dies, the kernel
//! walks the dead thread's robust list and marks the word `OWNER_DIED`; the next locker is told
//! (`EOWNERDEAD`) and makes the mutex consistent again, here, before [`RobustMutex::lock`]
//! returns [`Acquired::OwnerDied`]. Unlocking without that repair would make the mutex
//! unrecoverable (`ENOTRECOVERABLE`) for good, so no path here ever does.
//!
//! What the kernel cannot clean (`shared/design/robust-locks.md`, beside the project): a word
//! left by a process that died before a reboot or a file copy (its thread id means nothing now),
//! a word written by another libc (glibc and musl lay the 40 bytes out differently) and a word
//! written from another PID namespace (thread ids collide). The lock modules above guard against
//! all three by re-initialising every mutex when the first process opens the store and by refusing
//! openers whose [`lock_abi`] or [`pid_namespace`] differs; this module only provides the calls.

use std::io;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// The bytes the file reserves for one mutex (format version 2: 64, 8-aligned).
pub(crate) const MUTEX_BYTES: usize = 64;

const _: () = assert!(size_of::<libc::pthread_mutex_t>() <= MUTEX_BYTES, "pthread_mutex_t must fit its 64 bytes");
const _: () = assert!(align_of::<libc::pthread_mutex_t>() <= align_of::<AtomicU64>());

/// The memory of one mutex: eight words of a shared mapping.
pub(crate) type MutexWords = [AtomicU64; MUTEX_BYTES / 8];

/// How a lock was acquired.
///
/// A whole word: a `Result<Acquired, MutexError>` returned through memory (as from a call that
/// is not inlined) is read back with a word-wide load, which a byte-wide store of the answer
/// cannot forward to; that store-forwarding stall cost every lock some 8 ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub(crate) enum Acquired {
    /// From an unlocked mutex.
    Clean,
    /// From a holder that died holding it (`EOWNERDEAD`); the mutex has been made consistent
    /// again, and whatever the dead holder protected may be half-changed.
    OwnerDied,
}

/// Why a lock was not acquired.
#[derive(Debug)]
pub(crate) enum MutexError {
    /// `try_lock`: another thread holds it.
    Busy,
    /// `EDEADLK`: the calling thread holds it already (the mutexes are of the ERRORCHECK type).
    Deadlock,
    /// The deadline passed.
    TimedOut,
    /// `ENOTRECOVERABLE`: a holder unlocked it without making it consistent (never this crate),
    /// so nobody can lock it until it is initialised again.
    NotRecoverable,
    /// Any other error the call returned.
    Os(io::Error),
}

/// An initialised robust, process-shared mutex in a shared mapping.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RobustMutex<'a> {
    words: &'a MutexWords,
}

/// Initialises `words` as a robust, process-shared mutex of the ERRORCHECK type, unlocked: a
/// thread that locks it again while it holds it gets `EDEADLK` ([`MutexError::Deadlock`]) instead
/// of waiting for itself forever, which lets the lock modules refuse such a request without
/// keeping count of their own. (Its other failure modes, with a stale owner or across PID
/// namespaces, are the NORMAL type's; the lock modules rule both out, with lock epochs and the
/// PID-namespace check.)
///
/// # Safety
///
/// No thread of any process may use the mutex in `words` (lock, unlock, or be blocked in either)
/// during the call, and every later user must learn of the initialisation through an
/// acquire/release pair (the lock epochs of `file/lock/robust.rs` give both).
pub(crate) unsafe fn init(words: &MutexWords) -> io::Result<()> {
    let mut attr = MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
    // SAFETY: `pthread_mutexattr_init` initialises the attribute object it is given, a live local.
    check(unsafe { libc::pthread_mutexattr_init(attr.as_mut_ptr()) })?;
    // SAFETY: `attr` was initialised just above; each setter only writes to it.
    let set = unsafe {
        check(libc::pthread_mutexattr_setpshared(attr.as_mut_ptr(), libc::PTHREAD_PROCESS_SHARED))
            .and_then(|()| check(libc::pthread_mutexattr_setrobust(attr.as_mut_ptr(), libc::PTHREAD_MUTEX_ROBUST)))
            .and_then(|()| check(libc::pthread_mutexattr_settype(attr.as_mut_ptr(), libc::PTHREAD_MUTEX_ERRORCHECK)))
    };
    // SAFETY: `words` is 64 bytes of writable memory, 8-aligned, which holds a `pthread_mutex_t`
    // (size and alignment checked at compile time above); nobody else uses it (the caller's
    // contract), so initialising it in place races with nothing. It is reached through atomics,
    // which allow mutation through a shared reference.
    let init = set.and_then(|()| check(unsafe { libc::pthread_mutex_init(raw(words), attr.as_ptr()) }));
    // SAFETY: `attr` is initialised and no longer needed.
    unsafe { libc::pthread_mutexattr_destroy(attr.as_mut_ptr()) };
    init
}

#[inline]
fn raw(words: &MutexWords) -> *mut libc::pthread_mutex_t {
    words.as_ptr().cast::<AtomicU64>().cast_mut().cast()
}

fn check(rc: libc::c_int) -> io::Result<()> {
    match rc {
        0 => Ok(()),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

impl<'a> RobustMutex<'a> {
    /// The mutex in `words`.
    ///
    /// # Safety
    ///
    /// `words` holds a mutex that [`init`] initialised, that this process learnt of through an
    /// acquire load (see [`init`]), and that nobody initialises again while `'a` lasts; the
    /// mapping stays mapped (and writable) for `'a`.
    #[inline]
    pub(crate) unsafe fn new(words: &'a MutexWords) -> RobustMutex<'a> {
        RobustMutex { words }
    }

    #[inline]
    fn raw(&self) -> *mut libc::pthread_mutex_t {
        raw(self.words)
    }

    /// Locks it, waiting until `deadline` (`None`: for as long as it takes).
    #[inline]
    pub(crate) fn lock(&self, deadline: Option<Instant>) -> Result<Acquired, MutexError> {
        let rc = match deadline {
            // SAFETY: an initialised robust mutex in live shared memory (the `new` contract).
            None => {
                if let Some(answer) = self.spin_then_try() {
                    return answer;
                }
                // SAFETY: an initialised robust mutex in live shared memory (the `new` contract).
                unsafe { libc::pthread_mutex_lock(self.raw()) }
            }
            Some(deadline) => {
                let abs = realtime_deadline(deadline);
                // SAFETY: as above; `abs` is a live local for the call.
                unsafe { libc::pthread_mutex_timedlock(self.raw(), &abs) }
            }
        };
        self.acquired(rc)
    }

    /// Spins a little while another thread holds the mutex, trying it whenever its lock word
    /// says it is free, before [`lock`](Self::lock) goes to `pthread_mutex_lock`: `Some` answer
    /// if a try decided (acquired, acquired from a dead owner, held by this thread, not
    /// recoverable), `None` to go on and wait in the kernel.
    ///
    /// glibc's robust mutexes sleep in the kernel as soon as they find the mutex taken, and once
    /// one waiter sleeps, every unlock makes a `FUTEX_WAKE` system call: that lengthens the
    /// critical section, so that more lockers find the mutex taken and sleep. Four processes
    /// incrementing one counter settled, in some runs, at a tenth of the rate they reached in
    /// others. The critical sections of shmstore are tens of nanoseconds, so a locker that
    /// watches the lock word for a few microseconds nearly always gets the mutex without
    /// sleeping. It reads the word before each try, so that spinning does not take the cache
    /// line from the holder; only where the libc's layout is known.
    ///
    /// The looks back off (the pauses between them double): a spinner that grabs the mutex at
    /// every unlock moves the mutex's and the entry's cache lines from CPU to CPU at every
    /// commit, which on this VM class cost up to 100 ns per commit whenever its two vCPUs sat far
    /// apart (four processes on one counter ran at 10 M/s in some runs and 27 M/s in others); a
    /// holder that can commit many times in a row while the others back off keeps them in its
    /// cache (24-31 ns per increment in every one of 40 runs of 2, 4 and 8 processes, against a
    /// bare robust mutex's 40-83 ns in the same runs). Then a few yields let a holder that was
    /// preempted on this CPU run.
    #[inline]
    fn spin_then_try(&self) -> Option<Result<Acquired, MutexError>> {
        let word = self.lock_word()?;
        let mut pauses = SPIN_PAUSES;
        for _ in 0..SPIN_TRIES {
            if word.load(Ordering::Relaxed) == 0 {
                match self.try_lock() {
                    Err(MutexError::Busy) => {}
                    answer => return Some(answer),
                }
            }
            for _ in 0..pauses {
                std::hint::spin_loop();
            }
            pauses = (pauses * 2).min(SPIN_PAUSES_MAX);
        }
        for _ in 0..SPIN_YIELDS {
            // SAFETY: `sched_yield` has no preconditions.
            unsafe { libc::sched_yield() };
            if word.load(Ordering::Relaxed) == 0 {
                match self.try_lock() {
                    Err(MutexError::Busy) => {}
                    answer => return Some(answer),
                }
            }
        }
        None
    }

    /// The mutex's lock word (0 when nobody holds it, else its owner's thread id and flags), for
    /// a libc whose layout is known.
    #[inline]
    fn lock_word(&self) -> Option<&'a AtomicU32> {
        let offset = LOCK_WORD_OFFSET?;
        // SAFETY: `offset + 4 <= size_of::<pthread_mutex_t>() <= 64` bytes of the live mapping
        // behind `self.words` (the `new` contract), 4-aligned (`words` is 8-aligned, `offset` a
        // multiple of 4). libc changes this word only with 32-bit atomic instructions, and it is
        // reached here only through 32-bit atomics, so no access tears or races.
        Some(unsafe { &*self.words.as_ptr().cast::<u8>().add(offset).cast::<AtomicU32>() })
    }

    /// glibc's `pthread_mutex_trylock` of a robust mutex that is not recoverable returns
    /// `ENOTRECOVERABLE` but leaves the lock word holding the caller's thread id (its lock call
    /// clears it): every other locker would then wait for this thread, which does not hold the
    /// mutex and never unlocks it. Clear the word the way an unlock does, waking any waiter.
    /// (Does nothing where the word is not this thread's: a libc without the flaw.)
    #[cold]
    fn release_unrecoverable_word(&self) {
        /// glibc's `FUTEX_TID_MASK` and `FUTEX_WAITERS`.
        const TID_MASK: u32 = 0x3fff_ffff;
        const WAITERS: u32 = 0x8000_0000;
        if !cfg!(target_env = "gnu") {
            return;
        }
        let Some(word) = self.lock_word() else { return };
        // SAFETY: `gettid` has no preconditions.
        let tid = unsafe { libc::gettid() } as u32;
        if word.load(Ordering::Relaxed) & TID_MASK == tid && word.swap(0, Ordering::Release) & WAITERS != 0 {
            super::futex_wake(word);
        }
    }

    /// Locks it if nobody holds it, without waiting. (A thread that holds it gets `Busy` from
    /// musl and `Deadlock` from glibc; `lock(Some(Instant::now()))` says `Deadlock` in both.)
    #[inline]
    pub(crate) fn try_lock(&self) -> Result<Acquired, MutexError> {
        // SAFETY: an initialised robust mutex in live shared memory (the `new` contract).
        let rc = unsafe { libc::pthread_mutex_trylock(self.raw()) };
        if rc == libc::ENOTRECOVERABLE {
            self.release_unrecoverable_word();
        }
        self.acquired(rc)
    }

    #[inline]
    fn acquired(&self, rc: libc::c_int) -> Result<Acquired, MutexError> {
        match rc {
            0 => Ok(Acquired::Clean),
            libc::EOWNERDEAD => {
                // This thread holds the mutex now: make it consistent before anything can unlock
                // it, or it becomes unrecoverable.
                // SAFETY: as for the lock; the calling thread holds the mutex, as required.
                match unsafe { libc::pthread_mutex_consistent(self.raw()) } {
                    0 => Ok(Acquired::OwnerDied),
                    errno => {
                        self.unlock();
                        Err(MutexError::Os(io::Error::from_raw_os_error(errno)))
                    }
                }
            }
            libc::EBUSY => Err(MutexError::Busy),
            libc::EDEADLK => Err(MutexError::Deadlock),
            libc::ETIMEDOUT => Err(MutexError::TimedOut),
            libc::ENOTRECOVERABLE => Err(MutexError::NotRecoverable),
            errno => Err(MutexError::Os(io::Error::from_raw_os_error(errno))),
        }
    }

    /// Unlocks it. Only the thread that locked it may call this; for any other, glibc and musl
    /// return `EPERM` on a robust mutex and change nothing, which this ignores (there is nobody
    /// to report it to from a guard's drop).
    #[inline]
    pub(crate) fn unlock(&self) {
        // SAFETY: an initialised robust mutex in live shared memory (the `new` contract).
        let _ = unsafe { libc::pthread_mutex_unlock(self.raw()) };
    }
}

/// `deadline` on `CLOCK_REALTIME`, which `pthread_mutex_timedlock` measures against. (A clock
/// step during the wait shortens or lengthens it; `pthread_mutex_clocklock` would avoid that, but
/// musl lacks it.)
#[allow(clippy::useless_conversion)] // `time_t` and `c_long` are `i32` on some 32-bit targets.
fn realtime_deadline(deadline: Instant) -> libc::timespec {
    let left = deadline.saturating_duration_since(Instant::now());
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `clock_gettime` writes one `timespec` to a live local.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
    let mut nanos = i64::from(now.tv_nsec) + i64::from(left.subsec_nanos());
    let mut secs = i64::from(now.tv_sec).saturating_add(i64::try_from(left.as_secs()).unwrap_or(i64::MAX));
    if nanos >= 1_000_000_000 {
        nanos -= 1_000_000_000;
        secs = secs.saturating_add(1);
    }
    libc::timespec { tv_sec: libc::time_t::try_from(secs).unwrap_or(libc::time_t::MAX), tv_nsec: nanos as _ }
}

/// Where the mutex type (`kind`) lies in a `pthread_mutex_t`, for the libcs whose layout is known:
/// glibc's `__kind` follows `__lock`, `__count`, `__owner` (and `__nusers` on 64-bit targets);
/// musl's `_m_type` comes first.
const KIND_OFFSET: Option<usize> = if cfg!(target_env = "musl") {
    Some(0)
} else if cfg!(all(target_env = "gnu", target_pointer_width = "64")) {
    Some(16)
} else if cfg!(all(target_env = "gnu", target_pointer_width = "32")) {
    Some(12)
} else {
    None
};

/// Where the lock word (0 when nobody holds the mutex, else its owner's thread id and flags) lies
/// in a `pthread_mutex_t`, for the libcs whose layout is known: glibc's `__lock` comes first,
/// musl's `_m_lock` second.
const LOCK_WORD_OFFSET: Option<usize> = if cfg!(target_env = "musl") {
    Some(4)
} else if cfg!(target_env = "gnu") {
    Some(0)
} else {
    None
};

/// How many times [`RobustMutex::lock`] without a deadline looks at the lock word (and tries the
/// mutex when it is free) while spinning, before it yields; the pauses between two looks start
/// at [`SPIN_PAUSES`] and double up to [`SPIN_PAUSES_MAX`]: about 5,600 `spin_loop` hints in all,
/// a few microseconds.
const SPIN_TRIES: u32 = 16;
/// The `spin_loop` hints between the first two looks.
const SPIN_PAUSES: u32 = 8;
/// The most `spin_loop` hints between two looks.
const SPIN_PAUSES_MAX: u32 = 512;
/// How many times the spin then gives the CPU away (`sched_yield`), looking at the lock word
/// after each, before it leaves the waiting to `pthread_mutex_lock`: a holder preempted on this
/// CPU (more processes than CPUs) runs meanwhile.
const SPIN_YIELDS: u32 = 4;

/// The longest tag the file has room for (the open state's `lock_abi` field).
pub(crate) const LOCK_ABI_MAX: usize = 48;

/// The lock-ABI tag of this build: which libc's mutex layout, of what size, and the type word that
/// `pthread_mutex_init` writes for a robust, process-shared ERRORCHECK mutex, for example
/// `x86_64-linux-gnu/pthread_mutex_t=40/kind=0x92`. Two processes may share a robust-mode store
/// only if their tags are equal: glibc and musl mutexes have the same size and are laid out
/// differently, so a size check alone would let them corrupt each other's mutexes. At most
/// [`LOCK_ABI_MAX`] bytes of ASCII.
pub(crate) fn lock_abi() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        let words: MutexWords = Default::default();
        // SAFETY: `words` is a local nobody else can reach.
        let kind = match unsafe { init(&words) } {
            // SAFETY: initialised just above and unlocked.
            Ok(()) => unsafe { kind_word(&words) },
            Err(e) => format!("init-error={}", e.raw_os_error().unwrap_or(0)),
        };
        // SAFETY: initialised, unlocked and never used again. (Destroying a robust mutex frees
        // nothing on Linux; it is only tidy.)
        unsafe { libc::pthread_mutex_destroy(raw(&words)) };
        tag(std::env::consts::ARCH, env_name(), size_of::<libc::pthread_mutex_t>(), &kind)
    })
}

/// The kind word of the mutex in `words`, as `kind=0x..` (or `kind@OFFSET=0x..` for a libc whose
/// layout this module does not know: its first non-zero 32-bit word).
///
/// # Safety
///
/// `words` is not being changed by any other thread.
unsafe fn kind_word(words: &MutexWords) -> String {
    let bytes: Vec<u8> = words
        .iter()
        .flat_map(|w| w.load(std::sync::atomic::Ordering::Relaxed).to_ne_bytes())
        .take(size_of::<libc::pthread_mutex_t>())
        .collect();
    let word_at = |at: usize| u32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    match KIND_OFFSET {
        Some(at) => format!("kind=0x{:x}", word_at(at)),
        None => {
            let at = (0..bytes.len() / 4).map(|i| i * 4).find(|&at| word_at(at) != 0).unwrap_or(0);
            format!("kind@{at}=0x{:x}", word_at(at))
        }
    }
}

fn env_name() -> &'static str {
    if cfg!(target_env = "gnu") {
        "gnu"
    } else if cfg!(target_env = "musl") {
        "musl"
    } else {
        "other"
    }
}

/// The tag from its parts, shortened (the `pthread_mutex_t=` and `kind=` labels dropped) if the
/// long form does not fit [`LOCK_ABI_MAX`] bytes, and cut there as a last resort.
fn tag(arch: &str, env: &str, size: usize, kind: &str) -> String {
    let long = format!("{arch}-linux-{env}/pthread_mutex_t={size}/{kind}");
    let mut tag = if long.len() <= LOCK_ABI_MAX {
        long
    } else {
        format!("{arch}-linux-{env}/{size}/{}", kind.trim_start_matches("kind="))
    };
    tag.truncate(LOCK_ABI_MAX);
    tag
}

/// This process's PID namespace: the device and inode of `/proc/self/ns/pid`. Thread ids, which
/// robust mutexes store, mean the same thread only within one PID namespace.
pub(crate) fn pid_namespace() -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata("/proc/self/ns/pid")?;
    Ok((meta.dev(), meta.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fresh() -> Box<MutexWords> {
        let words: Box<MutexWords> = Box::default();
        // SAFETY: a fresh allocation nobody else can reach.
        unsafe { init(&words).unwrap() };
        words
    }

    #[test]
    fn lock_try_lock_and_unlock() {
        let words = fresh();
        // SAFETY: initialised above, never re-initialised, alive for the test.
        let m = unsafe { RobustMutex::new(&words) };
        assert_eq!(m.lock(None).unwrap(), Acquired::Clean);
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(matches!(m.try_lock(), Err(MutexError::Busy)));
                let later = Instant::now() + Duration::from_millis(10);
                assert!(matches!(m.lock(Some(later)), Err(MutexError::TimedOut)));
                // A deadline in the past still tries once.
                assert!(matches!(m.lock(Some(Instant::now())), Err(MutexError::TimedOut)));
            });
        });
        // The holder asking again is told at once, however long it would wait.
        assert!(matches!(m.lock(None), Err(MutexError::Deadlock)));
        assert!(matches!(m.lock(Some(Instant::now())), Err(MutexError::Deadlock)));
        m.unlock();
        assert_eq!(m.try_lock().unwrap(), Acquired::Clean);
        m.unlock();
        assert_eq!(m.lock(Some(Instant::now())).unwrap(), Acquired::Clean);
        m.unlock();
    }

    /// A thread that exits holding the mutex is its "dead owner": the next locker is told, gets the
    /// mutex, and every locker after it gets it cleanly (it was made consistent, not left to
    /// become unrecoverable).
    #[test]
    fn a_dead_owner_is_reported_once_and_repaired() {
        let words = fresh();
        // SAFETY: initialised above, never re-initialised, alive for the test.
        let m = unsafe { RobustMutex::new(&words) };
        std::thread::scope(|s| s.spawn(|| assert_eq!(m.lock(None).unwrap(), Acquired::Clean)).join().unwrap());
        assert_eq!(m.lock(None).unwrap(), Acquired::OwnerDied);
        m.unlock();
        for _ in 0..3 {
            assert_eq!(m.lock(None).unwrap(), Acquired::Clean);
            m.unlock();
        }
        std::thread::scope(|s| s.spawn(|| assert_eq!(m.lock(None).unwrap(), Acquired::Clean)).join().unwrap());
        assert_eq!(m.try_lock().unwrap(), Acquired::OwnerDied, "try_lock repairs too");
        m.unlock();
        assert_eq!(m.try_lock().unwrap(), Acquired::Clean);
        m.unlock();
    }

    /// A mutex unlocked without `pthread_mutex_consistent` (what a foreign process could do) is
    /// unrecoverable: reported as such, not as a generic error, and nothing hangs.
    #[test]
    fn an_unrecoverable_mutex_is_reported() {
        let words = fresh();
        // SAFETY: initialised above, never re-initialised, alive for the test.
        let m = unsafe { RobustMutex::new(&words) };
        std::thread::scope(|s| s.spawn(|| m.lock(None).unwrap()).join().unwrap());
        // SAFETY: the raw calls a careless foreign process would make.
        assert_eq!(unsafe { libc::pthread_mutex_lock(m.raw()) }, libc::EOWNERDEAD);
        // SAFETY: as above; this thread holds it.
        assert_eq!(unsafe { libc::pthread_mutex_unlock(m.raw()) }, 0);
        assert!(matches!(m.lock(None), Err(MutexError::NotRecoverable)));
        assert!(matches!(m.try_lock(), Err(MutexError::NotRecoverable)));
        // glibc's trylock leaves such a mutex's lock word holding the caller's thread id; had
        // it stayed, another thread would wait for this one (here: until its deadline).
        let deadline = Instant::now() + Duration::from_secs(5);
        let other = std::thread::scope(|s| s.spawn(|| m.lock(Some(deadline))).join().unwrap());
        assert!(matches!(other, Err(MutexError::NotRecoverable)), "{other:?}");
        // Initialising again (what a reset does) makes it usable.
        // SAFETY: nobody uses it now.
        unsafe { init(&words).unwrap() };
        assert_eq!(m.lock(None).unwrap(), Acquired::Clean);
        m.unlock();
    }

    #[test]
    fn the_lock_abi_tag_names_this_build() {
        let tag = lock_abi();
        assert!(tag.len() <= LOCK_ABI_MAX && tag.is_ascii(), "{tag}");
        let expected = format!(
            "{}-linux-{}/pthread_mutex_t={}/",
            std::env::consts::ARCH,
            env_name(),
            size_of::<libc::pthread_mutex_t>()
        );
        assert!(tag.starts_with(&expected), "{tag}");
        // The robust, process-shared and ERRORCHECK bits are set in the kind word (glibc: 0x10 |
        // 0x80 | 2).
        #[cfg(all(target_env = "gnu", target_arch = "x86_64"))]
        {
            let kind = u32::from_str_radix(tag.rsplit("0x").next().unwrap(), 16).unwrap();
            assert_eq!(kind & 0x92, 0x92, "{tag}");
        }
        assert!(std::ptr::eq(tag, lock_abi()), "computed once");
    }

    #[test]
    fn long_tags_are_shortened_to_fit() {
        assert_eq!(tag("x86_64", "gnu", 40, "kind=0x90"), "x86_64-linux-gnu/pthread_mutex_t=40/kind=0x90");
        assert_eq!(tag("loongarch64", "musl", 40, "kind=0x84"), "loongarch64-linux-musl/40/0x84");
        assert_eq!(tag(&"a".repeat(60), "gnu", 40, "kind=0x90").len(), LOCK_ABI_MAX);
    }

    #[test]
    fn the_pid_namespace_is_known_and_stable() {
        let ns = pid_namespace().unwrap();
        assert_eq!(ns, pid_namespace().unwrap());
        assert_ne!(ns, (0, 0));
    }
}

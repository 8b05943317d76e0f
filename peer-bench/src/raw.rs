//! The raw baselines, written by hand over a `memmap2` mapping: a double-buffered seqlock (the
//! floor of a lock-free read and of a commit), an OFD byte-range lock, a robust process-shared
//! pthread mutex, and a bare atomic counter.
//!
//! Layout of the raw file (one page is enough):
//! - 0: the robust mutex (`pthread_mutex_t`, 40 bytes with glibc);
//! - 64: the seqlock's sequence word;
//! - 128 and 192: the seqlock's two 64-byte slots;
//! - 256: an atomic counter (the floor of `Shared::get` + `fetch_add`).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{fence, AtomicU64, Ordering};

use memmap2::MmapRaw;

use crate::Obj64;

const MUTEX_AT: usize = 0;
const SEQ_AT: usize = 64;
const SLOTS_AT: usize = 128;
const COUNTER_AT: usize = 256;
/// The raw file's length.
pub const RAW_LEN: u64 = 4096;
/// The byte the OFD locks lock, far away from the data as shmstore's entry locks are.
const LOCK_OFFSET: i64 = (1 << 62) + 1;

/// A raw mapping of a raw file, and the structures laid out in it.
pub struct Raw {
    file: File,
    map: MmapRaw,
}

impl Raw {
    /// Creates the raw file at `path`, zeroed, and initialises its robust mutex.
    pub fn create(path: &Path) -> Raw {
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path).unwrap();
        file.set_len(RAW_LEN).unwrap();
        let raw = Raw::map(file);
        raw.init_mutex();
        raw
    }

    /// Opens an existing raw file (in a worker process).
    pub fn open(path: &Path) -> Raw {
        Raw::map(std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap())
    }

    fn map(file: File) -> Raw {
        let map = MmapRaw::map_raw(&file).unwrap();
        assert!(map.len() as u64 >= RAW_LEN, "the raw file is too short");
        Raw { file, map }
    }

    fn at(&self, offset: usize) -> *mut u8 {
        // `offset < RAW_LEN <= map.len()` at every call site, so this stays in the mapping.
        self.map.as_mut_ptr().wrapping_add(offset)
    }

    /// The seqlock in the mapping.
    pub fn seqlock(&self) -> Seqlock<'_> {
        // SAFETY: `SEQ_AT` and the two slots lie inside the mapping (`RAW_LEN` bytes, asserted in
        // `map`), which lives as long as `self`; they are 8-aligned (the mapping is page-aligned
        // and the offsets are multiples of 64); any bits are a valid `u64`; every process of this
        // bench touches these bytes only through these atomics.
        unsafe {
            Seqlock {
                seq: AtomicU64::from_ptr(self.at(SEQ_AT).cast()),
                slots: [
                    &*self.at(SLOTS_AT).cast::<[AtomicU64; 8]>(),
                    &*self.at(SLOTS_AT + 64).cast::<[AtomicU64; 8]>(),
                ],
            }
        }
    }

    /// The atomic counter in the mapping.
    pub fn counter(&self) -> &AtomicU64 {
        // SAFETY: as in `seqlock`, for the 8 bytes at `COUNTER_AT`.
        unsafe { AtomicU64::from_ptr(self.at(COUNTER_AT).cast()) }
    }

    fn mutex(&self) -> *mut libc::pthread_mutex_t {
        self.at(MUTEX_AT).cast()
    }

    fn init_mutex(&self) {
        // SAFETY: `attr` is initialised by `pthread_mutexattr_init` before use and destroyed
        // after; the mutex lies in the mapping (40 bytes from offset 0, aligned), which nobody
        // else uses yet (the file was just created).
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            assert_eq!(libc::pthread_mutexattr_init(&mut attr), 0);
            assert_eq!(libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED), 0);
            assert_eq!(libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST), 0);
            assert_eq!(libc::pthread_mutex_init(self.mutex(), &attr), 0);
            libc::pthread_mutexattr_destroy(&mut attr);
        }
    }

    /// Takes the robust mutex; a previous owner that died is recovered (the seqlock's
    /// double-buffered slots need no repair: a dead writer only touched the inactive one).
    pub fn mutex_lock(&self) {
        // SAFETY: the mutex was initialised by `create` (every worker opens an existing file);
        // `pthread_mutex_consistent` is only called by the new owner after `EOWNERDEAD`.
        unsafe {
            match libc::pthread_mutex_lock(self.mutex()) {
                0 => {}
                libc::EOWNERDEAD => assert_eq!(libc::pthread_mutex_consistent(self.mutex()), 0),
                e => panic!("pthread_mutex_lock: {}", std::io::Error::from_raw_os_error(e)),
            }
        }
    }

    /// Releases the robust mutex.
    pub fn mutex_unlock(&self) {
        // SAFETY: called only by the owner, after `mutex_lock`.
        let rc = unsafe { libc::pthread_mutex_unlock(self.mutex()) };
        assert_eq!(rc, 0);
    }

    /// One `fcntl(F_OFD_SETLK[W])` on the lock byte: `F_RDLCK`, `F_WRLCK` or `F_UNLCK`.
    pub fn ofd(&self, kind: libc::c_int) {
        // SAFETY: all-zero is a valid `struct flock`; OFD locks require `l_pid == 0`.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = kind as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl.l_start = LOCK_OFFSET;
        fl.l_len = 1;
        let cmd = if kind == libc::F_UNLCK { libc::F_OFD_SETLK } else { libc::F_OFD_SETLKW };
        // SAFETY: `fl` is a live, initialised `struct flock`; the descriptor is owned by `self.file`.
        let rc = unsafe { libc::fcntl(self.file.as_raw_fd(), cmd, &mut fl as *mut libc::flock) };
        assert_eq!(rc, 0, "fcntl(F_OFD_SETLK[W]): {}", std::io::Error::last_os_error());
    }

    /// A commit under the robust mutex: copy the active slot out, change it with `f`, commit it.
    #[inline(always)]
    pub fn mutex_commit(&self, f: impl FnOnce(&mut Obj64)) {
        self.mutex_lock();
        let seqlock = self.seqlock();
        let mut value = seqlock.read();
        f(&mut value);
        seqlock.commit(&value);
        self.mutex_unlock();
    }

    /// The same commit under the exclusive OFD lock.
    #[inline(always)]
    pub fn ofd_commit(&self, f: impl FnOnce(&mut Obj64)) {
        self.ofd(libc::F_WRLCK);
        let seqlock = self.seqlock();
        let mut value = seqlock.read();
        f(&mut value);
        seqlock.commit(&value);
        self.ofd(libc::F_UNLCK);
    }
}

/// A double-buffered seqlock of one 64-byte value: the active slot is `seq & 1`.
pub struct Seqlock<'a> {
    seq: &'a AtomicU64,
    slots: [&'a [AtomicU64; 8]; 2],
}

impl Seqlock<'_> {
    /// An optimistic read: `seq` (acquire), the active slot with eight relaxed loads, an acquire
    /// fence, `seq` again; retried until `seq` did not move.
    #[inline(always)]
    pub fn read(&self) -> Obj64 {
        loop {
            let before = self.seq.load(Ordering::Acquire);
            let slot = self.slots[(before & 1) as usize];
            let a = std::array::from_fn(|i| slot[i].load(Ordering::Relaxed));
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == before {
                return Obj64 { a };
            }
            std::hint::spin_loop();
        }
    }

    /// A commit (the caller excludes other writers): release fence, the value into the inactive
    /// slot, `seq + 1` with a release store.
    #[inline(always)]
    pub fn commit(&self, value: &Obj64) {
        let current = self.seq.load(Ordering::Relaxed);
        let slot = self.slots[((current + 1) & 1) as usize];
        fence(Ordering::Release);
        for (word, v) in slot.iter().zip(value.a) {
            word.store(v, Ordering::Relaxed);
        }
        self.seq.store(current + 1, Ordering::Release);
    }
}

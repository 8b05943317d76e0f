//! Benchmarks of shmstore's hot paths, each paired with a raw baseline measured in the same run.
//!
//! ```text
//! cargo bench --bench store -- --noplot           # everything, about 90 s
//! cargo bench --bench store -- object/             # one group (a substring filter)
//! ```
//!
//! | shmstore                                       | baseline                                            |
//! | ---------------------------------------------- | --------------------------------------------------- |
//! | `object/load`                                  | `baseline/raw_seqlock_read64/uncontended`, `baseline/plain_copy64/from_mmap` |
//! | `object/load_contended`                        | `baseline/raw_seqlock_read64/contended`             |
//! | `object/read_guard`                            | `baseline/ofd_lock_pair/read`, `baseline/mmap_ofd_copy64/load` |
//! | `object/read_guard_contended`                  | `baseline/mmap_ofd_copy64/load_contended`           |
//! | `object/{update,store,write_guard}`            | `baseline/mmap_robust_commit64`, `baseline/robust_mutex_pair` |
//! | `object_ofd/{update,store,write_guard}`        | `baseline/ofd_lock_pair/write`, `baseline/mmap_ofd_commit64` |
//! | `object/wait_for_change_wake`                  | `baseline/futex_pingpong`                           |
//! | `array/read_at_1MiB/*`                         | `baseline/memcpy_1MiB/{vec,from_mmap}`              |
//! | `array/write_at_1MiB/*`                        | `baseline/memcpy_1MiB/{vec,to_mmap}`                |
//!
//! The baselines are what the library does, written by hand: a bare `fcntl(F_OFD_SETLKW)` lock and
//! unlock of one byte (the kernel lock every guard takes); the same plus a 64-byte copy through a
//! raw `memmap2` mapping; a double-buffered seqlock over a raw mapping (read: `seq`, 64 bytes of
//! atomic loads, fence, `seq` again; commit: the lock pair around a copy out and a copy into the
//! inactive slot and a `seq` bump); and a plain 1 MiB `memcpy`.
//!
//! The `*contended` cases run a **writer process** for their whole duration: this same bench
//! binary, started with `SHMSTORE_BENCH_WRITER=store` (commits `update(|o| o.a[0] += 1)` to the
//! store's object in a tight loop) or `SHMSTORE_BENCH_WRITER=raw` (the same commit by hand on the
//! raw seqlock), and killed (`SIGKILL`) when the case ends. `object/wait_for_change_wake` runs one
//! too, `SHMSTORE_BENCH_WRITER=echo`, which answers each commit to `ping` with one to `pong`; its
//! floor `baseline/futex_pingpong` runs `SHMSTORE_BENCH_WRITER=futex_echo`, the same echo over two
//! raw futex words. Both report half a round trip. Where the two processes of these ping/pong
//! cases run decides what they measure (a wake-up on the same CPU or across CPUs):
//! `SHMSTORE_BENCH_WAKE_CPUS=0,1` (or `0,0`) pins the bench and the echo to those CPUs for them.
//! `benches/README.md` has the targets and the last results.

use std::fs::File;
use std::hint::black_box;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use memmap2::MmapRaw;
use shmstore::{LockMode, SharedLayout, Store};

/// A counter made only of atomics: `Shared::get` uses it with no guard.
#[derive(SharedLayout)]
#[repr(C)]
struct Counter {
    n: AtomicU64,
}

/// A 64-byte object: one cache line, no validation needed (every bit pattern is a valid `u64`).
#[derive(SharedLayout, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct Obj64 {
    a: [u64; 8],
}

const MIB: usize = 1 << 20;

/// The byte the baselines lock: in the same far-away range as the library's entry locks
/// (`2^62 + 1 + slot`, see docs/format.md), so that the kernel does the same work.
const LOCK_OFFSET: i64 = (1 << 62) + 1;

/// Where the raw seqlock lives in the raw mapping, laid out like a store entry: `seq` at byte 192
/// of a 256-byte record (as `SEQ_OFFSET`), the two 64-byte slots next to each other on another
/// page (as an object's data with `slot_stride` 64). Inside the first MiB, away from `raw_obj`.
const SEQLOCK_AT: usize = 64 * 1024;
const SEQLOCK_SEQ: usize = 192;
const SEQLOCK_SLOTS: usize = 4096;

/// Set (to `store` or `raw`) in the environment of a writer process: `main` runs the writer loop
/// instead of the benchmarks.
const WRITER_ENV: &str = "SHMSTORE_BENCH_WRITER";
/// The file the writer process commits to.
const WRITER_FILE_ENV: &str = "SHMSTORE_BENCH_WRITER_FILE";
/// The pid of the bench process, so that a writer whose parent is already gone exits at once.
const WRITER_PARENT_ENV: &str = "SHMSTORE_BENCH_WRITER_PARENT";

/// One `fcntl(F_OFD_SETLKW)` call on the byte at `offset`: lock (`F_RDLCK`/`F_WRLCK`) or unlock
/// (`F_UNLCK`). This is the whole cost floor of a guard: one call to lock, one to unlock.
fn ofd(file: &File, offset: i64, kind: libc::c_int) {
    // SAFETY: all-zero is a valid `struct flock`; OFD locks require `l_pid == 0`.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = offset;
    fl.l_len = 1;
    let cmd = if kind == libc::F_UNLCK { libc::F_OFD_SETLK } else { libc::F_OFD_SETLKW };
    // SAFETY: `fl` is a live, initialised `struct flock` for the whole call and the descriptor is
    // owned by `file`, which outlives it.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &mut fl as *mut libc::flock) };
    assert_eq!(rc, 0, "fcntl(F_OFD_SETLK[W]) failed: {}", std::io::Error::last_os_error());
}

/// A file of `len` bytes in `dir`, mapped shared and read-write with `memmap2`.
fn raw_mapping(dir: &Path, name: &str, len: usize) -> (File, MmapRaw) {
    let file =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(dir.join(name)).unwrap();
    file.set_len(len as u64).unwrap();
    let map = MmapRaw::map_raw(&file).unwrap();
    // Touch every page, as the store's benches do, so that no page fault is measured.
    // SAFETY: the mapping is `len` bytes long, writable, and nobody else uses it.
    unsafe { std::ptr::write_bytes(map.as_mut_ptr(), 1, len) };
    (file, map)
}

/// A double-buffered seqlock over a raw mapping, written by hand: the floor of `Shared::load` and
/// of a commit. Same protocol as `shmstore::commit`: the active slot is `seq & 1`.
struct RawSeqlock<'a> {
    seq: &'a AtomicU64,
    slots: [&'a [AtomicU64; 8]; 2],
}

impl<'a> RawSeqlock<'a> {
    fn new(map: &'a MmapRaw) -> Self {
        assert!(SEQLOCK_AT + SEQLOCK_SLOTS + 128 <= map.len(), "the raw mapping is too small");
        let base = map.as_mut_ptr().wrapping_add(SEQLOCK_AT);
        // SAFETY: the three ranges are inside the mapping (asserted above), which lives as long
        // as `'a`; they are 8-aligned (the mapping is page-aligned and the offsets are multiples
        // of 64); `AtomicU64` has the layout of `u64` and any bits are valid; once this exists,
        // every process of the bench touches these bytes only through these atomics.
        unsafe {
            RawSeqlock {
                seq: AtomicU64::from_ptr(base.add(SEQLOCK_SEQ).cast()),
                slots: [
                    &*base.add(SEQLOCK_SLOTS).cast::<[AtomicU64; 8]>(),
                    &*base.add(SEQLOCK_SLOTS + 64).cast::<[AtomicU64; 8]>(),
                ],
            }
        }
    }

    /// An optimistic read: `seq` (acquire), the active slot with eight relaxed atomic loads, an
    /// acquire fence, `seq` again; retried until `seq` did not move. Also returns the number of
    /// retries.
    #[inline(always)]
    fn read(&self) -> (Obj64, u32) {
        let mut retries = 0;
        loop {
            let before = self.seq.load(Ordering::Acquire);
            let slot = self.slots[(before & 1) as usize];
            let a = std::array::from_fn(|i| slot[i].load(Ordering::Relaxed));
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == before {
                return (Obj64 { a }, retries);
            }
            retries += 1;
            std::hint::spin_loop();
        }
    }

    /// A commit, as `EntryHandle::publish` does it: release fence, the value into the inactive
    /// slot with relaxed atomic stores, then `seq + 1` with a release store. The caller holds the
    /// exclusive lock.
    #[inline(always)]
    fn commit(&self, value: &Obj64) {
        let current = self.seq.load(Ordering::Relaxed);
        let slot = self.slots[((current + 1) & 1) as usize];
        fence(Ordering::Release);
        for (word, v) in slot.iter().zip(value.a) {
            word.store(v, Ordering::Relaxed);
        }
        self.seq.store(current + 1, Ordering::Release);
    }

    /// What `update(|o| o.a[0] += 1)` does, by hand: exclusive kernel lock, copy the active slot
    /// out, change it, commit it, unlock. One lock pair and two 64-byte copies.
    #[inline(always)]
    fn locked_increment(&self, lock_file: &File) {
        ofd(lock_file, LOCK_OFFSET, libc::F_WRLCK);
        let (mut value, _) = self.read();
        value.a[0] = value.a[0].wrapping_add(1);
        self.commit(&value);
        ofd(lock_file, LOCK_OFFSET, libc::F_UNLCK);
    }

    fn version(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }
}

/// Where the two futex words of `baseline/futex_pingpong` live in the raw mapping: in the
/// seqlock's "record" page, each on a cache line of its own, as the `futex` words of two entries'
/// records are.
const FUTEX_PING_AT: usize = SEQLOCK_AT + 2048;
const FUTEX_PONG_AT: usize = SEQLOCK_AT + 2048 + 256;

/// `baseline/futex_pingpong`: one process wakes another, written by hand as a C program would:
/// two raw `u32` words in a shared file mapping, `FUTEX_WAIT` / `FUTEX_WAKE` through
/// `syscall(SYS_futex, ...)` (not private: the kernel keys them by the file page, as the library's).
struct RawPingPong<'a> {
    ping: &'a AtomicU32,
    pong: &'a AtomicU32,
}

impl<'a> RawPingPong<'a> {
    fn new(map: &'a MmapRaw) -> Self {
        assert!(FUTEX_PONG_AT + 4 <= map.len(), "the raw mapping is too small");
        let base = map.as_mut_ptr();
        // SAFETY: both words are inside the mapping (asserted above), which lives as long as
        // `'a`; they are 4-aligned (page-aligned mapping, offsets multiples of 256); `AtomicU32`
        // has the layout of `u32` and any bits are valid; both processes of the bench touch these
        // bytes only through these atomics, and nothing else in the bench uses them.
        unsafe {
            RawPingPong {
                ping: AtomicU32::from_ptr(base.add(FUTEX_PING_AT).cast()),
                pong: AtomicU32::from_ptr(base.add(FUTEX_PONG_AT).cast()),
            }
        }
    }

    /// One half of a round trip, from the bench's side: publish `value` in `ping`, wake the echo
    /// process, then sleep on `pong` until the echo has copied `value` there.
    #[inline(always)]
    fn send_and_wait(&self, value: u32) {
        self.ping.store(value, Ordering::Release);
        raw_futex_wake(self.ping);
        loop {
            let now = self.pong.load(Ordering::Acquire);
            if now == value {
                return;
            }
            raw_futex_wait(self.pong, now, None);
        }
    }

    /// The echo process: sleeps on `ping` and copies every new value to `pong`, waking the bench.
    fn echo(&self) -> ! {
        let mut seen = self.ping.load(Ordering::Acquire);
        loop {
            let now = self.ping.load(Ordering::Acquire);
            if now == seen {
                raw_futex_wait(self.ping, now, None);
                continue;
            }
            seen = now;
            self.pong.store(now, Ordering::Release);
            raw_futex_wake(self.pong);
        }
    }
}

/// `syscall(SYS_futex, word, FUTEX_WAIT, expected, timeout)`: sleeps while `word` holds
/// `expected`, until a `FUTEX_WAKE` on it, the timeout, a signal or spuriously. The caller
/// re-checks the word in every case.
fn raw_futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|t| libc::timespec { tv_sec: t.as_secs() as libc::time_t, tv_nsec: t.subsec_nanos().into() });
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: FUTEX_WAIT reads the aligned 4-byte word (borrowed for the call) and the timespec
    // (a live local, or null); it writes no user memory.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT, expected, ts_ptr, 0usize, 0u32) };
}

/// `syscall(SYS_futex, word, FUTEX_WAKE, 1)`: wakes the one process that may sleep on `word`.
fn raw_futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE uses the word's address only as a key; it reads and writes no user memory.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1, 0usize, 0usize, 0u32) };
}

/// A writer process (this bench binary in writer mode), committing in a tight loop until it is
/// dropped, which kills it.
struct Writer {
    child: Child,
    kind: &'static str,
    started: Instant,
    version_at_start: u64,
}

impl Writer {
    /// Starts a `kind` writer on `file` and waits until its commits show in `version()`.
    fn spawn(kind: &'static str, file: &Path, version: impl Fn() -> u64) -> Writer {
        let before = version();
        let child = Command::new(std::env::current_exe().unwrap())
            .env(WRITER_ENV, kind)
            .env(WRITER_FILE_ENV, file)
            .env(WRITER_PARENT_ENV, std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("cannot start the writer process");
        let mut writer = Writer { child, kind, started: Instant::now(), version_at_start: before };
        let deadline = Instant::now() + Duration::from_secs(10);
        while version() == before {
            if let Some(status) = writer.child.try_wait().unwrap() {
                panic!("the {kind} writer process exited early: {status}");
            }
            assert!(Instant::now() < deadline, "the {kind} writer process made no commit in 10 s");
            std::thread::sleep(Duration::from_millis(1));
        }
        writer.started = Instant::now();
        writer.version_at_start = version();
        writer
    }

    /// Kills the writer and reports how fast it committed while it ran.
    fn finish(self, version_now: u64) {
        let secs = self.started.elapsed().as_secs_f64();
        let commits = version_now.wrapping_sub(self.version_at_start);
        eprintln!(
            "  ({} writer process: {commits} commits in {secs:.1} s, {:.0} k commits/s)",
            self.kind,
            commits as f64 / secs / 1e3
        );
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Optional, `A,B` (two CPU numbers): the ping/pong cases (`baseline/futex_pingpong`,
/// `object/wait_for_change_wake`) run with the bench on CPU `A` and the echo process on CPU `B`.
/// `0,1` makes every wake-up cross CPUs, `0,0` keeps both processes on one CPU. Unset, the
/// scheduler places them, and may change its mind between (or during) the two cases.
const WAKE_CPUS_ENV: &str = "SHMSTORE_BENCH_WAKE_CPUS";

/// The CPUs [`WAKE_CPUS_ENV`] asks for: (bench, echo).
fn wake_cpus() -> Option<(usize, usize)> {
    let value = std::env::var(WAKE_CPUS_ENV).ok()?;
    let parsed = value.split_once(',').and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
    Some(parsed.unwrap_or_else(|| panic!("{WAKE_CPUS_ENV} must be two CPU numbers, as `0,1`, not `{value}`")))
}

/// This thread's CPU affinity.
fn affinity() -> libc::cpu_set_t {
    // SAFETY: all-zero is a valid (empty) `cpu_set_t`, which `sched_getaffinity` fills; it writes
    // at most `size_of::<cpu_set_t>()` bytes into the local.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set), 0);
        set
    }
}

/// Sets this thread's CPU affinity.
fn set_affinity(set: &libc::cpu_set_t) {
    // SAFETY: `sched_setaffinity` reads `size_of::<cpu_set_t>()` bytes from the live `set`.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) };
    assert_eq!(rc, 0, "cannot set the CPU affinity: {}", std::io::Error::last_os_error());
}

/// Pins this thread to `cpu`.
fn pin_to_cpu(cpu: usize) {
    // SAFETY: all-zero is a valid (empty) `cpu_set_t`; `CPU_SET` sets one bit inside it (it
    // ignores a `cpu` beyond the set's size, and `set_affinity` then fails with `EINVAL`).
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        set
    };
    set_affinity(&set);
}

/// The body of a writer process: commit to the object in a tight loop until killed.
fn writer_main(kind: &str) {
    let parent: libc::pid_t = std::env::var(WRITER_PARENT_ENV).unwrap().parse().unwrap();
    // Die with the bench even if it crashes before it can kill us.
    // SAFETY: `prctl(PR_SET_PDEATHSIG, sig)` takes two integers and touches no memory.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    // SAFETY: `getppid` has no preconditions.
    if unsafe { libc::getppid() } != parent {
        return; // the bench died before `prctl` took effect
    }
    let path = std::env::var_os(WRITER_FILE_ENV).unwrap();
    if let (Some((_, echo_cpu)), "echo" | "futex_echo") = (wake_cpus(), kind) {
        pin_to_cpu(echo_cpu);
    }
    match kind {
        "store" => {
            let store = Store::open(&path).unwrap();
            let obj = store.object::<Obj64>("obj64").unwrap();
            loop {
                obj.update(|o| o.a[0] = o.a[0].wrapping_add(1)).unwrap();
            }
        }
        // The far side of `object/wait_for_change_wake`: sleeps in `wait_for_change` on `ping` and
        // answers each new value by storing it to `pong`.
        "echo" => {
            let store = Store::open(&path).unwrap();
            let (ping, pong) = (store.object::<u64>("ping").unwrap(), store.object::<u64>("pong").unwrap());
            let mut seen = ping.version();
            loop {
                let (value, version) = ping.wait_for_change(seen, Duration::from_secs(3600)).unwrap();
                seen = version;
                pong.store(value).unwrap();
            }
        }
        // The far side of `baseline/futex_pingpong`: the same echo over two raw futex words.
        "futex_echo" => {
            let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
            let map = MmapRaw::map_raw(&file).unwrap();
            RawPingPong::new(&map).echo();
        }
        "raw" => {
            let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
            let map = MmapRaw::map_raw(&file).unwrap();
            let seqlock = RawSeqlock::new(&map);
            loop {
                seqlock.locked_increment(&file);
            }
        }
        _ => panic!("{WRITER_ENV} must be `store`, `echo`, `futex_echo` or `raw`, not `{kind}`"),
    }
}

/// Where the bare robust mutex lives in the raw mapping: in the seqlock's "record" page, next to
/// `seq`, as a block's mutex is next to its live words.
const ROBUST_MUTEX_AT: usize = SEQLOCK_AT + 1024;

/// A robust, process-shared pthread mutex in the raw mapping, used by hand: the floor of a
/// robust-mode commit.
struct RawRobust<'a> {
    mutex: *mut libc::pthread_mutex_t,
    _map: std::marker::PhantomData<&'a MmapRaw>,
}

impl<'a> RawRobust<'a> {
    /// The mutex in `map`, initialised if `init` (by the bench, before any worker starts).
    fn new(map: &'a MmapRaw, init: bool) -> Self {
        assert!(ROBUST_MUTEX_AT + 64 <= map.len() && std::mem::size_of::<libc::pthread_mutex_t>() <= 64);
        let mutex = map.as_mut_ptr().wrapping_add(ROBUST_MUTEX_AT).cast::<libc::pthread_mutex_t>();
        if init {
            // SAFETY: `attr` is a live local, initialised before use and destroyed after; the
            // mutex lies inside the mapping (asserted), 64-aligned, and nobody uses it yet.
            unsafe {
                let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
                assert_eq!(libc::pthread_mutexattr_init(attr.as_mut_ptr()), 0);
                assert_eq!(libc::pthread_mutexattr_setpshared(attr.as_mut_ptr(), libc::PTHREAD_PROCESS_SHARED), 0);
                assert_eq!(libc::pthread_mutexattr_setrobust(attr.as_mut_ptr(), libc::PTHREAD_MUTEX_ROBUST), 0);
                assert_eq!(libc::pthread_mutex_init(mutex, attr.as_ptr()), 0);
                libc::pthread_mutexattr_destroy(attr.as_mut_ptr());
            }
        }
        RawRobust { mutex, _map: std::marker::PhantomData }
    }

    #[inline(always)]
    fn lock(&self) {
        // SAFETY: an initialised robust mutex in a live mapping (`new`); nobody dies holding it
        // here, so `EOWNERDEAD` cannot happen.
        assert_eq!(unsafe { libc::pthread_mutex_lock(self.mutex) }, 0);
    }

    #[inline(always)]
    fn unlock(&self) {
        // SAFETY: as above, and this thread holds it.
        unsafe { libc::pthread_mutex_unlock(self.mutex) };
    }

    /// `update(|o| o.a[0] += 1)` by hand in robust mode: lock, copy the active slot out, change
    /// it, commit it into the other slot and bump `seq`, unlock.
    #[inline(always)]
    fn locked_increment(&self, seqlock: &RawSeqlock<'_>) {
        self.padded_increment(seqlock, 0);
    }

    /// [`locked_increment`](Self::locked_increment) with `pad` rounds of [`pad`] inside the
    /// lock, which hold it longer and touch no shared memory.
    #[inline(always)]
    fn padded_increment(&self, seqlock: &RawSeqlock<'_>, pad: u64) {
        self.lock();
        let (mut value, _) = seqlock.read();
        value.a[0] = value.a[0].wrapping_add(1);
        value.a[1] = self::pad(value.a[1], pad);
        seqlock.commit(&value);
        self.unlock();
    }
}

/// `rounds` dependent multiply-adds on `x`: work that takes time and touches no memory.
#[inline(always)]
fn pad(mut x: u64, rounds: u64) -> u64 {
    for _ in 0..rounds {
        x = black_box(x.wrapping_mul(3).wrapping_add(1));
    }
    x
}

/// Set, for a `bare_robust_padded` counter worker, to the rounds of [`pad`] it does inside the lock.
const PAD_ENV: &str = "SHMSTORE_BENCH_PAD";

/// The rounds of [`pad`] that make the bare robust commit take as long, alone, as `update` of the
/// store's object: the fastest of a few batches of each, timed in turns (so that a burst of load
/// from the rest of the machine hits both alike), on this machine now.
fn calibrate_pad(update: impl Fn(), bare: impl Fn()) -> u64 {
    const N: u32 = 100_000;
    let time = |f: &dyn Fn()| {
        let start = Instant::now();
        for _ in 0..N {
            f();
        }
        start.elapsed() / N
    };
    let padding = || {
        black_box(pad(1, black_box(100)));
    };
    let (mut best_update, mut best_bare, mut best_100) = (Duration::MAX, Duration::MAX, Duration::MAX);
    for _ in 0..9 {
        best_update = best_update.min(time(&update));
        best_bare = best_bare.min(time(&bare));
        best_100 = best_100.min(time(&padding));
    }
    let rounds = best_update.saturating_sub(best_bare).as_nanos() * 100 / best_100.as_nanos().max(1);
    eprintln!(
        "  (contended4 padding: update {best_update:.1?}, bare commit {best_bare:.1?}, 100 rounds {best_100:.1?}: \
         {rounds} rounds)"
    );
    rounds as u64
}

/// Set (to a counter kind) in the environment of a counter worker: `main` runs [`counter_main`].
const COUNTER_ENV: &str = "SHMSTORE_BENCH_COUNTER";
/// How many processes contend in the `contended4` group.
const COUNTER_PROCESSES: usize = 4;

/// Worker processes that increment one shared counter on command: each reads a count `n` on its
/// stdin, makes `n` increments, and answers `done`. Measures wall time per increment with every
/// worker contending for the same lock.
struct Counters {
    workers: Vec<(Child, std::io::BufReader<std::process::ChildStdout>)>,
    sent: u64,
}

impl Counters {
    fn spawn(kind: &str, file: &Path, pad: u64) -> Counters {
        let workers = (0..COUNTER_PROCESSES)
            .map(|_| {
                let mut child = Command::new(std::env::current_exe().unwrap())
                    .env(COUNTER_ENV, kind)
                    .env(PAD_ENV, pad.to_string())
                    .env(WRITER_FILE_ENV, file)
                    .env(WRITER_PARENT_ENV, std::process::id().to_string())
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("cannot start a counter process");
                let out = std::io::BufReader::new(child.stdout.take().unwrap());
                (child, out)
            })
            .collect();
        Counters { workers, sent: 0 }
    }

    /// Has every worker make `per_worker` increments, all at once; returns the wall time.
    fn run(&mut self, per_worker: u64) -> Duration {
        use std::io::{BufRead, Write};
        let start = Instant::now();
        for (child, _) in &mut self.workers {
            writeln!(child.stdin.as_mut().unwrap(), "{per_worker}").unwrap();
        }
        for (_, out) in &mut self.workers {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            assert_eq!(line.trim(), "done", "a counter process failed");
        }
        self.sent += per_worker * COUNTER_PROCESSES as u64;
        start.elapsed()
    }

    /// Stops the workers and checks that the counter moved by exactly the increments asked for.
    fn finish(mut self, kind: &str, counted: u64) {
        assert_eq!(counted, self.sent, "{kind}: lost or extra increments");
        eprintln!("  ({kind}: {counted} increments by {COUNTER_PROCESSES} processes, all counted)");
        for (child, _) in &mut self.workers {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

impl Drop for Counters {
    fn drop(&mut self) {
        for (child, _) in &mut self.workers {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The body of a counter worker: increments on command until stdin closes.
fn counter_main(kind: &str) {
    use std::io::{BufRead, Write};
    // SAFETY: `prctl(PR_SET_PDEATHSIG, sig)` takes two integers and touches no memory.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let path = std::env::var_os(WRITER_FILE_ENV).unwrap();
    let increment: Box<dyn Fn()> = match kind {
        "bare_robust" | "bare_robust_padded" | "bare_ofd" => {
            let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
            let map = Box::leak(Box::new(MmapRaw::map_raw(&file).unwrap()));
            let seqlock = RawSeqlock::new(map);
            if kind == "bare_ofd" {
                Box::new(move || seqlock.locked_increment(&file))
            } else {
                let robust = RawRobust::new(map, false);
                if kind == "bare_robust" {
                    Box::new(move || robust.locked_increment(&seqlock))
                } else {
                    let pad: u64 = std::env::var(PAD_ENV).unwrap().parse().unwrap();
                    Box::new(move || robust.padded_increment(&seqlock, pad))
                }
            }
        }
        // The store's own processes follow the lock mode the bench opened it with.
        "store_robust" | "store_ofd" => {
            let store = Store::open(&path).unwrap();
            let obj = store.object::<Obj64>("obj64").unwrap();
            Box::new(move || obj.update(|o| o.a[0] = o.a[0].wrapping_add(1)).unwrap())
        }
        _ => panic!(
            "{COUNTER_ENV} must be `bare_robust`, `bare_robust_padded`, `bare_ofd`, `store_robust` or \
             `store_ofd`, not `{kind}`"
        ),
    };
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let n: u64 = line.unwrap().trim().parse().unwrap();
        for _ in 0..n {
            increment();
        }
        writeln!(out, "done").unwrap();
        out.flush().unwrap();
    }
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();

    // ---- The store under test: one 64-byte object, and 1 MiB arrays of f64 and of u8; in robust
    // lock mode (the default), and the object again in a store in OFD lock mode. ----
    let store = Store::open_or_create(dir.path().join("bench.shm"), 8 * MIB as u64).unwrap();
    assert_eq!(store.lock_mode(), LockMode::Robust);
    let obj = store.object_or_init("obj64", Obj64::default).unwrap();
    let ofd_store = Store::options()
        .create(true)
        .capacity(MIB as u64)
        .lock_mode(LockMode::Ofd)
        .open(dir.path().join("ofd.shm"))
        .unwrap();
    let ofd_obj = ofd_store.object_or_init("obj64", Obj64::default).unwrap();
    let f64s = store.array_or_init::<f64>("f64_1MiB", MIB / 8, 1.5).unwrap();
    let bytes = store.array_or_init::<u8>("u8_1MiB", MIB, 7).unwrap();

    // ---- Baselines: the same work without the library. ----
    let (lock_file, raw) = raw_mapping(dir.path(), "raw.bin", 2 * MIB);
    let raw_obj = raw.as_mut_ptr().cast::<Obj64>(); // page-aligned, so aligned for Obj64
    let raw_bytes = raw.as_mut_ptr().wrapping_add(MIB); // the second MiB, for the memcpy baselines
    let seqlock = RawSeqlock::new(&raw);

    let mut g = c.benchmark_group("baseline");
    g.bench_function("ofd_lock_pair/read", |b| {
        b.iter(|| {
            ofd(&lock_file, black_box(LOCK_OFFSET), libc::F_RDLCK);
            ofd(&lock_file, black_box(LOCK_OFFSET), libc::F_UNLCK);
        })
    });
    g.bench_function("ofd_lock_pair/write", |b| {
        b.iter(|| {
            ofd(&lock_file, black_box(LOCK_OFFSET), libc::F_WRLCK);
            ofd(&lock_file, black_box(LOCK_OFFSET), libc::F_UNLCK);
        })
    });
    // A locked copy: shared lock, copy the value out, unlock. (What `Shared::load` did before
    // the optimistic read; now the floor of a `read()` guard that copies the value.)
    g.bench_function("mmap_ofd_copy64/load", |b| {
        b.iter(|| {
            ofd(&lock_file, LOCK_OFFSET, libc::F_RDLCK);
            // SAFETY: `raw_obj` is in the mapping, aligned, and any bytes are a valid `Obj64`;
            // only this thread uses the mapping.
            let v = unsafe { raw_obj.read() };
            ofd(&lock_file, LOCK_OFFSET, libc::F_UNLCK);
            black_box(v)
        })
    });
    // An in-place update: exclusive lock, read-modify-write in place, unlock. (What
    // `Shared::update` did before double-buffered commits; arrays still work this way.)
    g.bench_function("mmap_ofd_copy64/update", |b| {
        b.iter(|| {
            ofd(&lock_file, LOCK_OFFSET, libc::F_WRLCK);
            // SAFETY: as above, and the exclusive lock stands for the guard's exclusivity.
            let o = unsafe { &mut *black_box(raw_obj) };
            o.a[0] = o.a[0].wrapping_add(1);
            ofd(&lock_file, LOCK_OFFSET, libc::F_UNLCK);
        })
    });
    // What a commit (`update`, `store`, a write guard's drop) must do at least: the exclusive lock
    // pair around a 64-byte copy out of the active slot and a 64-byte copy into the other one.
    g.bench_function("mmap_ofd_commit64", |b| b.iter(|| black_box(&seqlock).locked_increment(&lock_file)));
    // The floors of `Shared::load`: a plain 64-byte copy out of a mapping, and the same copy as an
    // optimistic seqlock read (`seq`, eight atomic loads, fence, `seq` again).
    g.bench_function("plain_copy64/from_mmap", |b| {
        // SAFETY: as for `mmap_ofd_copy64/load`; no lock is needed because nothing writes
        // `raw_obj` during this case.
        b.iter(|| unsafe { black_box(raw_obj).read() })
    });
    g.bench_function("raw_seqlock_read64/uncontended", |b| b.iter(|| seqlock.read().0));
    // The same read through a reference the compiler must load on every call, as any handle is:
    // the addresses of `seq` and the slots are read from memory each time instead of being kept
    // in registers across the loop.
    g.bench_function("raw_seqlock_read64/through_ref", |b| b.iter(|| black_box(&seqlock).read().0));
    // The floor of `Shared::get` plus an increment: one `fetch_add` on a word of a raw mapping.
    // SAFETY: the word is inside the mapping (its second page), 8-aligned, and only ever used
    // through this atomic while the bench runs.
    let raw_counter = unsafe { AtomicU64::from_ptr(raw.as_mut_ptr().wrapping_add(4096).cast()) };
    g.bench_function("raw_fetch_add", |b| b.iter(|| black_box(raw_counter).fetch_add(1, Ordering::Relaxed)));
    let writer = Writer::spawn("raw", &dir.path().join("raw.bin"), || seqlock.version());
    g.bench_function("raw_seqlock_read64/contended", |b| b.iter(|| seqlock.read().0));
    // A locked copy while the writer process takes the same kernel lock for every commit: the
    // floor of a `read()` guard that has to queue behind a committing writer.
    g.bench_function("mmap_ofd_copy64/load_contended", |b| {
        b.iter(|| {
            ofd(&lock_file, LOCK_OFFSET, libc::F_RDLCK);
            // SAFETY: as for `mmap_ofd_copy64/load`; the writer process only touches the seqlock's
            // words, never `raw_obj`.
            let v = unsafe { raw_obj.read() };
            ofd(&lock_file, LOCK_OFFSET, libc::F_UNLCK);
            black_box(v)
        })
    });
    // Outside the measurement: how often a read lost the race to the writer.
    let (reads, retries) = (1_000_000u64, (0..1_000_000).map(|_| u64::from(seqlock.read().1)).sum::<u64>());
    writer.finish(seqlock.version());
    eprintln!("  (raw seqlock under the writer: {retries} retries in {reads} reads)");
    g.finish();

    // ---- Objects: every guard is one kernel lock pair plus in-process bookkeeping; `load` is an
    // optimistic read with no lock and no system call. ----
    let mut g = c.benchmark_group("object");
    assert!(obj.is_double_buffered(), "Obj64 holds no atomics, so it must be double-buffered");
    g.bench_function("load", |b| b.iter(|| obj.load().unwrap()));
    let version = || obj.version().get();
    let writer = Writer::spawn("store", &dir.path().join("bench.shm"), version);
    g.bench_function("load_contended", |b| b.iter(|| obj.load().unwrap()));
    // What `tests/commit.rs`'s torn-read hunt used to assert a floor for: read guards taken while
    // another process commits to the same object (compare with the contended locked copy above).
    g.bench_function("read_guard_contended", |b| {
        b.iter(|| {
            let guard = obj.read().unwrap();
            black_box(guard.a[3]);
        })
    });
    writer.finish(version());
    g.bench_function("read_guard", |b| {
        b.iter(|| {
            let guard = obj.read().unwrap();
            black_box(guard.a[3]);
        })
    });
    // An atomic counter: through `get()` (no guard) and through a `read()` guard per call.
    let counter = store.object_or_init("counter", || Counter { n: AtomicU64::new(0) }).unwrap();
    g.bench_function("get_fetch_add", |b| b.iter(|| counter.get().unwrap().n.fetch_add(1, Ordering::Relaxed)));
    g.bench_function("read_guard_fetch_add", |b| b.iter(|| counter.read().unwrap().n.fetch_add(1, Ordering::Relaxed)));
    g.finish();

    // ---- The floor of a robust-mode commit, measured right before the commits (noise on this VM
    // comes in bursts): a robust, process-shared pthread mutex in the mapping instead of the
    // kernel lock (issue 11's "bare robust commit"). ----
    let mut g = c.benchmark_group("baseline");
    let robust = RawRobust::new(&raw, true);
    g.bench_function("robust_mutex_pair", |b| {
        b.iter(|| {
            black_box(&robust).lock();
            robust.unlock();
        })
    });
    g.bench_function("mmap_robust_commit64", |b| b.iter(|| black_box(&robust).locked_increment(&seqlock)));
    g.finish();

    let mut g = c.benchmark_group("object");
    let mut n = 0u64;
    g.bench_function("write_guard", |b| {
        b.iter(|| {
            let mut guard = obj.write().unwrap();
            n = n.wrapping_add(1);
            guard.a[3] = black_box(n);
        })
    });
    g.bench_function("update", |b| b.iter(|| obj.update(|o| o.a[0] = o.a[0].wrapping_add(1)).unwrap()));
    let mut value = Obj64::default();
    g.bench_function("store", |b| {
        b.iter(|| {
            value.a[0] = value.a[0].wrapping_add(1);
            obj.store(black_box(value)).unwrap();
        })
    });
    g.finish();

    // ---- The floor of `object/wait_for_change_wake`, right before it: the same ping/pong with an
    // echo process, over two raw futex words in the raw mapping (half a round trip reported). ----
    let unpinned = affinity();
    if let Some((bench_cpu, _)) = wake_cpus() {
        pin_to_cpu(bench_cpu);
    }
    let mut g = c.benchmark_group("baseline");
    let pingpong = RawPingPong::new(&raw);
    let echo = Writer::spawn("futex_echo", &dir.path().join("raw.bin"), || {
        // Until the echo process answers: ping it (it may not be waiting yet), then look.
        let next = pingpong.ping.load(Ordering::Relaxed).wrapping_add(1);
        pingpong.ping.store(next, Ordering::Release);
        raw_futex_wake(pingpong.ping);
        raw_futex_wait(pingpong.pong, pingpong.pong.load(Ordering::Acquire), Some(Duration::from_millis(10)));
        u64::from(pingpong.pong.load(Ordering::Acquire))
    });
    let mut sent = pingpong.ping.load(Ordering::Relaxed);
    g.bench_function("futex_pingpong", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                sent = sent.wrapping_add(1);
                pingpong.send_and_wait(sent);
            }
            start.elapsed() / 2
        })
    });
    echo.finish(u64::from(pingpong.pong.load(Ordering::Acquire)));
    g.finish();

    let mut g = c.benchmark_group("object");
    // How long a commit takes to wake a process sleeping in `wait_for_change`: this process
    // stores to `ping`, an echo process (asleep in `wait_for_change` on `ping`) stores the value
    // to `pong`, on which this process sleeps in turn. The time reported is half of that round
    // trip: one commit, one wake-up of another process and its `load`.
    let (ping, pong) = (store.object_or_init("ping", || 0u64).unwrap(), store.object_or_init("pong", || 0u64).unwrap());
    let echo = Writer::spawn("echo", &dir.path().join("bench.shm"), || {
        // Until the echo process answers: ping it (it may not be waiting yet), then look.
        ping.store(ping.load().unwrap().wrapping_add(1)).unwrap();
        let _ = pong.wait_for_change(pong.version(), Duration::from_millis(10));
        pong.version().get()
    });
    let mut sent = ping.load().unwrap();
    g.bench_function("wait_for_change_wake", |b| {
        b.iter_custom(|iters| {
            let mut seen = pong.version();
            let start = Instant::now();
            for _ in 0..iters {
                sent = sent.wrapping_add(1);
                ping.store(sent).unwrap();
                loop {
                    let (echoed, version) = pong.wait_for_change(seen, Duration::from_secs(10)).unwrap();
                    seen = version;
                    if echoed == sent {
                        break;
                    }
                }
            }
            start.elapsed() / 2
        })
    });
    echo.finish(pong.version().get());
    g.finish();
    set_affinity(&unpinned);

    // ---- The same object cases in OFD lock mode: a kernel lock pair per guard and commit. ----
    let mut g = c.benchmark_group("object_ofd");
    g.bench_function("read_guard", |b| {
        b.iter(|| {
            let guard = ofd_obj.read().unwrap();
            black_box(guard.a[3]);
        })
    });
    g.bench_function("write_guard", |b| {
        b.iter(|| {
            let mut guard = ofd_obj.write().unwrap();
            n = n.wrapping_add(1);
            guard.a[3] = black_box(n);
        })
    });
    g.bench_function("update", |b| b.iter(|| ofd_obj.update(|o| o.a[0] = o.a[0].wrapping_add(1)).unwrap()));
    g.bench_function("store", |b| {
        b.iter(|| {
            value.a[0] = value.a[0].wrapping_add(1);
            ofd_obj.store(black_box(value)).unwrap();
        })
    });
    g.finish();

    // ---- Four processes incrementing one counter: `update` in each lock mode, the bare robust
    // mutex commit and the bare OFD commit (both on the raw seqlock), each counted exactly; and
    // the bare robust commit padded, inside the lock, to take as long as `update` alone: how fast
    // a bare robust mutex would go under contention with a critical section as long as
    // `update`'s. ----
    let pad = calibrate_pad(
        || obj.update(|o| o.a[0] = o.a[0].wrapping_add(1)).unwrap(),
        || robust.locked_increment(&seqlock),
    );
    let mut g = c.benchmark_group("contended4");
    for kind in ["store_robust", "store_ofd", "bare_robust", "bare_robust_padded", "bare_ofd"] {
        let (file, obj) = match kind {
            "store_robust" => (dir.path().join("bench.shm"), Some(obj.clone())),
            "store_ofd" => (dir.path().join("ofd.shm"), Some(ofd_obj.clone())),
            _ => (dir.path().join("raw.bin"), None),
        };
        let count = || obj.as_ref().map_or_else(|| seqlock.version(), |o| o.load().unwrap().a[0]);
        let mut counters = Counters::spawn(kind, &file, pad);
        let before = count();
        g.bench_function(kind, |b| b.iter_custom(|iters| counters.run(iters.div_ceil(COUNTER_PROCESSES as u64))));
        counters.finish(kind, count().wrapping_sub(before));
    }
    g.finish();

    // ---- The memcpy baselines of the arrays (after the objects, so that each object case runs
    // close in time to its own baselines: noise on this VM comes in bursts). ----
    let mut g = c.benchmark_group("baseline");
    g.throughput(Throughput::Bytes(MIB as u64));
    let src = vec![3u8; MIB];
    let mut dst = vec![0u8; MIB];
    g.bench_function("memcpy_1MiB/vec", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&src));
            black_box(&mut dst);
        })
    });
    g.bench_function("memcpy_1MiB/from_mmap", |b| {
        b.iter(|| {
            // SAFETY: `raw_bytes..+MIB` is in the mapping, which no one else writes; `dst` is
            // a separate allocation of the same length.
            unsafe { std::ptr::copy_nonoverlapping(black_box(raw_bytes), dst.as_mut_ptr(), MIB) };
            black_box(&mut dst);
        })
    });
    g.bench_function("memcpy_1MiB/to_mmap", |b| {
        b.iter(|| {
            // SAFETY: as above, in the other direction.
            unsafe { std::ptr::copy_nonoverlapping(black_box(src.as_ptr()), black_box(raw_bytes), MIB) };
        })
    });
    g.finish();

    // ---- Arrays: a 1 MiB copy under one lock pair; should run at memcpy speed. ----
    let mut g = c.benchmark_group("array");
    g.throughput(Throughput::Bytes(MIB as u64));
    let mut f64_buf = vec![0.0f64; MIB / 8];
    let mut u8_buf = vec![0u8; MIB];
    g.bench_function("read_at_1MiB/f64", |b| {
        b.iter(|| {
            f64s.read_at(0, black_box(&mut f64_buf)).unwrap();
        })
    });
    g.bench_function("read_at_1MiB/u8", |b| {
        b.iter(|| {
            bytes.read_at(0, black_box(&mut u8_buf)).unwrap();
        })
    });
    g.bench_function("write_at_1MiB/f64", |b| {
        b.iter(|| {
            f64s.write_at(0, black_box(&f64_buf)).unwrap();
        })
    });
    g.bench_function("write_at_1MiB/u8", |b| {
        b.iter(|| {
            bytes.write_at(0, black_box(&u8_buf)).unwrap();
        })
    });
    g.finish();

    drop(raw);
    store.close().unwrap();
}

criterion_group! {
    name = store;
    // Short runs: the whole file takes about 90 s on two cores.
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
    targets = benches
}

// `criterion_main!`, plus the writer mode: the contended cases run this binary as their writer.
fn main() {
    if let Ok(kind) = std::env::var(WRITER_ENV) {
        writer_main(&kind);
        return;
    }
    if let Ok(kind) = std::env::var(COUNTER_ENV) {
        counter_main(&kind);
        return;
    }
    store();
    Criterion::default().configure_from_args().final_summary();
}

//! Helpers shared by the integration tests: child processes, file inspection and corruption.
//!
//! Each test file compiles its own copy of this module and uses only part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// Env var naming the role a child process plays.
pub const ROLE_VAR: &str = "SHMSTORE_TEST_ROLE";
/// Env var holding the store path for a child.
pub const PATH_VAR: &str = "SHMSTORE_TEST_PATH";
/// Env var holding a role-specific argument.
pub const ARG_VAR: &str = "SHMSTORE_TEST_ARG";

/// Marks protocol lines on a child's stdout, so that they can be told apart from the test
/// harness's own output (which may share the line: `test child_main ... @@ready`).
const MARK: &str = "@@";

/// How long the parent waits for a child's next protocol line before declaring it hung. This is a
/// safety net against a deadlock hanging the suite, never a synchronisation mechanism.
pub const CHILD_PATIENCE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// The child side.

/// What a child was asked to do: `None` when the test binary runs normally (so that
/// `cargo test -- --ignored` running `child_main` by hand does nothing).
pub struct ChildArgs {
    pub role: String,
    pub path: PathBuf,
    pub arg: String,
}

pub fn child_args() -> Option<ChildArgs> {
    let role = std::env::var(ROLE_VAR).ok()?;
    let path = std::env::var_os(PATH_VAR).map(PathBuf::from).unwrap_or_default();
    let arg = std::env::var(ARG_VAR).unwrap_or_default();
    Some(ChildArgs { role, path, arg })
}

/// Sends one protocol line to the parent and flushes it.
pub fn emit(msg: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    // A leading newline keeps the message off the harness's `test child_main ... ` line.
    writeln!(out, "\n{MARK}{msg}").expect("write to parent");
    out.flush().expect("flush to parent");
}

/// Blocks until the parent sends a line on stdin; `None` at EOF (the parent closed stdin or died).
pub fn wait_line() -> Option<String> {
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim().to_owned()),
    }
}

/// Blocks until the parent sends exactly `expected`; panics on EOF or another line.
pub fn wait_for(expected: &str) {
    match wait_line() {
        Some(line) if line == expected => {}
        other => panic!("child expected {expected:?} from the parent, got {other:?}"),
    }
}

/// Blocks until stdin reaches EOF: the parent closed it, was killed, or killed us first.
pub fn wait_eof() {
    let mut sink = Vec::new();
    let _ = std::io::stdin().lock().read_to_end(&mut sink);
}

// ---------------------------------------------------------------------------------------------
// The parent side.

/// Held shared while a child process is being spawned, exclusively by [`alone`].
static SPAWNING: RwLock<()> = RwLock::new(());

/// Runs `f` once no other process has the store at `path` open, and while no thread of this test
/// binary spawns a child; for a test that needs the store closed everywhere (the reset of the
/// first opener, `shmstore::compact`, `shmstore::upgrade`) after dropping its own handles.
///
/// A child shares every descriptor of its parent from `fork` until `exec` closes them
/// (close-on-exec): meanwhile it holds the open file description, and with it the open byte's
/// lock, of every store the parent has open, including one the parent has just dropped. Another
/// test of the same binary spawning a child at that moment would make the store look open. And
/// `Command::spawn` may return before the child has closed them (the kernel lets a `vfork`ing
/// parent go on before `exec` closes the descriptors), so holding off new spawns is not enough:
/// this also waits, up to [`CHILD_PATIENCE`], until the open byte is free.
pub fn alone<R>(path: &Path, f: impl FnOnce() -> R) -> R {
    let _quiet = SPAWNING.write().unwrap_or_else(PoisonError::into_inner);
    let deadline = std::time::Instant::now() + CHILD_PATIENCE;
    while open_elsewhere(path) {
        assert!(std::time::Instant::now() < deadline, "{} stays open in another process", path.display());
        std::thread::sleep(Duration::from_millis(1));
    }
    f()
}

/// Whether some process holds the open byte of the store at `path` (through an open file
/// description other than a new one made here).
fn open_elsewhere(path: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let file = fs::File::open(path).expect("open the store to probe its open byte");
    let byte = shmstore::format::v2::header::OPEN_BYTE as libc::off_t;
    // SAFETY: an all-zero `flock` is a valid value of this plain C struct.
    let mut probe: libc::flock = unsafe { std::mem::zeroed() };
    probe.l_type = libc::F_WRLCK as libc::c_short;
    probe.l_whence = libc::SEEK_SET as libc::c_short;
    probe.l_start = byte;
    probe.l_len = 1;
    // SAFETY: `file` is open for the duration of the call and `probe` is a valid `flock`.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut probe) };
    assert_eq!(rc, 0, "F_OFD_GETLK on {}: {}", path.display(), std::io::Error::last_os_error());
    probe.l_type != libc::F_UNLCK as libc::c_short
}

/// A child process running this test binary's `child_main` in a role. Dropping it kills the
/// child (if it still runs) and reaps it, so no test leaves processes behind, even on panic.
pub struct ChildProc {
    role: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stdout_thread: Option<JoinHandle<()>>,
    stderr_thread: Option<JoinHandle<String>>,
    transcript: Vec<String>,
    status: Option<ExitStatus>,
}

impl ChildProc {
    /// Spawns `current_exe child_main --exact --ignored --nocapture --test-threads=1` with the role,
    /// store path and argument in the environment.
    pub fn spawn(role: &str, path: &Path, arg: &str) -> ChildProc {
        let exe = std::env::current_exe().expect("current_exe");
        // Not while a test runs `alone` (see there); `spawn` returns after the child's `exec`.
        let spawning = SPAWNING.read().unwrap_or_else(PoisonError::into_inner);
        let mut child = Command::new(exe)
            .args(["child_main", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env(ROLE_VAR, role)
            .env(PATH_VAR, path)
            .env(ARG_VAR, arg)
            .env_remove("RUST_TEST_THREADS")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn child {role}: {e}"));
        drop(spawning);
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        let stdout_thread = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr_thread = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        ChildProc {
            role: role.to_owned(),
            child,
            stdin,
            lines,
            stdout_thread: Some(stdout_thread),
            stderr_thread: Some(stderr_thread),
            transcript: Vec::new(),
            status: None,
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The next protocol message, or `None` at EOF.
    fn next_message(&mut self) -> Option<String> {
        loop {
            match self.lines.recv_timeout(CHILD_PATIENCE) {
                Ok(line) => {
                    self.transcript.push(line.clone());
                    if let Some(at) = line.find(MARK) {
                        return Some(line[at + MARK.len()..].to_owned());
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return None,
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "child {} sent nothing for {CHILD_PATIENCE:?}; transcript: {:#?}",
                        self.role, self.transcript
                    )
                }
            }
        }
    }

    /// The next protocol message if one has arrived, without waiting. `None` also once the
    /// child's stdout is closed.
    pub fn poll(&mut self) -> Option<String> {
        while let Ok(line) = self.lines.try_recv() {
            self.transcript.push(line.clone());
            if let Some(at) = line.find(MARK) {
                return Some(line[at + MARK.len()..].to_owned());
            }
        }
        None
    }

    /// Whether the child has exited (reaping it if so).
    pub fn has_exited(&mut self) -> bool {
        self.status.is_some() || self.child.try_wait().ok().flatten().is_some()
    }

    /// Waits for the next protocol message and checks that it starts with `prefix`; returns the
    /// rest of it (trimmed).
    pub fn expect(&mut self, prefix: &str) -> String {
        match self.next_message() {
            Some(msg) if msg.starts_with(prefix) => msg[prefix.len()..].trim().to_owned(),
            Some(msg) => {
                panic!("child {} sent {msg:?}, expected {prefix:?}; transcript: {:#?}", self.role, self.transcript)
            }
            None => {
                let status = self.child.wait().ok();
                self.status = status;
                let stderr = self.take_stderr();
                panic!(
                    "child {} ended ({status:?}) before sending {prefix:?}; transcript: {:#?}; stderr:\n{stderr}",
                    self.role, self.transcript
                )
            }
        }
    }

    /// Sends a line to the child's stdin.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").and_then(|()| stdin.flush()).unwrap_or_else(|e| panic!("send to {}: {e}", self.role));
    }

    fn take_stderr(&mut self) -> String {
        self.stderr_thread.take().and_then(|t| t.join().ok()).unwrap_or_default()
    }

    /// Closes stdin, reads the remaining messages, waits for the child and asserts that it exited
    /// successfully. Returns the remaining messages.
    pub fn finish(mut self) -> Vec<String> {
        self.stdin = None;
        let mut rest = Vec::new();
        while let Some(msg) = self.next_message() {
            rest.push(msg);
        }
        let status = self.child.wait().expect("wait for child");
        self.status = Some(status);
        let stderr = self.take_stderr();
        assert!(
            status.success(),
            "child {} failed with {status}; transcript: {:#?}; stderr:\n{stderr}",
            self.role,
            self.transcript
        );
        rest
    }

    /// SIGKILLs the child and reaps it; returns its exit status.
    pub fn kill(&mut self) -> ExitStatus {
        self.child.kill().expect("kill child");
        let status = self.child.wait().expect("wait for killed child");
        self.status = Some(status);
        status
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.stdin = None;
        if let Some(t) = self.stdout_thread.take() {
            let _ = t.join();
        }
        if let Some(t) = self.stderr_thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Files.

/// A fresh temporary directory and a store path inside it.
pub fn temp_store() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.shm");
    (dir, path)
}

/// Names of the files in `dir`, sorted.
pub fn dir_listing(dir: &Path) -> Vec<OsString> {
    let mut names: Vec<_> = fs::read_dir(dir).expect("read_dir").map(|e| e.expect("dir entry").file_name()).collect();
    names.sort();
    names
}

pub fn read_u64_le(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

pub fn read_u64_ne(bytes: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(bytes[at..at + 8].try_into().unwrap())
}

pub fn read_u32_ne(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// Writes `bytes` at `offset` into the file, without truncating or otherwise touching it.
pub fn poke(path: &Path, offset: u64, bytes: &[u8]) {
    let file = fs::OpenOptions::new().write(true).open(path).expect("open for poke");
    file.write_all_at(bytes, offset).expect("poke");
}

// The on-disk format (version 2), as documented in docs/format.md and shmstore/src/format/v2/.

/// Offset of the live `capacity` header word.
pub const CAPACITY_OFFSET: u64 = 512;
/// Offset of the live `alloc_end` header word.
pub const ALLOC_END_OFFSET: u64 = 528;
/// Offset of the live `index_root` header word.
pub const INDEX_ROOT_OFFSET: u64 = 544;
/// Size of an entry block.
pub const BLOCK_SIZE: u64 = 384;
/// Offset of a block's static (checksummed) part.
pub const BLOCK_STATIC_OFFSET: u64 = 192;
/// Size of a block's static part.
pub const BLOCK_STATIC_SIZE: u64 = 192;

/// An entry block, decoded from the file by hand.
#[derive(Debug, Clone)]
pub struct RawRecord {
    /// The index slot that leads to it.
    pub slot: u32,
    /// The block's offset.
    pub offset: u64,
    pub state: u32,
    pub kind: u8,
    pub slot_count: u8,
    pub name: String,
    pub elem_size: u64,
    pub count: u64,
    pub data_offset: u64,
    pub slot_stride: u64,
    pub schema_offset: u64,
    pub schema_len: u64,
    pub seq: u64,
}

/// Every entry block that the current index table leads to (following `moved_to` from blocks
/// that were replaced), by reading the file.
pub fn raw_records(path: &Path) -> Vec<RawRecord> {
    let bytes = fs::read(path).expect("read store");
    let root = read_u64_ne(&bytes, INDEX_ROOT_OFFSET as usize) as usize;
    let slots = read_u64_le(&bytes, root + 8);
    let mut out: Vec<RawRecord> = Vec::new();
    for i in 0..slots {
        let mut at = read_u64_ne(&bytes, root + 64 + 16 * i as usize);
        if at < 2 {
            continue;
        }
        // Follow replaced blocks (state 3) to their replacement.
        while read_u32_ne(&bytes, at as usize) == 3 {
            at = read_u64_ne(&bytes, at as usize + 32);
        }
        let a = at as usize;
        let state = read_u32_ne(&bytes, a);
        if state == 0 || state == 4 || out.iter().any(|r| r.offset == at) {
            continue;
        }
        let s = a + BLOCK_STATIC_OFFSET as usize;
        let name_len = u16::from_le_bytes(bytes[s + 2..s + 4].try_into().unwrap()) as usize;
        out.push(RawRecord {
            slot: i as u32,
            offset: at,
            state,
            kind: bytes[s],
            slot_count: bytes[s + 1],
            name: String::from_utf8_lossy(&bytes[s + 8..s + 8 + name_len.min(64)]).into_owned(),
            elem_size: read_u64_le(&bytes, s + 80),
            count: read_u64_le(&bytes, s + 96),
            data_offset: read_u64_le(&bytes, s + 104),
            slot_stride: read_u64_le(&bytes, s + 112),
            schema_offset: read_u64_le(&bytes, s + 120),
            schema_len: read_u64_le(&bytes, s + 128),
            seq: read_u64_ne(&bytes, a + 16),
        });
    }
    out
}

pub fn raw_record(path: &Path, name: &str) -> RawRecord {
    raw_records(path).into_iter().find(|r| r.name == name).unwrap_or_else(|| panic!("no record named {name}"))
}

/// The file offset of the bytes readers of entry `name` see now (its active slot).
pub fn active_data_offset(path: &Path, name: &str) -> u64 {
    let r = raw_record(path, name);
    if r.slot_count == 2 {
        r.data_offset + (r.seq & 1) * r.slot_stride
    } else {
        r.data_offset
    }
}

/// A small deterministic PRNG (xorshift64*), for seeded corruption loops.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Counts distinct values, for "at least one of each" assertions.
pub fn tally<K: std::hash::Hash + Eq>(items: impl IntoIterator<Item = K>) -> HashMap<K, usize> {
    let mut m = HashMap::new();
    for k in items {
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

// ---------------------------------------------------------------------------------------------
// Added for tests/commit.rs: children that exit abnormally, children that must not outlive the
// parent, and seeing a child asleep in a shared futex.

/// How a child ended, for children expected to fail (a panic, an exit code).
#[derive(Debug)]
pub struct ChildExit {
    pub status: ExitStatus,
    /// The protocol messages it sent that were not consumed yet.
    pub messages: Vec<String>,
    pub stderr: String,
}

impl ChildProc {
    /// The role this child was spawned with.
    pub fn role(&self) -> &str {
        &self.role
    }

    /// Like [`finish`](Self::finish), but returns how the child ended instead of asserting that it
    /// succeeded: closes stdin, reads the remaining messages, reaps the child.
    pub fn wait_exit(mut self) -> ChildExit {
        self.stdin = None;
        let mut messages = Vec::new();
        while let Some(msg) = self.next_message() {
            messages.push(msg);
        }
        let status = self.child.wait().expect("wait for child");
        self.status = Some(status);
        let stderr = self.take_stderr();
        ChildExit { status, messages, stderr }
    }

    /// Like [`expect`](Self::expect), but returns `None` instead of panicking if the child ends
    /// (its stdout closes) before sending the message, so that the caller can report how it ended
    /// (see [`wait_exit`](Self::wait_exit)).
    pub fn try_expect(&mut self, prefix: &str) -> Option<String> {
        match self.next_message() {
            Some(msg) if msg.starts_with(prefix) => Some(msg[prefix.len()..].trim().to_owned()),
            Some(msg) => {
                panic!("child {} sent {msg:?}, expected {prefix:?}; transcript: {:#?}", self.role, self.transcript)
            }
            None => None,
        }
    }

    /// SIGKILLs the child and reaps it like [`kill`](Self::kill), and also returns its stderr (all
    /// of it: the child is dead, so its stderr reaches EOF).
    pub fn kill_and_stderr(&mut self) -> (ExitStatus, String) {
        let status = self.kill();
        (status, self.take_stderr())
    }
}

/// Child side: exits the process (status 0) as soon as stdin reaches EOF, from a background thread.
/// For children that spin without reading stdin: they cannot outlive the parent (whose death closes
/// the pipe), even if the parent is killed before it can kill them.
pub fn exit_when_stdin_closes() {
    std::thread::spawn(|| {
        wait_eof();
        std::process::exit(0);
    });
}

/// Whether a thread of process `pid` is asleep in a shared (not process-private) `FUTEX_WAIT` on a
/// word inside a mapping of the file `path`: read from `/proc/PID/task/*/syscall` and
/// `/proc/PID/maps`. `None` if procfs does not tell (not readable, or not mounted).
///
/// Standard-library primitives (mutexes, channels) use private futexes, so this tells a thread
/// waiting for a store's change notification apart from the test harness's own sleeping threads.
pub fn asleep_in_shared_futex(pid: u32, path: &Path) -> Option<bool> {
    const FUTEX_WAIT: u64 = 0;
    const FUTEX_PRIVATE_FLAG: u64 = 128;
    const FUTEX_CMD_MASK: u64 = 0x7f;
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    let file = fs::canonicalize(path).ok()?;
    let file = file.to_str()?;
    // Lines look like `7f12...-7f13... rw-s 00000000 fd:01 1234   /tmp/.../store.shm`.
    let ranges: Vec<(u64, u64)> = maps
        .lines()
        .filter(|line| line.ends_with(file))
        .filter_map(|line| {
            let (lo, hi) = line.split_whitespace().next()?.split_once('-')?;
            Some((u64::from_str_radix(lo, 16).ok()?, u64::from_str_radix(hi, 16).ok()?))
        })
        .collect();
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut readable = false;
    for task in tasks.flatten() {
        let Ok(syscall) = fs::read_to_string(task.path().join("syscall")) else { continue };
        readable = true;
        let fields: Vec<&str> = syscall.split_whitespace().collect();
        let parse = |i: usize| fields.get(i).and_then(|f| u64::from_str_radix(f.trim_start_matches("0x"), 16).ok());
        // `NR addr op val timeout ...`, in decimal then hex; "running" while on a CPU.
        if fields.first().and_then(|nr| nr.parse::<i64>().ok()) != Some(libc::SYS_futex) {
            continue;
        }
        let (Some(addr), Some(op)) = (parse(1), parse(2)) else { continue };
        if op & FUTEX_CMD_MASK == FUTEX_WAIT
            && op & FUTEX_PRIVATE_FLAG == 0
            && ranges.iter().any(|&(lo, hi)| (lo..hi).contains(&addr))
        {
            return Some(true);
        }
    }
    readable.then_some(false)
}

/// Polls [`asleep_in_shared_futex`] until it says yes (`Some(true)`), procfs cannot tell
/// (`None`), or `patience` passes (`Some(false)`). Polling here only waits for a state that the
/// test then exercises; correctness never depends on it.
pub fn wait_until_asleep_in_shared_futex(pid: u32, path: &Path, patience: Duration) -> Option<bool> {
    let start = std::time::Instant::now();
    loop {
        match asleep_in_shared_futex(pid, path) {
            Some(false) if start.elapsed() < patience => std::thread::sleep(Duration::from_millis(1)),
            other => return other,
        }
    }
}

//! Byte regions (`SharedBytes`) and their bounded stream (`ByteStream`): text written by one
//! process and read back by another, bounds, the stream's end-of-region rules, kinds, and a model
//! check of the stream against `std::io::Cursor`.

mod common;
#[path = "common/stream_model.rs"]
mod stream_model;

use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::{emit, temp_store, wait_for, ChildArgs, ChildProc};
use proptest::prelude::*;
use shmstore::{ByteStream, Error, SharedBytes, Store, WaitedFor};
use stream_model::{on_model, on_stream, op};

const MIB: u64 = 1 << 20;

fn region(len: u64) -> (tempfile::TempDir, Store, SharedBytes) {
    let (dir, path) = temp_store();
    let store = Store::open_or_create(&path, MIB).unwrap();
    let bytes = store.bytes_or_init("region", len).unwrap();
    (dir, store, bytes)
}

fn contents(region: &SharedBytes) -> Vec<u8> {
    region.read().unwrap().to_vec()
}

/// `text` with its control characters escaped, on one line: what a child sends back.
fn escaped(text: &str) -> String {
    text.escape_debug().to_string()
}

// ---------------------------------------------------------------------------------------------
// The child side.

#[test]
#[ignore = "entry point for child processes spawned by the tests in this file"]
fn child_main() {
    let Some(args) = common::child_args() else { return };
    match args.role.as_str() {
        "read_text" => role_read_text(&args),
        "stream_write" => role_stream_write(&args),
        other => panic!("unknown child role {other:?}"),
    }
}

/// Opens the region `region`, reports `writing`, writes `arg` at its start through a stream (which
/// waits for the region's write lock), and reports `wrote VERSION`.
fn role_stream_write(args: &ChildArgs) {
    let store = Store::open(&args.path).unwrap();
    let region = store.bytes("region").unwrap();
    emit("writing");
    region.stream().write_all(args.arg.as_bytes()).unwrap();
    emit(format!("wrote {}", region.version().get()));
}

/// Opens the region `text` and reports it read three ways: `read_at` of the first 19 bytes, the
/// stream from 32 with `read_to_string`, and the whole region. Then, on "reply", writes a line of
/// its own through a stream at the offset in `arg`, and reports the version.
fn role_read_text(args: &ChildArgs) {
    let store = Store::open(&args.path).unwrap();
    let region = store.bytes("text").unwrap();
    emit(format!("len {}", region.len()));

    let mut head = [0u8; 19];
    region.read_at(0, &mut head).unwrap();
    emit(format!("read_at {}", escaped(std::str::from_utf8(&head).unwrap())));

    let mut stream = region.stream();
    stream.seek(SeekFrom::Start(32)).unwrap();
    let mut rest = String::new();
    let n = stream.read_to_string(&mut rest).unwrap();
    emit(format!("stream {n} {} {}", stream.position(), escaped(&rest)));
    // At the end: reads return 0.
    assert_eq!(stream.read(&mut [0u8; 8]).unwrap(), 0);

    let mut whole = String::new();
    region.stream().read_to_string(&mut whole).unwrap();
    emit(format!("whole {}", escaped(whole.trim_end_matches('\0'))));

    wait_for("reply");
    let at: u64 = args.arg.parse().unwrap();
    let mut stream = region.stream();
    stream.seek(SeekFrom::Start(at)).unwrap();
    // One write, so one version step (`write!` makes a write per piece of the format string).
    stream.write_all(format!("child {} was here", std::process::id()).as_bytes()).unwrap();
    emit(format!("replied {} {}", std::process::id(), region.version().get()));
}

// ---------------------------------------------------------------------------------------------
// Between processes.

#[test]
fn text_written_by_one_process_is_read_by_another() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, MIB).unwrap();
    let region = store.bytes_or_init("text", 256).unwrap();
    assert_eq!(region.version().get(), 0);

    // Through write_at, and through the stream with write!, write_all and Seek.
    region.write_at(0, b"Hello from write_at").unwrap();
    let mut stream = region.stream();
    stream.seek(SeekFrom::Start(32)).unwrap();
    write!(stream, "pi is about {:.4}", std::f64::consts::PI).unwrap();
    stream.write_all(b"; then raw bytes\n").unwrap();
    stream.seek(SeekFrom::Current(3)).unwrap();
    stream.write_all("and UTF-8: grüße, 日本".as_bytes()).unwrap();
    let end = stream.seek(SeekFrom::End(-9)).unwrap();
    assert_eq!(end, 247);
    stream.write_all(b"last byte").unwrap(); // exactly to the end
    assert_eq!(stream.position(), 256);
    let version = region.version();
    assert!(version.get() >= 6, "every write bumps the version: {version:?}");

    let mut expected = vec![0u8; 256];
    expected[..19].copy_from_slice(b"Hello from write_at");
    let middle = "pi is about 3.1416; then raw bytes\n";
    expected[32..32 + middle.len()].copy_from_slice(middle.as_bytes());
    let utf8 = "and UTF-8: grüße, 日本";
    let at = 32 + middle.len() + 3;
    expected[at..at + utf8.len()].copy_from_slice(utf8.as_bytes());
    expected[247..].copy_from_slice(b"last byte");
    assert_eq!(contents(&region), expected);

    let mut child = ChildProc::spawn("read_text", &path, "200");
    assert_eq!(child.expect("len "), "256");
    assert_eq!(child.expect("read_at "), "Hello from write_at");
    let tail = std::str::from_utf8(&expected[32..]).unwrap();
    assert_eq!(child.expect("stream "), format!("224 256 {}", escaped(tail)));
    let whole = std::str::from_utf8(&expected).unwrap();
    assert_eq!(child.expect("whole "), escaped(whole.trim_end_matches('\0')));

    // And the other way: the child writes, this process reads, and sees the version move.
    child.send("reply");
    let reply = child.expect("replied ");
    let (pid, child_version) = reply.split_once(' ').unwrap();
    assert_eq!(child_version.parse::<u64>().unwrap(), version.get() + 1);
    child.finish();
    let line = format!("child {pid} was here");
    let mut buf = vec![0u8; line.len()];
    region.read_at(200, &mut buf).unwrap();
    assert_eq!(buf, line.as_bytes());
    assert_eq!(region.version().get(), version.get() + 1);
    assert_eq!(region.wait_for_change(version, Duration::from_secs(5)).unwrap().get(), version.get() + 1);
}

// ---------------------------------------------------------------------------------------------
// Bounds.

#[track_caller]
fn assert_oob(result: shmstore::Result<()>, what: &str, start: u64, end: u64, len: u64) {
    match result {
        Err(e @ Error::OutOfBounds { .. }) => {
            let message = e.to_string();
            let Error::OutOfBounds { name, what: w, start: s, end: en, len: l } = e else { unreachable!() };
            assert_eq!((name.as_str(), w, s, en, l), ("region", what, start, end, len));
            assert!(message.contains("`region`") && message.contains(&len.to_string()), "{message}");
        }
        other => panic!("expected OutOfBounds {what} {start}..{end}, got {other:?}"),
    }
}

#[test]
fn read_at_and_write_at_past_the_end_are_refused_and_change_nothing() {
    let (_dir, store, region) = region(100);
    let original: Vec<u8> = (0..100).collect();
    region.write_at(0, &original).unwrap();
    let version = region.version();

    assert_oob(region.write_at(95, b"123456"), "write_at", 95, 101, 100);
    assert_oob(region.write_at(100, b"x"), "write_at", 100, 101, 100);
    assert_oob(region.write_at(u64::MAX, b"xy"), "write_at", u64::MAX, u64::MAX, 100);
    assert_oob(region.write_at(101, b""), "write_at", 101, 101, 100);
    let mut buf = [0u8; 10];
    assert_oob(region.read_at(91, &mut buf), "read_at", 91, 101, 100);
    assert_oob(region.read_at(1 << 40, &mut buf), "read_at", 1 << 40, (1 << 40) + 10, 100);
    assert_eq!(buf, [0; 10], "a refused read copies nothing");
    assert_eq!(contents(&region), original, "a refused write writes nothing");
    assert_eq!(region.version(), version, "and does not count as a write");

    // Up to the end, and empty accesses at the end, are fine.
    region.write_at(90, b"0123456789").unwrap();
    region.read_at(90, &mut buf).unwrap();
    assert_eq!(&buf, b"0123456789");
    region.write_at(100, b"").unwrap();
    region.read_at(100, &mut []).unwrap();

    // A zero-length region.
    let empty = store.bytes_or_init("empty", 0).unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty.read().unwrap().len(), 0);
    assert!(matches!(empty.write_at(0, b"x"), Err(Error::OutOfBounds { len: 0, .. })));
    assert_eq!(empty.stream().read(&mut buf).unwrap(), 0);
}

#[test]
fn the_stream_writes_up_to_the_end_and_not_one_byte_more() {
    let (_dir, _store, region) = region(16);
    let mut stream = region.stream();
    stream.write_all(b"0123456789abcdef").unwrap(); // exactly 16
    assert_eq!(stream.position(), 16);
    let version = region.version();

    // One byte more: an error, and nothing lands.
    let err = stream.write(b"!").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::StorageFull);
    let message = err.to_string();
    assert!(message.contains("`region`") && message.contains("16 bytes") && message.contains("nothing"), "{message}");
    assert_eq!(stream.position(), 16);

    // A write that straddles the end is refused whole: no short write, no truncation.
    stream.seek(SeekFrom::Start(10)).unwrap();
    let err = stream.write(b"ABCDEFG").unwrap_err(); // 10..17
    assert_eq!(err.kind(), io::ErrorKind::StorageFull);
    assert_eq!(stream.write_all(b"ABCDEFG").unwrap_err().kind(), io::ErrorKind::StorageFull);
    assert_eq!(stream.position(), 10);
    assert_eq!(contents(&region), b"0123456789abcdef");
    assert_eq!(region.version(), version);
    assert_eq!(stream.write(b"ABCDEF").unwrap(), 6); // 10..16 fits
    assert_eq!(contents(&region), b"0123456789ABCDEF");

    // An empty write does nothing, anywhere.
    stream.seek(SeekFrom::Start(1000)).unwrap();
    assert_eq!(stream.write(b"").unwrap(), 0);
    assert_eq!(stream.write(b"x").unwrap_err().kind(), io::ErrorKind::StorageFull);
    stream.flush().unwrap();
}

#[test]
fn reads_stop_at_the_end_and_seeks_stay_at_or_after_zero() {
    let (_dir, _store, region) = region(10);
    region.write_at(0, b"abcdefghij").unwrap();
    let mut stream = region.stream();
    let mut buf = [0u8; 4];

    stream.seek(SeekFrom::End(-3)).unwrap();
    assert_eq!(stream.read(&mut buf).unwrap(), 3, "a read stops at the end");
    assert_eq!(&buf[..3], b"hij");
    assert_eq!(stream.read(&mut buf).unwrap(), 0, "at the end: EOF");
    assert_eq!(stream.seek(SeekFrom::Current(5)).unwrap(), 15, "seeking past the end is allowed");
    assert_eq!(stream.read(&mut buf).unwrap(), 0, "past the end: EOF");
    let mut rest = Vec::new();
    assert_eq!(stream.read_to_end(&mut rest).unwrap(), 0);
    assert_eq!(stream.position(), 15);

    // read_exact: all or nothing.
    stream.seek(SeekFrom::Start(8)).unwrap();
    assert_eq!(stream.read_exact(&mut buf).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    assert_eq!(stream.position(), 8);
    stream.read_exact(&mut buf[..2]).unwrap();
    assert_eq!(&buf[..2], b"ij");

    // Before 0: InvalidInput, and the position stays.
    for to in [SeekFrom::Current(-11), SeekFrom::End(-11), SeekFrom::Current(i64::MIN)] {
        let err = stream.seek(to).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{to:?}");
        assert!(err.to_string().contains("before the start"), "{err}");
        assert_eq!(stream.position(), 10);
    }
    stream.seek(SeekFrom::Start(u64::MAX)).unwrap();
    assert_eq!(stream.seek(SeekFrom::Current(1)).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    assert_eq!(stream.seek(SeekFrom::End(-10)).unwrap(), 0);
    assert_eq!(stream.stream_position().unwrap(), 0);

    // read_to_string of bytes that are not UTF-8 leaves the position alone.
    region.write_at(4, &[0xff]).unwrap();
    let mut text = String::new();
    assert_eq!(stream.read_to_string(&mut text).unwrap_err().kind(), io::ErrorKind::InvalidData);
    assert_eq!((text.as_str(), stream.position()), ("", 0));
}

#[test]
fn io_copy_into_a_region_too_small_fails_instead_of_truncating() {
    let (dir, _store, region) = region(9_000);
    let source: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let file_path = dir.path().join("source.bin");
    std::fs::write(&file_path, &source).unwrap();

    let mut stream = region.stream();
    let err = io::copy(&mut std::fs::File::open(&file_path).unwrap(), &mut stream).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::StorageFull, "{err}");
    // Whatever landed before the failing write is a prefix of the file, and the position says how
    // much; the write that did not fit landed not at all.
    let landed = stream.position() as usize;
    assert!(landed < source.len() && landed <= 9_000, "{landed}");
    let after = contents(&region);
    assert_eq!(&after[..landed], &source[..landed]);
    assert!(after[landed..].iter().all(|&b| b == 0), "nothing past the position was written");

    // A file that fits, exactly, copies whole.
    std::fs::write(&file_path, &source[..9_000]).unwrap();
    let mut stream = region.stream();
    assert_eq!(io::copy(&mut std::fs::File::open(&file_path).unwrap(), &mut stream).unwrap(), 9_000);
    assert_eq!(contents(&region), &source[..9_000]);
    // And reading it back through a stream gives the file again.
    let mut back = Vec::new();
    io::copy(&mut region.stream(), &mut back).unwrap();
    assert_eq!(back, &source[..9_000]);
}

// ---------------------------------------------------------------------------------------------
// Kinds, guards, versions, durability, views.

#[test]
fn kinds_are_kept_apart() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, MIB).unwrap();
    store.bytes_or_init("raw", 32).unwrap();
    store.array_or_init::<u8>("octets", 32, 0).unwrap();
    store.object_or_init("one", || 7u64).unwrap();

    let kind = |r: shmstore::Result<()>| match r {
        Err(Error::KindMismatch { expected, found, .. }) => (expected, found),
        other => panic!("expected KindMismatch, got {other:?}"),
    };
    assert_eq!(kind(store.array::<u8>("raw").map(drop)), ("array", "bytes"));
    assert_eq!(kind(store.array_or_init::<u8>("raw", 32, 0).map(drop)), ("array", "bytes"));
    assert_eq!(kind(store.object::<u8>("raw").map(drop)), ("object", "bytes"));
    assert_eq!(kind(store.bytes("octets").map(drop)), ("bytes", "array"));
    assert_eq!(kind(store.bytes_or_init("one", 8).map(drop)), ("bytes", "object"));
    let message = store.bytes("octets").unwrap_err().to_string();
    assert!(message.contains("Store::array"), "{message}");
    assert!(matches!(store.bytes("nope"), Err(Error::NotFound { .. })));

    // An existing region opens at its own length.
    assert_eq!(store.bytes_or_init("raw", 1000).unwrap().len(), 32);
    let info = store.entry_info("raw").unwrap();
    assert_eq!(
        (info.kind, info.kind.as_str(), info.type_name.as_str(), info.len),
        (shmstore::EntryKind::Bytes, "bytes", "u8", 32)
    );

    // A byte region cannot be migrated to another element type, and trying leaves it intact.
    match store.migrate("raw", |b: u8| b as i8) {
        Err(Error::UnsupportedLayout { reason, .. }) => assert!(reason.contains("byte region"), "{reason}"),
        other => panic!("expected UnsupportedLayout, got {other:?}"),
    }
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.bytes("raw").unwrap().len(), 32);
    assert_eq!(store.entries().unwrap().len(), 3);
}

#[test]
fn handles_and_streams_go_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<SharedBytes>();
    send_sync::<ByteStream>();
    send_sync::<shmstore::ArrayView<'static, u8>>();
}

/// How long to wait for a state that must come before declaring the test hung: a safety net,
/// never a synchronisation mechanism.
const PATIENCE: Duration = Duration::from_secs(60);

/// Polls `done` until it holds; panics after [`PATIENCE`] with `what`.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < PATIENCE, "gave up waiting until {what}");
        std::thread::yield_now();
    }
}

/// Whether some process waits in the kernel for a lock on the file at `path` (a `->` line of
/// `/proc/locks` naming its inode).
fn someone_waits_for_a_lock_on(path: &std::path::Path) -> bool {
    let inode = std::fs::metadata(path).unwrap().ino();
    let locks = std::fs::read_to_string("/proc/locks").expect("read /proc/locks");
    locks.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1) == Some(&"->")
            && fields.iter().any(|f| f.split(':').nth(2).and_then(|i| i.parse::<u64>().ok()) == Some(inode))
    })
}

/// The scheduler state of thread `tid` of this process (`R` running, `S` asleep, ...), or `None`
/// once it has ended.
fn thread_state(tid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // The state follows the command name, which is in parentheses and may hold spaces.
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

#[test]
fn guards_versions_and_change_notification() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, MIB).unwrap();
    let region = store.bytes_or_init("region", 64).unwrap();
    let v0 = region.version();
    region.write().unwrap()[..5].copy_from_slice(b"guard");
    let v1 = region.version();
    assert!(v1 > v0);
    assert_eq!(&region.read().unwrap()[..5], b"guard");
    {
        let reader = region.read().unwrap();
        // Another thread's writes wait (this thread's own would deadlock, and are refused).
        let probe = region.clone();
        std::thread::spawn(move || {
            assert!(matches!(probe.try_write(), Err(Error::WouldBlock { .. })));
            assert!(matches!(probe.write_timeout(Duration::from_millis(20)), Err(Error::Timeout { .. })));
        })
        .join()
        .unwrap();
        assert!(matches!(region.try_write(), Err(Error::WouldDeadlock { .. })));
        assert!(region.try_read().is_ok());
        // A stream's write in another thread takes the same lock: once the thread sleeps (it has
        // nothing to wait for but the lock), it must not have written.
        let other = store.bytes("region").unwrap();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let writer = std::thread::spawn(move || {
            // SAFETY: `gettid` has no preconditions.
            tid_tx.send(unsafe { libc::gettid() }).unwrap();
            other.stream().write_all(b"later")
        });
        let tid = tid_rx.recv().unwrap();
        wait_until("the writing thread sleeps", || match thread_state(tid) {
            Some(state) => state == 'S',
            None => panic!("the writing thread ended while the read guard was held: its write did not wait"),
        });
        assert_eq!(region.version(), v1, "the stream's write waits for the read guard");
        assert_eq!(&reader[..5], b"guard");
        // And so does one in another process, which queues for the kernel's lock.
        let mut child = ChildProc::spawn("stream_write", &path, "LATER");
        child.expect("writing");
        wait_until("the child waits for the lock", || {
            if let Some(msg) = child.poll() {
                panic!("the child sent {msg:?} while the read guard was held: its write did not wait");
            }
            // OFD mode: queued for the kernel's lock; robust mode: asleep on a futex in the
            // mapping (the mutex, or the reader bitmap it waits to empty).
            someone_waits_for_a_lock_on(&path) || common::asleep_in_shared_futex(child.id(), &path) == Some(true)
        });
        assert_eq!(region.version(), v1, "the other process's write waits for the read guard");
        assert_eq!(&reader[..5], b"guard");
        drop(reader);
        writer.join().unwrap().unwrap();
        let wrote: u64 = child.expect("wrote").parse().unwrap();
        assert!(wrote > v1.get(), "the child's write is a new version");
        child.finish();
    }
    // Both writes went through, in some order, and nothing else touched the region.
    let first = region.read().unwrap()[..5].to_vec();
    assert!(first == b"later" || first == b"LATER", "one of the writes is what stays: {first:?}");
    assert_eq!(region.version().get(), v1.get() + 2);
    assert!(matches!(
        region.wait_for_change(region.version(), Duration::from_millis(20)),
        Err(Error::Timeout { waited_for: WaitedFor::Change, .. })
    ));

    // Handles clone, streams clone with their own position, and durable handles sync.
    let durable = region.clone().with_durability(shmstore::Durability::PowerLoss);
    durable.write_at(10, b"synced").unwrap();
    let mut a: ByteStream = durable.stream();
    a.set_position(10);
    let mut b = a.clone();
    let mut six = [0u8; 6];
    b.read_exact(&mut six).unwrap();
    assert_eq!((&six, a.position(), b.position()), (b"synced", 10, 16));
    assert_eq!(b.get_ref().name(), "region");
    assert_eq!(b.into_inner().len(), 64);
    assert!(format!("{region:?}").contains("region"));
}

#[test]
fn read_only_stores_refuse_stream_writes_with_the_store_error_inside() {
    let (_dir, path) = temp_store();
    Store::open_or_create(&path, MIB).unwrap().bytes_or_init("region", 8).unwrap().write_at(0, b"ro").unwrap();
    let store = Store::options().read_only(true).open(&path).unwrap();
    let region = store.bytes("region").unwrap();
    let mut stream = region.stream();
    let err = stream.write_all(b"no").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
    let inner = err.get_ref().and_then(|e| e.downcast_ref::<Error>());
    assert!(matches!(inner, Some(Error::ReadOnly { .. })), "{err:?}");
    assert_eq!(stream.position(), 0);
    let mut two = [0u8; 2];
    stream.read_exact(&mut two).unwrap();
    assert_eq!(&two, b"ro");
}

#[test]
fn a_large_region_is_sparse_and_its_views_are_bounded() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, 256 * MIB).unwrap();
    let region = store.bytes_or_init("big", 128 * MIB).unwrap();
    let on_disk = std::fs::metadata(&path).unwrap().blocks() * 512;
    assert!(on_disk < 4 * MIB, "a zero-filled region costs no disk, but the file uses {on_disk} bytes");
    region.write_at(128 * MIB - 4, b"tail").unwrap();
    let mut tail = [0u8; 4];
    region.read_at(128 * MIB - 4, &mut tail).unwrap();
    assert_eq!(&tail, b"tail");

    // A view of bytes: offsets relative to its start, checked against its end.
    let view = region.view(128 * MIB - 8..).unwrap();
    assert_eq!((view.len(), view.start()), (8, (128 * MIB - 8) as usize));
    assert_eq!(view.get(4).unwrap(), b't');
    view.write_at(0, b"head").unwrap();
    assert_eq!(&*view.read().unwrap(), b"headtail");
    assert!(matches!(view.set(8, 0), Err(Error::OutOfBounds { start: 8, end: 9, len: 8, .. })));
    assert!(matches!(region.view(0..128 * MIB + 1), Err(Error::OutOfBounds { what: "view", .. })));
    let (high, low) = (10, 5);
    assert!(matches!(region.view(high..low), Err(Error::OutOfBounds { start: 10, end: 5, .. })));
}

// ---------------------------------------------------------------------------------------------
// The stream against a model (tests/common/stream_model.rs).

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_stream_behaves_like_a_fixed_length_cursor(len in 0u64..48, ops in prop::collection::vec(op(true), 1..40)) {
        let (_dir, _store, region) = region(len);
        let mut stream = region.stream();
        let mut model = Cursor::new(vec![0u8; len as usize]);
        for (i, op) in ops.iter().enumerate() {
            let expected = on_model(&mut model, op);
            let got = on_stream(&mut stream, op);
            prop_assert_eq!(&got, &expected, "op {} {:?}", i, op);
            prop_assert_eq!(stream.position(), model.position(), "position after op {} {:?}", i, op);
            prop_assert_eq!(&contents(&region), model.get_ref(), "contents after op {} {:?}", i, op);
        }
    }
}

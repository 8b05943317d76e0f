//! `SharedBytes::stream_range`: a `ByteStream` over a window of a byte region (.NET's
//! `CreateViewStream(offset, size)`). Positions count from the window's start, reads stop at its
//! end, writes past its end are refused whole, and the bytes outside it are never touched; checked
//! case by case, against a model (`std::io::Cursor` over the window's bytes), and between
//! processes.

mod common;
#[path = "common/stream_model.rs"]
mod stream_model;

use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};
use std::ops::Range;

use common::{emit, temp_store, wait_for, ChildArgs, ChildProc};
use proptest::prelude::*;
use shmstore::{ByteStream, Error, SharedBytes, Store};
use stream_model::{on_model, on_stream, op};

const MIB: u64 = 1 << 20;

/// A store holding a region `region` of `len` bytes, each byte set to its offset modulo 251, so
/// that a byte that moved or was overwritten shows.
fn region(len: u64) -> (tempfile::TempDir, Store, SharedBytes) {
    let (dir, path) = temp_store();
    let store = Store::open_or_create(&path, MIB).unwrap();
    let bytes = store.bytes_or_init("region", len).unwrap();
    bytes.write_at(0, &pattern(len)).unwrap();
    (dir, store, bytes)
}

fn pattern(len: u64) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn contents(region: &SharedBytes) -> Vec<u8> {
    region.read().unwrap().to_vec()
}

/// Asserts that `result` is `OutOfBounds` for a `stream_range` of `start..end` of the 100-byte
/// region `region`, with a message that names the region and its length.
#[track_caller]
fn assert_refused(result: shmstore::Result<ByteStream>, start: u64, end: u64) {
    match result {
        Err(e @ Error::OutOfBounds { .. }) => {
            let message = e.to_string();
            let Error::OutOfBounds { name, what, start: s, end: en, len } = e else { unreachable!() };
            assert_eq!((name.as_str(), what, s, en, len), ("region", "stream_range", start, end, 100));
            assert!(message.contains("stream_range") && message.contains("`region`"), "{message}");
            assert!(message.contains("100"), "{message}");
        }
        Err(other) => panic!("expected OutOfBounds for {start}..{end}, got {other:?}"),
        Ok(stream) => panic!("expected OutOfBounds for {start}..{end}, got a stream over {:?}", stream.range()),
    }
}

// ---------------------------------------------------------------------------------------------
// The child side.

#[test]
#[ignore = "entry point for child processes spawned by the tests in this file"]
fn child_main() {
    let Some(args) = common::child_args() else { return };
    match args.role.as_str() {
        "read_window" => role_read_window(&args),
        other => panic!("unknown child role {other:?}"),
    }
}

/// Opens the region `region`, reads the window `arg` (`START..END`) through its own stream and
/// reports it; then, on "reply", writes `child PID` at the start of the window after it (the same
/// length, right after it) through a stream, and reports `replied PID`.
fn role_read_window(args: &ChildArgs) {
    let store = Store::open(&args.path).unwrap();
    let region = store.bytes("region").unwrap();
    let (start, end) = args.arg.split_once("..").unwrap();
    let (start, end): (u64, u64) = (start.parse().unwrap(), end.parse().unwrap());

    let mut window = region.stream_range(start..end).unwrap();
    let mut text = String::new();
    let n = window.read_to_string(&mut text).unwrap();
    emit(format!("read {n} {} {}", window.position(), text.escape_debug()));
    assert_eq!(window.read(&mut [0u8; 4]).unwrap(), 0, "a read at the window's end is EOF");

    wait_for("reply");
    let mut next = region.stream_range(end..end + (end - start)).unwrap();
    next.write_all(format!("child {}", std::process::id()).as_bytes()).unwrap();
    emit(format!("replied {}", std::process::id()));
}

// ---------------------------------------------------------------------------------------------
// Case by case.

#[test]
fn stream_is_the_stream_of_the_whole_range() {
    let (_dir, _store, region) = region(100);
    assert_eq!(region.stream().range(), 0..100);
    assert_eq!(region.stream_range(..).unwrap().range(), 0..100);
    assert_eq!(region.stream_range(0..=99).unwrap().range(), 0..100);
    assert_eq!(region.stream_range(10..).unwrap().range(), 10..100);
    assert_eq!(region.stream_range(..10).unwrap().range(), 0..10);
    assert_eq!(region.stream_range(..=10).unwrap().range(), 0..11);
    let mut whole = Vec::new();
    region.stream_range(..).unwrap().read_to_end(&mut whole).unwrap();
    assert_eq!(whole, pattern(100));
}

#[test]
fn a_window_reads_and_writes_relative_to_its_start_and_touches_nothing_outside() {
    let (_dir, _store, region) = region(100);
    let before = region.version();
    let mut window = region.stream_range(40..60).unwrap();
    assert_eq!((window.position(), window.range()), (0, 40..60));

    // Reads start at the window's start and stop at its end.
    let mut buf = [0u8; 8];
    window.read_exact(&mut buf).unwrap();
    assert_eq!(buf.to_vec(), pattern(100)[40..48]);
    let mut rest = Vec::new();
    assert_eq!(window.read_to_end(&mut rest).unwrap(), 12);
    assert_eq!(rest, pattern(100)[48..60]);
    assert_eq!(window.read(&mut buf).unwrap(), 0, "the window's end is the end of the stream");
    assert_eq!(window.position(), 20);

    // Writes land at the window's start plus the position.
    window.rewind().unwrap();
    window.write_all(b"0123456789").unwrap();
    window.write_all(b"abcdefghij").unwrap(); // exactly to the window's end
    assert_eq!(window.position(), 20);
    let mut expected = pattern(100);
    expected[40..60].copy_from_slice(b"0123456789abcdefghij");
    assert_eq!(contents(&region), expected, "only bytes 40..60 changed");
    assert_eq!(region.version().get(), before.get() + 2, "each write is one version step");

    // And are read back through the window and through the region.
    let mut text = String::new();
    window.seek(SeekFrom::Start(5)).unwrap();
    window.read_to_string(&mut text).unwrap();
    assert_eq!(text, "56789abcdefghij");
    let mut direct = [0u8; 4];
    region.read_at(50, &mut direct).unwrap();
    assert_eq!(&direct, b"abcd");
}

#[test]
fn writes_past_the_window_end_are_refused_whole() {
    let (_dir, _store, region) = region(100);
    let mut window = region.stream_range(40..50).unwrap();
    window.seek(SeekFrom::Start(6)).unwrap();
    let version = region.version();

    // 6 + 5 > 10: refused, although the region has room after the window.
    let err = window.write(b"ABCDE").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::StorageFull);
    let message = err.to_string();
    for part in ["40..50", "`region`", "10 bytes", "position 6", "nothing was written"] {
        assert!(message.contains(part), "{part:?} missing from {message}");
    }
    assert_eq!(window.write_all(b"ABCDE").unwrap_err().kind(), io::ErrorKind::StorageFull);
    assert_eq!(window.position(), 6, "a refused write does not move the position");
    assert_eq!(contents(&region), pattern(100), "a refused write writes nothing, inside or after the window");
    assert_eq!(region.version(), version);

    // A write that fits is written whole; past the end, every non-empty write is refused.
    assert_eq!(window.write(b"ABCD").unwrap(), 4);
    assert_eq!(window.write(b"!").unwrap_err().kind(), io::ErrorKind::StorageFull);
    window.seek(SeekFrom::Start(1000)).unwrap();
    assert_eq!(window.write(b"").unwrap(), 0);
    assert_eq!(window.write(b"x").unwrap_err().kind(), io::ErrorKind::StorageFull);
    let mut expected = pattern(100);
    expected[46..50].copy_from_slice(b"ABCD");
    assert_eq!(contents(&region), expected);

    // `read_exact` past the window's end fails without moving, and names the window.
    window.seek(SeekFrom::Start(8)).unwrap();
    let err = window.read_exact(&mut [0u8; 3]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    assert!(err.to_string().contains("40..50") && err.to_string().contains("2 bytes after position 8"), "{err}");
    assert_eq!(window.position(), 8);
}

#[test]
fn seeks_count_from_the_window_start_end_and_position() {
    let (_dir, _store, region) = region(100);
    let mut window = region.stream_range(30..70).unwrap();
    let mut byte = [0u8; 1];

    assert_eq!(window.seek(SeekFrom::Start(7)).unwrap(), 7);
    window.read_exact(&mut byte).unwrap();
    assert_eq!(byte[0], 37, "position 7 is byte 37 of the region");

    assert_eq!(window.seek(SeekFrom::End(-1)).unwrap(), 39, "End counts from the window's end, not the region's");
    window.read_exact(&mut byte).unwrap();
    assert_eq!(byte[0], 69);
    assert_eq!(window.seek(SeekFrom::End(0)).unwrap(), 40);
    assert_eq!(window.read(&mut byte).unwrap(), 0);

    assert_eq!(window.seek(SeekFrom::Current(-15)).unwrap(), 25);
    window.read_exact(&mut byte).unwrap();
    assert_eq!(byte[0], 55);
    assert_eq!(window.stream_position().unwrap(), 26);

    // Past the end: allowed, like a Cursor; reads give EOF there, even where the region goes on.
    assert_eq!(window.seek(SeekFrom::End(5)).unwrap(), 45);
    assert_eq!(window.read(&mut byte).unwrap(), 0, "bytes 70.. of the region are outside the window");
    assert_eq!(window.seek(SeekFrom::Current(1000)).unwrap(), 1045);
    assert_eq!(window.read_to_end(&mut Vec::new()).unwrap(), 0);

    // Before the window's start: refused, and the position stays, even where the region has bytes.
    for to in [SeekFrom::End(-41), SeekFrom::Current(-1046)] {
        let err = window.seek(to).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{to:?}");
        assert!(err.to_string().contains("before the start"), "{err}");
        assert_eq!(window.position(), 1045);
    }
    assert_eq!(window.seek(SeekFrom::End(-40)).unwrap(), 0, "exactly the window's start is fine");
    window.set_position(3);
    window.read_exact(&mut byte).unwrap();
    assert_eq!(byte[0], 33);
}

#[test]
fn io_copy_fills_a_window_and_copies_out_of_one() {
    let (_dir, _store, region) = region(100);

    // Into a window: exactly its size fits.
    let mut window = region.stream_range(20..36).unwrap();
    assert_eq!(io::copy(&mut &b"sixteen bytes!!!"[..], &mut window).unwrap(), 16);
    let mut expected = pattern(100);
    expected[20..36].copy_from_slice(b"sixteen bytes!!!");
    assert_eq!(contents(&region), expected);

    // Too much: an error, not a truncation, and nothing lands past the window.
    let mut window = region.stream_range(20..36).unwrap();
    let err = io::copy(&mut &[b'#'; 17][..], &mut window).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::StorageFull);
    assert_eq!(contents(&region)[36..], pattern(100)[36..], "nothing after the window changed");

    // Out of a window: exactly its bytes.
    let mut out = Vec::new();
    assert_eq!(io::copy(&mut region.stream_range(20..36).unwrap(), &mut out).unwrap(), 16);
    assert_eq!(out, contents(&region)[20..36]);
    let mut tail = Vec::new();
    assert_eq!(io::copy(&mut region.stream_range(90..).unwrap(), &mut tail).unwrap(), 10);
    assert_eq!(tail, pattern(100)[90..]);

    // Window to window, through a BufReader: the region copies a slice of itself.
    let mut from = io::BufReader::with_capacity(4, region.stream_range(0..10).unwrap());
    let mut to = region.stream_range(80..90).unwrap();
    assert_eq!(io::copy(&mut from, &mut to).unwrap(), 10);
    assert_eq!(contents(&region)[80..90], pattern(100)[0..10]);
}

#[test]
fn a_window_at_the_end_of_the_region() {
    let (_dir, _store, region) = region(100);
    let mut last = region.stream_range(92..).unwrap();
    assert_eq!(last.range(), 92..100);
    last.write_all(b"the end!").unwrap();
    assert_eq!(last.write(b"?").unwrap_err().kind(), io::ErrorKind::StorageFull);
    assert_eq!(&contents(&region)[92..], b"the end!");
    assert_eq!(last.seek(SeekFrom::End(-4)).unwrap(), 4);
    let mut text = String::new();
    last.read_to_string(&mut text).unwrap();
    assert_eq!(text, "end!");

    let mut also_last = region.stream_range(92..=99).unwrap();
    assert_eq!(also_last.range(), 92..100);
    let mut all = Vec::new();
    also_last.read_to_end(&mut all).unwrap();
    assert_eq!(all, b"the end!");
}

#[test]
fn an_empty_window_reads_nothing_and_refuses_every_write() {
    let (_dir, store, region) = region(100);
    for range in [0..0, 50..50, 100..100] {
        let mut empty = region.stream_range(range.clone()).unwrap();
        assert_eq!(empty.range(), range);
        assert_eq!(empty.read(&mut [0u8; 4]).unwrap(), 0, "{range:?}");
        assert_eq!(empty.read_to_end(&mut Vec::new()).unwrap(), 0);
        empty.read_exact(&mut []).unwrap();
        assert_eq!(empty.write(b"").unwrap(), 0);
        assert_eq!(empty.write(b"x").unwrap_err().kind(), io::ErrorKind::StorageFull);
        assert_eq!(empty.seek(SeekFrom::End(0)).unwrap(), 0);
        assert_eq!(empty.seek(SeekFrom::End(-1)).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(empty.seek(SeekFrom::Start(3)).unwrap(), 3);
        assert_eq!(empty.write(b"x").unwrap_err().kind(), io::ErrorKind::StorageFull);
    }
    assert_eq!(contents(&region), pattern(100));

    // An empty region has exactly one window, the empty one.
    let nothing = store.bytes_or_init("nothing", 0).unwrap();
    assert_eq!(nothing.stream_range(..).unwrap().range(), 0..0);
    assert!(matches!(nothing.stream_range(0..1), Err(Error::OutOfBounds { end: 1, len: 0, .. })));
}

#[test]
fn out_of_range_windows_are_refused() {
    let (_dir, _store, region) = region(100);
    assert_refused(region.stream_range(90..101), 90, 101);
    assert_refused(region.stream_range(0..=100), 0, 101);
    assert_refused(region.stream_range(101..), 101, 100);
    assert_refused(region.stream_range(100..=100), 100, 101);
    assert_refused(region.stream_range(1 << 40..(1 << 40) + 10), 1 << 40, (1 << 40) + 10);
    let (high, low) = (60, 50);
    assert_refused(region.stream_range(high..low), 60, 50);
    // Bounds at the ends of u64 saturate instead of wrapping around to a valid window.
    assert_refused(region.stream_range(..=u64::MAX), 0, u64::MAX);
    assert_refused(
        region.stream_range((std::ops::Bound::Excluded(u64::MAX), std::ops::Bound::Unbounded)),
        u64::MAX,
        100,
    );
    assert_eq!(contents(&region), pattern(100));
}

// ---------------------------------------------------------------------------------------------
// Between processes.

#[test]
fn another_process_reads_what_a_window_wrote_and_writes_the_next_one() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, MIB).unwrap();
    let region = store.bytes_or_init("region", 256).unwrap();
    region.write_at(0, &[b'.'; 256]).unwrap();

    // The second 32-byte record, written through a window.
    let mut record = region.stream_range(32..64).unwrap();
    write!(record, "record #{} from pid {}", 2, std::process::id()).unwrap();
    let written = format!("record #2 from pid {}", std::process::id());
    let expected_window = format!("{written}{}", ".".repeat(32 - written.len()));

    let mut child = ChildProc::spawn("read_window", &path, "32..64");
    assert_eq!(child.expect("read "), format!("32 32 {expected_window}"));

    // The child writes the third record through its own window; this process sees it.
    child.send("reply");
    let pid = child.expect("replied ");
    child.finish();
    let mut third = String::new();
    region.stream_range(64..96).unwrap().read_to_string(&mut third).unwrap();
    let line = format!("child {pid}");
    assert_eq!(third, format!("{line}{}", ".".repeat(32 - line.len())));
    let mut around = contents(&region);
    around.drain(32..96);
    assert_eq!(around, vec![b'.'; 192], "nothing outside the two windows was written");
}

// ---------------------------------------------------------------------------------------------
// Against a model: a window stream behaves like a `Cursor` over a fixed-length buffer holding
// the window's bytes (with the stream's rule that a write that does not fit writes nothing), and
// the region outside the window never changes.

/// A region length and a window within it.
fn window() -> impl Strategy<Value = (u64, Range<u64>)> {
    (0u64..48, 0u64..=48, 0u64..=48).prop_map(|(len, a, b)| (len, a.min(b).min(len)..a.max(b).min(len)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn a_window_stream_behaves_like_a_cursor_over_the_window(
        (len, range) in window(),
        ops in prop::collection::vec(op(false), 1..40),
    ) {
        let (_dir, _store, region) = region(len);
        let mut stream = region.stream_range(range.clone()).unwrap();
        let mut full = pattern(len);
        let (start, end) = (range.start as usize, range.end as usize);
        let mut model = Cursor::new(full[start..end].to_vec());
        for (i, op) in ops.iter().enumerate() {
            let expected = on_model(&mut model, op);
            let got = on_stream(&mut stream, op);
            prop_assert_eq!(&got, &expected, "op {} {:?}", i, op);
            prop_assert_eq!(stream.position(), model.position(), "position after op {} {:?}", i, op);
            full[start..end].copy_from_slice(model.get_ref());
            prop_assert_eq!(&contents(&region), &full, "contents after op {} {:?}", i, op);
        }
    }
}

//! A `ByteStream` against a model: `Cursor<Vec<u8>>` of the same fixed length, with the rule that
//! a write that does not fit writes nothing (and `read_exact` that cannot be filled reads nothing).
//! Used by `tests/bytes.rs` (whole-region streams) and `tests/stream_range.rs` (windows).

use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};

use proptest::prelude::*;
use shmstore::{ByteStream, Error};

/// One operation on a stream, or on the region under it.
#[derive(Debug, Clone)]
pub enum Op {
    Read(usize),
    ReadExact(usize),
    ReadToEnd,
    Write(Vec<u8>),
    Seek(SeekFrom),
    /// A write through the region's handle, not the stream (at the region's offset).
    WriteAt(u64, Vec<u8>),
}

/// Operations on streams of up to 80 bytes; `WriteAt` only if `write_at` (its offsets are the
/// region's, which only the whole-region model shares with the stream).
pub fn op(write_at: bool) -> BoxedStrategy<Op> {
    let data = || prop::collection::vec(any::<u8>(), 0..24);
    let stream_ops = prop_oneof![
        (0usize..24).prop_map(Op::Read),
        (0usize..24).prop_map(Op::ReadExact),
        Just(Op::ReadToEnd),
        data().prop_map(Op::Write),
        (0u64..80).prop_map(|n| Op::Seek(SeekFrom::Start(n))),
        (-80i64..40).prop_map(|n| Op::Seek(SeekFrom::End(n))),
        (-80i64..80).prop_map(|n| Op::Seek(SeekFrom::Current(n))),
    ];
    if write_at {
        prop_oneof![7 => stream_ops, 1 => (0u64..70, data()).prop_map(|(at, d)| Op::WriteAt(at, d))].boxed()
    } else {
        stream_ops.boxed()
    }
}

/// What an operation gave: the bytes read or the count written, or the error's kind.
pub type Outcome = Result<(usize, Vec<u8>), io::ErrorKind>;

/// The operation on the model, with the stream's rules for what does not fit.
pub fn on_model(model: &mut Cursor<Vec<u8>>, op: &Op) -> Outcome {
    let len = model.get_ref().len() as u64;
    let remaining = len.saturating_sub(model.position()) as usize;
    match op {
        Op::Read(n) => {
            let mut buf = vec![0u8; *n];
            let k = model.read(&mut buf).map_err(|e| e.kind())?;
            Ok((k, buf[..k].to_vec()))
        }
        Op::ReadExact(n) if *n > remaining => Err(io::ErrorKind::UnexpectedEof),
        Op::ReadExact(n) => {
            let mut buf = vec![0u8; *n];
            model.read_exact(&mut buf).map_err(|e| e.kind())?;
            Ok((*n, buf))
        }
        Op::ReadToEnd => {
            let mut buf = Vec::new();
            let k = model.read_to_end(&mut buf).map_err(|e| e.kind())?;
            Ok((k, buf))
        }
        Op::Write(data) if data.is_empty() => Ok((0, Vec::new())),
        Op::Write(data) if data.len() > remaining => Err(io::ErrorKind::StorageFull),
        Op::Write(data) => {
            let k = model.write(data).map_err(|e| e.kind())?;
            assert_eq!(model.get_ref().len() as u64, len, "the model never grows");
            Ok((k, Vec::new()))
        }
        Op::Seek(to) => model.seek(*to).map(|p| (p as usize, Vec::new())).map_err(|e| e.kind()),
        Op::WriteAt(at, data) => match at.checked_add(data.len() as u64) {
            Some(end) if end <= len => {
                model.get_mut()[*at as usize..end as usize].copy_from_slice(data);
                Ok((data.len(), Vec::new()))
            }
            _ => Err(io::ErrorKind::InvalidInput),
        },
    }
}

/// The operation on the stream (`WriteAt` through the region the stream reads).
pub fn on_stream(stream: &mut ByteStream, op: &Op) -> Outcome {
    match op {
        Op::Read(n) => {
            let mut buf = vec![0u8; *n];
            let k = stream.read(&mut buf).map_err(|e| e.kind())?;
            Ok((k, buf[..k].to_vec()))
        }
        Op::ReadExact(n) => {
            let mut buf = vec![0u8; *n];
            stream.read_exact(&mut buf).map_err(|e| e.kind())?;
            Ok((*n, buf))
        }
        Op::ReadToEnd => {
            let mut buf = Vec::new();
            let k = stream.read_to_end(&mut buf).map_err(|e| e.kind())?;
            Ok((k, buf))
        }
        Op::Write(data) => stream.write(data).map(|k| (k, Vec::new())).map_err(|e| e.kind()),
        Op::Seek(to) => stream.seek(*to).map(|p| (p as usize, Vec::new())).map_err(|e| e.kind()),
        Op::WriteAt(at, data) => match stream.get_ref().write_at(*at, data) {
            Ok(()) => Ok((data.len(), Vec::new())),
            Err(Error::OutOfBounds { .. }) => Err(io::ErrorKind::InvalidInput),
            Err(e) => panic!("write_at failed unexpectedly: {e}"),
        },
    }
}

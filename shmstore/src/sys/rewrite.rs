//! Platform support for rewriting a store file offline (`compact`, `upgrade`): copying byte
//! ranges between files while keeping holes as holes, and finding the processes that hold a
//! file's `flock`.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};

/// How many times [`flock_holders`] reads `/proc/locks`.
const HOLDER_PASSES: usize = 4;

/// The largest piece [`copy_sparse`] reads into memory at once.
const COPY_CHUNK: usize = 1 << 20;

/// `lseek(fd, offset, whence)` for `SEEK_DATA`/`SEEK_HOLE`: `Ok(None)` where the kernel says there
/// is no more data (`ENXIO`).
fn seek(file: &File, offset: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
    let offset = libc::off_t::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `lseek` only acts on the descriptor, which `file` keeps open for the call; it
    // touches no user memory. It moves the description's file offset, which nothing here relies
    // on (all reads and writes are positional).
    let at = unsafe { libc::lseek(file.as_raw_fd(), offset, whence) };
    if at >= 0 {
        return Ok(Some(at as u64));
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ENXIO) => Ok(None),
        _ => Err(err),
    }
}

/// Copies bytes `src_offset..src_offset + len` of `src` to `dst` at `dst_offset`, skipping the
/// holes of the source (`SEEK_DATA`/`SEEK_HOLE`): what is a hole there stays unwritten here, so a
/// sparse store stays sparse. `dst` must read as zeros where nothing is copied (a new file, or
/// one just extended with `set_len`). Returns how many bytes were written. Bytes of the range
/// past the end of `src` read as zeros and are not written either.
///
/// File systems that do not report holes treat the whole file as data, and everything is copied.
pub(crate) fn copy_sparse(src: &File, src_offset: u64, dst: &File, dst_offset: u64, len: u64) -> io::Result<u64> {
    let end = src_offset.checked_add(len).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    dst_offset.checked_add(len).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut buf = vec![0u8; COPY_CHUNK.min(usize::try_from(len).unwrap_or(COPY_CHUNK))];
    let mut at = src_offset;
    let mut written = 0;
    while at < end {
        let Some(data) = seek(src, at, libc::SEEK_DATA)? else { break };
        if data >= end {
            break;
        }
        // The end of the file counts as a hole, so this always answers for an offset with data.
        let hole = seek(src, data, libc::SEEK_HOLE)?.unwrap_or(end).min(end);
        let mut pos = data;
        while pos < hole {
            let n = usize::try_from(hole - pos).unwrap_or(buf.len()).min(buf.len());
            let got = read_full(src, &mut buf[..n], pos)?;
            if got == 0 {
                // The file ended (it shrank under us): the rest reads as zeros.
                return Ok(written);
            }
            dst.write_all_at(&buf[..got], dst_offset + (pos - src_offset))?;
            written += got as u64;
            pos += got as u64;
        }
        at = hole.max(data + 1);
    }
    Ok(written)
}

/// Reads into `buf` at `offset` until it is full or the file ends; returns the bytes read.
fn read_full(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The processes that hold a `flock` on the file `file` is open on, as the kernel lists them in
/// `/proc/locks`: for each, its pid and its command name (`/proc/PID/comm`, empty if unknown).
/// Sorted by pid, without duplicates; this process is listed too if it holds one (through another
/// descriptor).
///
/// The kernel records the pid of the process that took the lock; a descriptor inherited by a
/// child keeps the lock under its parent's pid, so the list names who to look at, not
/// necessarily every process involved; and on a busy machine a holder can still be missed (see
/// the body). Empty when `/proc/locks` cannot be read.
pub(crate) fn flock_holders(file: &File) -> Vec<(u32, String)> {
    let Ok(meta) = file.metadata() else { return Vec::new() };
    // The kernel produces `/proc/locks` a page per `read`, and locks taken or dropped between two
    // reads shift the listing, so that one pass can skip a line: the union of a few passes.
    let mut pids = Vec::new();
    for _ in 0..HOLDER_PASSES {
        let Ok(locks) = std::fs::read_to_string("/proc/locks") else { break };
        pids.extend(holders_in(&locks, meta.dev(), meta.ino()));
    }
    pids.sort_unstable();
    pids.dedup();
    pids.into_iter()
        .map(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            (pid, comm.trim_end().to_owned())
        })
        .collect()
}

/// The pids of the `FLOCK` lines of a `/proc/locks` text that lock the file `dev`/`ino`; sorted,
/// without duplicates. A line reads `1: FLOCK  ADVISORY  READ  1234 08:01:131090 0 EOF`, with
/// the device's major and minor numbers in hex; lines of waiters start with `->` and are skipped.
fn holders_in(locks: &str, dev: u64, ino: u64) -> Vec<u32> {
    let want = format!("{:02x}:{:02x}:{ino}", libc::major(dev), libc::minor(dev));
    let mut pids: Vec<u32> = locks
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let _ordinal = words.next().filter(|w| w.ends_with(':'))?;
            if words.next()? != "FLOCK" {
                return None;
            }
            let _advisory = words.next()?;
            let _mode = words.next()?;
            let pid = words.next()?.parse::<u32>().ok().filter(|&p| p > 0)?;
            (words.next()? == want).then_some(pid)
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_ranges(file: &File, len: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut at = 0;
        while let Some(data) = seek(file, at, libc::SEEK_DATA).unwrap() {
            let hole = seek(file, data, libc::SEEK_HOLE).unwrap().unwrap().min(len);
            out.push((data, hole));
            at = hole;
            if at >= len {
                break;
            }
        }
        out
    }

    #[test]
    fn copy_sparse_copies_the_data_and_keeps_the_holes() {
        let dir = tempfile::tempdir().unwrap();
        let src =
            File::options().read(true).write(true).create(true).truncate(true).open(dir.path().join("src")).unwrap();
        let len = 8u64 << 20;
        src.set_len(len).unwrap();
        // Two islands of data in a sea of holes, one crossing a 1 MiB chunk boundary.
        src.write_all_at(&[0xAB; 5000], 4096).unwrap();
        src.write_all_at(&vec![0xCD; 3 << 20], 3 << 20).unwrap();
        if data_ranges(&src, len).len() < 2 {
            eprintln!("skipped: this file system does not report holes");
            return;
        }
        let dst =
            File::options().read(true).write(true).create(true).truncate(true).open(dir.path().join("dst")).unwrap();
        dst.set_len(len + 65536).unwrap();
        let written = copy_sparse(&src, 0, &dst, 65536, len).unwrap();
        // Whole pages of data are copied; the holes are not written.
        assert!((5000 + (3 << 20)..=8192 + (3 << 20)).contains(&written), "{written}");
        let mut got = vec![0u8; len as usize];
        dst.read_exact_at(&mut got, 65536).unwrap();
        let mut want = vec![0u8; len as usize];
        want[4096..9096].fill(0xAB);
        want[3 << 20..6 << 20].fill(0xCD);
        assert!(got == want, "the copy differs from the source");
        let ranges = data_ranges(&dst, len + 65536);
        assert!(
            ranges
                .iter()
                .all(|&(a, b)| b <= 65536 + 8192 + 4096
                    || (a >= 65536 + (3 << 20) - 4096 && b <= 65536 + (6 << 20) + 4096)),
            "{ranges:?}"
        );
    }

    #[test]
    fn copy_sparse_copies_a_middle_range_and_stops_at_the_end_of_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let src =
            File::options().read(true).write(true).create(true).truncate(true).open(dir.path().join("src")).unwrap();
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        src.write_all_at(&bytes, 0).unwrap();
        let dst =
            File::options().read(true).write(true).create(true).truncate(true).open(dir.path().join("dst")).unwrap();
        // A range reaching past the end of the source: only what exists is copied.
        assert_eq!(copy_sparse(&src, 90_000, &dst, 10, 20_000).unwrap(), 10_000);
        let mut got = vec![0u8; 10_010];
        dst.read_exact_at(&mut got, 0).unwrap();
        assert_eq!(&got[..10], &[0; 10]);
        assert_eq!(&got[10..], &bytes[90_000..]);
        assert!(copy_sparse(&src, u64::MAX - 1, &dst, 0, 10).is_err());
    }

    #[test]
    fn holders_are_read_from_flock_lines_of_the_file() {
        let locks = "\
1: POSIX  ADVISORY  WRITE 77 08:01:42 0 EOF
2: FLOCK  ADVISORY  READ  1234 08:01:42 0 EOF
3: FLOCK  ADVISORY  READ  99 08:01:43 0 EOF
4: OFDLCK ADVISORY  READ  -1 08:01:42 0 0
5: FLOCK  ADVISORY  WRITE 55 103:0a:42 0 EOF
6: FLOCK  ADVISORY  READ  1234 08:01:42 0 EOF
7: -> FLOCK  ADVISORY  WRITE 66 08:01:42 0 EOF
8: FLOCK  ADVISORY  READ  12 08:01:42 0 EOF
";
        assert_eq!(holders_in(locks, libc::makedev(8, 1), 42), [12, 1234]);
        assert_eq!(holders_in(locks, libc::makedev(0x103, 0x0a), 42), [55]);
        assert_eq!(holders_in(locks, libc::makedev(8, 1), 7), Vec::<u32>::new());
    }
}

//! Offline maintenance of a store file, while no process has it open: [`compact`] rewrites a
//! store without holes, free space or leaks, and [`upgrade`] converts a store of format version 1
//! to version 2 in place.
//!
//! Both write a complete new file beside the original and rename it over the original
//! ([`exclusive`]), so a crash at any instant leaves the old store or the new one, never a mix.

mod exclusive;
mod image;
mod source;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::v2::header::LockMode;
use exclusive::Exclusive;

/// What [`compact`] or [`upgrade`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RewriteReport {
    /// The format version the file had: 1 or 2.
    pub from_version: u32,
    /// Whether the file was rewritten (`false` only for [`upgrade`] of a version-2 store, which
    /// has nothing to do).
    pub rewritten: bool,
    /// The entries the store holds (before and after: every entry is kept).
    pub entries: usize,
    /// Catalog records that were not carried over because no name leads to them any more: the
    /// records that migrations replaced, and those of migrations that never committed (version
    /// 1 only; 0 otherwise).
    pub dropped_records: usize,
    /// The file's length before, in bytes.
    pub len_before: u64,
    /// The file's length after, in bytes.
    pub len_after: u64,
    /// The disk space the file used before, in bytes (its allocated blocks; holes take none).
    pub disk_before: u64,
    /// The disk space the file uses after, in bytes.
    pub disk_after: u64,
    /// Temporary files of earlier rewrites of this store whose process died, removed on the way.
    pub leftovers_removed: Vec<PathBuf>,
}

/// Rewrites the store at `path` without holes: every entry is kept (names, layouts, values,
/// versions), and the space of removed, resized and migrated entries, the free lists, leaked
/// space and the room past the last entry are dropped, so that the file shrinks to what its
/// entries need. A store of format version 1 comes out as version 2, as from [`upgrade`].
///
/// Only while no process has the store open: it takes the store file's lock exclusively, without
/// waiting, and fails with [`Error::InUse`] (naming the processes that hold it, where the kernel
/// tells) otherwise. While it runs, other opens fail with [`Error::Busy`] (or wait, with
/// [`OpenOptions::lock_timeout`](crate::OpenOptions::lock_timeout)). The new store is written to a
/// temporary file beside the original (`.NAME.PID.NANOS.upgrading`), opened read-only as a check
/// (it must list every entry), made durable, and renamed over it, so a crash at any point leaves either the old store or the new one, whole; the next
/// run removes the temporary files of runs that died. Holes in entry data (sparse regions never
/// written) stay holes. A corrupt store is refused ([`Error::Corrupt`], [`Error::BadChecksum`])
/// and left as it is. A symbolic link is followed: the file it names is rewritten; a file with
/// other hard links is refused ([`Error::HardLinked`]), since the other names would keep the old
/// store. The new file gets the old one's owner, group and permission bits (extended attributes
/// and ACLs are not carried over).
///
/// The store's lock mode is kept (a version-1 store gets
/// [`OFD`](crate::format::v2::header::LockMode::Ofd) locks, the kernel byte-range locks it had).
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("app.shm");
/// let store = shmstore::Store::open_or_create(&path, 64 << 20)?;
/// store.array_or_init("samples", 1000, 0.0f64)?;
/// store.close()?;
///
/// let report = shmstore::compact(&path)?;
/// assert_eq!(report.entries, 1);
/// assert!(report.len_after < report.len_before);
/// let samples = shmstore::Store::open(&path)?.array::<f64>("samples")?;
/// assert_eq!(samples.len(), 1000);
/// # Ok::<(), shmstore::Error>(())
/// ```
pub fn compact(path: impl AsRef<Path>) -> Result<RewriteReport> {
    rewrite(path.as_ref(), "compact", false)
}

/// Converts the store at `path` from format version 1 to version 2, in place: every entry keeps
/// its name, kind, layout, value and version; a migrated entry keeps its current layout and value
/// (the records the migration replaced are dropped). A store that already has format version 2 is
/// left untouched (the report says `rewritten: false`).
///
/// It works like [`compact`], and so also compacts: only while no process has the store open
/// ([`Error::InUse`] otherwise), through a temporary file renamed over the original, so that a
/// crash leaves the version-1 store or the version-2 one, whole. The new store uses
/// [`OFD`](crate::format::v2::header::LockMode::Ofd) locks, the kernel byte-range locks of version
/// 1, so that nothing about how its processes must run changes.
///
/// A version-1 store can be opened read-only by this build; opening it read-write fails with an
/// error that names `shmstore upgrade FILE`, the command that calls this.
///
/// ```no_run
/// let report = shmstore::upgrade("/var/lib/app/state.shm")?;
/// println!("{} entries now in format 2", report.entries);
/// # Ok::<(), shmstore::Error>(())
/// ```
pub fn upgrade(path: impl AsRef<Path>) -> Result<RewriteReport> {
    rewrite(path.as_ref(), "upgrade", true)
}

/// Opens the new store at `temp_path` read-only, as any process will open it, and has it list
/// its entries (which checks every block): it must find the `entries` the source had. The new
/// file replaces the original only if it passes; otherwise the original is left as it is, and the
/// error says that this is a bug.
fn check_image(path: &Path, temp_path: &Path, entries: usize) -> Result<()> {
    let bug = |detail: String| Error::Corrupt {
        path: path.to_owned(),
        detail: format!(
            "the rewritten store failed its check ({detail}), so the original was left as it is; this is a bug in \
             shmstore, please report it"
        ),
    };
    let store = crate::Store::options().read_only(true).open(temp_path).map_err(|e| bug(e.to_string()))?;
    let listed = store.entries().map_err(|e| bug(e.to_string()))?.len();
    if listed != entries {
        return Err(bug(format!("it lists {listed} entries instead of {entries}")));
    }
    Ok(())
}

/// The work of [`compact`] and [`upgrade`]: with `only_v1`, a version-2 store is left alone.
fn rewrite(path: &Path, action: &'static str, only_v1: bool) -> Result<RewriteReport> {
    let ex = Exclusive::take(path, action)?;
    let leftovers_removed = exclusive::remove_leftovers(&ex);
    let stat =
        |file: &std::fs::File| file.metadata().map_err(|e| Error::Io { op: "stat", path: path.to_owned(), source: e });
    let before = stat(ex.file())?;
    let source = source::read(ex.path(), ex.file())?;
    let mut report = RewriteReport {
        from_version: source.version,
        rewritten: false,
        entries: source.entries.len(),
        dropped_records: source.dropped,
        len_before: before.len(),
        len_after: before.len(),
        disk_before: before.blocks() * 512,
        disk_after: before.blocks() * 512,
        leftovers_removed,
    };
    if only_v1 && source.version != 1 {
        return Ok(report);
    }
    let lock_mode = source.lock_mode.unwrap_or(LockMode::Ofd);
    let (len, disk) = ex.replace(|temp_path, temp| {
        let image = image::write(path, &source, ex.file(), temp, lock_mode)?;
        check_image(path, temp_path, source.entries.len())?;
        let after = stat(temp)?;
        Ok((image.len, after.blocks() * 512))
    })?;
    report.rewritten = true;
    report.len_after = len;
    report.disk_after = disk;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::fs::{self, File};
    use std::os::unix::fs::{FileExt, MetadataExt};

    use super::*;
    use crate::format::entry::EntryKind;

    /// The golden version-1 store, copied into a temporary directory.
    fn golden_copy() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.shm");
        fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/golden/v1.shm"), &path).unwrap();
        (dir, path)
    }

    /// Every entry of the store at `path`, with its data bytes.
    fn contents(path: &Path) -> (source::Source, Vec<Vec<u8>>) {
        let file = File::open(path).unwrap();
        let mut src = source::read(path, &file).unwrap();
        // Version 1 lists entries in catalog order, version 2 in index order.
        src.entries.sort_by(|a, b| a.entry.name.cmp(&b.entry.name));
        let data = src
            .entries
            .iter()
            .map(|e| {
                let r = e.entry.data_range().unwrap();
                let mut buf = vec![0u8; (r.end - r.start) as usize];
                file.read_exact_at(&mut buf, r.start).unwrap();
                buf
            })
            .collect();
        (src, data)
    }

    /// The encoded schema of `e` in the store at `path`.
    fn schema_of(path: &Path, e: &crate::format::entry::Entry) -> Vec<u8> {
        let mut buf = vec![0u8; e.schema_len as usize];
        File::open(path).unwrap().read_exact_at(&mut buf, e.schema_offset).unwrap();
        crate::format::schema::decode(&buf).unwrap();
        buf
    }

    #[test]
    fn upgrade_carries_every_entry_of_the_golden_v1_store_over_byte_for_byte() {
        let (dir, path) = golden_copy();
        let before_copy = dir.path().join("before.shm");
        fs::copy(&path, &before_copy).unwrap();
        let (before, before_data) = contents(&path);
        assert_eq!(before.version, 1);
        assert!(before.entries.len() >= 6, "{before:?}");
        // The golden store holds a migrated entry: its replaced record is dropped.
        assert!(before.dropped >= 1, "{before:?}");

        let report = upgrade(&path).unwrap();
        assert_eq!((report.from_version, report.rewritten, report.entries), (1, true, before.entries.len()));
        assert_eq!(report.dropped_records, before.dropped);
        assert_eq!(report.len_after, fs::metadata(&path).unwrap().len());

        let (after, after_data) = contents(&path);
        assert_eq!((after.version, after.dropped, after.lock_mode), (2, 0, Some(LockMode::Ofd)));
        assert_eq!(after.created_unix_nanos, before.created_unix_nanos);
        assert_eq!(after.entries.len(), before.entries.len());
        for ((a, b), (ad, bd)) in after.entries.iter().zip(&before.entries).zip(after_data.iter().zip(&before_data)) {
            let (a, b) = (&a.entry, &b.entry);
            assert_eq!(
                (
                    &a.name,
                    a.kind,
                    a.slot_count,
                    a.version,
                    a.fingerprint,
                    a.elem_size,
                    a.elem_align,
                    a.count,
                    a.slot_stride
                ),
                (
                    &b.name,
                    b.kind,
                    b.slot_count,
                    b.version,
                    b.fingerprint,
                    b.elem_size,
                    b.elem_align,
                    b.count,
                    b.slot_stride
                ),
            );
            assert!(ad == bd, "the data of `{}` differs", a.name);
        }
        for (a, b) in after.entries.iter().zip(&before.entries) {
            assert_eq!(a.seq, b.seq, "{}", a.entry.name);
            assert_eq!(schema_of(&path, &a.entry), schema_of(&before_copy, &b.entry), "{}", a.entry.name);
        }
        assert!(before.entries.iter().any(|e| e.entry.kind == EntryKind::Bytes));

        // A second upgrade has nothing to do; compact rewrites, keeping everything.
        let again = upgrade(&path).unwrap();
        assert_eq!((again.from_version, again.rewritten), (2, false));
        let ino = fs::metadata(&path).unwrap().ino();
        let compacted = compact(&path).unwrap();
        assert!(compacted.rewritten);
        assert_ne!(fs::metadata(&path).unwrap().ino(), ino);
        let (third, third_data) = contents(&path);
        assert_eq!(third_data, after_data);
        assert_eq!(third.entries.len(), after.entries.len());
    }

    #[test]
    fn a_corrupt_store_is_refused_and_left_as_it_was() {
        let (_dir, path) = golden_copy();
        let pristine = fs::read(&path).unwrap();
        // A flipped bit in the first catalog record's static part.
        let mut bad = pristine.clone();
        let header = crate::format::header::Header::decode(&bad).unwrap();
        let first_live = (0..header.catalog_slots as usize)
            .map(|s| header.catalog_offset as usize + s * 256)
            .find(|&at| bad[at..at + 4] != [0; 4])
            .unwrap();
        bad[first_live + 8 + 20] ^= 1;
        fs::write(&path, &bad).unwrap();
        let err = upgrade(&path).unwrap_err();
        assert!(matches!(err, Error::BadChecksum { .. }), "{err}");
        assert!(fs::read(&path).unwrap() == bad, "a refused upgrade must not touch the file");
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
        // Not a store at all.
        fs::write(&path, b"hello").unwrap();
        assert!(matches!(compact(&path), Err(Error::NotAStore { .. })));
    }
}

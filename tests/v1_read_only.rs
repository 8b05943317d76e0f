//! Format-v1 files are read with the version-1 checks, read-only: every damaged byte of the
//! golden v1 file's header and catalog records is refused, as version 1 refused it, and nothing
//! is ever written to a v1 file.

mod common;

use std::fs;

use shmstore::format::entry::Entry;
use shmstore::format::header::Header;
use shmstore::{Error, Store};

fn golden_copy() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.shm");
    fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/v1.shm"), &path).unwrap();
    (dir, path)
}

#[test]
fn every_damaged_header_or_record_byte_of_a_v1_file_is_refused() {
    let (_dir, path) = golden_copy();
    let good = fs::read(&path).unwrap();
    let header = Header::decode(&good).unwrap();
    // The static header (128 bytes), and the static part (bytes 8..184) of every record in use.
    let mut positions: Vec<usize> = (0..128).collect();
    let mut records = 0;
    for slot in 0..header.catalog_slots as usize {
        let at = 512 + 256 * slot;
        if common::read_u32_ne(&good, at) == 0 {
            continue;
        }
        assert!(Entry::decode(&good[at + 8..], &header, slot as u32, good.len() as u64).is_ok());
        positions.extend(at + 8..at + 184);
        records += 1;
    }
    assert!(records >= 6, "the golden file holds its entries");
    for at in positions {
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        fs::write(&path, &bad).unwrap();
        match Store::options().read_only(true).open(&path) {
            Err(Error::NotAStore { .. } | Error::UnsupportedFormat { .. } | Error::BadChecksum { .. }) => {}
            Err(Error::Corrupt { .. }) => {}
            other => panic!("byte {at} flipped: {other:?}"),
        }
        assert!(fs::read(&path).unwrap() == bad, "byte {at}: a refused read-only open wrote to the file");
    }
    fs::write(&path, &good).unwrap();
    Store::options().read_only(true).open(&path).unwrap();
    assert!(fs::read(&path).unwrap() == good, "a read-only open of a v1 file wrote to it");
}

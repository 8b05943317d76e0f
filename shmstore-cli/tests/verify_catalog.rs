//! `shmstore verify` refuses exactly what the library refuses when it reads the whole catalog
//! (`Store::open` then `Store::entries`, which checks every entry block), with the same words:
//! blocks that each look sound but together are not (crafted through the library's format
//! module, with valid checksums), files shorter than their header says, and schemas too long to
//! read.

mod common;

use std::fs;
use std::path::Path;

use common::{build, poke, shmstore, temp_store};
use shmstore::format::entry::Entry;
use shmstore::format::v2::block;
use shmstore::format::v2::free::FreeExtent;
use shmstore::format::v2::header::{
    ALLOC_END as ALLOC_END_OFFSET, CAPACITY as CAPACITY_OFFSET, DATA_OFFSET, FREE_BLOCKS, FREE_EXTENTS,
};
use shmstore::Store;

/// The block of entry `name`: its file offset, its serial and its decoded static part.
fn record(path: &Path, name: &str) -> (u64, u64, Entry) {
    let at = Store::options().read_only(true).open(path).unwrap().entry_info(name).unwrap().record_offset;
    let bytes = fs::read(path).unwrap();
    let start = (at + block::STATIC_OFFSET) as usize;
    let b = block::decode(&bytes[start..], at, u64::MAX).unwrap();
    (at, b.serial, b.entry)
}

/// Decodes the block of `name`, lets `edit` change it, and writes it back with a valid checksum.
/// Returns the block's offset.
fn edit(path: &Path, name: &str, edit: impl FnOnce(&mut Entry)) -> u64 {
    let (at, serial, mut entry) = record(path, name);
    edit(&mut entry);
    poke(path, at + block::STATIC_OFFSET, &block::encode(&entry, serial));
    at
}

/// `shmstore verify` fails with exit status 2 and exactly the message of the library's refusal
/// to open the store and list its entries; returns the message.
#[track_caller]
fn verify_refuses_as_open_does(path: &Path) -> String {
    let message = match Store::open(path).and_then(|s| s.entries()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("the library accepted {}", path.display()),
    };
    let run = shmstore(["verify".as_ref(), path.as_os_str()]);
    let line = run.fails(2, "");
    assert_eq!(line, format!("shmstore: {message}"), "{run:#?}");
    assert_eq!(run.stdout, "");
    message
}

#[test]
fn overlapping_entries_are_refused_with_opens_words() {
    let (_dir, path) = temp_store("overlap.shm");
    build(&path);
    let good = fs::read(&path).unwrap();
    let (samples_at, _, samples) = record(&path, "samples");

    edit(&path, "rows", |e| e.data_offset = samples.data_offset + 8);
    let message = verify_refuses_as_open_does(&path);
    assert!(message.contains("entry `rows`") && message.contains("entry `samples`"), "{message}");
    assert!(message.contains("overlaps"), "{message}");

    fs::write(&path, &good).unwrap();
    edit(&path, "config", |e| e.schema_offset = samples.data_offset);
    let message = verify_refuses_as_open_does(&path);
    assert!(message.contains("entry `config`") && message.contains("overlaps"), "{message}");

    // Data over another entry's block (its sequence and lock words).
    fs::write(&path, &good).unwrap();
    edit(&path, "rows", |e| e.data_offset = samples_at);
    let message = verify_refuses_as_open_does(&path);
    assert!(message.contains("entry `rows`") && message.contains("overlaps"), "{message}");

    fs::write(&path, &good).unwrap();
    shmstore(["verify".as_ref(), path.as_os_str()]).ok();
}

#[test]
fn a_huge_schema_length_is_refused_not_allocated() {
    let (_dir, path) = temp_store("huge.shm");
    build(&path);
    // 8 GiB, sparse, with `rows` claiming a 6 GiB schema in unused space.
    let len = 8u64 << 30;
    fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len).unwrap();
    poke(&path, CAPACITY_OFFSET, &len.to_ne_bytes());
    poke(&path, ALLOC_END_OFFSET, &len.to_ne_bytes());
    let at = edit(&path, "rows", |e| (e.schema_offset, e.schema_len) = (1 << 30, 6 << 30));
    let message = verify_refuses_as_open_does(&path);
    assert!(
        message.contains(&format!("entry block at byte {at}: schema is longer than the format allows")),
        "{message}"
    );
    for command in ["inspect", "dump", "header"] {
        let run = shmstore([command.as_ref(), path.as_os_str()]);
        assert_eq!(run.fails(2, ""), format!("shmstore: {message}"), "{command}");
    }
}

#[test]
fn a_file_shorter_than_its_header_says_is_named_truncated() {
    let (_dir, path) = temp_store("short.shm");
    build(&path);
    let len = fs::metadata(&path).unwrap().len();
    for cut in [len - 1, len / 2, 8192] {
        fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(cut).unwrap();
        let message = verify_refuses_as_open_does(&path);
        assert!(message.contains("truncated"), "{message}");
        assert!(message.contains(&format!("is {cut} bytes long")), "{message}");
    }
}

#[test]
fn a_lagging_allocation_end_passes_verify_and_is_left_alone() {
    let (_dir, path) = temp_store("lagging.shm");
    build(&path);
    poke(&path, ALLOC_END_OFFSET, &DATA_OFFSET.to_ne_bytes());
    let before = fs::read(&path).unwrap();
    assert_eq!(shmstore(["verify".as_ref(), path.as_os_str()]).ok(), "ok: 4 entries, 434 B checked\n");
    assert!(fs::read(&path).unwrap() == before, "verify wrote to the file");
    Store::open(&path).unwrap();
}

/// The live word at `offset` of the file at `path` (native-endian, as the store keeps it).
fn live_word(path: &Path, offset: u64) -> u64 {
    let bytes = fs::read(path).unwrap();
    u64::from_ne_bytes(bytes[offset as usize..][..8].try_into().unwrap())
}

/// `shmstore verify` fails with exit status 2 and exactly the words of the library's
/// `Store::check_free_lists`, which opening and listing the store do not run; returns them.
#[track_caller]
fn verify_refuses_free_lists(path: &Path) -> String {
    Store::open(path).and_then(|s| s.entries()).expect("open and listing accept the file");
    let message = match Store::open(path).and_then(|s| s.check_free_lists()) {
        Err(e) => e.to_string(),
        Ok(n) => panic!("the library accepted the {n} free-list nodes of {}", path.display()),
    };
    let run = shmstore(["verify".as_ref(), path.as_os_str()]);
    assert_eq!(run.fails(2, ""), format!("shmstore: {message}"), "{run:#?}");
    message
}

/// A store built by `build` with `rows` removed: its block is on the free blocks, its data and
/// schema on the free extents.
fn with_free_space(path: &Path) {
    build(path);
    Store::open(path).unwrap().remove("rows").unwrap();
    assert_ne!(live_word(path, FREE_BLOCKS), 0);
    assert_ne!(live_word(path, FREE_EXTENTS), 0);
    assert!(Store::open(path).unwrap().check_free_lists().unwrap() >= 2);
    assert_eq!(shmstore(["verify".as_ref(), path.as_os_str()]).ok(), "ok: 3 entries, 384 B checked\n");
}

#[test]
fn a_free_list_that_loops_fails_verify() {
    let (_dir, path) = temp_store("loop.shm");
    with_free_space(&path);
    // The free block links to itself, with a valid checksum: an allocation would never see it
    // (the block fits at once), only a walk of the whole list does.
    let at = live_word(&path, FREE_BLOCKS);
    let header = at + block::STATIC_OFFSET;
    let bytes = fs::read(&path).unwrap();
    let node = FreeExtent::decode(&bytes[header as usize..][..64], at, u64::MAX).unwrap();
    poke(&path, header, &FreeExtent { len: node.len, next: at }.encode()[..32]);
    let message = verify_refuses_free_lists(&path);
    assert!(message.contains("loops") && message.contains(&format!("byte {at}")), "{message}");
}

#[test]
fn a_free_extent_over_a_live_entry_fails_verify() {
    let (_dir, path) = temp_store("free-over-live.shm");
    with_free_space(&path);
    // A sound free extent, 64 bytes of `samples`' data, at the head of the free extents.
    let data = Store::open(&path).unwrap().entry_info("samples").unwrap().data_offset;
    let next = live_word(&path, FREE_EXTENTS);
    poke(&path, data, &FreeExtent { len: 64, next }.encode()[..32]);
    poke(&path, FREE_EXTENTS, &data.to_ne_bytes());
    let message = verify_refuses_free_lists(&path);
    assert!(message.contains(&format!("free extent at byte {data}")), "{message}");
    assert!(message.contains("overlaps") && message.contains("entry `samples`"), "{message}");
}

#[test]
fn a_free_list_node_without_a_sound_header_fails_verify() {
    let (_dir, path) = temp_store("bad-node.shm");
    with_free_space(&path);
    // The free extents' head names a 64-aligned offset in the data area where no header is.
    let data = Store::open(&path).unwrap().entry_info("samples").unwrap().data_offset;
    poke(&path, FREE_EXTENTS, &data.to_ne_bytes());
    let message = verify_refuses_free_lists(&path);
    assert!(message.contains("SHMFREE") && message.contains("free extents"), "{message}");
}

//! `shmstore verify` refuses exactly what `Store::open` refuses, with the same words: records
//! that each look sound but together are not (crafted through the library's format module, with
//! valid checksums), files shorter than their header says, and schemas too long to read.

mod common;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;

use common::{build, poke, shmstore, temp_store};
use shmstore::format::entry::{lock_offset_for, Entry};
use shmstore::format::header::{Header, ALLOC_END_OFFSET, CAPACITY_OFFSET, HEADER_SIZE};
use shmstore::Store;

/// The record of entry `name`: its file offset and its decoded static part.
fn record(path: &Path, name: &str) -> (u64, u32, Entry) {
    let file = fs::File::open(path).unwrap();
    let mut head = vec![0u8; HEADER_SIZE as usize];
    file.read_exact_at(&mut head, 0).unwrap();
    let header = Header::decode(&head).unwrap();
    let capacity = u64::from_ne_bytes(head[CAPACITY_OFFSET as usize..][..8].try_into().unwrap());
    for slot in 0..header.catalog_slots {
        let at = header.catalog_offset + u64::from(slot) * 256;
        let mut raw = [0u8; 176];
        file.read_exact_at(&mut raw, at + 8).unwrap();
        if let Ok(entry) = Entry::decode(&raw, &header, slot, capacity) {
            if entry.name == name {
                return (at, slot, entry);
            }
        }
    }
    panic!("no record named {name}")
}

/// Decodes the record of `name`, lets `edit` change it, and writes it back with a valid checksum.
fn edit(path: &Path, name: &str, edit: impl FnOnce(&mut Entry)) -> u32 {
    let (at, slot, mut entry) = record(path, name);
    edit(&mut entry);
    poke(path, at + 8, &entry.encode());
    slot
}

/// `shmstore verify` fails with exit status 2 and exactly the message of `Store::open`'s error
/// (which must be a refusal); returns the message.
#[track_caller]
fn verify_refuses_as_open_does(path: &Path) -> String {
    let message = match Store::open(path) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("Store::open accepted {}", path.display()),
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
    let (_, _, samples) = record(&path, "samples");

    edit(&path, "rows", |e| e.data_offset = samples.data_offset + 8);
    let message = verify_refuses_as_open_does(&path);
    assert!(
        message.contains("the data of entry `rows`") && message.contains("the data of entry `samples`"),
        "{message}"
    );

    fs::write(&path, &good).unwrap();
    edit(&path, "config", |e| e.schema_offset = samples.data_offset);
    let message = verify_refuses_as_open_does(&path);
    assert!(message.contains("the schema of entry `config`") && message.contains("overlaps"), "{message}");

    fs::write(&path, &good).unwrap();
    let (_, config_slot, _) = record(&path, "config");
    let slot = edit(&path, "samples", |e| e.lock_offset = lock_offset_for(config_slot));
    let message = verify_refuses_as_open_does(&path);
    assert!(
        message.contains(&format!("entry in catalog slot {slot}: lock offset is not the one its catalog slot implies")),
        "{message}"
    );

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
    let slot = edit(&path, "rows", |e| (e.schema_offset, e.schema_len) = (1 << 30, 6 << 30));
    let message = verify_refuses_as_open_does(&path);
    assert!(
        message.contains(&format!("entry in catalog slot {slot}: schema is longer than the format allows")),
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
    let header = Header::decode(&fs::read(&path).unwrap()).unwrap();
    poke(&path, ALLOC_END_OFFSET, &header.data_offset.to_ne_bytes());
    let before = fs::read(&path).unwrap();
    assert_eq!(shmstore(["verify".as_ref(), path.as_os_str()]).ok(), "ok: 4 entries, 434 B checked\n");
    assert!(fs::read(&path).unwrap() == before, "verify wrote to the file");
    Store::open(&path).unwrap();
}

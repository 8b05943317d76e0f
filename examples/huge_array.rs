//! A sparse array far larger than RAM: created in moments, costing disk only for what is written.
//!
//! ```text
//! cargo run --release --example huge_array              # 64 GiB in target/huge_array.shm
//! cargo run --release --example huge_array -- 8 my.shm  # 8 GiB, elsewhere
//! ```

use std::os::unix::fs::MetadataExt;
use std::process::ExitCode;
use std::time::Instant;

use shmstore::Store;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let gib: u64 = args.next().map_or(Ok(64), |a| a.parse())?;
    let path = args.next().unwrap_or_else(|| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("examples/ lies in the workspace")
            .join("target/huge_array.shm")
            .to_string_lossy()
            .into_owned()
    });
    let _ = std::fs::remove_file(&path);

    let len = usize::try_from(gib << 30)?;
    let started = Instant::now();
    let store = Store::open_or_create(&path, 1 << 20)?;
    let huge = store.array_or_init("huge", len, 0u8)?; // zero-initialised: nothing to write
    println!("created a {gib} GiB array in {:?} (store capacity {} bytes)", started.elapsed(), store.capacity());

    // Write a few scattered bytes: each touches one page.
    let started = Instant::now();
    let spots: Vec<usize> = (0..16).map(|i| (len / 16) * i + 12_345).chain([len - 1]).collect();
    for (i, &at) in spots.iter().enumerate() {
        huge.set(at, i as u8 + 1)?;
    }
    println!("wrote {} scattered bytes in {:?}", spots.len(), started.elapsed());

    // Read back, and read a range that was never written.
    for (i, &at) in spots.iter().enumerate() {
        assert_eq!(huge.get(at)?, i as u8 + 1);
    }
    let mut untouched = vec![0xffu8; 1 << 20];
    huge.read_at(len / 3, &mut untouched)?;
    assert!(untouched.iter().all(|&b| b == 0), "never-written bytes read as zero");
    println!("read them back, and 1 MiB never written reads as zeros");

    store.flush()?;
    let meta = std::fs::metadata(&path)?;
    println!("file length {} bytes, disk used {} KiB", meta.len(), meta.blocks() * 512 / 1024);
    drop((huge, store));
    std::fs::remove_file(&path)?;
    Ok(())
}

//! A persisted memory-mapped file, written through a view accessor and read back by another
//! process: the .NET "program B" pattern, ported to shmstore.
//!
//! ```text
//! cargo run --example persistent_accessor                                # store at target/persistent_accessor.shm
//! cargo run --example persistent_accessor -- my.shm "any message"       # or anywhere, any text
//! ```
//!
//! The .NET program does this (shortened):
//!
//! ```text
//! using var mmf = MemoryMappedFile.CreateFromFile(path, FileMode.Open, "global_share_memory");
//! using (var accessor = mmf.CreateViewAccessor(0, 0))           // 0, 0: the whole file
//!     accessor.WriteArray(2, bytes, 0, bytes.Length);            // the message, at offset 2
//! // ... and then, as another program would:
//! using var existing = MemoryMappedFile.OpenExisting("global_share_memory");
//! using (var accessor = existing.CreateViewAccessor(0, 0)) {
//!     var buf = new byte[1024];
//!     accessor.ReadArray(0, buf, 0, 1024);                       // read it back, and print it
//! }
//! ```
//!
//! Here, one for one:
//!
//! - `CreateFromFile(path, FileMode.Open, "global_share_memory")`: `Store::open(path)`, which is
//!   `Error::FileNotFound` if there is no file, then the byte region
//!   `store.bytes_or_init("global_share_memory", 1024)`: a named entry in the store file;
//! - `CreateViewAccessor(0, 0)`, the whole map: `region.view(..)`, an `ArrayView<u8>` over all of
//!   the region (`region.view(16..32)` would be `CreateViewAccessor(16, 16)`);
//! - `WriteArray(2, bytes, 0, bytes.Length)`: `accessor.write_at(2, bytes)`, bounds-checked and
//!   locked against other processes; if the bytes do not fit, nothing is written;
//! - `OpenExisting("global_share_memory")`: another process opens the same file with
//!   `Store::open(path)?.bytes("global_share_memory")`;
//! - `ReadArray(0, buf, 0, 1024)`: `accessor.read_at(0, &mut buf)`.
//!
//! The store is a file, so the message is still there on the next run, which prints it before
//! writing its own. Bytes 0 and 1 are never written, as in the original: they stay zero.

use std::error::Error;
use std::path::Path;
use std::process::Command;

use shmstore::Store;

/// The .NET map name becomes the name of the byte region in the store.
const MAP_NAME: &str = "global_share_memory";
/// The size of the region, and of the buffer the reader reads into.
const REGION_LEN: u64 = 1024;
/// Where the message goes, as in `WriteArray(2, ...)`.
const MESSAGE_OFFSET: u64 = 2;
/// The capacity a new store file gets (sparse: untouched space costs no disk).
const CAPACITY: u64 = 1 << 20;

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let default_path = || {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("examples/ lies in the workspace")
            .join("target/persistent_accessor.shm")
    };
    let default_message = "Hello from program B, through a typed view accessor!";
    match args.as_slice() {
        [flag, path] if flag == "--open-existing" => open_existing(Path::new(path)),
        [flag, ..] if flag.starts_with('-') => Err(format!("unknown option `{flag}`; {USAGE}").into()),
        [] => program_b(&default_path(), default_message),
        [path] => program_b(Path::new(path), default_message),
        [path, message] => program_b(Path::new(path), message),
        _ => Err(USAGE.into()),
    }
}

const USAGE: &str = "usage: persistent_accessor [STORE_PATH [MESSAGE]]";

/// Writes `message` at offset 2 of the region, then has another process read it back.
fn program_b(path: &Path, message: &str) -> Result<(), Box<dyn Error>> {
    // `FileMode.Open`: the file must exist. A first run has no program A to create it, so it
    // creates the store itself, and says so.
    let store = match Store::open(path) {
        Ok(store) => {
            println!("store: {} (opened)", path.display());
            store
        }
        Err(shmstore::Error::FileNotFound { .. }) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            println!("store: {} (created: FileMode.Open would have failed here)", path.display());
            Store::open_or_create(path, CAPACITY)?
        }
        Err(e) => return Err(e.into()),
    };

    // The named map becomes a named byte region: created zero-filled on the first run, found
    // again (with whatever the last run left in it) on later ones.
    let region = store.bytes_or_init(MAP_NAME, REGION_LEN)?;
    let previous = text_at(&region.read()?, MESSAGE_OFFSET);
    if !previous.is_empty() {
        println!("previous message: {previous:?}");
    }

    // `CreateViewAccessor(0, 0)` + `WriteArray(2, bytes, 0, bytes.Length)`.
    let accessor = region.view(..)?;
    let mut bytes = message.as_bytes().to_vec();
    // Clear what a longer previous message left behind, so the reader stops at our text.
    bytes.resize(bytes.len().max(previous.len()) + 1, 0);
    accessor.write_at(MESSAGE_OFFSET as usize, &bytes)?;
    println!(
        "wrote {} bytes at offset {MESSAGE_OFFSET} of `{}` ({} bytes), version {}",
        message.len(),
        region.name(),
        region.len(),
        region.version().get()
    );

    // The accessor is bounds-checked: where .NET throws, or a raw mapping writes past the end,
    // this is an error and nothing is written.
    if let Err(e) = accessor.write_at(REGION_LEN as usize - 4, b"too long") {
        println!("refused: {e}");
    }

    // `OpenExisting`: another program. Here it is this one, run again as a second process.
    let exe = std::env::current_exe()?;
    let status = Command::new(exe).arg("--open-existing").arg(path).status()?;
    if !status.success() {
        return Err(format!("the reader process failed: {status}").into());
    }
    Ok(())
}

/// The other program: opens the existing store and region, and `ReadArray(0, buf, 0, 1024)`.
fn open_existing(path: &Path) -> Result<(), Box<dyn Error>> {
    let store = Store::open(path)?;
    let region = store.bytes(MAP_NAME)?;
    let accessor = region.view(..)?;
    let mut buf = vec![0u8; REGION_LEN as usize];
    accessor.read_at(0, &mut buf)?;
    let first: Vec<String> = buf[..16].iter().map(|b| format!("{b:02x}")).collect();
    println!("reader (pid {}): read {} bytes; the first 16: {}", std::process::id(), buf.len(), first.join(" "));
    println!("reader: message at offset {MESSAGE_OFFSET}: {:?}", text_at(&buf, MESSAGE_OFFSET));
    Ok(())
}

/// The text from `offset` up to the first zero byte, as `Encoding.UTF8.GetString` would show it.
fn text_at(bytes: &[u8], offset: u64) -> String {
    let rest = bytes.get(offset as usize..).unwrap_or(&[]);
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end]).into_owned()
}

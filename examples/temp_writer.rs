//! The writer half of a port of the classic .NET shared-memory pair ("program A"): a named,
//! temporary memory-mapped region that disappears when the last process using it exits.
//!
//! ```text
//! cargo run --example temp_writer -- [NAME] [INTERVAL_MS] [ITERATIONS]
//! cargo run --example temp_reader -- [NAME]                 # in another terminal
//! ```
//!
//! The .NET original:
//!
//! ```csharp
//! using var mmf = MemoryMappedFile.CreateOrOpen("global_share_memory", 1024);
//! for (int i = 0; ; i++) {
//!     using var stream = mmf.CreateViewStream();
//!     new BinaryWriter(stream).Write("Hello World" + i);
//!     Thread.Sleep(10000);
//! }
//! ```
//!
//! Here the region is a temporary store (`Store::open_or_create_temp`) holding one typed object,
//! `Message`, instead of bytes that both sides must agree how to encode: the reader gets a
//! `Message` or a typed error, never garbage, and every write is one atomic commit, so the reader
//! never sees half a message. Defaults: name `global_share_memory`, a message every 1000 ms (10 s
//! in the original), 10 messages; then the writer exits. The store is removed when the last
//! process using it (this one or a reader) closes it or dies.

use std::error::Error;
use std::time::Duration;

use shmstore::{FixedStr, SharedLayout, Store};

/// The message both programs share. The reader declares the same type (in a real program, both
/// would use one crate); a reader with a different layout is refused with `LayoutMismatch`.
#[derive(SharedLayout, Clone, Copy, Debug, Default)]
#[repr(C)]
struct Message {
    /// The text: UTF-8, up to 64 bytes.
    text: FixedStr<64>,
    /// Which message this is (0, 1, 2, ...).
    counter: u64,
}

/// Size of the region. Only a few KiB of it are used; tmpfs allocates pages as they are touched.
const CAPACITY: u64 = 64 * 1024;

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
    const USAGE: &str = "usage: temp_writer [NAME] [INTERVAL_MS] [ITERATIONS]";
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() > 3 || args.iter().any(|a| a.starts_with('-')) {
        return Err(USAGE.into());
    }
    let name = args.first().map_or("global_share_memory", String::as_str);
    let interval = match args.get(1) {
        Some(ms) => Duration::from_millis(ms.parse().map_err(|e| format!("INTERVAL_MS: {e}; {USAGE}"))?),
        None => Duration::from_millis(1000),
    };
    let iterations: u64 = match args.get(2) {
        Some(n) => n.parse().map_err(|e| format!("ITERATIONS: {e}; {USAGE}"))?,
        None => 10,
    };

    // CreateOrOpen: the first process creates the region, later ones (readers included) open it.
    let store = Store::open_or_create_temp(name, CAPACITY)?;
    let message = store.object_or_init("message", Message::default)?;
    println!("writing to temporary store `{name}` ({})", store.path().display());
    for i in 0..iterations {
        let text = format!("Hello World{i}");
        message.store(Message { text: FixedStr::truncating(&text), counter: i })?;
        println!("wrote {i}: {text}");
        if i + 1 < iterations {
            std::thread::sleep(interval);
        }
    }
    // Dropping the store closes it; if no reader has it open, the region is removed now.
    println!("done");
    Ok(())
}

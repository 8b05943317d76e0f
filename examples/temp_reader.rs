//! The reader half of a port of the classic .NET shared-memory pair ("program B"); see
//! `temp_writer.rs` for the writer.
//!
//! ```text
//! cargo run --example temp_reader -- [NAME] [MESSAGES] [IDLE_MS]
//! ```
//!
//! The .NET original polls, and reports a missing region:
//!
//! ```csharp
//! while (true) {
//!     try {
//!         using var mmf = MemoryMappedFile.OpenExisting("global_share_memory");
//!         using var stream = mmf.CreateViewStream();
//!         Console.WriteLine(new BinaryReader(stream).ReadString());
//!     } catch (FileNotFoundException) {
//!         Console.WriteLine("no shared memory");
//!     }
//!     Thread.Sleep(1000);
//! }
//! ```
//!
//! Here, a missing region is the typed error `Error::TempNotFound` (its message starts with "no
//! shared memory"), retried every second. Once the region is open, the reader does not poll: it
//! sleeps in `Shared::wait_for_change` until the writer commits a new message, and prints each one.
//! It exits after MESSAGES messages (default 0: no limit), or when no message has come for IDLE_MS
//! milliseconds (default 30,000: the writer is gone). A reader that outlives the writer keeps the
//! region alive, and removes it when it exits.

use std::error::Error;
use std::time::{Duration, Instant};

use shmstore::{FixedStr, SharedLayout, Store};

/// The message both programs share: the same type as in `temp_writer.rs`.
#[derive(SharedLayout, Clone, Copy, Debug, Default)]
#[repr(C)]
struct Message {
    /// The text: UTF-8, up to 64 bytes.
    text: FixedStr<64>,
    /// Which message this is (0, 1, 2, ...).
    counter: u64,
}

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
    const USAGE: &str = "usage: temp_reader [NAME] [MESSAGES] [IDLE_MS]";
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() > 3 || args.iter().any(|a| a.starts_with('-')) {
        return Err(USAGE.into());
    }
    let name = args.first().map_or("global_share_memory", String::as_str);
    let max_messages: u64 = match args.get(1) {
        Some(n) => n.parse().map_err(|e| format!("MESSAGES: {e}; {USAGE}"))?,
        None => 0,
    };
    let idle = match args.get(2) {
        Some(ms) => Duration::from_millis(ms.parse().map_err(|e| format!("IDLE_MS: {e}; {USAGE}"))?),
        None => Duration::from_secs(30),
    };

    // OpenExisting, retried every second while nobody has the region open.
    let store = loop {
        match Store::open_temp(name) {
            Ok(store) => break store,
            Err(shmstore::Error::TempNotFound { .. }) => {
                println!("no shared memory");
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => return Err(e.into()),
        }
    };
    println!("reading temporary store `{name}` ({})", store.path().display());
    // The writer creates the message right after the store; `object_or_init` also covers a reader
    // that gets in between (it creates the same, still unwritten, message).
    let message = store.object_or_init("message", Message::default)?;

    let (current, mut seen) = message.load_versioned()?;
    let mut printed = 0;
    if seen.get() > 0 {
        // Written before we came: print the latest message.
        println!("message {}: {}", current.counter, current.text);
        printed += 1;
    }
    let mut last_news = Instant::now();
    while max_messages == 0 || printed < max_messages {
        // Sleep until the writer commits, waking now and then to notice that it is gone.
        match message.wait_for_change(seen, Duration::from_millis(250)) {
            Ok((msg, version)) => {
                if version.get() > seen.get() + 1 {
                    println!("({} messages written while this reader was busy)", version.get() - seen.get() - 1);
                }
                seen = version;
                println!("message {}: {}", msg.counter, msg.text);
                printed += 1;
                last_news = Instant::now();
            }
            Err(shmstore::Error::Timeout { .. }) if last_news.elapsed() < idle => {}
            Err(shmstore::Error::Timeout { .. }) => {
                println!("no message for {} ms: the writer is gone", idle.as_millis());
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    println!("done after {printed} messages");
    Ok(())
}

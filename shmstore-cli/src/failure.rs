//! Why a command failed, with the exit status it maps to.

use std::io;
use std::path::Path;
use std::process::ExitCode;

use shmstore::{Error, Store};

/// Exit status for usage errors, missing files and entries, and files that cannot be read here.
pub const EXIT_USAGE: u8 = 1;
/// Exit status for invalid data: not a store, truncated, corrupt, or holding invalid values.
pub const EXIT_INVALID: u8 = 2;

/// A failed command: the one-line message for stderr and the exit status.
#[derive(Debug)]
pub struct Failure {
    /// The exit status.
    pub code: u8,
    /// The message, without the `shmstore: ` prefix; empty for a silent exit.
    pub message: String,
}

impl Failure {
    /// A usage error or a missing thing: exit status 1.
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure { code: EXIT_USAGE, message: message.into() }
    }

    /// Invalid data: exit status 2.
    pub fn invalid(message: impl Into<String>) -> Failure {
        Failure { code: EXIT_INVALID, message: message.into() }
    }

    /// Prints the message to stderr and gives the exit status.
    pub fn report(self) -> ExitCode {
        if !self.message.is_empty() {
            eprintln!("shmstore: {}", one_line(&self.message));
        }
        ExitCode::from(self.code)
    }
}

/// Folds line breaks, so that every message stays one line.
fn one_line(message: &str) -> String {
    message.split(['\n', '\r']).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ")
}

/// The exit status for a library error: 2 when the data itself is bad, 1 otherwise.
pub fn exit_code(e: &Error) -> u8 {
    match e {
        Error::NotAStore { .. }
        | Error::BadChecksum { .. }
        | Error::Truncated { .. }
        | Error::Corrupt { .. }
        | Error::InvalidValue { .. } => EXIT_INVALID,
        _ => EXIT_USAGE,
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure { code: exit_code(&e), message: e.to_string() }
    }
}

impl From<io::Error> for Failure {
    /// A failed write to stdout. A closed pipe (`shmstore dump ... | head`) is not an error: the
    /// reader has all it wanted.
    fn from(e: io::Error) -> Failure {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Failure { code: 0, message: String::new() }
        } else {
            Failure::usage(format!("cannot write the output: {e}"))
        }
    }
}

/// Opens the store at `path` read-only.
pub fn open(path: &Path) -> Result<Store, Failure> {
    Ok(Store::options().read_only(true).open(path)?)
}

/// The error for an entry name the store does not have, listing the names it does have.
pub fn no_entry(path: &Path, name: &str, store: &Store) -> Failure {
    let names: Vec<String> = store.entries().map(|es| es.into_iter().map(|e| e.name).collect()).unwrap_or_default();
    let have = if names.is_empty() {
        "it has no entries".to_owned()
    } else {
        format!("its entries are {}", names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "))
    };
    Failure::usage(format!("no entry named `{name}` in `{}`: {have}", path.display()))
}

//! Why a command failed, with the exit status it maps to.

use std::io;
use std::path::Path;
use std::process::ExitCode;

use shmstore::{Error, Store, WaitedFor};

use crate::escape;

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

    /// Prints the message to stderr, on one line and [escaped](crate::escape), and gives the exit
    /// status.
    pub fn report(self) -> ExitCode {
        if !self.message.is_empty() {
            eprintln!("shmstore: {}", escape::text(&one_line(&self.message)));
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
        Failure { code: exit_code(&e), message: message(&e) }
    }
}

/// The message for a library error, in the command's words.
///
/// The library's messages end with advice in the words of its API (`create it with
/// Store::open_or_create`, `convert it with Store::migrate`), which a shell user cannot follow.
/// Every error whose advice names an API call gets the advice that fits this command instead (most
/// of them concern writing, which the command never does, and cannot happen here; their message
/// then just names the cause). The others keep the library's message, whose advice (check the path,
/// restore the file from a backup, set SHMSTORE_TEMP_DIR) holds for a shell user too.
pub fn message(e: &Error) -> String {
    let p = |path: &Path| escape::path(path);
    match e {
        Error::FileNotFound { path } => match std::fs::read_link(path) {
            Ok(target) => {
                format!("`{}` is a symbolic link to `{}`, which does not exist: check the link", p(path), p(&target))
            }
            Err(_) => {
                format!(
                    "store file `{}` does not exist: check the path (shmstore commands never create a store)",
                    p(path)
                )
            }
        },
        Error::UnsupportedFormat { path, found, supported } => format!(
            "`{}` uses store format v{found}; this shmstore command reads up to v{supported}: \
             install a newer shmstore command to read it",
            p(path)
        ),
        Error::Io { path, source, .. } if source.kind() == io::ErrorKind::IsADirectory => {
            format!("`{}` is a directory: give the path of a store file", p(path))
        }
        Error::Io { op, path, source } if source.kind() == io::ErrorKind::PermissionDenied => {
            format!("{op} `{}` failed: {source}: the command needs read permission on the store file", p(path))
        }
        Error::NotFound { name } => {
            format!("no entry named `{name}` in the store: `shmstore inspect FILE` lists its entries")
        }
        Error::LayoutMismatch {
            name,
            expected_type,
            found_type,
            expected_version,
            found_version,
            expected_fingerprint,
            found_fingerprint,
            ..
        } => format!(
            "entry `{name}` holds {found_type} v{found_version} (fingerprint {found_fingerprint:016x}), not \
             {expected_type} v{expected_version} (fingerprint {expected_fingerprint:016x}): \
             `shmstore inspect FILE --json` shows the stored layout"
        ),
        Error::KindMismatch { name, expected, found } => {
            format!(
                "entry `{name}` is of kind {found}, not {expected}: `shmstore inspect FILE` shows each entry's kind"
            )
        }
        Error::OutOfBounds { name, start, end, len, .. } => format!(
            "elements {start}..{end} are out of range for `{name}`, which has {len}: \
             keep --offset below {len}"
        ),
        Error::ReadOnly { path, action } => {
            format!(
                "`{}` is open read-only, as shmstore commands open every store: {action} is not possible here",
                p(path)
            )
        }
        Error::BeyondMapping { name, mapped } => format!(
            "entry `{name}` lies beyond the {mapped} bytes mapped when the command started: another process grew \
             the store meanwhile; run the command again"
        ),
        Error::WouldBlock { name } => format!("entry `{name}` is locked by another process: try again later"),
        Error::Timeout { name, waited, waited_for: WaitedFor::Change } => {
            format!("no change to entry `{name}` within {waited:?}")
        }
        Error::Timeout { name, waited, .. } => {
            format!("entry `{name}` stayed locked by another process for {waited:?}: try again later")
        }
        Error::Busy { path, .. } => format!(
            "another process holds `{}` exclusively (a tool compacting or replacing it?): run the command again when it is done",
            p(path)
        ),
        Error::ReadOnlyFileSystem { path } => {
            format!("`{}` is on a read-only file system, and this command needs to write it", p(path))
        }
        Error::DiskFull { path, requested } => {
            format!("no room on the file system of `{}` for {requested} more bytes: free some space", p(path))
        }
        Error::AlreadyExists { path } => format!("`{}` already exists", p(path)),
        Error::CapacityRequired { path } => {
            format!("`{}` does not exist, and shmstore commands never create a store", p(path))
        }
        Error::InvalidOptions(detail) => {
            format!("shmstore passed the library an invalid option ({detail}): this is a bug; please report it")
        }
        Error::StoreFull { path, needed, available, capacity, .. } => {
            format!("store `{}` is full: {needed} bytes were needed, {available} of {capacity} are free", p(path))
        }
        Error::CatalogFull { path, max_entries } => {
            format!("store `{}` already holds its maximum of {max_entries} entries", p(path))
        }
        Error::TempNotFound { name } => format!("no process has the temporary store `{name}` open"),
        Error::TempExists { name } => format!("temporary store `{name}` is in use by another process"),
        _ => e.to_string(),
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
    Failure::usage(format!("no entry named `{name}` in `{}`: {have}", escape::path(path)))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;

    /// Words of the library's API that a shell user cannot act on.
    const API_WORDS: [&str; 12] = [
        "Store::",
        "OpenOptions",
        "lock_timeout",
        "options()",
        "_or_init",
        "read()",
        "write()",
        "read_only(",
        "max_capacity(",
        "max_entries(",
        "wait_for_change",
        "Store::entries",
    ];

    fn api_words(message: &str) -> Vec<&'static str> {
        API_WORDS.into_iter().filter(|w| message.contains(w)).collect()
    }

    /// Every library error whose message gives advice in API words.
    fn api_advice_errors() -> Vec<Error> {
        let path = PathBuf::from("/data/app.shm");
        let name = || "samples".to_owned();
        vec![
            Error::FileNotFound { path: path.clone() },
            Error::CapacityRequired { path: path.clone() },
            Error::NotFound { name: name() },
            Error::LayoutMismatch {
                name: name(),
                expected_type: "Config".into(),
                found_type: "OldConfig".into(),
                expected_version: 2,
                found_version: 1,
                expected_fingerprint: 1.into(),
                found_fingerprint: 2.into(),
                diff: None,
            },
            Error::KindMismatch { name: name(), expected: "array", found: "object" },
            Error::StoreFull { path: path.clone(), needed: 10, available: 5, capacity: 100, suggested: 200 },
            Error::CatalogFull { path: path.clone(), max_entries: 64 },
            Error::ReadOnly { path: path.clone(), action: "growing the store" },
            Error::WouldBlock { name: name() },
            Error::Timeout { name: name(), waited: Duration::from_secs(1), waited_for: WaitedFor::Change },
            Error::BeyondMapping { name: name(), mapped: 4096 },
            Error::TempNotFound { name: name() },
            Error::TempExists { name: name() },
            Error::Busy { path: path.clone(), waited: None },
            Error::ReadOnlyFileSystem { path: path.clone() },
            Error::DiskFull { path: path.clone(), requested: 4096 },
            Error::AlreadyExists { path: path.clone() },
        ]
    }

    #[test]
    fn api_advice_becomes_command_advice() {
        for e in api_advice_errors() {
            let library = e.to_string();
            assert!(
                !api_words(&library).is_empty(),
                "no API words in the library's {library:?}: drop it from the list"
            );
            let ours = message(&e);
            assert!(api_words(&ours).is_empty(), "{:?} in {ours:?}", api_words(&ours));
        }
    }

    #[test]
    fn the_command_s_advice() {
        let path = PathBuf::from("/nonexistent/dir/app.shm");
        assert_eq!(
            message(&Error::FileNotFound { path: path.clone() }),
            "store file `/nonexistent/dir/app.shm` does not exist: check the path (shmstore commands never create a store)"
        );
        assert_eq!(
            message(&Error::UnsupportedFormat { path, found: 9, supported: 2 }),
            "`/nonexistent/dir/app.shm` uses store format v9; this shmstore command reads up to v2: \
             install a newer shmstore command to read it"
        );
        assert_eq!(
            message(&Error::KindMismatch { name: "s".into(), expected: "array", found: "bytes" }),
            "entry `s` is of kind bytes, not array: `shmstore inspect FILE` shows each entry's kind"
        );
        let mismatch = message(&Error::LayoutMismatch {
            name: "cfg".into(),
            expected_type: "Config".into(),
            found_type: "OldConfig".into(),
            expected_version: 2,
            found_version: 1,
            expected_fingerprint: 0xab.into(),
            found_fingerprint: 0xcd.into(),
            diff: None,
        });
        assert_eq!(
            mismatch,
            "entry `cfg` holds OldConfig v1 (fingerprint 00000000000000cd), not Config v2 (fingerprint \
             00000000000000ab): `shmstore inspect FILE --json` shows the stored layout"
        );
    }

    #[test]
    fn invalid_options_are_the_command_s_bug() {
        // The detail (API words) is kept, for the bug report.
        let e = Error::InvalidOptions("temporary stores are always opened read-write: drop read_only(true)");
        assert_eq!(
            message(&e),
            "shmstore passed the library an invalid option (temporary stores are always opened read-write: \
             drop read_only(true)): this is a bug; please report it"
        );
    }

    #[test]
    fn other_messages_are_the_library_s() {
        let e = Error::Corrupt { path: PathBuf::from("a.shm"), detail: "entry `x` lies outside the file".into() };
        assert_eq!(message(&e), e.to_string());
        assert!(e.to_string().contains("restore it from a backup"));
    }

    #[test]
    fn reports_are_one_escaped_line() {
        assert_eq!(one_line("a\nb\r\nc"), "a b c");
        assert_eq!(escape::text(&one_line("bad \x1b[2J\nname")), "bad \\u{1b}[2J name");
    }
}

//! `include/shmstore.h` is written by hand: these tests hold it to `src/lib.rs`. Every exported
//! function is declared with as many parameters, under the same name; every status code has the
//! same value. (`tests/c_abi.rs` then compiles and links C against the header.)

use std::collections::BTreeMap;

use shmstore_ffi::{ShmstoreStatus, SHMSTORE_OPEN_READ_ONLY};

const HEADER: &str = include_str!("../include/shmstore.h");
const SOURCE: &str = include_str!("../src/lib.rs");

/// The parameter list that follows `name(` in `text`, up to the matching `)`.
fn params_after(text: &str, at: usize) -> &str {
    let rest = &text[at..];
    let end = rest.find(')').expect("a closing parenthesis");
    &rest[..end]
}

/// How many parameters a list holds (`void` or nothing is none).
fn count(params: &str) -> usize {
    let params = params.trim();
    if params.is_empty() || params == "void" {
        0
    } else {
        // rustfmt leaves a trailing comma after the last of several lines of parameters.
        params.split(',').filter(|p| !p.trim().is_empty()).count()
    }
}

/// `name -> parameter count` of the functions `lib.rs` exports.
fn exported() -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for marker in ["pub unsafe extern \"C\" fn ", "pub extern \"C\" fn "] {
        let mut from = 0;
        while let Some(i) = SOURCE[from..].find(marker) {
            let start = from + i + marker.len();
            let open = start + SOURCE[start..].find('(').unwrap();
            out.insert(SOURCE[start..open].to_owned(), count(params_after(SOURCE, open + 1)));
            from = open;
        }
    }
    out
}

/// `name -> parameter count` of the functions the header declares.
fn declared() -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let mut from = 0;
    while let Some(i) = HEADER[from..].find("shmstore_") {
        let start = from + i;
        let name_end = start + HEADER[start..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap();
        from = name_end;
        // A declaration: the name follows a return type (not a comment or a typedef's use), and
        // is called.
        let before = HEADER[..start].trim_end();
        let is_decl =
            HEADER[name_end..].starts_with('(') && (before.ends_with(char::is_alphanumeric) || before.ends_with('*'));
        if is_decl && !before.ends_with("(*") {
            out.insert(HEADER[start..name_end].to_owned(), count(params_after(HEADER, name_end + 1)));
        }
    }
    out
}

#[test]
fn the_header_declares_every_exported_function_with_its_parameters() {
    let (exported, declared) = (exported(), declared());
    assert!(exported.len() >= 12, "found too few exports: {exported:?}");
    assert_eq!(declared, exported);
}

#[test]
fn the_header_has_every_status_code_with_its_value() {
    use ShmstoreStatus as S;
    // A match without a wildcard: a new variant does not compile until it is listed here.
    let c_name = |s: S| match s {
        S::Ok => "SHMSTORE_OK",
        S::Null => "SHMSTORE_ERR_NULL",
        S::Argument => "SHMSTORE_ERR_ARGUMENT",
        S::FileNotFound => "SHMSTORE_ERR_FILE_NOT_FOUND",
        S::NotFound => "SHMSTORE_ERR_NOT_FOUND",
        S::LayoutMismatch => "SHMSTORE_ERR_LAYOUT_MISMATCH",
        S::KindMismatch => "SHMSTORE_ERR_KIND_MISMATCH",
        S::InvalidValue => "SHMSTORE_ERR_INVALID_VALUE",
        S::OutOfBounds => "SHMSTORE_ERR_OUT_OF_BOUNDS",
        S::Timeout => "SHMSTORE_ERR_TIMEOUT",
        S::VersionConflict => "SHMSTORE_ERR_VERSION_CONFLICT",
        S::Aborted => "SHMSTORE_ERR_ABORTED",
        S::ReadOnly => "SHMSTORE_ERR_READ_ONLY",
        S::BadStore => "SHMSTORE_ERR_BAD_STORE",
        S::Io => "SHMSTORE_ERR_IO",
        S::Panic => "SHMSTORE_ERR_PANIC",
        S::Other => "SHMSTORE_ERR_OTHER",
    };
    let all = [
        S::Ok,
        S::Null,
        S::Argument,
        S::FileNotFound,
        S::NotFound,
        S::LayoutMismatch,
        S::KindMismatch,
        S::InvalidValue,
        S::OutOfBounds,
        S::Timeout,
        S::VersionConflict,
        S::Aborted,
        S::ReadOnly,
        S::BadStore,
        S::Io,
        S::Panic,
        S::Other,
    ];
    for s in all {
        let line = format!("{} = {}", c_name(s), s as i32);
        assert!(HEADER.contains(&line), "`{line}` is not in the header");
    }
    assert_eq!(HEADER.matches("    SHMSTORE_").count(), all.len(), "the header has other status codes");
    assert!(HEADER.contains(&format!("#define SHMSTORE_OPEN_READ_ONLY {SHMSTORE_OPEN_READ_ONLY}u")));
}

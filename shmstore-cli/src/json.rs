//! JSON output: how integers are written, schemas as JSON, and a writer whose strings are safe to
//! show on a terminal.
//!
//! Every JSON document the command prints goes through [`write_str`] for its strings: besides the
//! escapes JSON requires (quote, backslash, U+0000..U+001F), it writes DEL, the C1 controls and the
//! Unicode bidirectional controls as `\uXXXX` too (see [`crate::escape`]). The document means the
//! same to every JSON reader, and `shmstore inspect --json` on a terminal cannot be made to clear
//! it.

use std::io::{self, Write};

use serde_json::{json, Map, Number, Value as Json};
use shmstore::{Primitive, Schema, SchemaKind};

use crate::escape;

/// How 64-bit integers are written: the choice of `--u64-as-string`.
///
/// Whichever is chosen, an integer's JSON type follows from its Rust type alone, never from its
/// value: integers of up to 32 bits are always numbers (every JSON reader holds them exactly),
/// and 128-bit integers are always decimal strings (few JSON readers hold integers beyond 64
/// bits: `serde_json` and Go read them as doubles).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Ints {
    /// 64-bit integers as JSON numbers, with their exact value, which typed readers (`serde_json`,
    /// Python, Go into a `uint64`) read exactly.
    #[default]
    Numbers,
    /// 64-bit integers (`u64`, `i64`, their atomics, and the 64-bit fields of `inspect --json`)
    /// as decimal strings, whatever their value: for readers that parse every JSON number as a
    /// double (JavaScript's `JSON.parse`, jq before 1.7), which round integers beyond 2^53.
    U64AsString,
}

impl Ints {
    /// A 64-bit field of `inspect --json`.
    pub fn u64(self, n: u64) -> Json {
        match self {
            Ints::Numbers => Json::from(n),
            Ints::U64AsString => Json::String(n.to_string()),
        }
    }

    /// Whether an integer of primitive `p` is written as a string.
    pub fn as_string(self, p: Primitive) -> bool {
        match p {
            Primitive::U128 | Primitive::I128 => true,
            Primitive::U64 | Primitive::I64 => self == Ints::U64AsString,
            _ => false,
        }
    }
}

/// Writes `s` as a JSON string, with every character a terminal might obey escaped.
pub fn write_str(out: &mut dyn Write, s: &str) -> io::Result<()> {
    out.write_all(b"\"")?;
    let mut plain = 0; // Start of the run of characters not yet written.
    for (i, c) in s.char_indices() {
        let short: &[u8] = match c {
            '"' => b"\\\"",
            '\\' => b"\\\\",
            '\n' => b"\\n",
            '\r' => b"\\r",
            '\t' => b"\\t",
            '\u{8}' => b"\\b",
            '\u{c}' => b"\\f",
            c if escape::is_unsafe(c) => b"",
            _ => continue,
        };
        out.write_all(&s.as_bytes()[plain..i])?;
        plain = i + c.len_utf8();
        if short.is_empty() {
            // Every unsafe character lies in the Basic Multilingual Plane: one \u escape.
            write!(out, "\\u{:04x}", u32::from(c))?;
        } else {
            out.write_all(short)?;
        }
    }
    out.write_all(&s.as_bytes()[plain..])?;
    out.write_all(b"\"")
}

/// Writes `doc` as JSON: compact, or indented by two spaces like `serde_json::to_writer_pretty`.
pub fn write(out: &mut dyn Write, doc: &Json, pretty: bool) -> io::Result<()> {
    write_at(out, doc, pretty.then_some(0))
}

fn write_at(out: &mut dyn Write, doc: &Json, indent: Option<usize>) -> io::Result<()> {
    let newline = |out: &mut dyn Write, depth: usize| match indent {
        Some(_) => write!(out, "\n{:width$}", "", width = 2 * depth),
        None => Ok(()),
    };
    let depth = indent.unwrap_or(0);
    let inner = indent.map(|d| d + 1);
    match doc {
        Json::Null => out.write_all(b"null"),
        Json::Bool(b) => write!(out, "{b}"),
        Json::Number(n) => write!(out, "{n}"),
        Json::String(s) => write_str(out, s),
        Json::Array(items) if items.is_empty() => out.write_all(b"[]"),
        Json::Object(map) if map.is_empty() => out.write_all(b"{}"),
        Json::Array(items) => {
            out.write_all(b"[")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                newline(out, depth + 1)?;
                write_at(out, item, inner)?;
            }
            newline(out, depth)?;
            out.write_all(b"]")
        }
        Json::Object(map) => {
            out.write_all(b"{")?;
            for (i, (key, value)) in map.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                newline(out, depth + 1)?;
                write_str(out, key)?;
                out.write_all(if indent.is_some() { b": " } else { b":" })?;
                write_at(out, value, inner)?;
            }
            newline(out, depth)?;
            out.write_all(b"}")
        }
    }
}

/// A float as a JSON number; NaN and the infinities as the strings JavaScript and Python parse.
pub fn float(x: f64) -> Json {
    match Number::from_f64(x) {
        Some(n) => Json::Number(n),
        None if x.is_nan() => Json::String("NaN".into()),
        None if x > 0.0 => Json::String("Infinity".into()),
        None => Json::String("-Infinity".into()),
    }
}

/// An `f32` as JSON: the shortest decimal that reads back as the same `f32` (0.1f32 is 0.1, not
/// its exact binary value widened to f64, 0.10000000149011612).
pub fn float32(x: f32) -> Json {
    float(format!("{x:?}").parse().unwrap_or(f64::from(x)))
}

/// A schema as JSON, for readers in other languages: names, sizes, offsets and kinds, recursively.
/// Its 64-bit numbers (size, align, array len, field offsets, enum values) follow `ints`.
pub fn schema(s: &Schema, ints: Ints) -> Json {
    let mut out = Map::new();
    out.insert("type".into(), Json::String(s.display_name()));
    out.insert("size".into(), ints.u64(s.size));
    out.insert("align".into(), ints.u64(s.align));
    out.insert("version".into(), Json::from(s.version));
    out.insert("fingerprint".into(), Json::String(format!("{:016x}", s.fingerprint)));
    match &s.kind {
        SchemaKind::Primitive(p) => {
            out.insert("kind".into(), "primitive".into());
            out.insert("primitive".into(), p.name().into());
        }
        SchemaKind::Atomic(p) => {
            out.insert("kind".into(), "atomic".into());
            out.insert("primitive".into(), p.name().into());
        }
        SchemaKind::Array { elem, len } => {
            out.insert("kind".into(), "array".into());
            out.insert("len".into(), ints.u64(*len));
            out.insert("elem".into(), schema(elem, ints));
        }
        SchemaKind::Struct { fields } => {
            out.insert("kind".into(), "struct".into());
            let fields = fields
                .iter()
                .map(|f| json!({ "name": f.name, "offset": ints.u64(f.offset), "schema": schema(&f.schema, ints) }))
                .collect();
            out.insert("fields".into(), Json::Array(fields));
        }
        SchemaKind::Enum { repr, variants } => {
            out.insert("kind".into(), "enum".into());
            out.insert("repr".into(), repr.name().into());
            let variants = variants.iter().map(|v| json!({ "name": v.name, "value": ints.u64(v.value) })).collect();
            out.insert("variants".into(), Json::Array(variants));
        }
        SchemaKind::FixedStr { capacity } => {
            out.insert("kind".into(), "fixed_str".into());
            out.insert("capacity".into(), ints.u64(*capacity));
        }
        _ => {
            out.insert("kind".into(), "unknown".into());
        }
    }
    Json::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_string(doc: &Json, pretty: bool) -> String {
        let mut out = Vec::new();
        write(&mut out, doc, pretty).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn documents_match_serde_json() {
        let doc = json!({
            "a": [1, -2, 3.5, u64::MAX, i64::MIN],
            "b": {"c": null, "d": true, "e": [], "f": {}},
            "s": "x\"y\\z\n\t\u{1}",
            "ü": "温度",
        });
        assert_eq!(to_string(&doc, false), serde_json::to_string(&doc).unwrap());
        assert_eq!(to_string(&doc, true), serde_json::to_string_pretty(&doc).unwrap());
    }

    #[test]
    fn strings_are_terminal_safe_and_read_back_the_same() {
        let nasty = "\x1b[2J\x1bc\u{7f}\u{9b}1m\u{202e}txt\u{2028}\u{8}\u{c}";
        let text = to_string(&json!({ nasty: nasty }), false);
        assert_eq!(
            text,
            r#"{"\u001b[2J\u001bc\u007f\u009b1m\u202etxt\u2028\b\f":"\u001b[2J\u001bc\u007f\u009b1m\u202etxt\u2028\b\f"}"#
        );
        assert!(!text.chars().any(escape::is_unsafe), "{text}");
        let back: Json = serde_json::from_str(&text).unwrap();
        assert_eq!(back[nasty], nasty);
    }

    #[test]
    fn wide_integers_follow_the_mode() {
        assert_eq!(Ints::Numbers.u64(u64::MAX), json!(u64::MAX));
        assert_eq!(Ints::U64AsString.u64(5), json!("5"));
        assert!(Ints::U64AsString.as_string(Primitive::I64));
        assert!(!Ints::U64AsString.as_string(Primitive::U32));
        assert!(!Ints::Numbers.as_string(Primitive::U64));
        // 128-bit integers are strings either way.
        assert!(Ints::Numbers.as_string(Primitive::U128));
        assert!(Ints::U64AsString.as_string(Primitive::I128));
    }

    #[test]
    fn floats() {
        assert_eq!(float32(0.1), json!(0.1));
        assert_eq!(float(-2.5), json!(-2.5));
        assert_eq!(float(f64::NAN), json!("NaN"));
        assert_eq!(float32(f32::INFINITY), json!("Infinity"));
        assert_eq!(float(f64::NEG_INFINITY), json!("-Infinity"));
    }
}

//! Values printed straight from their bytes, walking the schema: no decoded tree of the whole
//! value is built, so a large value (an object holding a big array, or an array element that is
//! one) costs its bytes and nothing more.
//!
//! Scalars (numbers, bools, enums, `FixedStr`) are decoded one at a time with the library's
//! [`value::decode`], which also judges their validity; structs and arrays are walked here, with
//! the same rules as the library's decoder: text looks like [`Value`]'s `Display` (Rust's `Debug`),
//! and parts a schema promises but the bytes do not hold are shown as invalid rather than read.

use std::io::{self, Write};

use shmstore::format::value::{self, Value, MAX_ZERO_SIZED_ELEMENTS};
use shmstore::{Schema, SchemaKind};

use crate::escape;
use crate::json::{self, Ints};

/// Text or JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Like Rust's `Debug`: `Config { port: 8080, mode: Fast }`.
    Text,
    /// Compact JSON, with integers as `Ints` says.
    Json(Ints),
}

/// Writes the value of `schema` held in `bytes`, whose length must be `schema.size`; returns
/// whether some part of it is invalid (shown as `<invalid: ...>`, in JSON `{"$invalid": ...}`).
pub fn value(out: &mut dyn Write, schema: &Schema, bytes: &[u8], style: Style) -> io::Result<bool> {
    let mut r = Renderer { out, style, invalid: false };
    // Values that take no bytes are not bounded by `bytes`, and nested arrays of them multiply:
    // refuse the whole value up front rather than print for ever.
    let empty = value::zero_sized_values(schema);
    if empty > MAX_ZERO_SIZED_ELEMENTS {
        r.invalid(&format!(
            "holds {empty} zero-sized values (in arrays of zero-sized elements), more than the {MAX_ZERO_SIZED_ELEMENTS} that can be shown"
        ))?;
        return Ok(r.invalid);
    }
    r.node(schema, bytes)?;
    Ok(r.invalid)
}

struct Renderer<'a> {
    out: &'a mut dyn Write,
    style: Style,
    invalid: bool,
}

impl Renderer<'_> {
    fn node(&mut self, schema: &Schema, bytes: &[u8]) -> io::Result<()> {
        match &schema.kind {
            SchemaKind::Struct { fields } => {
                let tuple = !fields.is_empty()
                    && fields.iter().all(|f| !f.name.is_empty() && f.name.bytes().all(|b| b.is_ascii_digit()));
                match self.style {
                    Style::Json(_) => self.out.write_all(b"{")?,
                    Style::Text => {
                        self.out.write_all(escape::text(&schema.type_name).as_bytes())?;
                        if fields.is_empty() {
                            return Ok(());
                        }
                        self.out.write_all(if tuple { b"(" } else { b" { " })?;
                    }
                }
                for (i, f) in fields.iter().enumerate() {
                    if i > 0 {
                        self.out.write_all(if self.style == Style::Text { b", " } else { b"," })?;
                    }
                    match self.style {
                        Style::Json(_) => {
                            json::write_str(self.out, &f.name)?;
                            self.out.write_all(b":")?;
                        }
                        Style::Text if !tuple => write!(self.out, "{}: ", escape::text(&f.name))?,
                        Style::Text => {}
                    }
                    match slice(bytes, f.offset, f.schema.size) {
                        Some(part) => self.node(&f.schema, part)?,
                        None => self.invalid(&cut_short(&f.schema))?,
                    }
                }
                self.out.write_all(match (self.style, tuple) {
                    (Style::Json(_), _) => b"}",
                    (Style::Text, true) => b")",
                    (Style::Text, false) => b" }",
                })
            }
            SchemaKind::Array { elem, len } => {
                self.out.write_all(b"[")?;
                for i in 0..*len {
                    if i > 0 {
                        self.out.write_all(if self.style == Style::Text { b", " } else { b"," })?;
                    }
                    match i.checked_mul(elem.size).and_then(|start| slice(bytes, start, elem.size)) {
                        Some(part) => self.node(elem, part)?,
                        None => {
                            self.invalid(&cut_short(schema))?;
                            break;
                        }
                    }
                }
                self.out.write_all(b"]")
            }
            _ => self.scalar(schema, bytes),
        }
    }

    /// A primitive, atomic, enum or `FixedStr`, decoded by the library.
    fn scalar(&mut self, schema: &Schema, bytes: &[u8]) -> io::Result<()> {
        let decoded = match value::decode(schema, bytes) {
            Ok(v) => v,
            Err(e) => Value::Invalid { detail: e.detail },
        };
        if let Value::Invalid { detail } = &decoded {
            return self.invalid(detail);
        }
        let Style::Json(ints) = self.style else {
            return self.out.write_all(escape::text(&decoded.to_string()).as_bytes());
        };
        let wide = match &schema.kind {
            SchemaKind::Primitive(p) | SchemaKind::Atomic(p) => ints.as_string(*p),
            _ => false,
        };
        match &decoded {
            Value::Bool(b) => write!(self.out, "{b}"),
            Value::Unsigned(n) if wide => write!(self.out, "\"{n}\""),
            Value::Signed(n) if wide => write!(self.out, "\"{n}\""),
            Value::Unsigned(n) => write!(self.out, "{n}"),
            Value::Signed(n) => write!(self.out, "{n}"),
            Value::F32(x) => json::write(self.out, &json::float32(*x), false),
            Value::F64(x) => json::write(self.out, &json::float(*x), false),
            Value::Str(s) => json::write_str(self.out, s),
            Value::Enum { variant, .. } => json::write_str(self.out, variant),
            other => self.invalid(&format!("a value this build of shmstore cannot render: {other:?}")),
        }
    }

    fn invalid(&mut self, detail: &str) -> io::Result<()> {
        self.invalid = true;
        match self.style {
            Style::Text => write!(self.out, "<invalid: {}>", escape::text(detail)),
            Style::Json(_) => {
                self.out.write_all(b"{\"$invalid\":")?;
                json::write_str(self.out, detail)?;
                self.out.write_all(b"}")
            }
        }
    }
}

/// The `size` bytes at `offset` within `bytes`, if they are all there.
fn slice(bytes: &[u8], offset: u64, size: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(size).ok()?)?;
    bytes.get(start..end)
}

fn cut_short(schema: &Schema) -> String {
    format!("is cut short: the bytes of `{}` do not add up to its layout", schema.display_name())
}

#[cfg(test)]
mod tests {
    use shmstore::{FixedStr, SharedLayout};

    use super::*;

    fn render<T: SharedLayout>(bytes: &[u8], style: Style) -> (String, bool) {
        render_schema(&Schema::from(&T::LAYOUT), bytes, style)
    }

    fn render_schema(schema: &Schema, bytes: &[u8], style: Style) -> (String, bool) {
        let mut out = Vec::new();
        let invalid = value(&mut out, schema, bytes, style).unwrap();
        (String::from_utf8(out).unwrap(), invalid)
    }

    #[derive(SharedLayout, Clone, Copy)]
    #[repr(u8)]
    enum Mode {
        Slow = 0,
        Fast = 1,
    }

    #[derive(SharedLayout, Clone, Copy)]
    #[repr(C)]
    struct Point {
        x: i32,
        w: u32,
        y: u64,
    }

    #[derive(SharedLayout, Clone, Copy)]
    #[repr(C)]
    struct Pair(u16, bool, Mode);

    #[derive(SharedLayout, Clone, Copy)]
    #[repr(C)]
    struct Named {
        tag: FixedStr<4>,
        flags: [bool; 2],
        pair: Pair,
    }

    #[derive(SharedLayout, Clone, Copy)]
    #[repr(C)]
    struct Unit;

    /// The library's own decoder and `Display`, for comparison.
    fn library_text<T: SharedLayout>(bytes: &[u8]) -> String {
        value::decode(&Schema::from(&T::LAYOUT), bytes).unwrap().to_string()
    }

    #[test]
    fn text_matches_the_library_display() {
        let mut point = (-5i32).to_ne_bytes().to_vec();
        point.extend_from_slice(&[0; 4]);
        point.extend_from_slice(&u64::MAX.to_ne_bytes());
        let named = [b'a', b'b', 0, 0, 1, 0, 7, 0, 1, 1];
        for (text, expected) in [
            (render::<Point>(&point, Style::Text), library_text::<Point>(&point)),
            (render::<Named>(&named, Style::Text), library_text::<Named>(&named)),
            (render::<Unit>(&[], Style::Text), library_text::<Unit>(&[])),
        ] {
            assert_eq!(text, (expected, false));
        }
        assert_eq!(
            render::<Named>(&named, Style::Text).0,
            "Named { tag: \"ab\", flags: [true, false], pair: Pair(7, true, Fast) }"
        );
    }

    #[test]
    fn invalid_parts_are_marked_like_the_library_does() {
        let bad = [b'a', 0, b'b', 0, 2, 0, 7, 0, 1, 9];
        let (text, invalid) = render::<Named>(&bad, Style::Text);
        assert!(invalid);
        assert_eq!(text, library_text::<Named>(&bad));
        assert!(text.contains("flags: [<invalid: holds 2, which is not a valid bool (0 or 1)>, false]"), "{text}");
        let (json, invalid) = render::<Named>(&bad, Style::Json(Ints::Numbers));
        assert!(invalid);
        let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(doc["pair"]["2"]["$invalid"], "holds 9, which is not a variant of enum `Mode`");
    }

    #[test]
    fn json_integers_follow_the_mode() {
        let mut point = 7i32.to_ne_bytes().to_vec();
        point.extend_from_slice(&[0; 4]);
        point.extend_from_slice(&3u64.to_ne_bytes());
        assert_eq!(render::<Point>(&point, Style::Json(Ints::Numbers)).0, r#"{"x":7,"w":0,"y":3}"#);
        assert_eq!(render::<Point>(&point, Style::Json(Ints::U64AsString)).0, r#"{"x":7,"w":0,"y":"3"}"#);
        assert_eq!(render::<u64>(&u64::MAX.to_ne_bytes(), Style::Json(Ints::Numbers)).0, u64::MAX.to_string());
        assert_eq!(render::<u128>(&7u128.to_ne_bytes(), Style::Json(Ints::Numbers)).0, "\"7\"");
        assert_eq!(render::<i64>(&(-1i64).to_ne_bytes(), Style::Json(Ints::U64AsString)).0, "\"-1\"");
    }

    #[test]
    fn names_are_escaped() {
        let mut schema = Schema::from(&Point::LAYOUT);
        schema.type_name = "P\x1b[2J".into();
        if let SchemaKind::Struct { fields } = &mut schema.kind {
            fields[0].name = "x\u{202e}".into();
        }
        let bytes = [0u8; 16];
        let (text, _) = render_schema(&schema, &bytes, Style::Text);
        assert_eq!(text, "P\\u{1b}[2J { x\\u{202e}: 0, w: 0, y: 0 }");
        let (json, _) = render_schema(&schema, &bytes, Style::Json(Ints::Numbers));
        assert_eq!(json, r#"{"x\u202e":0,"w":0,"y":0}"#);
    }

    #[test]
    fn schemas_that_do_not_add_up_show_invalid_parts() {
        // A field that lies beyond the struct's bytes, and a huge array of zero-sized elements.
        let mut schema = Schema::from(&Point::LAYOUT);
        if let SchemaKind::Struct { fields } = &mut schema.kind {
            fields[2].offset = 12;
        }
        let (text, invalid) = render_schema(&schema, &[0; 16], Style::Text);
        assert!(invalid);
        assert!(
            text.ends_with("y: <invalid: is cut short: the bytes of `u64` do not add up to its layout> }"),
            "{text}"
        );
        let unit = Schema::from(&Unit::LAYOUT);
        let huge = Schema {
            type_name: String::new(),
            size: 0,
            align: 1,
            version: 1,
            fingerprint: 0,
            kind: SchemaKind::Array { elem: Box::new(unit), len: u64::MAX },
        };
        let (text, invalid) = render_schema(&huge, &[], Style::Text);
        assert!(invalid && text.contains("zero-sized elements"), "{text}");
    }
}

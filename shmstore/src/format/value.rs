//! Entry values decoded and validated from their [`Schema`] alone, without the Rust type that wrote
//! them: what an inspector, a dumper or a verifier needs.
//!
//! Entry data is in the machine's native byte order (a store written with the other byte order is
//! refused when it is opened), so these functions read it natively. The validity rules are exactly
//! those of [`Layout::validate`](crate::Layout::validate), with the same messages:
//!
//! - a `bool` (or `AtomicBool`) byte is 0 or 1;
//! - an enum holds the discriminant of one of its variants;
//! - a `FixedStr` is UTF-8 up to its first NUL byte, and only NUL bytes follow.
//!
//! Every other byte pattern is a valid value. None of these functions panics, whatever the bytes,
//! and whatever the schema: one built by hand that does not add up gives invalid values or an
//! error, never a panic.
//!
//! ```
//! use shmstore::format::value::{self, Value};
//! use shmstore::{Schema, SharedLayout};
//!
//! let schema = Schema::from(&<[bool; 3]>::LAYOUT);
//! let v = value::decode(&schema, &[1, 0, 1])?;
//! assert_eq!(v, Value::Array(vec![Value::Bool(true), Value::Bool(false), Value::Bool(true)]));
//! assert_eq!(v.to_string(), "[true, false, true]");
//!
//! let err = value::validate(&schema, &[1, 7, 0], "flags").unwrap_err();
//! assert_eq!(err.to_string(), "flags[1] holds 7, which is not a valid bool (0 or 1)");
//! # Ok::<(), shmstore::InvalidValue>(())
//! ```

use std::fmt;
use std::ops::ControlFlow;

use crate::format::schema::{Schema, SchemaKind, SchemaVariant};
use crate::layout::{check_fixed_str, read_unsigned, InvalidValue, Primitive};

/// The most values that take no bytes (elements of zero-sized arrays, at every depth together)
/// that [`decode`] expands in one value. Such values are not bounded by the input's length, and
/// nested arrays multiply (`[[[u8; 0]; 1 << 20]; 1 << 20]` is 2^40 of them); beyond this, [`decode`]
/// refuses the value instead of allocating without bound. See [`zero_sized_values`].
pub const MAX_ZERO_SIZED_ELEMENTS: u64 = 1 << 20;

/// How many values of `schema`, expanded into a tree, take no bytes: every node of a zero-sized
/// part, counted through every enclosing array (saturating at `u64::MAX`). A printer or decoder
/// that walks a value must refuse one whose count exceeds its budget before it starts.
pub fn zero_sized_values(schema: &Schema) -> u64 {
    fn nodes(schema: &Schema) -> u64 {
        match &schema.kind {
            SchemaKind::Array { elem, len } => len.saturating_mul(nodes(elem)).saturating_add(1),
            SchemaKind::Struct { fields } => fields.iter().fold(1, |n, f| n.saturating_add(nodes(&f.schema))),
            _ => 1,
        }
    }
    if schema.size == 0 {
        return nodes(schema);
    }
    match &schema.kind {
        SchemaKind::Array { elem, len } => len.saturating_mul(zero_sized_values(elem)),
        SchemaKind::Struct { fields } => fields.iter().fold(0, |n, f| n.saturating_add(zero_sized_values(&f.schema))),
        _ => 0,
    }
}

/// A value decoded from entry bytes by its schema: a tree that mirrors the [`Schema`].
///
/// Its [`Display`](fmt::Display) renders it like Rust's `Debug`:
/// `Config { port: 8080, verbose: true, name: "edge-1", mode: Fast }`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// A `bool` or `AtomicBool`.
    Bool(bool),
    /// An unsigned integer of any width (`u8` to `u128`, and the unsigned atomics).
    Unsigned(u128),
    /// A signed integer of any width (`i8` to `i128`, and the signed atomics).
    Signed(i128),
    /// An `f32`.
    F32(f32),
    /// An `f64`.
    F64(f64),
    /// A `FixedStr`'s text, without its trailing NUL bytes.
    Str(String),
    /// An enum, by its variant.
    Enum {
        /// The variant's name.
        variant: String,
        /// The discriminant, zero-extended to 64 bits as the schema stores it.
        value: u64,
    },
    /// An array's elements, in order.
    Array(Vec<Value>),
    /// A struct's fields, in declaration order.
    Struct {
        /// The struct's declared name.
        type_name: String,
        /// Each field's name and value.
        fields: Vec<(String, Value)>,
    },
    /// Bytes that are not a valid value of their type.
    Invalid {
        /// What is wrong, in the words of [`Layout::validate`](crate::Layout::validate): `holds
        /// 7, which is not a valid bool (0 or 1)`.
        detail: String,
    },
}

impl Value {
    /// Whether this value, or any value inside it, is [`Value::Invalid`].
    pub fn has_invalid(&self) -> bool {
        match self {
            Value::Invalid { .. } => true,
            Value::Array(items) => items.iter().any(Value::has_invalid),
            Value::Struct { fields, .. } => fields.iter().any(|(_, v)| v.has_invalid()),
            _ => false,
        }
    }
}

/// Decodes `bytes` as one value of `schema`.
///
/// Values that break their type's rules decode to [`Value::Invalid`] in place, so that the rest
/// can still be shown; use [`validate`] to refuse them instead. The error is for bytes whose length
/// is not the schema's size, and for values holding more than [`MAX_ZERO_SIZED_ELEMENTS`]
/// zero-sized values ([`zero_sized_values`]).
pub fn decode(schema: &Schema, bytes: &[u8]) -> Result<Value, InvalidValue> {
    check_len(schema, bytes, "value")?;
    let empty = zero_sized_values(schema);
    if empty > MAX_ZERO_SIZED_ELEMENTS {
        return Err(InvalidValue {
            path: "value".into(),
            detail: format!(
                "holds {empty} zero-sized values (in arrays of zero-sized elements), more than the {MAX_ZERO_SIZED_ELEMENTS} that can be decoded"
            ),
        });
    }
    decode_at(schema, bytes, &Path::Root("value"))
}

/// Checks that `bytes` hold a valid value of `schema`, naming the first bad one by its path from
/// `path` (`config.mode`, `rows[3].enabled`).
pub fn validate(schema: &Schema, bytes: &[u8], path: &str) -> Result<(), InvalidValue> {
    let mut first = None;
    let _ = find_invalid(schema, bytes, path, &mut |invalid| {
        first = Some(invalid);
        ControlFlow::Break(())
    });
    first.map_or(Ok(()), Err)
}

/// Reports every invalid value in `bytes`, one value of `schema` named `path`, to `found`, in
/// byte order, until `found` breaks. Bytes of the wrong length are reported once, at `path`.
pub fn find_invalid(
    schema: &Schema,
    bytes: &[u8],
    path: &str,
    found: &mut dyn FnMut(InvalidValue) -> ControlFlow<()>,
) -> ControlFlow<()> {
    if let Err(invalid) = check_len(schema, bytes, path) {
        return found(invalid);
    }
    if !needs_validation(schema) {
        return ControlFlow::Continue(());
    }
    check_at(schema, bytes, &Path::Root(path), found)
}

/// Reports every invalid value in `bytes`, consecutive values of `elem` that are the elements
/// `first_index..` of the array `name` (paths `name[7].field`), to `found`, until it breaks. A
/// trailing part shorter than one element is reported once; with zero-sized elements, `bytes` must
/// be empty.
///
/// This is how an array entry is checked in chunks without copying it whole.
pub fn find_invalid_elements(
    elem: &Schema,
    bytes: &[u8],
    name: &str,
    first_index: u64,
    found: &mut dyn FnMut(InvalidValue) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let root = Path::Root(name);
    let size = usize::try_from(elem.size).unwrap_or(usize::MAX);
    if size == 0 || !bytes.len().is_multiple_of(size) {
        if bytes.is_empty() {
            return ControlFlow::Continue(());
        }
        let whole = bytes.len().checked_div(size).unwrap_or(0) as u64;
        return found(InvalidValue {
            path: Path::Index(&root, first_index + whole).render(),
            detail: format!(
                "is cut short: {} bytes are not a whole number of {}-byte `{}` elements",
                bytes.len(),
                elem.size,
                elem.display_name()
            ),
        });
    }
    if !needs_validation(elem) {
        return ControlFlow::Continue(());
    }
    for (i, chunk) in bytes.chunks_exact(size).enumerate() {
        check_at(elem, chunk, &Path::Index(&root, first_index + i as u64), found)?;
    }
    ControlFlow::Continue(())
}

/// Whether some byte patterns of `schema` are not valid values: it holds a `bool`, an enum or a
/// `FixedStr` somewhere, in bytes that exist. Values of other schemas need no checking.
pub fn needs_validation(schema: &Schema) -> bool {
    schema.size > 0
        && match &schema.kind {
            SchemaKind::Primitive(p) | SchemaKind::Atomic(p) => *p == Primitive::Bool,
            SchemaKind::Array { elem, len } => *len > 0 && needs_validation(elem),
            SchemaKind::Struct { fields } => fields.iter().any(|f| needs_validation(&f.schema)),
            SchemaKind::Enum { .. } | SchemaKind::FixedStr { .. } => true,
        }
}

/// A path to a value, built on the stack as the walk descends and rendered only for a report.
enum Path<'a> {
    Root(&'a str),
    Field(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, u64),
}

impl Path<'_> {
    fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        use std::fmt::Write;
        match self {
            Path::Root(name) => out.push_str(name),
            Path::Field(parent, name) => {
                parent.write(out);
                out.push('.');
                out.push_str(name);
            }
            Path::Index(parent, i) => {
                parent.write(out);
                let _ = write!(out, "[{i}]");
            }
        }
    }
}

fn check_len(schema: &Schema, bytes: &[u8], path: &str) -> Result<(), InvalidValue> {
    if bytes.len() as u64 == schema.size {
        Ok(())
    } else {
        Err(InvalidValue {
            path: path.to_owned(),
            detail: format!("is {} bytes long, but `{}` is {} bytes", bytes.len(), schema.display_name(), schema.size),
        })
    }
}

/// The bytes of `schema` at `offset` within `bytes`, if they are all there.
fn slice(bytes: &[u8], offset: u64, size: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(size).ok()?)?;
    bytes.get(start..end)
}

fn cut_short(schema: &Schema) -> String {
    format!("is cut short: the bytes of `{}` do not add up to its layout", schema.display_name())
}

/// The checks of [`find_invalid`], below its length check.
fn check_at(
    schema: &Schema,
    bytes: &[u8],
    path: &Path<'_>,
    found: &mut dyn FnMut(InvalidValue) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let report = |detail: String| InvalidValue { path: path.render(), detail };
    match &schema.kind {
        SchemaKind::Primitive(_) | SchemaKind::Atomic(_) | SchemaKind::Enum { .. } | SchemaKind::FixedStr { .. } => {
            match scalar_problem(schema, bytes) {
                Some(detail) => found(report(detail)),
                None => ControlFlow::Continue(()),
            }
        }
        SchemaKind::Array { elem, len } => {
            if !needs_validation(elem) {
                return ControlFlow::Continue(());
            }
            for i in 0..*len {
                let Some(chunk) = i.checked_mul(elem.size).and_then(|start| slice(bytes, start, elem.size)) else {
                    return found(report(cut_short(schema)));
                };
                check_at(elem, chunk, &Path::Index(path, i), found)?;
            }
            ControlFlow::Continue(())
        }
        SchemaKind::Struct { fields } => {
            for f in fields.iter().filter(|f| needs_validation(&f.schema)) {
                let Some(chunk) = slice(bytes, f.offset, f.schema.size) else {
                    return found(report(cut_short(schema)));
                };
                check_at(&f.schema, chunk, &Path::Field(path, &f.name), found)?;
            }
            ControlFlow::Continue(())
        }
    }
}

/// What is wrong with the bytes of a scalar (primitive, atomic, enum or `FixedStr`), if anything.
fn scalar_problem(schema: &Schema, bytes: &[u8]) -> Option<String> {
    match &schema.kind {
        SchemaKind::Primitive(Primitive::Bool) | SchemaKind::Atomic(Primitive::Bool) => match bytes.first() {
            Some(0 | 1) => None,
            other => Some(format!("holds {}, which is not a valid bool (0 or 1)", other.copied().unwrap_or(0))),
        },
        SchemaKind::Enum { repr, variants } => match variant_of(bytes, *repr, variants) {
            Ok(_) => None,
            Err(value) => Some(format!("holds {value}, which is not a variant of enum `{}`", schema.type_name)),
        },
        SchemaKind::FixedStr { capacity } => {
            let n = usize::try_from(*capacity).unwrap_or(usize::MAX).min(bytes.len());
            check_fixed_str(&bytes[..n]).err()
        }
        _ => None,
    }
}

/// The variant whose discriminant `bytes` hold, or the discriminant if no variant has it. Read as
/// [`Layout::validate`](crate::Layout::validate) reads it: the first `min(size, 8)` bytes, native
/// order, zero-extended.
fn variant_of<'a>(bytes: &[u8], repr: Primitive, variants: &'a [SchemaVariant]) -> Result<&'a SchemaVariant, u64> {
    let value = read_unsigned(bytes, repr);
    variants.iter().find(|v| v.value == value).ok_or(value)
}

/// A native-endian fixed-size read; `None` if `bytes` is not exactly `N` long.
fn ne<const N: usize>(bytes: &[u8]) -> Option<[u8; N]> {
    bytes.try_into().ok()
}

fn decode_primitive(p: Primitive, bytes: &[u8]) -> Option<Value> {
    Some(match p {
        Primitive::U8 => Value::Unsigned(u8::from_ne_bytes(ne(bytes)?).into()),
        Primitive::U16 => Value::Unsigned(u16::from_ne_bytes(ne(bytes)?).into()),
        Primitive::U32 => Value::Unsigned(u32::from_ne_bytes(ne(bytes)?).into()),
        Primitive::U64 => Value::Unsigned(u64::from_ne_bytes(ne(bytes)?).into()),
        Primitive::U128 => Value::Unsigned(u128::from_ne_bytes(ne(bytes)?)),
        Primitive::I8 => Value::Signed(i8::from_ne_bytes(ne(bytes)?).into()),
        Primitive::I16 => Value::Signed(i16::from_ne_bytes(ne(bytes)?).into()),
        Primitive::I32 => Value::Signed(i32::from_ne_bytes(ne(bytes)?).into()),
        Primitive::I64 => Value::Signed(i64::from_ne_bytes(ne(bytes)?).into()),
        Primitive::I128 => Value::Signed(i128::from_ne_bytes(ne(bytes)?)),
        Primitive::F32 => Value::F32(f32::from_ne_bytes(ne(bytes)?)),
        Primitive::F64 => Value::F64(f64::from_ne_bytes(ne(bytes)?)),
        Primitive::Bool => match bytes {
            [0] => Value::Bool(false),
            [1] => Value::Bool(true),
            _ => return None,
        },
    })
}

fn decode_at(schema: &Schema, bytes: &[u8], path: &Path<'_>) -> Result<Value, InvalidValue> {
    let invalid = |detail: String| Value::Invalid { detail };
    Ok(match &schema.kind {
        SchemaKind::Primitive(p) | SchemaKind::Atomic(p) => match scalar_problem(schema, bytes) {
            Some(detail) => invalid(detail),
            None => decode_primitive(*p, bytes).unwrap_or_else(|| {
                invalid(format!("is {} bytes long, but `{}` is {} bytes", bytes.len(), p.name(), p.size()))
            }),
        },
        SchemaKind::Enum { repr, variants } => match variant_of(bytes, *repr, variants) {
            Ok(v) => Value::Enum { variant: v.name.clone(), value: v.value },
            Err(_) => invalid(scalar_problem(schema, bytes).unwrap_or_default()),
        },
        SchemaKind::FixedStr { .. } => match scalar_problem(schema, bytes) {
            Some(detail) => invalid(detail),
            None => {
                let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
                Value::Str(String::from_utf8_lossy(&bytes[..len]).into_owned())
            }
        },
        SchemaKind::Array { elem, len } => {
            let mut items = Vec::with_capacity(usize::try_from(*len).unwrap_or(0).min(bytes.len().max(64)));
            for i in 0..*len {
                let Some(chunk) = i.checked_mul(elem.size).and_then(|start| slice(bytes, start, elem.size)) else {
                    items.push(invalid(cut_short(schema)));
                    break;
                };
                items.push(decode_at(elem, chunk, &Path::Index(path, i))?);
            }
            Value::Array(items)
        }
        SchemaKind::Struct { fields } => {
            let mut out = Vec::with_capacity(fields.len().min(1024));
            for f in fields {
                let value = match slice(bytes, f.offset, f.schema.size) {
                    Some(chunk) => decode_at(&f.schema, chunk, &Path::Field(path, &f.name))?,
                    None => invalid(cut_short(&f.schema)),
                };
                out.push((f.name.clone(), value));
            }
            Value::Struct { type_name: schema.type_name.clone(), fields: out }
        }
    })
}

impl fmt::Display for Value {
    /// Renders the value like Rust's `Debug`: structs as `Name { field: value }` (tuple structs
    /// as `Name(a, b)`), arrays as `[a, b]`, text quoted and escaped, enums by variant name, floats
    /// as `1.0`, `NaN` and `inf`, and invalid values as `<invalid: detail>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Unsigned(n) => write!(f, "{n}"),
            Value::Signed(n) => write!(f, "{n}"),
            Value::F32(x) => write!(f, "{x:?}"),
            Value::F64(x) => write!(f, "{x:?}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Enum { variant, .. } => f.write_str(variant),
            Value::Invalid { detail } => write!(f, "<invalid: {detail}>"),
            Value::Array(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Value::Struct { type_name, fields } => {
                f.write_str(type_name)?;
                if fields.is_empty() {
                    return Ok(());
                }
                let tuple = fields.iter().all(|(name, _)| !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()));
                f.write_str(if tuple { "(" } else { " { " })?;
                for (i, (name, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    if tuple {
                        write!(f, "{value}")?;
                    } else {
                        write!(f, "{name}: {value}")?;
                    }
                }
                f.write_str(if tuple { ")" } else { " }" })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32};

    use super::*;
    use crate::format::schema::SchemaField;
    use crate::{FixedStr, SharedLayout};

    #[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Eq)]
    #[repr(u16)]
    enum Mode {
        Slow = 0,
        Fast = 7,
    }

    #[derive(SharedLayout, Clone, Copy)]
    #[repr(C)]
    struct Row {
        id: u32,
        enabled: bool,
        _pad: u8,
        mode: Mode,
    }

    #[derive(SharedLayout)]
    #[repr(C)]
    struct Config {
        big: i64,
        rows: [Row; 4],
        hits: AtomicU32,
        temp: f32,
        name: FixedStr<8>,
        on: AtomicBool,
        grid: [[u8; 2]; 3],
        _pad: u8,
        count: AtomicI64,
    }

    #[derive(SharedLayout)]
    #[repr(C)]
    struct Pair(u8, i8);

    fn bytes_of<T: SharedLayout>(mut value: T) -> Vec<u8> {
        crate::entry::staging::owned_bytes(&mut value).to_vec()
    }

    fn config() -> Config {
        let row = |id, enabled, mode| Row { id, enabled, _pad: 0, mode };
        Config {
            big: -(1 << 40),
            rows: [
                row(1, true, Mode::Fast),
                row(2, false, Mode::Slow),
                row(3, true, Mode::Slow),
                row(4, true, Mode::Fast),
            ],
            hits: AtomicU32::new(9),
            temp: 1.5,
            name: FixedStr::new("edge-1").unwrap(),
            on: AtomicBool::new(true),
            grid: [[1, 2], [3, 4], [5, 6]],
            _pad: 0,
            count: AtomicI64::new(-3),
        }
    }

    fn offset_of_rows_enabled(i: usize) -> usize {
        std::mem::offset_of!(Config, rows) + i * std::mem::size_of::<Row>() + std::mem::offset_of!(Row, enabled)
    }

    #[test]
    fn decodes_every_kind() {
        let schema = Schema::from(&Config::LAYOUT);
        let value = decode(&schema, &bytes_of(config())).unwrap();
        assert!(!value.has_invalid());
        assert_eq!(
            value.to_string(),
            "Config { big: -1099511627776, rows: [Row { id: 1, enabled: true, _pad: 0, mode: Fast }, \
             Row { id: 2, enabled: false, _pad: 0, mode: Slow }, Row { id: 3, enabled: true, _pad: 0, mode: Slow }, \
             Row { id: 4, enabled: true, _pad: 0, mode: Fast }], hits: 9, temp: 1.5, name: \"edge-1\", on: true, \
             grid: [[1, 2], [3, 4], [5, 6]], _pad: 0, count: -3 }"
        );
        let pair = decode(&Schema::from(&Pair::LAYOUT), &[200, 0xff]).unwrap();
        assert_eq!(pair.to_string(), "Pair(200, -1)");
        assert_eq!(decode(&Schema::from(&u128::LAYOUT), &u128::MAX.to_ne_bytes()).unwrap(), Value::Unsigned(u128::MAX));
        assert_eq!(decode(&Schema::from(&f64::LAYOUT), &f64::NAN.to_ne_bytes()).unwrap().to_string(), "NaN");
        assert_eq!(
            decode(&Schema::from(&Mode::LAYOUT), &7u16.to_ne_bytes()).unwrap(),
            Value::Enum { variant: "Fast".into(), value: 7 }
        );
    }

    #[test]
    fn invalid_values_decode_in_place_and_agree_with_layout_validate() {
        let schema = Schema::from(&Config::LAYOUT);
        let good = bytes_of(config());
        assert_eq!(validate(&schema, &good, "config"), Ok(()));
        let name_at = std::mem::offset_of!(Config, name);
        let mode_at = std::mem::offset_of!(Config, rows) + 2 * 8 + std::mem::offset_of!(Row, mode);
        let on_at = std::mem::offset_of!(Config, on);
        let cases: [(usize, u8, &str); 4] = [
            (offset_of_rows_enabled(3), 7, "config.rows[3].enabled"),
            (mode_at, 3, "config.rows[2].mode"),
            (name_at + 2, 0xff, "config.name"),
            (on_at, 2, "config.on"),
        ];
        for (at, byte, path) in cases {
            let mut bad = good.clone();
            bad[at] = byte;
            let ours = validate(&schema, &bad, "config").unwrap_err();
            let theirs = Config::LAYOUT.validate(&bad).unwrap_err();
            assert_eq!(ours.path, path);
            assert_eq!(theirs.path, path.replacen("config", "value", 1));
            assert_eq!(ours.detail, theirs.detail);
            let value = decode(&schema, &bad).unwrap();
            assert!(value.has_invalid(), "{path}");
            assert!(value.to_string().contains(&format!("<invalid: {}>", ours.detail)), "{value}");
        }
        // A FixedStr with bytes after its NUL.
        let mut bad = good.clone();
        bad[name_at + 7] = b'x';
        assert_eq!(
            validate(&schema, &bad, "c").unwrap_err().to_string(),
            "c.name has non-zero bytes after its end at byte 6"
        );
    }

    #[test]
    fn finds_every_invalid_value_until_told_to_stop() {
        let schema = Schema::from(&Config::LAYOUT);
        let mut bad = bytes_of(config());
        for i in 0..4 {
            bad[offset_of_rows_enabled(i)] = 9;
        }
        let mut paths = Vec::new();
        let _ = find_invalid(&schema, &bad, "c", &mut |v| {
            paths.push(v.path);
            ControlFlow::Continue(())
        });
        assert_eq!(paths, ["c.rows[0].enabled", "c.rows[1].enabled", "c.rows[2].enabled", "c.rows[3].enabled"]);
        let mut count = 0;
        let flow = find_invalid(&schema, &bad, "c", &mut |_| {
            count += 1;
            if count == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert_eq!((flow, count), (ControlFlow::Break(()), 2));
    }

    #[test]
    fn elements_are_named_by_their_index_in_the_array() {
        let elem = Schema::from(&Row::LAYOUT);
        let mut bytes = Vec::new();
        for i in 0..5u32 {
            bytes.extend_from_slice(&bytes_of(Row { id: i, enabled: true, _pad: 0, mode: Mode::Slow }));
        }
        bytes[3 * 8 + 4] = 5;
        let mut found = Vec::new();
        let _ = find_invalid_elements(&elem, &bytes, "rows", 100, &mut |v| {
            found.push(v.to_string());
            ControlFlow::Continue(())
        });
        assert_eq!(found, ["rows[103].enabled holds 5, which is not a valid bool (0 or 1)"]);
        found.clear();
        let _ = find_invalid_elements(&elem, &bytes[..13], "rows", 0, &mut |v| {
            found.push(v.path);
            ControlFlow::Continue(())
        });
        assert_eq!(found, ["rows[1]"]);
        // Types without bools, enums or text need no checks, and any bytes pass.
        assert!(!needs_validation(&Schema::from(&<[u64; 3]>::LAYOUT)));
        assert!(!needs_validation(&Schema::from(&<[bool; 0]>::LAYOUT)));
        assert!(needs_validation(&elem));
        assert!(find_invalid_elements(&Schema::from(&u64::LAYOUT), &[0xff; 24], "n", 0, &mut |_| {
            ControlFlow::Break(())
        })
        .is_continue());
    }

    #[test]
    fn wrong_lengths_and_broken_schemas_never_panic() {
        let schema = Schema::from(&Config::LAYOUT);
        let err = decode(&schema, &[0; 3]).unwrap_err();
        assert_eq!(err.path, "value");
        assert!(err.detail.contains("is 3 bytes long"), "{err}");
        assert!(validate(&schema, &[0; 3], "c").is_err());
        // A hand-built schema whose field lies beyond the struct.
        let broken = Schema {
            type_name: "Broken".into(),
            size: 2,
            align: 1,
            version: 1,
            fingerprint: 0,
            kind: SchemaKind::Struct {
                fields: vec![SchemaField { name: "b".into(), offset: 1, schema: Schema::from(&u16::LAYOUT) }],
            },
        };
        assert!(decode(&broken, &[0, 0]).unwrap().has_invalid());
        let mut flag = Schema::from(&bool::LAYOUT);
        flag.size = 2;
        let Value::Invalid { .. } = decode(&flag, &[1, 0]).unwrap() else { panic!() };
        // Huge arrays of nothing are refused rather than expanded.
        let huge = Schema {
            type_name: String::new(),
            size: 0,
            align: 1,
            version: 1,
            fingerprint: 0,
            kind: SchemaKind::Array { elem: Box::new(Schema::from(&<[u8; 0]>::LAYOUT)), len: u64::MAX },
        };
        assert!(decode(&huge, &[]).is_err());
        assert_eq!(validate(&huge, &[], "z"), Ok(()));
    }
}

//! Entry values encoded into bytes by their [`Schema`] alone: the inverse of
//! [`value::decode`](super::value::decode), for writers that have no Rust type (the Python package,
//! a JSON loader).
//!
//! [`encode`] turns a whole [`Value`] into the bytes of one value of a schema; [`patch`] writes a
//! partial value over existing bytes (a struct names only the fields it changes). Both check the
//! value against the schema first and refuse, naming the path of the first bad part and what to
//! do, anything that would not decode back to itself:
//!
//! - an integer must fit its type (`u16` takes 0 to 65535); either sign of [`Value`] is accepted
//!   for either kind of integer when the number fits;
//! - a float field takes [`Value::F32`], [`Value::F64`] or an integer; an `f32` refuses a finite
//!   number beyond its range (NaN and the infinities pass);
//! - a `bool` takes only [`Value::Bool`];
//! - an enum takes [`Value::Enum`] by its variant's **name** (its `value` is ignored), which must
//!   be one of the schema's variants;
//! - a `FixedStr<N>` takes [`Value::Str`] of at most `N` bytes of UTF-8 and no NUL character;
//! - an array takes [`Value::Array`] of exactly its length;
//! - a struct takes [`Value::Struct`] (its `type_name` is ignored) whose fields are named, in any
//!   order, each at most once. [`encode`] needs every field, except those whose name starts with
//!   `_` (explicit padding such as `_pad`), which are zero when left out; [`patch`] changes only
//!   the fields named;
//! - [`Value::Invalid`] is never accepted.
//!
//! Atomics are written like the plain scalar of their width, and bytes not covered by any field
//! are zero in [`encode`] (schemas that shmstore writes have none). Entry data is native-endian,
//! like [`value::decode`](super::value::decode) reads it. None of these functions panics, whatever
//! the value and the schema: a hand-built schema that does not add up gives an error.
//!
//! ```
//! use shmstore::format::encode;
//! use shmstore::format::value::{self, Value};
//! use shmstore::{Schema, SharedLayout};
//!
//! let schema = Schema::from(&<[u16; 2]>::LAYOUT);
//! let v = Value::Array(vec![Value::Unsigned(1), Value::Unsigned(65535)]);
//! let bytes = encode::encode(&schema, &v, "pair")?;
//! assert_eq!(value::decode(&schema, &bytes)?, v);
//!
//! let too_big = Value::Array(vec![Value::Unsigned(1), Value::Unsigned(65536)]);
//! let err = encode::encode(&schema, &too_big, "pair").unwrap_err();
//! assert_eq!(err.to_string(), "pair[1] is 65536, out of range for `u16` (0 to 65535)");
//! # Ok::<(), shmstore::InvalidValue>(())
//! ```

use crate::format::schema::{Schema, SchemaKind};
use crate::format::value::Value;
use crate::layout::{InvalidValue, Primitive};

/// Encodes `value` as the bytes of one value of `schema`: the inverse of
/// [`value::decode`](super::value::decode) for every value it can return but
/// [`Value::Invalid`]. `path` names the value in errors (`config`, so that a bad field is
/// `config.port`). See the [module](self) for what each kind of the schema accepts.
pub fn encode(schema: &Schema, value: &Value, path: &str) -> Result<Vec<u8>, InvalidValue> {
    let mut out = zeroed(schema.size, path)?;
    write(schema, value, &mut out, &mut path.to_owned(), Mode::Whole)?;
    Ok(out)
}

/// Writes `value` over `bytes`, one value of `schema`, changing only what `value` names: a
/// [`Value::Struct`] sets just the fields it lists (recursively, so a nested struct may be
/// partial too); every other kind of value replaces its bytes whole. On error, `bytes` is left
/// unchanged. `bytes` must be exactly `schema.size` long.
pub fn patch(schema: &Schema, bytes: &mut [u8], value: &Value, path: &str) -> Result<(), InvalidValue> {
    if bytes.len() as u64 != schema.size {
        return Err(InvalidValue {
            path: path.to_owned(),
            detail: format!("is {} bytes long, but `{}` is {} bytes", bytes.len(), schema.display_name(), schema.size),
        });
    }
    let mut scratch = bytes.to_vec();
    write(schema, value, &mut scratch, &mut path.to_owned(), Mode::Patch)?;
    bytes.copy_from_slice(&scratch);
    Ok(())
}

/// Whether a struct value must name every field ([`encode`]) or only those it changes ([`patch`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Whole,
    Patch,
}

fn zeroed(size: u64, path: &str) -> Result<Vec<u8>, InvalidValue> {
    let too_big = || InvalidValue {
        path: path.to_owned(),
        detail: format!("is {size} bytes long, too large to encode in memory"),
    };
    let size = usize::try_from(size).map_err(|_| too_big())?;
    let mut out = Vec::new();
    out.try_reserve_exact(size).map_err(|_| too_big())?;
    out.resize(size, 0);
    Ok(out)
}

fn err(path: &str, detail: String) -> InvalidValue {
    InvalidValue { path: path.to_owned(), detail }
}

/// What a value is, in words, for "expects X, got Y" messages.
fn describe(value: &Value) -> String {
    match value {
        Value::Bool(b) => format!("the bool {b}"),
        Value::Unsigned(n) => format!("the integer {n}"),
        Value::Signed(n) => format!("the integer {n}"),
        Value::F32(x) => format!("the float {x:?}"),
        Value::F64(x) => format!("the float {x:?}"),
        Value::Str(s) => format!("the string {s:?}"),
        Value::Enum { variant, .. } => format!("the enum variant {variant}"),
        Value::Array(items) => format!("an array of {} elements", items.len()),
        Value::Struct { .. } => "a struct".to_owned(),
        Value::Invalid { detail } => format!("an invalid value ({detail})"),
    }
}

/// Writes `value` into `out` (exactly `schema.size` bytes), or refuses it with `path`'s name.
fn write(schema: &Schema, value: &Value, out: &mut [u8], path: &mut String, mode: Mode) -> Result<(), InvalidValue> {
    if out.len() as u64 != schema.size {
        return Err(err(
            path,
            format!("does not fit its layout: the schema of `{}` does not add up", schema.display_name()),
        ));
    }
    match &schema.kind {
        SchemaKind::Primitive(p) | SchemaKind::Atomic(p) => write_scalar(*p, value, out, path),
        SchemaKind::Enum { repr, variants } => {
            let Value::Enum { variant, .. } = value else {
                return Err(err(
                    path,
                    format!("expects a variant of enum `{}`, got {}", schema.type_name, describe(value)),
                ));
            };
            let Some(found) = variants.iter().find(|v| v.name == *variant) else {
                let names: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
                return Err(err(
                    path,
                    format!(
                        "is {variant:?}, which is not a variant of enum `{}`: use one of {}",
                        schema.type_name,
                        names.join(", ")
                    ),
                ));
            };
            if repr.size() != out.len() || matches!(repr, Primitive::F32 | Primitive::F64 | Primitive::Bool) {
                return Err(err(path, format!("does not fit its layout: enum `{}` has a bad repr", schema.type_name)));
            }
            write_unsigned(out, found.value);
            Ok(())
        }
        SchemaKind::FixedStr { capacity } => {
            let Value::Str(text) = value else {
                return Err(err(
                    path,
                    format!("expects a string (`{}`), got {}", schema.display_name(), describe(value)),
                ));
            };
            if text.contains('\0') {
                return Err(err(
                    path,
                    format!("is {text:?}, which holds a NUL character: a `FixedStr` ends at its first NUL, remove it"),
                ));
            }
            if text.len() as u64 > *capacity || text.len() > out.len() {
                return Err(err(
                    path,
                    format!(
                        "is {text:?}, {} bytes of UTF-8, but `{}` holds at most {capacity}: shorten it",
                        text.len(),
                        schema.display_name()
                    ),
                ));
            }
            out.fill(0);
            out[..text.len()].copy_from_slice(text.as_bytes());
            Ok(())
        }
        SchemaKind::Array { elem, len } => {
            let Value::Array(items) = value else {
                return Err(err(path, format!("expects an array of {len} elements, got {}", describe(value))));
            };
            if items.len() as u64 != *len {
                return Err(err(
                    path,
                    format!(
                        "has {} elements, but `{}` has exactly {len}: give all of them",
                        items.len(),
                        schema.display_name()
                    ),
                ));
            }
            let size = usize::try_from(elem.size).unwrap_or(usize::MAX);
            let base = path.len();
            for (i, item) in items.iter().enumerate() {
                use std::fmt::Write;
                let _ = write!(path, "[{i}]");
                let chunk = i.checked_mul(size).and_then(|start| out.get_mut(start..start.checked_add(size)?));
                let Some(chunk) = chunk else {
                    return Err(err(
                        path,
                        format!("does not fit its layout: the schema of `{}` does not add up", schema.display_name()),
                    ));
                };
                write(elem, item, chunk, path, mode)?;
                path.truncate(base);
            }
            Ok(())
        }
        SchemaKind::Struct { fields } => {
            let Value::Struct { fields: given, .. } = value else {
                return Err(err(path, format!("expects a struct `{}`, got {}", schema.type_name, describe(value))));
            };
            let names = || fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ");
            for (i, (name, _)) in given.iter().enumerate() {
                if !fields.iter().any(|f| f.name == *name) {
                    return Err(err(
                        path,
                        format!("has no field `{name}`: the fields of `{}` are {}", schema.type_name, names()),
                    ));
                }
                if given[..i].iter().any(|(earlier, _)| earlier == name) {
                    return Err(err(path, format!("names the field `{name}` twice: give it once")));
                }
            }
            let base = path.len();
            for field in fields {
                let chunk = usize::try_from(field.offset).ok().and_then(|start| {
                    let end = start.checked_add(usize::try_from(field.schema.size).ok()?)?;
                    out.get_mut(start..end)
                });
                path.push('.');
                path.push_str(&field.name);
                let Some(chunk) = chunk else {
                    return Err(err(
                        path,
                        format!("does not fit its layout: the schema of `{}` does not add up", schema.type_name),
                    ));
                };
                match given.iter().find(|(name, _)| *name == field.name) {
                    Some((_, v)) => write(&field.schema, v, chunk, path, mode)?,
                    None if mode == Mode::Patch || field.name.starts_with('_') => {}
                    None => {
                        return Err(err(
                            path,
                            format!(
                                "is missing: give every field of `{}` ({}), or change some with an update",
                                schema.type_name,
                                names()
                            ),
                        ))
                    }
                }
                path.truncate(base);
            }
            Ok(())
        }
    }
}

/// Writes a discriminant as [`read_unsigned`](crate::layout::read_unsigned) reads it back: its
/// first `min(size, 8)` bytes in native order, the rest zero.
fn write_unsigned(out: &mut [u8], value: u64) {
    out.fill(0);
    let n = out.len().min(8);
    if cfg!(target_endian = "little") {
        out[..n].copy_from_slice(&value.to_le_bytes()[..n]);
    } else {
        out[..n].copy_from_slice(&value.to_be_bytes()[8 - n..]);
    }
}

/// The range of an integer primitive, as `(min, max)` in `i128`/`u128` terms for messages.
fn int_range(p: Primitive) -> (i128, u128) {
    match p {
        Primitive::U8 => (0, u8::MAX.into()),
        Primitive::U16 => (0, u16::MAX.into()),
        Primitive::U32 => (0, u32::MAX.into()),
        Primitive::U64 => (0, u64::MAX.into()),
        Primitive::U128 => (0, u128::MAX),
        Primitive::I8 => (i8::MIN.into(), i8::MAX as u128),
        Primitive::I16 => (i16::MIN.into(), i16::MAX as u128),
        Primitive::I32 => (i32::MIN.into(), i32::MAX as u128),
        Primitive::I64 => (i64::MIN.into(), i64::MAX as u128),
        Primitive::I128 => (i128::MIN, i128::MAX as u128),
        Primitive::F32 | Primitive::F64 | Primitive::Bool => (0, 0),
    }
}

/// An integer value as a sign and magnitude: `(negative, magnitude)`.
fn integer(value: &Value) -> Option<(bool, u128)> {
    match *value {
        Value::Unsigned(n) => Some((false, n)),
        Value::Signed(n) => Some((n < 0, n.unsigned_abs())),
        _ => None,
    }
}

fn write_scalar(p: Primitive, value: &Value, out: &mut [u8], path: &str) -> Result<(), InvalidValue> {
    if out.len() != p.size() {
        return Err(err(path, format!("is {} bytes long, but `{}` is {} bytes", out.len(), p.name(), p.size())));
    }
    match p {
        Primitive::Bool => match value {
            Value::Bool(b) => {
                out[0] = u8::from(*b);
                Ok(())
            }
            other => Err(err(path, format!("expects a bool (true or false), got {}", describe(other)))),
        },
        Primitive::F32 | Primitive::F64 => {
            let x = match *value {
                Value::F64(x) => x,
                Value::F32(x) => f64::from(x),
                Value::Unsigned(n) => n as f64,
                Value::Signed(n) => n as f64,
                ref other => {
                    return Err(err(path, format!("expects a number (`{}`), got {}", p.name(), describe(other))))
                }
            };
            if p == Primitive::F64 {
                out.copy_from_slice(&x.to_ne_bytes());
                return Ok(());
            }
            let narrow = match *value {
                Value::F32(x) => x,
                _ => x as f32,
            };
            if x.is_finite() && !narrow.is_finite() {
                return Err(err(
                    path,
                    format!("is {x:?}, out of range for `f32` (at most {:e} in magnitude)", f32::MAX),
                ));
            }
            out.copy_from_slice(&narrow.to_ne_bytes());
            Ok(())
        }
        _ => {
            let Some((negative, magnitude)) = integer(value) else {
                return Err(err(path, format!("expects an integer (`{}`), got {}", p.name(), describe(value))));
            };
            let (min, max) = int_range(p);
            let fits = if negative { magnitude <= min.unsigned_abs() && min < 0 } else { magnitude <= max };
            if !fits {
                let shown = if negative { format!("-{magnitude}") } else { magnitude.to_string() };
                return Err(err(path, format!("is {shown}, out of range for `{}` ({min} to {max})", p.name())));
            }
            // Two's complement of the value, truncated to the type's width: exact, since it fits.
            let bits = if negative { magnitude.wrapping_neg() } else { magnitude };
            let n = p.size();
            if cfg!(target_endian = "little") {
                out.copy_from_slice(&bits.to_le_bytes()[..n]);
            } else {
                out.copy_from_slice(&bits.to_be_bytes()[16 - n..]);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32};

    use proptest::prelude::*;

    use super::*;
    use crate::format::schema::SchemaField;
    use crate::format::value::{self, decode};
    use crate::{FixedStr, SharedLayout};

    #[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Eq)]
    #[repr(u16)]
    enum Mode {
        Slow = 0,
        Fast = 7,
    }

    #[derive(SharedLayout, Clone, Copy, Debug)]
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
        _pad1: [u8; 8],
        huge: u128,
        tiny: i8,
        _pad2: [u8; 7],
        ratio: f64,
    }

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
            _pad1: [0; 8],
            huge: u128::MAX,
            tiny: -128,
            _pad2: [0; 7],
            ratio: -0.25,
        }
    }

    fn schema() -> Schema {
        Schema::from(&Config::LAYOUT)
    }

    fn field<'a>(v: &'a mut Value, name: &str) -> &'a mut Value {
        let Value::Struct { fields, .. } = v else { panic!("not a struct") };
        &mut fields.iter_mut().find(|(n, _)| n == name).unwrap().1
    }

    fn strukt(fields: &[(&str, Value)]) -> Value {
        Value::Struct {
            type_name: String::new(),
            fields: fields.iter().map(|(n, v)| ((*n).to_owned(), v.clone())).collect(),
        }
    }

    #[test]
    fn encodes_every_kind_back_to_the_rust_bytes() {
        let bytes = bytes_of(config());
        let value = decode(&schema(), &bytes).unwrap();
        assert!(!value.has_invalid());
        assert_eq!(encode(&schema(), &value, "config").unwrap(), bytes);
    }

    #[test]
    fn padding_fields_may_be_left_out_and_are_zero() {
        let mut value = decode(&schema(), &bytes_of(config())).unwrap();
        let Value::Struct { fields, .. } = &mut value else { panic!() };
        fields.retain(|(n, _)| !n.starts_with('_'));
        assert_eq!(encode(&schema(), &value, "config").unwrap(), bytes_of(config()));
        // Other fields may not.
        let Value::Struct { fields, .. } = &mut value else { panic!() };
        fields.retain(|(n, _)| n != "temp");
        let e = encode(&schema(), &value, "config").unwrap_err();
        assert_eq!(e.path, "config.temp");
        assert!(e.detail.starts_with("is missing: give every field of `Config` (big, rows, hits,"), "{e}");
    }

    #[test]
    fn every_bad_value_is_refused_by_its_path() {
        let good = decode(&schema(), &bytes_of(config())).unwrap();
        type Edit = fn(&mut Value);
        let cases: Vec<(Edit, &str, &str)> = vec![
            (|v| *field(v, "hits") = Value::Unsigned(1 << 32), "config.hits", "is 4294967296, out of range for `u32` (0 to 4294967295)"),
            (|v| *field(v, "hits") = Value::Signed(-1), "config.hits", "is -1, out of range for `u32` (0 to 4294967295)"),
            (|v| *field(v, "tiny") = Value::Signed(-129), "config.tiny", "is -129, out of range for `i8` (-128 to 127)"),
            (|v| *field(v, "tiny") = Value::Unsigned(128), "config.tiny", "is 128, out of range for `i8` (-128 to 127)"),
            (|v| *field(v, "big") = Value::F64(1.0), "config.big", "expects an integer (`i64`), got the float 1.0"),
            (|v| *field(v, "on") = Value::Unsigned(1), "config.on", "expects a bool (true or false), got the integer 1"),
            (|v| *field(v, "temp") = Value::F64(1e39), "config.temp", "is 1e39, out of range for `f32` (at most 3.4028235e38 in magnitude)"),
            (|v| *field(v, "temp") = Value::Str("x".into()), "config.temp", "expects a number (`f32`), got the string \"x\""),
            (
                |v| *field(v, "name") = Value::Str("edge-1234".into()),
                "config.name",
                "is \"edge-1234\", 9 bytes of UTF-8, but `FixedStr<8>` holds at most 8: shorten it",
            ),
            (
                |v| *field(v, "name") = Value::Str("€€€".into()),
                "config.name",
                "is \"€€€\", 9 bytes of UTF-8, but `FixedStr<8>` holds at most 8: shorten it",
            ),
            (
                |v| *field(v, "name") = Value::Str("a\0b".into()),
                "config.name",
                "is \"a\\0b\", which holds a NUL character: a `FixedStr` ends at its first NUL, remove it",
            ),
            (
                |v| {
                    let Value::Array(rows) = field(v, "rows") else { panic!() };
                    *field(&mut rows[2], "mode") = Value::Enum { variant: "Medium".into(), value: 0 };
                },
                "config.rows[2].mode",
                "is \"Medium\", which is not a variant of enum `Mode`: use one of Slow, Fast",
            ),
            (
                |v| {
                    let Value::Array(rows) = field(v, "rows") else { panic!() };
                    *field(&mut rows[1], "mode") = Value::Str("Fast".into());
                },
                "config.rows[1].mode",
                "expects a variant of enum `Mode`, got the string \"Fast\"",
            ),
            (
                |v| {
                    let Value::Array(g) = field(v, "grid") else { panic!() };
                    g.pop();
                },
                "config.grid",
                "has 2 elements, but `[[u8; 2]; 3]` has exactly 3: give all of them",
            ),
            (
                |v| {
                    let Value::Array(g) = field(v, "grid") else { panic!() };
                    g[1] = Value::Array(vec![Value::Unsigned(1), Value::Unsigned(256)]);
                },
                "config.grid[1][1]",
                "is 256, out of range for `u8` (0 to 255)",
            ),
            (|v| *field(v, "grid") = Value::Unsigned(0), "config.grid", "expects an array of 3 elements, got the integer 0"),
            (
                |v| {
                    let Value::Struct { fields, .. } = v else { panic!() };
                    fields.push(("prot".into(), Value::Unsigned(1)));
                },
                "config",
                "has no field `prot`: the fields of `Config` are big, rows, hits, temp, name, on, grid, _pad, count, _pad1, huge, tiny, _pad2, ratio",
            ),
            (
                |v| {
                    let Value::Struct { fields, .. } = v else { panic!() };
                    fields.push(("big".into(), Value::Unsigned(1)));
                },
                "config",
                "names the field `big` twice: give it once",
            ),
            (
                |v| *field(v, "ratio") = Value::Invalid { detail: "bad".into() },
                "config.ratio",
                "expects a number (`f64`), got an invalid value (bad)",
            ),
            (|v| *v = Value::Array(vec![]), "config", "expects a struct `Config`, got an array of 0 elements"),
        ];
        let original = bytes_of(config());
        for (edit, path, detail) in cases {
            let mut bad = good.clone();
            edit(&mut bad);
            let e = encode(&schema(), &bad, "config").unwrap_err();
            assert_eq!((e.path.as_str(), e.detail.as_str()), (path, detail));
            // patch refuses it too, and leaves the bytes as they were.
            let mut bytes = original.clone();
            let e = patch(&schema(), &mut bytes, &bad, "config").unwrap_err();
            assert_eq!(e.path, path);
            assert_eq!(bytes, original);
        }
    }

    #[test]
    fn integers_take_either_sign_when_they_fit_and_floats_take_integers() {
        let mut v = decode(&schema(), &bytes_of(config())).unwrap();
        *field(&mut v, "big") = Value::Unsigned(5);
        *field(&mut v, "hits") = Value::Signed(7);
        *field(&mut v, "temp") = Value::Signed(-3);
        *field(&mut v, "ratio") = Value::F32(0.5);
        *field(&mut v, "huge") = Value::Signed(i128::MAX);
        let back = decode(&schema(), &encode(&schema(), &v, "c").unwrap()).unwrap();
        let mut back = back;
        assert_eq!(*field(&mut back, "big"), Value::Signed(5));
        assert_eq!(*field(&mut back, "hits"), Value::Unsigned(7));
        assert_eq!(*field(&mut back, "temp"), Value::F32(-3.0));
        assert_eq!(*field(&mut back, "ratio"), Value::F64(0.5));
        assert_eq!(*field(&mut back, "huge"), Value::Unsigned(i128::MAX as u128));
        // NaN and the infinities pass into an f32.
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            *field(&mut v, "temp") = Value::F64(x);
            let mut back = decode(&schema(), &encode(&schema(), &v, "c").unwrap()).unwrap();
            let Value::F32(y) = *field(&mut back, "temp") else { panic!() };
            assert_eq!(y.to_bits(), (x as f32).to_bits());
        }
    }

    #[test]
    fn patch_changes_only_the_fields_named() {
        let original = bytes_of(config());
        let mut bytes = original.clone();
        let rows = Value::Array(
            (0..4).map(|i| if i == 3 { strukt(&[("id", Value::Unsigned(40))]) } else { strukt(&[]) }).collect(),
        );
        let change = strukt(&[("hits", Value::Unsigned(10)), ("name", Value::Str("b".into())), ("rows", rows)]);
        patch(&schema(), &mut bytes, &change, "config").unwrap();
        let mut expected = config();
        expected.hits = AtomicU32::new(10);
        expected.name = FixedStr::new("b").unwrap();
        expected.rows[3].id = 40;
        assert_eq!(bytes, bytes_of(expected));
        // A wrong length is refused.
        let e = patch(&schema(), &mut bytes[1..], &change, "config").unwrap_err();
        assert!(e.detail.contains("bytes long, but `Config` is"), "{e}");
    }

    #[test]
    fn broken_schemas_and_huge_sizes_are_errors_not_panics() {
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
        let e = encode(&broken, &strukt(&[("b", Value::Unsigned(1))]), "x").unwrap_err();
        assert_eq!(e.path, "x.b");
        let mut wide = Schema::from(&bool::LAYOUT);
        wide.size = 2;
        assert!(encode(&wide, &Value::Bool(true), "x").is_err());
        let huge = Schema {
            type_name: String::new(),
            size: u64::MAX,
            align: 1,
            version: 1,
            fingerprint: 0,
            kind: SchemaKind::Array { elem: Box::new(Schema::from(&u8::LAYOUT)), len: u64::MAX },
        };
        let e = encode(&huge, &Value::Array(vec![]), "x").unwrap_err();
        assert!(e.detail.contains("too large to encode in memory"), "{e}");
    }

    /// Strings of up to `max` characters drawn from `chars`.
    fn text(chars: &[char], max: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(proptest::sample::select(chars.to_vec()), 0..=max).prop_map(String::from_iter)
    }

    /// A strategy for values of `Config`'s schema, built from the Rust type so that every one of
    /// them is valid.
    fn any_config() -> impl Strategy<Value = Vec<u8>> {
        let row = (any::<u32>(), any::<bool>(), any::<bool>()).prop_map(|(id, enabled, fast)| Row {
            id,
            enabled,
            _pad: 0,
            mode: if fast { Mode::Fast } else { Mode::Slow },
        });
        (
            (any::<i64>(), proptest::array::uniform4(row), any::<u32>(), any::<f32>(), text(&['a', 'z', 'é', '€'], 2)),
            (any::<bool>(), any::<[[u8; 2]; 3]>(), any::<i64>(), any::<u128>(), any::<i8>(), any::<f64>()),
        )
            .prop_map(|((big, rows, hits, temp, name), (on, grid, count, huge, tiny, ratio))| {
                bytes_of(Config {
                    big,
                    rows,
                    hits: AtomicU32::new(hits),
                    temp,
                    name: FixedStr::new(&name).unwrap(),
                    on: AtomicBool::new(on),
                    grid,
                    _pad: 0,
                    count: AtomicI64::new(count),
                    _pad1: [0; 8],
                    huge,
                    tiny,
                    _pad2: [0; 7],
                    ratio,
                })
            })
    }

    proptest! {
        /// decode(encode(v)) == v, byte for byte (NaN payloads included), for every valid value.
        #[test]
        fn encode_inverts_decode(bytes in any_config()) {
            let v = decode(&schema(), &bytes).unwrap();
            let encoded = encode(&schema(), &v, "c").unwrap();
            prop_assert_eq!(&encoded, &bytes);
            // Floats compare by bits here, so NaN does not spoil the equality of the trees.
            prop_assert_eq!(decode(&schema(), &encoded).unwrap().to_string(), v.to_string());
        }

        /// Every integer of every width is written iff it fits, and reads back as itself.
        #[test]
        fn integers_fit_or_are_refused(n in any::<i128>(), wide in any::<u128>()) {
            for p in [Primitive::U8, Primitive::U16, Primitive::U32, Primitive::U64, Primitive::U128,
                      Primitive::I8, Primitive::I16, Primitive::I32, Primitive::I64, Primitive::I128] {
                let schema = Schema {
                    type_name: p.name().into(), size: p.size() as u64, align: 1, version: 1, fingerprint: 0,
                    kind: SchemaKind::Primitive(p),
                };
                let (min, max) = int_range(p);
                for v in [Value::Signed(n), Value::Unsigned(wide), Value::Signed(n >> 100), Value::Signed(n >> 120)] {
                    let (negative, magnitude) = integer(&v).unwrap();
                    let fits = if negative { min < 0 && magnitude <= min.unsigned_abs() } else { magnitude <= max };
                    match encode(&schema, &v, "n") {
                        Ok(bytes) => {
                            prop_assert!(fits, "{:?} accepted for {}", v, p.name());
                            let back = decode(&schema, &bytes).unwrap();
                            let same = match (back, &v) {
                                (Value::Signed(a), Value::Signed(b)) => a == *b,
                                (Value::Unsigned(a), Value::Unsigned(b)) => a == *b,
                                (Value::Signed(a), Value::Unsigned(b)) => a >= 0 && a as u128 == *b,
                                (Value::Unsigned(a), Value::Signed(b)) => *b >= 0 && a == *b as u128,
                                _ => false,
                            };
                            prop_assert!(same, "{:?} did not read back for {}", v, p.name());
                        }
                        Err(e) => {
                            prop_assert!(!fits, "{:?} refused for {}: {}", v, p.name(), e);
                            prop_assert!(e.detail.contains("out of range"), "{}", e);
                        }
                    }
                }
            }
        }

        /// Every string is written iff it fits its `FixedStr` and has no NUL, and reads back as
        /// itself; the bytes written are always valid.
        #[test]
        fn strings_fit_or_are_refused(text in text(&['a', '\0', 'é'], 6)) {
            let schema = Schema::from(&FixedStr::<4>::LAYOUT);
            match encode(&schema, &Value::Str(text.clone()), "s") {
                Ok(bytes) => {
                    prop_assert!(text.len() <= 4 && !text.contains('\0'));
                    prop_assert_eq!(value::validate(&schema, &bytes, "s"), Ok(()));
                    prop_assert_eq!(decode(&schema, &bytes).unwrap(), Value::Str(text));
                }
                Err(_) => prop_assert!(text.len() > 4 || text.contains('\0')),
            }
        }
    }
}

//! Values between Python and the schema's [`Value`] tree.
//!
//! Reading: structs become `dict`s (fields in declaration order), arrays `list`s, enums their
//! variant's name (`str`), `FixedStr` a `str`, integers `int`, floats `float`, bools `bool`.
//!
//! Writing takes the same shapes back, guided by the schema: a mapping for a struct (with `str`
//! keys), any iterable but `str`/`bytes`/a mapping for an array, a `str` (or `bytes` of UTF-8) for
//! a `FixedStr`, a variant's name (or its discriminant as an `int`) for an enum, `bool` for a
//! bool, anything with `__index__` (`int`, numpy integers) for an integer, and an integer or
//! anything with `__float__` for a float. Range and length checks are
//! [`shmstore::format::encode`]'s; this module only refuses Python values of the wrong kind.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyList, PyMapping, PyString};
use shmstore::format::value::Value;
use shmstore::{Schema, SchemaKind};

use crate::errors::invalid_value;

/// A decoded value as a Python object. `path` names the value if it holds invalid bytes
/// (which a validated load never returns).
pub fn to_python(py: Python<'_>, value: &Value, path: &str) -> PyResult<PyObject> {
    Ok(match value {
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any().unbind(),
        Value::Unsigned(n) => n.into_pyobject(py)?.into_any().unbind(),
        Value::Signed(n) => n.into_pyobject(py)?.into_any().unbind(),
        Value::F32(x) => PyFloat::new(py, f64::from(*x)).into_any().unbind(),
        Value::F64(x) => PyFloat::new(py, *x).into_any().unbind(),
        Value::Str(s) => PyString::new(py, s).into_any().unbind(),
        Value::Enum { variant, .. } => PyString::new(py, variant).into_any().unbind(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for (i, item) in items.iter().enumerate() {
                list.append(to_python(py, item, &format!("{path}[{i}]"))?)?;
            }
            list.into_any().unbind()
        }
        Value::Struct { fields, .. } => {
            let dict = PyDict::new(py);
            for (name, v) in fields {
                dict.set_item(name, to_python(py, v, &format!("{path}.{name}"))?)?;
            }
            dict.into_any().unbind()
        }
        Value::Invalid { detail } => return Err(invalid_value(py, format!("{path} {detail}"))),
        other => {
            return Err(invalid_value(py, format!("{path} holds a kind of value this package does not know: {other}")))
        }
    })
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".to_owned())
}

fn wrong_kind(obj: &Bound<'_, PyAny>, path: &str, expected: &str) -> PyErr {
    invalid_value(obj.py(), format!("{path} expects {expected}, got a Python `{}`", type_name(obj)))
}

/// A Python integer (or anything with `__index__`, like numpy's integers), or `None` if `obj`
/// is not one. Integers beyond 128 bits are refused with an out-of-range message.
fn integer(obj: &Bound<'_, PyAny>, path: &str, schema: &Schema) -> PyResult<Option<Value>> {
    if obj.is_instance_of::<PyBool>() || obj.is_instance_of::<PyFloat>() || !obj.hasattr("__index__")? {
        return Ok(None);
    }
    if let Ok(n) = obj.extract::<u128>() {
        return Ok(Some(Value::Unsigned(n)));
    }
    if let Ok(n) = obj.extract::<i128>() {
        return Ok(Some(Value::Signed(n)));
    }
    Err(invalid_value(
        obj.py(),
        format!(
            "{path} is {}, out of range for `{}`",
            obj.str().map(|s| s.to_string()).unwrap_or_default(),
            schema.display_name()
        ),
    ))
}

/// Converts `obj` to a value of `schema`. A struct's mapping may leave fields out: whether that
/// is allowed is for the encoder to say ([`shmstore::format::encode::encode`] asks for all of
/// them, [`shmstore::format::encode::patch`] changes only those given).
pub fn from_python(obj: &Bound<'_, PyAny>, schema: &Schema, path: &str) -> PyResult<Value> {
    let py = obj.py();
    match &schema.kind {
        SchemaKind::Primitive(p) | SchemaKind::Atomic(p) => {
            use shmstore::Primitive;
            match p {
                Primitive::Bool => {
                    // numpy's bool_ is not a subclass of bool, but converts exactly.
                    if obj.is_instance_of::<PyBool>() || type_name(obj) == "bool" {
                        Ok(Value::Bool(obj.is_truthy()?))
                    } else {
                        Err(wrong_kind(obj, path, "a bool (True or False)"))
                    }
                }
                Primitive::F32 | Primitive::F64 => {
                    if let Some(v) = integer(obj, path, schema)? {
                        return Ok(v);
                    }
                    if obj.is_instance_of::<PyBool>() || obj.is_instance_of::<PyString>() {
                        return Err(wrong_kind(obj, path, &format!("a number (`{}`)", p.name())));
                    }
                    obj.extract::<f64>()
                        .map(Value::F64)
                        .map_err(|_| wrong_kind(obj, path, &format!("a number (`{}`)", p.name())))
                }
                _ => integer(obj, path, schema)?
                    .ok_or_else(|| wrong_kind(obj, path, &format!("an integer (`{}`)", p.name()))),
            }
        }
        SchemaKind::Enum { variants, .. } => {
            if let Ok(name) = obj.downcast::<PyString>() {
                return Ok(Value::Enum { variant: name.extract::<String>()?, value: 0 });
            }
            if let Some(v) = integer(obj, path, schema)? {
                let found = match v {
                    Value::Unsigned(n) => variants.iter().find(|var| u128::from(var.value) == n),
                    _ => None,
                };
                return match found {
                    Some(var) => Ok(Value::Enum { variant: var.name.clone(), value: var.value }),
                    None => Err(invalid_value(
                        py,
                        format!(
                            "{path} is {}, which is not a discriminant of enum `{}`: use a variant's name, one of {}",
                            obj.str()?,
                            schema.type_name,
                            variants.iter().map(|v| v.name.as_str()).collect::<Vec<_>>().join(", ")
                        ),
                    )),
                };
            }
            Err(wrong_kind(obj, path, &format!("a variant name of enum `{}` (a str)", schema.type_name)))
        }
        SchemaKind::FixedStr { .. } => {
            if let Ok(s) = obj.downcast::<PyString>() {
                return Ok(Value::Str(s.extract::<String>()?));
            }
            if let Ok(b) = obj.downcast::<PyBytes>() {
                // numpy's `S` dtype gives bytes without the trailing NULs.
                return match std::str::from_utf8(b.as_bytes()) {
                    Ok(s) => Ok(Value::Str(s.to_owned())),
                    Err(e) => {
                        Err(invalid_value(py, format!("{path} is not valid UTF-8 after byte {}", e.valid_up_to())))
                    }
                };
            }
            Err(wrong_kind(obj, path, &format!("a str (`{}`)", schema.display_name())))
        }
        SchemaKind::Array { elem, len } => {
            if obj.is_instance_of::<PyString>()
                || obj.is_instance_of::<PyBytes>()
                || obj.downcast::<PyMapping>().is_ok()
            {
                return Err(wrong_kind(obj, path, &format!("a list (`{}`)", schema.display_name())));
            }
            let Ok(iter) = obj.try_iter() else {
                return Err(wrong_kind(obj, path, &format!("a list (`{}`)", schema.display_name())));
            };
            let mut items = Vec::new();
            for (i, item) in iter.enumerate() {
                // Stop at the first element too many: the iterable may be endless.
                if i as u64 == *len {
                    return Err(invalid_value(
                        py,
                        format!(
                            "{path} has more than {len} elements, but `{}` has exactly {len}",
                            schema.display_name()
                        ),
                    ));
                }
                items.push(from_python(&item?, elem, &format!("{path}[{i}]"))?);
            }
            Ok(Value::Array(items))
        }
        SchemaKind::Struct { fields } => {
            let Ok(map) = obj.downcast::<PyMapping>() else {
                return Err(wrong_kind(obj, path, &format!("a dict (struct `{}`)", schema.type_name)));
            };
            let mut out = Vec::new();
            for item in map.items()?.iter() {
                let (key, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item.extract()?;
                let Ok(key) = key.downcast::<PyString>() else {
                    return Err(invalid_value(
                        py,
                        format!("{path} has a key of type `{}`: field names are str", type_name(&key)),
                    ));
                };
                let key = key.extract::<String>()?;
                // An unknown field is left for the encoder, which names the fields there are.
                let value = match fields.iter().find(|f| f.name == key) {
                    Some(f) => from_python(&value, &f.schema, &format!("{path}.{key}"))?,
                    None => Value::Invalid { detail: String::new() },
                };
                out.push((key, value));
            }
            Ok(Value::Struct { type_name: schema.type_name.clone(), fields: out })
        }
        _ => Err(invalid_value(py, format!("{path} has a kind of schema this package does not know"))),
    }
}

/// The keyword arguments of an update as a partial struct value.
pub fn fields_from_kwargs(
    py: Python<'_>,
    kwargs: Option<&Bound<'_, PyDict>>,
    schema: &Schema,
    path: &str,
) -> PyResult<Value> {
    if !matches!(schema.kind, SchemaKind::Struct { .. }) {
        return Err(invalid_value(
            py,
            format!(
                "{path} is a `{}`, not a struct: store a whole value with `store[{path:?}] = value`",
                schema.display_name()
            ),
        ));
    }
    match kwargs {
        Some(fields) => from_python(fields.as_any(), schema, path),
        None => Ok(Value::Struct { type_name: schema.type_name.clone(), fields: Vec::new() }),
    }
}

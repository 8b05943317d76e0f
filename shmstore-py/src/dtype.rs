//! The numpy dtype of a stored layout, byte for byte: the same item size, and for a struct the
//! same field names at the same offsets.
//!
//! | schema | dtype |
//! |---|---|
//! | `u8`…`u64`, `i8`…`i64` (and their atomics) | `uint8`…`int64`, native order |
//! | `f32`, `f64` | `float32`, `float64` |
//! | `bool`, `AtomicBool` | `bool` |
//! | `u128`, `i128` | `V16` (16 raw bytes: numpy has no 128-bit integers) |
//! | enum | its repr's integer type (the discriminant) |
//! | `FixedStr<N>` | `S{N}` (UTF-8 bytes, NUL-padded; numpy strips the trailing NULs) |
//! | `[T; n]` | a subarray `(T, (n,))` |
//! | struct | a structured dtype with explicit `names`, `formats`, `offsets` and `itemsize` |

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use shmstore::{Primitive, Schema, SchemaKind};

use crate::errors::invalid_value;

fn scalar(p: Primitive) -> PyResult<&'static str> {
    Ok(match p {
        Primitive::U8 => "u1",
        Primitive::U16 => "=u2",
        Primitive::U32 => "=u4",
        Primitive::U64 => "=u8",
        Primitive::I8 => "i1",
        Primitive::I16 => "=i2",
        Primitive::I32 => "=i4",
        Primitive::I64 => "=i8",
        Primitive::F32 => "=f4",
        Primitive::F64 => "=f8",
        Primitive::Bool => "?",
        Primitive::U128 | Primitive::I128 => "V16",
        other => {
            return Err(PyValueError::new_err(format!(
                "`{}` has no numpy dtype in this version of the package",
                other.name()
            )))
        }
    })
}

/// The numpy dtype of one value of `schema`.
pub fn dtype<'py>(numpy: &Bound<'py, PyModule>, schema: &Schema) -> PyResult<Bound<'py, PyAny>> {
    let py = numpy.py();
    let make = |spec: Bound<'py, PyAny>| numpy.call_method1("dtype", (spec,));
    match &schema.kind {
        SchemaKind::Primitive(p) | SchemaKind::Atomic(p) => make(scalar(*p)?.into_pyobject(py)?.into_any()),
        SchemaKind::Enum { repr, .. } => make(scalar(*repr)?.into_pyobject(py)?.into_any()),
        SchemaKind::FixedStr { capacity } => {
            if *capacity == 0 {
                // `S0` is numpy's "any length"; a zero-sized field is an empty subarray.
                make(
                    PyTuple::new(
                        py,
                        [make("u1".into_pyobject(py)?.into_any())?, PyTuple::new(py, [0u64])?.into_any()],
                    )?
                    .into_any(),
                )
            } else {
                make(format!("S{capacity}").into_pyobject(py)?.into_any())
            }
        }
        SchemaKind::Array { elem, len } => {
            let elem = dtype(numpy, elem)?;
            make(PyTuple::new(py, [elem, PyTuple::new(py, [*len])?.into_any()])?.into_any())
        }
        SchemaKind::Struct { fields } => {
            let spec = PyDict::new(py);
            let names = PyList::empty(py);
            let formats = PyList::empty(py);
            let offsets = PyList::empty(py);
            for f in fields {
                names.append(&f.name)?;
                formats.append(dtype(numpy, &f.schema)?)?;
                offsets.append(f.offset)?;
            }
            spec.set_item("names", names)?;
            spec.set_item("formats", formats)?;
            spec.set_item("offsets", offsets)?;
            spec.set_item("itemsize", schema.size)?;
            make(spec.into_any())
        }
        _ => Err(invalid_value(
            py,
            format!("`{}` has a kind of schema this package does not know", schema.display_name()),
        )),
    }
}

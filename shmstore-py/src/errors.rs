//! The exceptions of the `shmstore` module, and how a Rust [`shmstore::Error`] becomes one.
//!
//! Every exception the package raises for a store problem is a `shmstore.Error`. The common ones
//! also derive from the Python built-in that a caller would catch without knowing shmstore:
//!
//! | Python class | also a | raised for |
//! |---|---|---|
//! | `InvalidValueError` | `ValueError` | a value that does not fit the schema; invalid stored bytes |
//! | `NotFoundError` | `KeyError` | no entry of that name |
//! | `LayoutMismatchError` | `TypeError` | an object used as an array or the reverse; a migrated entry |
//! | `OutOfBoundsError` | `IndexError` | an array index or range past the end |
//! | `TimeoutError` | `TimeoutError` | `wait_for_change` saw no change in time |
//! | `ReadOnlyError` | `PermissionError` | a write through a store opened `read_only=True` |

use pyo3::exceptions::{
    PyException, PyIndexError, PyKeyError, PyPermissionError, PyTimeoutError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyDict, PyTuple, PyType};

pyo3::create_exception!(
    shmstore,
    Error,
    PyException,
    "The base class of every error a store reports. Its message says what went wrong and what to do."
);

/// The subclasses of `shmstore.Error` that also derive from a Python built-in, made once per
/// interpreter with `type(name, (Error, Builtin), ...)` (`create_exception!` takes one base only).
pub struct Classes {
    pub invalid_value: Py<PyType>,
    pub not_found: Py<PyType>,
    pub layout_mismatch: Py<PyType>,
    pub out_of_bounds: Py<PyType>,
    pub timeout: Py<PyType>,
    pub read_only: Py<PyType>,
}

static CLASSES: GILOnceCell<Classes> = GILOnceCell::new();

fn subclass(py: Python<'_>, name: &str, builtin: Bound<'_, PyType>, doc: &str) -> PyResult<Py<PyType>> {
    let bases = PyTuple::new(py, [py.get_type::<Error>(), builtin])?;
    let namespace = PyDict::new(py);
    namespace.set_item("__module__", "shmstore")?;
    namespace.set_item("__doc__", doc)?;
    let class = py.get_type::<PyType>().call1((name, bases, namespace))?;
    Ok(class.downcast_into::<PyType>()?.unbind())
}

/// The exception classes, made on first use.
pub fn classes(py: Python<'_>) -> PyResult<&Classes> {
    CLASSES.get_or_try_init(py, || {
        Ok(Classes {
            invalid_value: subclass(
                py,
                "InvalidValueError",
                py.get_type::<PyValueError>(),
                "A value that does not fit the entry's schema (a wrong field, a number out of range, a string too long), or stored bytes that are not a valid value. Nothing was changed.",
            )?,
            not_found: subclass(py, "NotFoundError", py.get_type::<PyKeyError>(), "No entry of that name.")?,
            layout_mismatch: subclass(
                py,
                "LayoutMismatchError",
                py.get_type::<PyTypeError>(),
                "The entry is not what the call expects: an array used as an object or the reverse, or an entry migrated to another layout since its handle was made (call `store.array(name)` again).",
            )?,
            out_of_bounds: subclass(py, "OutOfBoundsError", py.get_type::<PyIndexError>(), "An index or range past the end of an array.")?,
            timeout: subclass(py, "TimeoutError", py.get_type::<PyTimeoutError>(), "No change within the timeout of `wait_for_change`.")?,
            read_only: subclass(
                py,
                "ReadOnlyError",
                py.get_type::<PyPermissionError>(),
                "A write through a store opened with `read_only=True`.",
            )?,
        })
    })
}

/// Adds `Error` and its subclasses to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    let c = classes(py)?;
    for class in [&c.invalid_value, &c.not_found, &c.layout_mismatch, &c.out_of_bounds, &c.timeout, &c.read_only] {
        let class = class.bind(py);
        m.add(class.name()?, class)?;
    }
    Ok(())
}

/// An exception of `class` with `message`.
fn raise(py: Python<'_>, class: &Py<PyType>, message: String) -> PyErr {
    PyErr::from_type(class.bind(py).clone(), message)
}

/// The Python exception for a store error: its message is the Rust error's.
pub fn store_error(py: Python<'_>, err: shmstore::Error) -> PyErr {
    let Ok(c) = classes(py) else {
        return Error::new_err(err.to_string());
    };
    // The library's advice names Rust calls; where Python has its own words, use them.
    let (class, message) = match &err {
        shmstore::Error::InvalidValue { .. } => (&c.invalid_value, err.to_string()),
        shmstore::Error::NotFound { name } => (
            &c.not_found,
            format!("no entry named `{name}` in the store: check the name (store.entries() lists them)"),
        ),
        shmstore::Error::KindMismatch { name, found, .. } => {
            let call = if *found == "object" { format!("store[{name:?}]") } else { format!("store.array({name:?})") };
            (&c.layout_mismatch, format!("entry `{name}` is of kind {found}: use {call}"))
        }
        shmstore::Error::LayoutMismatch { name, .. } => (
            &c.layout_mismatch,
            format!(
                "{err}\n(from Python: the entry `{name}` was migrated to another layout while this handle or call used the old one; \
                 store calls look the entry up again, so retry the call; an Array must be made again with store.array({name:?}))"
            ),
        ),
        shmstore::Error::ForeignLayoutMismatch { .. } => (&c.layout_mismatch, err.to_string()),
        shmstore::Error::OutOfBounds { .. } => (&c.out_of_bounds, err.to_string()),
        shmstore::Error::Timeout { .. } => (&c.timeout, err.to_string()),
        shmstore::Error::ReadOnly { path, action } => (
            &c.read_only,
            format!("store `{}` is open read-only: {action} needs shmstore.open(path, read_only=False)", path.display()),
        ),
        _ => return Error::new_err(err.to_string()),
    };
    raise(py, class, message)
}

/// An `InvalidValueError` with `message`: a value from Python that does not fit the schema.
pub fn invalid_value(py: Python<'_>, message: String) -> PyErr {
    match classes(py) {
        Ok(c) => raise(py, &c.invalid_value, message),
        Err(e) => e,
    }
}

/// A `LayoutMismatchError` with `message`.
pub fn layout_mismatch(py: Python<'_>, message: String) -> PyErr {
    match classes(py) {
        Ok(c) => raise(py, &c.layout_mismatch, message),
        Err(e) => e,
    }
}

/// Turns a library result into a Python one.
pub trait IntoPy<T> {
    /// The value, or the Python exception for the error.
    fn py_err(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPy<T> for shmstore::Result<T> {
    fn py_err(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| store_error(py, e))
    }
}

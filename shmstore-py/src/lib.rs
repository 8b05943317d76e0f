//! `shmstore` for Python: the objects and arrays of a shmstore file, read and written through the
//! schema stored with each entry, under the same locks and commit protocol as Rust processes.
//!
//! This crate is the extension module that `pip install ./shmstore-py` builds with maturin. The
//! Python-facing documentation is in the docstrings below and in `shmstore.pyi`.

#![deny(unsafe_code)]

mod convert;
mod dtype;
mod errors;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyDict, PyList, PyTuple};
use shmstore::format::{encode, value};
use shmstore::{EntryKind, Schema, Store as RustStore, UntypedArray, UntypedObject, Version};

use crate::errors::{invalid_value, IntoPy};

/// The longest a `wait_for_change` sleeps without the GIL before it checks for signals
/// (Ctrl-C), so that a long wait can be interrupted.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

fn timeout_from(seconds: f64) -> PyResult<Duration> {
    if seconds.is_nan() || seconds < 0.0 {
        return Err(PyValueError::new_err(format!("timeout must be a number of seconds >= 0, got {seconds}")));
    }
    Ok(Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX))
}

/// Sleeps until `wait` reports a change or `timeout` passes, without the GIL, waking every
/// [`SIGNAL_CHECK`] to let Python handle signals (a `KeyboardInterrupt` ends the wait).
fn wait_releasing_gil(
    py: Python<'_>,
    timeout: Duration,
    wait: impl Fn(Duration) -> shmstore::Result<Version> + Send + Sync,
) -> PyResult<u64> {
    let start = Instant::now();
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        let slice = left.min(SIGNAL_CHECK);
        match py.allow_threads(|| wait(slice)) {
            Ok(version) => return Ok(version.get()),
            Err(shmstore::Error::Timeout { .. }) if slice < left => py.check_signals()?,
            Err(shmstore::Error::Timeout { name, waited_for, .. }) => {
                let err = shmstore::Error::Timeout { name, waited: start.elapsed(), waited_for };
                return Err(errors::store_error(py, err));
            }
            Err(e) => return Err(errors::store_error(py, e)),
        }
    }
}

/// A shmstore file, opened with `shmstore.open(path)`.
///
/// Objects read as Python values (`store["config"]` gives a `dict` for a struct) and are written
/// whole (`store["config"] = {...}`) or in part (`store.update("config", port=8080)`). Arrays are
/// numpy arrays of the stored element layout: `store.array("samples")`.
///
/// Every call looks the entry up by name, so an entry that a Rust process migrated to a new
/// layout is read and written in its new layout from the next call on. Calls that may wait for a
/// lock or a change release the GIL.
#[pyclass(module = "shmstore", name = "Store", frozen)]
struct Store {
    store: RustStore,
}

impl Store {
    fn object(&self, py: Python<'_>, name: &str) -> PyResult<UntypedObject> {
        self.store.untyped_object(name).py_err(py)
    }

    fn decode(py: Python<'_>, schema: &Schema, bytes: &[u8], name: &str) -> PyResult<PyObject> {
        let v = value::decode(schema, bytes).map_err(|e| invalid_value(py, e.to_string()))?;
        convert::to_python(py, &v, name)
    }
}

#[pymethods]
impl Store {
    /// The store file's path.
    #[getter]
    fn path(&self) -> PathBuf {
        self.store.path().to_owned()
    }

    /// Whether the store was opened with `read_only=True`.
    #[getter]
    fn read_only(&self) -> bool {
        self.store.is_read_only()
    }

    /// The entries of the store, one dict each: `name`, `kind` (`"object"`, `"array"` or
    /// `"bytes"`), `type_name`, `layout_version`, `fingerprint`, `elem_size`, `len`.
    fn entries<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for e in self.store.entries().py_err(py)? {
            let d = PyDict::new(py);
            d.set_item("name", &e.name)?;
            d.set_item("kind", e.kind.as_str())?;
            d.set_item("type_name", &e.type_name)?;
            d.set_item("layout_version", e.version)?;
            d.set_item("fingerprint", e.fingerprint)?;
            d.set_item("elem_size", e.elem_size)?;
            d.set_item("len", e.len)?;
            list.append(d)?;
        }
        Ok(list)
    }

    /// Whether the store has an entry `name`.
    fn __contains__(&self, name: &str) -> bool {
        self.store.entry_info(name).is_ok()
    }

    /// The current value of the object `name` as a Python value: a `dict` for a struct (nested
    /// structs as dicts, enums by variant name, `FixedStr` as `str`, arrays as lists).
    fn __getitem__(&self, py: Python<'_>, name: &str) -> PyResult<PyObject> {
        self.load(py, name).map(|(v, _)| v)
    }

    /// The current value of the object `name` and its version (an `int` that grows with every
    /// commit), read consistently: `(value, version)`.
    fn load(&self, py: Python<'_>, name: &str) -> PyResult<(PyObject, u64)> {
        let object = self.object(py, name)?;
        let (bytes, version) = py.allow_threads(|| object.load()).py_err(py)?;
        Ok((Self::decode(py, object.schema(), &bytes, name)?, version.get()))
    }

    /// Commits `value` as the whole new value of the object `name` (a `dict` with every field for
    /// a struct; fields whose name starts with `_` may be left out and are zero).
    fn __setitem__(&self, py: Python<'_>, name: &str, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.store(py, name, value).map(|_| ())
    }

    /// Like `store[name] = value`, and returns the version it was committed as.
    fn store(&self, py: Python<'_>, name: &str, value: &Bound<'_, PyAny>) -> PyResult<u64> {
        let object = self.object(py, name)?;
        let v = convert::from_python(value, object.schema(), name)?;
        let bytes = encode::encode(object.schema(), &v, name).map_err(|e| invalid_value(py, e.to_string()))?;
        py.allow_threads(|| object.store_bytes(&bytes)).py_err(py).map(Version::get)
    }

    /// Changes the fields given as keywords of the struct object `name`, keeping the others, in
    /// one atomic read-modify-write under the entry's lock; returns the new version. A nested
    /// struct may be given in part (a dict of some of its fields); an array is given whole.
    /// A value that does not fit raises `InvalidValueError` and commits nothing.
    #[pyo3(signature = (name, /, **fields))]
    fn update(&self, py: Python<'_>, name: &str, fields: Option<&Bound<'_, PyDict>>) -> PyResult<u64> {
        let object = self.object(py, name)?;
        let schema = object.schema();
        let v = convert::fields_from_kwargs(py, fields, schema, name)?;
        // Check the change before taking the lock: whether it fits depends only on the schema,
        // so a change that patches these zeros patches the current value too, and one that does
        // not is refused without a commit.
        let mut scratch = vec![0u8; object.size()];
        encode::patch(schema, &mut scratch, &v, name).map_err(|e| invalid_value(py, e.to_string()))?;
        let (patched, version) =
            py.allow_threads(|| object.update_bytes(|bytes| encode::patch(schema, bytes, &v, name))).py_err(py)?;
        patched.map_err(|e| invalid_value(py, e.to_string()))?;
        Ok(version.get())
    }

    /// The current version of the entry `name`: it changes with every commit or write.
    fn version(&self, py: Python<'_>, name: &str) -> PyResult<u64> {
        let info = self.store.entry_info(name).py_err(py)?;
        Ok(match info.kind {
            EntryKind::Object => self.object(py, name)?.version().get(),
            _ => self.store.untyped_array(name).py_err(py)?.version().get(),
        })
    }

    /// Sleeps until the entry `name` (an object or an array) is at a version other than
    /// `version`, and returns the new version; raises `shmstore.TimeoutError` after `timeout`
    /// seconds without a change. The GIL is released while it waits, and Ctrl-C interrupts it.
    fn wait_for_change(&self, py: Python<'_>, name: &str, version: u64, timeout: f64) -> PyResult<u64> {
        let timeout = timeout_from(timeout)?;
        let since = Version::from(version);
        let info = self.store.entry_info(name).py_err(py)?;
        match info.kind {
            EntryKind::Object => {
                let object = self.object(py, name)?;
                wait_releasing_gil(py, timeout, |t| object.wait_for_change(since, t))
            }
            _ => {
                let array = self.store.untyped_array(name).py_err(py)?;
                wait_releasing_gil(py, timeout, |t| array.wait_for_change(since, t))
            }
        }
    }

    /// The array (or byte region) `name`, as an `Array` whose elements are numpy values of the
    /// stored element layout.
    fn array(&self, py: Python<'_>, name: &str) -> PyResult<Array> {
        let handle = self.store.untyped_array(name).py_err(py)?;
        let numpy = py.import("numpy")?;
        let dtype = dtype::dtype(&numpy, handle.schema())?.unbind();
        Ok(Array { handle, dtype, path: self.store.path().to_owned() })
    }

    /// The numpy dtype of the entry `name` (of one element, for an array).
    fn dtype(&self, py: Python<'_>, name: &str) -> PyResult<PyObject> {
        let schema = self.store.schema(name).py_err(py)?;
        Ok(dtype::dtype(&py.import("numpy")?, &schema)?.unbind())
    }

    fn __repr__(&self) -> String {
        format!(
            "shmstore.Store({:?}{})",
            self.store.path(),
            if self.store.is_read_only() { ", read_only=True" } else { "" }
        )
    }
}

/// An array (or byte region) of a store, made by `store.array(name)`: its elements are numpy
/// values of `dtype`, the stored element layout byte for byte.
///
/// The handle is bound to the layout it was made with: after a Rust process migrates the entry
/// to another layout, its calls raise `LayoutMismatchError`; call `store.array(name)` again.
#[pyclass(module = "shmstore", name = "Array", frozen)]
struct Array {
    handle: UntypedArray,
    dtype: Py<PyAny>,
    path: PathBuf,
}

impl Array {
    fn elem_size(&self) -> u64 {
        self.handle.elem_size() as u64
    }

    /// Reads elements `start..start + count` under the shared lock, without the GIL.
    fn read_bytes(&self, py: Python<'_>, start: u64, count: u64) -> PyResult<Vec<u8>> {
        let len = count.checked_mul(self.elem_size()).and_then(|n| usize::try_from(n).ok());
        let Some(len) = len else {
            return Err(PyValueError::new_err(format!(
                "{count} elements of {} bytes do not fit in memory",
                self.elem_size()
            )));
        };
        let mut buf = vec![0u8; len];
        py.allow_threads(|| self.handle.read_at(start, &mut buf)).py_err(py)?;
        Ok(buf)
    }
}

#[pymethods]
impl Array {
    /// The entry's name.
    #[getter]
    fn name(&self) -> &str {
        self.handle.name()
    }

    /// The numpy dtype of one element: itemsize, field names and offsets as stored.
    #[getter]
    fn dtype(&self, py: Python<'_>) -> Py<PyAny> {
        self.dtype.clone_ref(py)
    }

    /// The number of elements.
    fn __len__(&self) -> usize {
        usize::try_from(self.handle.len()).unwrap_or(usize::MAX)
    }

    /// The current version: it changes with every write.
    fn version(&self) -> u64 {
        self.handle.version().get()
    }

    /// A numpy copy of elements `start..start + count` (by default all of them from `start`),
    /// read consistently under the array's shared lock and validated. The copy is the caller's:
    /// writing to it changes nothing in the store (use `write_at`).
    #[pyo3(signature = (start=0, count=None))]
    fn read(&self, py: Python<'_>, start: u64, count: Option<u64>) -> PyResult<PyObject> {
        let count = count.unwrap_or_else(|| self.handle.len().saturating_sub(start));
        let numpy = py.import("numpy")?;
        if self.elem_size() == 0 {
            self.read_bytes(py, start, count)?;
            return Ok(numpy.call_method1("zeros", (count, self.dtype.bind(py)))?.unbind());
        }
        // numpy's array keeps the bytearray alive and writes to it: the copy is the caller's.
        let bytes = PyByteArray::new(py, &self.read_bytes(py, start, count)?);
        let kwargs = PyDict::new(py);
        kwargs.set_item("dtype", self.dtype.bind(py))?;
        Ok(numpy.call_method("frombuffer", (bytes,), Some(&kwargs))?.unbind())
    }

    /// Element `index` as a Python value (a `dict` for a struct, as `store[name]` gives
    /// objects).
    fn __getitem__(&self, py: Python<'_>, index: i64) -> PyResult<PyObject> {
        let len = self.handle.len();
        let at = if index < 0 { len.checked_sub(index.unsigned_abs()) } else { Some(index as u64) };
        let at = at.unwrap_or(u64::MAX);
        let bytes = self.read_bytes(py, at, 1)?;
        Store::decode(py, self.handle.schema(), &bytes, &format!("{}[{at}]", self.handle.name()))
    }

    /// Writes `values` into elements `index..` under the array's exclusive lock, and returns the
    /// new version. `values` is a list (or tuple) of elements as Python values (dicts for
    /// structs, variant names for enums, str for `FixedStr`), one such element that is not a
    /// list, or a numpy array: of exactly `dtype` (as `read()` gives, written as it is), or of
    /// plain numbers or strings, taken as Python values. Every element is checked first: if one
    /// does not fit, `InvalidValueError` is raised and nothing is written.
    fn write_at(&self, py: Python<'_>, index: u64, values: &Bound<'_, PyAny>) -> PyResult<u64> {
        let numpy = py.import("numpy")?;
        let schema = self.handle.schema();
        let mut values = values.clone();
        if values.is_instance(&numpy.getattr("ndarray")?)? {
            let dtype = values.getattr("dtype")?;
            if dtype.eq(self.dtype.bind(py))? {
                let bytes: Vec<u8> =
                    numpy.call_method1("ascontiguousarray", (&values,))?.call_method0("tobytes")?.extract()?;
                return py.allow_threads(|| self.handle.write_at(index, &bytes)).py_err(py).map(Version::get);
            }
            if !dtype.getattr("names")?.is_none() {
                // numpy casts one structured dtype to another by position, not by name: refuse
                // rather than scramble the fields.
                return Err(invalid_value(
                    py,
                    format!(
                        "{} takes a structured numpy array only of its own dtype ({}), but this one is {}: build it with dtype=array.dtype, or pass a list of dicts",
                        self.handle.name(),
                        self.dtype.bind(py).str()?,
                        dtype.str()?
                    ),
                ));
            }
            // Plain numbers or strings of another dtype: checked one by one, like a list.
            values = values.call_method0("tolist")?;
        }
        let items: Vec<Bound<'_, PyAny>> = if values.is_instance_of::<PyList>() || values.is_instance_of::<PyTuple>() {
            values.try_iter()?.collect::<PyResult<_>>()?
        } else {
            vec![values]
        };
        let mut bytes = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("{}[{}]", self.handle.name(), index.saturating_add(i as u64));
            let v = convert::from_python(item, schema, &path)?;
            bytes.extend(encode::encode(schema, &v, &path).map_err(|e| invalid_value(py, e.to_string()))?);
        }
        py.allow_threads(|| self.handle.write_at(index, &bytes)).py_err(py).map(Version::get)
    }

    /// A zero-copy, read-only numpy view of the whole array, mapped from the store file
    /// (`numpy.memmap`). See `shmstore.pyi` for when it is sound and how long it lives: in short,
    /// it takes no lock, so values may change (and be torn) under it while other processes
    /// write, and it is offered only for element types whose every byte pattern is a valid value
    /// (no bool, enum or `FixedStr` inside).
    fn view(&self, py: Python<'_>) -> PyResult<PyObject> {
        let schema = self.handle.schema();
        if value::needs_validation(schema) {
            return Err(errors::layout_mismatch(
                py,
                format!(
                    "array `{}` holds `{}`, which has byte patterns that are not valid values (a bool, an enum or a FixedStr): a view could show them; use read() for a checked copy",
                    self.handle.name(),
                    schema.display_name()
                ),
            ));
        }
        let numpy = py.import("numpy")?;
        let len = self.handle.len();
        if len == 0 || self.elem_size() == 0 {
            let empty = numpy.call_method1("zeros", (len, self.dtype.bind(py)))?;
            empty.getattr("flags")?.setattr("writeable", false)?;
            return Ok(empty.unbind());
        }
        let kwargs = PyDict::new(py);
        kwargs.set_item("dtype", self.dtype.bind(py))?;
        kwargs.set_item("mode", "r")?;
        kwargs.set_item("offset", self.handle.info().data_offset)?;
        kwargs.set_item("shape", (len,))?;
        Ok(numpy.call_method("memmap", (&self.path,), Some(&kwargs))?.unbind())
    }

    /// Sleeps until the array is at a version other than `version`, and returns the new one;
    /// raises `shmstore.TimeoutError` after `timeout` seconds. Releases the GIL while it waits.
    fn wait_for_change(&self, py: Python<'_>, version: u64, timeout: f64) -> PyResult<u64> {
        let timeout = timeout_from(timeout)?;
        let since = Version::from(version);
        wait_releasing_gil(py, timeout, |t| self.handle.wait_for_change(since, t))
    }

    fn __repr__(&self) -> String {
        format!(
            "shmstore.Array({:?}, len={}, type={})",
            self.handle.name(),
            self.handle.len(),
            self.handle.schema().display_name()
        )
    }
}

/// Opens the shmstore file at `path` (made by a Rust process) for reading and writing, or only
/// for reading with `read_only=True`.
#[pyfunction]
#[pyo3(signature = (path, read_only=false))]
fn open(py: Python<'_>, path: PathBuf, read_only: bool) -> PyResult<Store> {
    // A view maps the file by its path again: keep it absolute, whatever the working directory
    // becomes.
    let path = std::path::absolute(&path).unwrap_or(path);
    let store = py.allow_threads(|| RustStore::options().read_only(read_only).open(&path)).py_err(py)?;
    Ok(Store { store })
}

/// Typed shared objects in memory-mapped files, shared with Rust (and C) processes.
#[pymodule(name = "shmstore")]
fn shmstore_py(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(open, m)?)?;
    m.add_class::<Store>()?;
    m.add_class::<Array>()?;
    errors::register(m)?;
    Ok(())
}

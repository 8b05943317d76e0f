"""Typed shared objects in memory-mapped files, shared with Rust (and C) processes.

A shmstore file is made by a Rust program (``Store::open_or_create``); every entry in it carries
its layout (a schema), so Python reads and writes it without any Rust type, under the same locks
and commit protocol as the Rust processes using it at the same time::

    import shmstore

    s = shmstore.open("target/peer.shm")
    s["config"]                       # {'port': 8080, 'mode': 'Run', 'limits': {...}, ...}
    s.update("config", port=9090)     # an atomic read-modify-write of one field
    samples = s.array("samples")
    samples.read()["value"]           # a numpy copy with a structured dtype

Values map as follows: structs are ``dict`` (fields in declaration order), arrays inside a value
are ``list``, enums are their variant's name (``str``), ``FixedStr`` is ``str``, integers ``int``,
floats ``float``, bools ``bool``. Arrays (entries) are numpy arrays of the stored layout, byte for
byte (see ``Array.dtype``).

Every error is a ``shmstore.Error``; the common ones also derive from the Python built-in you
would catch anyway (``InvalidValueError`` is a ``ValueError``, ``NotFoundError`` a ``KeyError``).
"""

import builtins
from os import PathLike
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, TypedDict, Union

import numpy as np
import numpy.typing as npt

Value = Any
"""A Python value of a stored type: dict, list, str, int, float or bool, nested."""

class EntryInfo(TypedDict):
    """One entry of ``Store.entries()``."""

    name: str
    kind: str
    """``"object"``, ``"array"`` or ``"bytes"`` (a byte region, an array of ``u8``)."""
    type_name: str
    """The stored type's name: ``Config``, ``f64``, ``[u8; 16]``."""
    layout_version: int
    """The version of the stored layout (``#[shared(version = N)]``), not of the value."""
    fingerprint: int
    elem_size: int
    """Bytes of one value (of one element, for an array)."""
    len: int
    """1 for an object, the number of elements for an array."""

def open(path: Union[str, "PathLike[str]"], read_only: bool = False) -> Store:
    """Opens the existing shmstore file at ``path`` (made by a Rust process).

    With ``read_only=True`` the file is mapped read-only and every write raises ``ReadOnlyError``.
    Raises ``shmstore.Error`` if the file is missing or is not a store.
    """

class Store:
    """An open shmstore file.

    Every call looks its entry up by name, so after a Rust process migrates an entry to a new
    layout (``Store::migrate``), the next call reads and writes the new layout. Calls that may
    wait for a lock or a change release the GIL.
    """

    @property
    def path(self) -> Path: ...
    @property
    def read_only(self) -> bool: ...
    def entries(self) -> List[EntryInfo]:
        """The entries of the store."""
    def __contains__(self, name: str) -> bool: ...
    def __getitem__(self, name: str) -> Value:
        """The current value of the object ``name`` (a ``dict`` for a struct).

        Raises ``NotFoundError`` if there is no such entry, ``LayoutMismatchError`` if it is an
        array (use ``array(name)``).
        """
    def load(self, name: str) -> Tuple[Value, int]:
        """The current value of the object ``name`` and its version, read consistently.

        The version is an ``int`` that changes with every commit; pass it to
        ``wait_for_change``.
        """
    def __setitem__(self, name: str, value: Value) -> None:
        """Commits ``value`` as the new value of the object ``name``.

        A struct takes a ``dict`` of every field; fields whose name starts with ``_`` (explicit
        padding such as ``_pad``) may be left out and are written as zero. A value that does not
        fit the stored type raises ``InvalidValueError`` and commits nothing.
        """
    def store(self, name: str, value: Value) -> int:
        """Like ``store[name] = value``; returns the version committed."""
    def update(self, name: str, /, **fields: Value) -> int:
        """Changes some fields of the struct object ``name`` and keeps the others.

        One atomic read-modify-write under the entry's lock, as Rust's ``Shared::update``: no
        commit by another process between the read and the write is lost. A nested struct may be
        given in part (``limits={"max": 99}``); an array field is given whole. Returns the new
        version. A value that does not fit (an unknown field, a number out of range, a string too
        long, an unknown enum variant) raises ``InvalidValueError`` and commits nothing.
        """
    def version(self, name: str) -> int:
        """The current version of the entry ``name``."""
    def wait_for_change(self, name: str, version: int, timeout: float) -> int:
        """Sleeps until the entry ``name`` is at a version other than ``version``; returns it.

        ``timeout`` is in seconds; after it, raises ``shmstore.TimeoutError`` (also a built-in
        ``TimeoutError``). The GIL is released while waiting, and Ctrl-C interrupts the wait.
        """
    def array(self, name: str) -> Array:
        """The array or byte region ``name``."""
    def dtype(self, name: str) -> np.dtype[Any]:
        """The numpy dtype of the entry ``name`` (of one element, for an array)."""

class Array:
    """An array (or byte region) of a store, made by ``Store.array(name)``.

    Its handle is bound to the layout it was made with: after a Rust process migrates the entry
    to another layout, its calls raise ``LayoutMismatchError``; call ``store.array(name)`` again.
    """

    @property
    def name(self) -> str: ...
    @property
    def dtype(self) -> np.dtype[Any]:
        """The element's numpy dtype, byte for byte the stored layout.

        Integers, floats and bools are their numpy types in native byte order; an enum is its
        representation's integer (the discriminant); ``FixedStr<N>`` is ``S{N}`` (UTF-8, NUL
        padded); ``u128``/``i128`` are ``V16`` (numpy has no 128-bit integers); an array field is
        a subarray; a struct is a structured dtype with the stored field names, offsets and
        itemsize.
        """
    def __len__(self) -> int: ...
    def version(self) -> int:
        """The current version: it changes with every write."""
    def read(self, start: int = 0, count: Optional[int] = None) -> npt.NDArray[Any]:
        """A numpy copy of ``count`` elements from ``start`` (by default, to the end).

        Read consistently under the array's shared lock, and validated (a bool that is not 0 or
        1, an unknown enum discriminant or a bad ``FixedStr`` raises ``InvalidValueError``). The
        copy belongs to the caller: changing it changes nothing in the store.
        """
    def __getitem__(self, index: int) -> Value:
        """Element ``index`` (negative counts from the end) as a Python value."""
    def write_at(self, index: int, values: Union[npt.ArrayLike, Sequence[Value], Value]) -> int:
        """Writes ``values`` into the elements from ``index`` under the array's exclusive lock.

        ``values`` is a list (or tuple) of elements as Python values (dicts for structs, variant
        names for enums, str for ``FixedStr``), one such element that is not a list, or a numpy
        array: of exactly ``dtype`` (as ``read()`` gives; written as it is), or of plain numbers
        or strings (checked one by one, like a list). A structured array of another dtype is
        refused, since numpy would match its fields by position. Every element is checked before
        anything is written: a bad one raises ``InvalidValueError``, a range past the end
        ``OutOfBoundsError``, and nothing is written. Returns the new version.
        """
    def view(self) -> np.memmap[Any, np.dtype[Any]]:
        """A zero-copy, read-only numpy view of the whole array.

        Only for element types whose every byte pattern is a valid value (no bool, enum or
        ``FixedStr`` anywhere inside): others raise ``LayoutMismatchError``; use ``read()``.

        Lifetime and soundness rules:

        - The view is a ``numpy.memmap`` of the store file: it keeps its own mapping, so it stays
          valid after the ``Store`` and this ``Array`` are gone, for as long as it is referenced.
        - It takes no lock. Values change under it as other threads and processes write, and an
          element being written at the moment you read it may be torn (half old, half new). Use
          ``read()`` for a consistent copy, or compare ``version()`` before and after.
        - It is read-only: numpy refuses writes to it. Write with ``write_at``.
        - It shows the entry as it was placed when the view was made: after a migration of the
          entry it keeps showing the old, abandoned bytes. Make views again after migrations.
        """
    def wait_for_change(self, version: int, timeout: float) -> int:
        """Sleeps until the array is at a version other than ``version``; returns it.

        Raises ``shmstore.TimeoutError`` after ``timeout`` seconds. Releases the GIL.
        """

class Error(Exception):
    """The base class of every error a store reports; its message says what to do."""

class InvalidValueError(Error, ValueError):
    """A value that does not fit the stored type, or stored bytes that are not a valid value.
    Nothing was changed."""

class NotFoundError(Error, KeyError):
    """No entry of that name."""

class LayoutMismatchError(Error, TypeError):
    """The entry is not what the call expects: an array used as an object or the reverse, an
    entry migrated since the handle was made, or a view of a type with invalid byte patterns."""

class OutOfBoundsError(Error, IndexError):
    """An index or range past the end of an array."""

class TimeoutError(Error, builtins.TimeoutError):
    """No change within ``wait_for_change``'s timeout."""

class ReadOnlyError(Error, PermissionError):
    """A write through a store opened with ``read_only=True``."""


"""The type stubs (shmstore.pyi) describe the module as it is: the same functions, classes,
methods and exception bases, so that type checkers and editors tell the truth."""

import ast
import inspect
from pathlib import Path

import shmstore

STUBS = Path(__file__).resolve().parents[1] / "shmstore.pyi"


def _stub_tree():
    return ast.parse(STUBS.read_text())


def test_the_module_has_exactly_the_public_names_of_its_stubs():
    tree = _stub_tree()
    stubbed = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    stubbed -= {"EntryInfo"}  # a TypedDict for the dicts entries() returns, not a runtime class
    public = {n for n in dir(shmstore) if not n.startswith("_") and not inspect.ismodule(getattr(shmstore, n))}
    assert public == stubbed


def test_every_class_has_the_methods_of_its_stubs():
    for node in _stub_tree().body:
        if not isinstance(node, ast.ClassDef) or not hasattr(shmstore, node.name):
            continue
        cls = getattr(shmstore, node.name)
        stubbed = {f.name for f in node.body if isinstance(f, ast.FunctionDef)}
        runtime = {n for n, _ in inspect.getmembers(cls) if not n.startswith("_") or n in stubbed}
        if issubclass(cls, BaseException):
            assert not stubbed, node.name
            bases = [ast.unparse(b).removeprefix("builtins.") for b in node.bases]
            assert [b.__name__ for b in cls.__bases__] == bases, node.name
            continue
        public = {n for n in runtime if not n.startswith("_")}
        assert public == {n for n in stubbed if not n.startswith("_")}, node.name
        for name in stubbed:
            assert hasattr(cls, name), f"{node.name}.{name}"


def test_every_public_item_has_a_docstring():
    for name in ["open", "Store", "Array", "Error"]:
        assert getattr(shmstore, name).__doc__, name
    for cls in (shmstore.Store, shmstore.Array):
        for name, member in inspect.getmembers(cls):
            if not name.startswith("_"):
                assert member.__doc__, f"{cls.__name__}.{name}"

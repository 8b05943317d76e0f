"""Python and Rust processes sharing one store: each side reads what the other wrote.

The Rust process is examples/python_peer.rs (see conftest.py); every call to `peer(...)` is a new
process that opens the store, acts, and exits.
"""

import _thread
import itertools
import signal
import threading

import numpy as np
import pytest

import shmstore

CONFIG = {
    "port": 8080,
    "verbose": True,
    "mode": "Run",
    "retries": 3,
    "limits": {"min": -40, "max": 85},
    "name": "edge-1",
    "gains": [1.0, 0.5, -2.25],
    "_pad": [0, 0, 0, 0],
    "threshold": 0.125,
}


def test_rust_writes_python_reads(peer):
    s = shmstore.open(peer.path)
    assert s["config"] == CONFIG
    assert list(s["config"]) == list(CONFIG), "fields come in declaration order"
    value, version = s.load("config")
    assert value == CONFIG and version == s.version("config")

    entries = {e["name"]: e for e in s.entries()}
    assert {n: e["kind"] for n, e in entries.items()} == {
        "config": "object",
        "samples": "array",
        "points": "array",
        "readings": "array",
        "stats": "object",
        "raw": "bytes",
    }
    assert (entries["samples"]["type_name"], entries["samples"]["len"], entries["samples"]["elem_size"]) == ("Sample", 8, 24)
    assert "config" in s and "nope" not in s

    samples = s.array("samples").read()
    assert samples.shape == (8,)
    assert samples["t"].tolist() == [1000 + i for i in range(8)]
    assert samples["value"].tolist() == [i * 1.5 for i in range(8)]
    assert samples["channel"].tolist() == [i % 3 for i in range(8)]
    assert samples["ok"].tolist() == [i % 2 == 0 for i in range(8)]
    assert s.array("samples")[7] == {"t": 1007, "value": 10.5, "channel": 1, "ok": False, "_pad": [0] * 5}
    assert s.array("samples")[-8]["t"] == 1000

    points = s.array("points").read()
    assert points["id"].tolist() == [i << 40 for i in range(4)]
    assert points["y"].tolist() == [-float(i) for i in range(4)]
    assert s.array("readings").read().tolist() == [i / 4 for i in range(16)]
    assert s["stats"] == {"hits": 42, "errors": 1, "_pad": [0, 0, 0, 0]}
    assert bytes(s.array("raw").read()[:6]) == b"hello\0"
    assert len(s.array("raw")) == 64


def test_python_writes_rust_reads(peer):
    s = shmstore.open(peer.path)
    v0 = s.version("config")
    v1 = s.update("config", port=9090, mode="Calibrate", limits={"max": 99}, name="from-python")
    assert v1 > v0
    s["stats"] = {"hits": 7, "errors": 0}
    samples = s.array("samples")
    samples.write_at(2, [{"t": 5, "value": 2.5, "channel": 1, "ok": False}])
    copy = samples.read(start=6)
    copy["value"] = [-1.0, -2.0]
    samples.write_at(6, copy)
    s.array("readings").write_at(14, np.array([100.0, 200.0]))
    s.array("readings").write_at(13, np.array([7], dtype=np.int32))
    s.array("raw").write_at(0, np.frombuffer(b"HELLO", dtype=np.uint8))

    shown = peer.show()
    assert shown["config"] == (
        'Config { port: 9090, verbose: true, mode: Calibrate, retries: 3, limits: Limits { min: -40, max: 99 }, '
        'name: "from-python", gains: [1.0, 0.5, -2.25], _pad: [0, 0, 0, 0], threshold: 0.125 }'
    )
    assert shown["stats"] == "Stats { hits: 7, errors: 0, _pad: [0, 0, 0, 0] }"
    assert shown["samples[2]"] == "Sample { t: 5, value: 2.5, channel: 1, ok: false, _pad: [0, 0, 0, 0, 0] }"
    assert shown["samples[6]"] == "Sample { t: 1006, value: -1.0, channel: 0, ok: true, _pad: [0, 0, 0, 0, 0] }"
    assert shown["samples[7]"] == "Sample { t: 1007, value: -2.0, channel: 1, ok: false, _pad: [0, 0, 0, 0, 0] }"
    assert shown["readings"].endswith("3.0, 7.0, 100.0, 200.0]")
    assert shown["raw"] == "[72, 69, 76, 76, 79, 0, 0, 0]"


def test_a_value_read_can_be_written_back_unchanged(peer):
    s = shmstore.open(peer.path)
    before = peer.show()
    s["config"] = s["config"]
    samples = s.array("samples")
    samples.write_at(0, samples.read())
    samples.write_at(3, samples[3])
    assert peer.show() == before


def test_python_sees_rust_commits_on_a_store_it_holds_open(peer):
    s = shmstore.open(peer.path)
    readings = s.array("readings")
    view = readings.view()
    version = readings.version()
    peer("set-port", 1234)
    peer("set-reading", 3, 7.5)
    assert s["config"]["port"] == 1234
    assert readings.version() > version
    assert readings.read()[3] == 7.5
    # The view maps the same bytes: it sees the write without being made again.
    assert view[3] == 7.5


def test_a_migration_by_rust_is_seen_from_python(peer):
    s = shmstore.open(peer.path)
    assert "timeout_ms" not in s["config"]
    assert peer("migrate") == "migrate: Migrated\n"
    # The next call looks the entry up by name again and reads its new layout.
    assert s["config"] == {**CONFIG, "timeout_ms": 5000}
    assert next(e for e in s.entries() if e["name"] == "config")["layout_version"] == 2
    assert s.dtype("config").itemsize == 64
    s.update("config", timeout_ms=250, port=1)
    assert peer.show()["config"].startswith("ConfigV2 { port: 1,")
    assert peer.show()["config"].endswith("threshold: 0.125, timeout_ms: 250 }")


def test_objects_and_arrays_are_not_confused(peer):
    s = shmstore.open(peer.path)
    with pytest.raises(shmstore.LayoutMismatchError) as e:
        s.array("config")
    assert isinstance(e.value, TypeError)
    assert 'use store["config"]' in str(e.value)
    with pytest.raises(shmstore.LayoutMismatchError, match=r'use store.array\("samples"\)'):
        s["samples"]


def _layouts(peer):
    """The Rust compiler's layouts: {type: (size, [(field, offset), ...])}."""
    out = {}
    for line in peer("layout").splitlines():
        name, size, *fields = line.split()
        out[name] = (int(size.removeprefix("size=")), [(f.split("@")[0], int(f.split("@")[1])) for f in fields])
    return out


def _fields(dtype):
    return [(name, dtype.fields[name][1]) for name in dtype.names]


def test_numpy_dtypes_match_the_rust_layouts(peer):
    s = shmstore.open(peer.path)
    rust = _layouts(peer)
    for type_name, dtype in [
        ("Config", s.dtype("config")),
        ("Sample", s.array("samples").dtype),
        ("Point", s.array("points").dtype),
        ("Limits", s.dtype("config").fields["limits"][0]),
    ]:
        size, fields = rust[type_name]
        assert dtype.itemsize == size, type_name
        assert _fields(dtype) == fields, type_name
    config = s.dtype("config")
    assert config["port"] == np.dtype(np.uint16)
    assert config["verbose"] == np.dtype(np.bool_)
    assert config["mode"] == np.dtype(np.uint8), "an enum is its repr"
    assert config["name"] == np.dtype("S16")
    assert config["gains"].shape == (3,) and config["gains"].base == np.dtype(np.float32)
    assert config["threshold"] == np.dtype(np.float64)
    assert s.array("readings").dtype == np.dtype(np.float64)
    assert s.array("raw").dtype == np.dtype(np.uint8)
    # Every byte of an element is the stored byte: the copy read equals the element's raw bytes.
    sample = s.array("samples").read(start=1, count=1)
    assert sample.tobytes()[:8] == (1001).to_bytes(8, "little" if np.little_endian else "big")


BAD_UPDATES = [
    ({"port": 70000}, "config.port is 70000, out of range for `u16` (0 to 65535)"),
    ({"port": -1}, "config.port is -1, out of range for `u16` (0 to 65535)"),
    ({"port": 2**200}, "config.port is 1606938044258990275541962092341162602522202993782792835301376, out of range for `u16`"),
    ({"port": 1.5}, "config.port expects an integer (`u16`), got a Python `float`"),
    ({"prot": 1}, "config has no field `prot`: the fields of `Config` are port, verbose, mode"),
    ({"name": "x" * 17}, 'config.name is "xxxxxxxxxxxxxxxxx", 17 bytes of UTF-8, but `FixedStr<16>` holds at most 16: shorten it'),
    ({"name": "a\0b"}, "holds a NUL character"),
    ({"mode": "Fast"}, 'config.mode is "Fast", which is not a variant of enum `Mode`: use one of Idle, Run, Calibrate'),
    ({"mode": 2}, "config.mode is 2, which is not a discriminant of enum `Mode`"),
    ({"verbose": 1}, "config.verbose expects a bool (True or False), got a Python `int`"),
    ({"limits": {"min": 2**31}}, "config.limits.min is 2147483648, out of range for `i32`"),
    ({"limits": 3}, "config.limits expects a dict (struct `Limits`), got a Python `int`"),
    ({"gains": [1.0, 2.0]}, "config.gains has 2 elements, but `[f32; 3]` has exactly 3: give all of them"),
    ({"gains": [1.0, 2.0, 1e39]}, "config.gains[2] is 1e39, out of range for `f32`"),
    ({"threshold": "high"}, "config.threshold expects a number (`f64`), got a Python `str`"),
    ({"gains": itertools.count()}, "config.gains has more than 3 elements, but `[f32; 3]` has exactly 3"),
    ({"port": 1, "mode": "Nope"}, "config.mode is \"Nope\""),
]


@pytest.mark.parametrize("fields,message", BAD_UPDATES, ids=[str(f) for f, _ in BAD_UPDATES])
def test_a_bad_update_raises_and_changes_nothing(peer, fields, message):
    s = shmstore.open(peer.path)
    value, version = s.load("config")
    with pytest.raises(shmstore.InvalidValueError) as e:
        s.update("config", **fields)
    assert message in str(e.value)
    assert isinstance(e.value, ValueError) and isinstance(e.value, shmstore.Error)
    assert s.load("config") == (value, version), "nothing was committed"


def test_bad_whole_values_and_array_writes_raise_and_change_nothing(peer):
    s = shmstore.open(peer.path)
    before = peer.show()
    versions = {name: s.version(name) for name in ("config", "samples", "readings")}

    with pytest.raises(shmstore.InvalidValueError, match=r"config.verbose is missing: give every field of `Config`"):
        s["config"] = {"port": 1}
    with pytest.raises(shmstore.InvalidValueError, match=r"config expects a dict \(struct `Config`\), got a Python `list`"):
        s["config"] = [1, 2]
    samples = s.array("samples")
    good = {"t": 1, "value": 1.0, "channel": 1, "ok": True}
    # The second element is bad, so not even the first is written.
    with pytest.raises(shmstore.InvalidValueError, match=r"samples\[4\].channel is 65536, out of range for `u16`"):
        samples.write_at(3, [good, {**good, "channel": 65536}])
    with pytest.raises(shmstore.OutOfBoundsError) as e:
        samples.write_at(7, [good, good])
    assert isinstance(e.value, IndexError)
    with pytest.raises(shmstore.OutOfBoundsError):
        s.array("readings").write_at(15, np.zeros(2))
    with pytest.raises(shmstore.InvalidValueError, match=r"readings\[0\] expects a number"):
        s.array("readings").write_at(0, ["x"])
    # Numbers of another dtype are checked like Python values: no silent overflow to inf.
    with pytest.raises(shmstore.InvalidValueError, match=r"samples\[1\].channel is 70000, out of range for `u16`"):
        samples.write_at(1, [{**good, "channel": np.int64(70000)}])
    with pytest.raises(shmstore.InvalidValueError, match=r"raw\[1\] is 256, out of range for `u8`"):
        s.array("raw").write_at(0, np.array([1, 256]))
    # A structured array of other fields is refused, not cast field by position.
    swapped = np.zeros(1, dtype=[("value", "f8"), ("t", "u8"), ("channel", "u2"), ("ok", "?"), ("_pad", "u1", (5,))])
    with pytest.raises(shmstore.InvalidValueError, match=r"samples takes a structured numpy array only of its own dtype"):
        samples.write_at(0, swapped)

    assert peer.show() == before
    assert {name: s.version(name) for name in versions} == versions


def test_errors_are_typed_and_say_what_to_do(peer):
    s = shmstore.open(peer.path)
    with pytest.raises(shmstore.NotFoundError) as e:
        s["nope"]
    assert isinstance(e.value, KeyError)
    assert "no entry named `nope` in the store: check the name (store.entries() lists them)" in str(e.value)
    ro = shmstore.open(peer.path, read_only=True)
    assert ro.read_only and ro["config"] == CONFIG
    with pytest.raises(shmstore.ReadOnlyError) as e:
        ro.update("config", port=1)
    assert isinstance(e.value, PermissionError)
    assert "read_only=False" in str(e.value)
    with pytest.raises(shmstore.Error, match="not a shmstore file|too short|Truncated|truncated"):
        bad = peer.path.with_name("bad.shm")
        bad.write_bytes(b"not a store" * 100)
        shmstore.open(bad)
    with pytest.raises(ValueError, match="timeout must be a number of seconds >= 0"):
        s.wait_for_change("config", 0, -1.0)


def test_view_is_zero_copy_read_only_and_only_for_types_without_invalid_bytes(peer):
    s = shmstore.open(peer.path)
    points = s.array("points").view()
    assert not points.flags.writeable
    with pytest.raises(ValueError):
        points["x"][0] = 1.0
    assert points["id"].tolist() == [i << 40 for i in range(4)]
    with pytest.raises(shmstore.LayoutMismatchError, match=r"use read\(\) for a checked copy"):
        s.array("samples").view()
    # The view outlives the store object that made it: it has its own mapping of the file.
    readings = s.array("readings").view()
    del s
    peer("set-reading", 0, -3.0)
    assert readings[0] == -3.0


def test_wait_for_change_wakes_when_a_rust_process_commits(peer):
    s = shmstore.open(peer.path)
    version = s.version("config")
    writer = peer.popen("set-port", 4321)
    try:
        new = s.wait_for_change("config", version, 60.0)
    finally:
        out, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err
    assert new != version
    assert s["config"]["port"] == 4321

    readings = s.array("readings")
    version = readings.version()
    writer = peer.popen("set-reading", 1, 9.0)
    try:
        new = readings.wait_for_change(version, 60.0)
    finally:
        writer.communicate(timeout=60)
    assert new != version and readings.read()[1] == 9.0


def test_wait_for_change_releases_the_gil(peer):
    """A thread waiting for a change lets the thread that makes the change run: if the wait held
    the GIL, the writer below could not run, and the wait would time out."""
    s = shmstore.open(peer.path)
    version = s.version("config")
    waiting = threading.Event()
    result = {}

    def wait():
        waiting.set()
        try:
            result["version"] = s.wait_for_change("config", version, 60.0)
        except Exception as e:  # reported below
            result["error"] = e

    waiter = threading.Thread(target=wait)
    waiter.start()
    waiting.wait()
    s.update("config", port=5555)
    waiter.join()
    assert "error" not in result, result
    assert result["version"] > version


def test_wait_for_change_times_out_with_a_typed_error(peer):
    s = shmstore.open(peer.path)
    with pytest.raises(shmstore.TimeoutError) as e:
        s.wait_for_change("config", s.version("config"), 0.01)
    assert isinstance(e.value, TimeoutError)
    assert "call wait_for_change again to keep waiting" in str(e.value)


def test_ctrl_c_interrupts_a_long_wait(peer):
    """A wait without the GIL still lets Python handle signals: without that, this wait would
    last its full 60 seconds and end in TimeoutError instead."""
    # A process started in the background by a shell without job control inherits SIGINT
    # ignored, and then Python installs no handler, so `interrupt_main` would do nothing: make
    # sure Ctrl-C is Python's KeyboardInterrupt here, whatever started the tests.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    s = shmstore.open(peer.path)
    about_to_wait = threading.Event()

    def interrupt():
        about_to_wait.wait()
        _thread.interrupt_main()

    helper = threading.Thread(target=interrupt)
    helper.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            about_to_wait.set()
            s.wait_for_change("config", s.version("config"), 60.0)
    finally:
        helper.join()
        signal.signal(signal.SIGINT, previous)


def test_python_reads_are_never_torn_and_updates_lose_nothing_while_rust_writes(peer):
    """A Rust process commits 3000 rounds while Python reads and updates: every Python read is
    one whole commit (limits and retries from the same round, all readings equal), and neither
    side's updates overwrite the other's fields."""
    rounds = 3000
    s = shmstore.open(peer.path)
    readings = s.array("readings")
    churn = peer.popen("churn", rounds)
    reads = 0
    port = 0
    try:
        while churn.poll() is None or reads == 0:
            config = s["config"]
            k = config["retries"]
            assert config["limits"] == {"min": -k, "max": k} or k == 3 and config["limits"] == CONFIG["limits"], config
            values = readings.read()
            assert (values == values[0]).all() or values.tolist() == [i / 4 for i in range(16)], values
            port += 1
            s.update("config", port=port)
            reads += 1
    finally:
        out, err = churn.communicate(timeout=120)
    assert churn.returncode == 0, err
    config = s["config"]
    assert (config["port"], config["retries"], config["limits"]) == (port, rounds, {"min": -rounds, "max": rounds})
    assert readings.read().tolist() == [float(rounds)] * 16

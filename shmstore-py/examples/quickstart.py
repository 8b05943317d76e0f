"""Python's side of a store that a Rust program made: read, update, and wait for changes.

    cargo run --example python_peer -- create target/peer.shm   # the Rust side makes the store
    python shmstore-py/examples/quickstart.py target/peer.shm

No Rust type is needed here: every entry carries its layout, and shmstore decodes and encodes
values through it, under the same locks as the Rust processes.
"""

import sys

import shmstore

path = sys.argv[1] if len(sys.argv) > 1 else "target/peer.shm"
store = shmstore.open(path)

for entry in store.entries():
    print(f"{entry['name']}: {entry['kind']} of {entry['type_name']} (len {entry['len']})")

# An object reads as a dict: nested structs as dicts, enums by variant name, FixedStr as str.
config, version = store.load("config")
print(f"config v{version}: port {config['port']}, mode {config['mode']}, limits {config['limits']}")

# Change some fields in one atomic read-modify-write; the others keep their values.
store.update("config", port=config["port"] + 1, mode="Calibrate", limits={"max": 99})
print(f"after update: port {store['config']['port']}, mode {store['config']['mode']}")

# A value that does not fit the stored type is refused, and nothing changes.
try:
    store.update("config", port=70000)
except shmstore.InvalidValueError as e:
    print(f"refused: {e}")

# Arrays are numpy arrays with the stored layout as their dtype.
samples = store.array("samples")
data = samples.read()  # a consistent copy, taken under the array's lock
print(f"samples: {len(samples)} of {samples.dtype.itemsize} bytes, mean of ok values {data['value'][data['ok']].mean()}")
samples.write_at(0, [{"t": 1, "value": 0.5, "channel": 2, "ok": True}])

# A zero-copy, read-only view, for element types with no invalid byte patterns.
readings = store.array("readings").view()
print(f"readings[:4] = {readings[:4].tolist()}")

# Sleep until another thread or process commits (the GIL is released meanwhile).
version = store.version("config")
store.update("config", retries=5)  # here ourselves, to show the wake-up
print(f"changed: {store.wait_for_change('config', version, timeout=5.0) != version}")

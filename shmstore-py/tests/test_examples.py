"""The example in shmstore-py/examples/ runs against a store the Rust peer made, and the Rust
peer then sees what it wrote."""

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "quickstart.py"


def test_quickstart_reads_and_writes_the_rust_store(peer):
    done = subprocess.run([sys.executable, str(EXAMPLE), str(peer.path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for line in [
        "config: object of Config (len 1)",
        "samples: array of Sample (len 8)",
        "raw: bytes of u8 (len 64)",
        "config v0: port 8080, mode Run, limits {'min': -40, 'max': 85}",
        "after update: port 8081, mode Calibrate",
        "refused: config.port is 70000, out of range for `u16` (0 to 65535)",
        "samples: 8 of 24 bytes, mean of ok values 4.5",
        "readings[:4] = [0.0, 0.25, 0.5, 0.75]",
        "changed: True",
    ]:
        assert line in out, f"missing {line!r} in:\n{out}"
    shown = peer.show()
    assert shown["config"].startswith("Config { port: 8081, verbose: true, mode: Calibrate, retries: 5,")
    assert shown["samples[0]"] == "Sample { t: 1, value: 0.5, channel: 2, ok: true, _pad: [0, 0, 0, 0, 0] }"

"""Fixtures for the shmstore Python tests: a Rust peer process and a fresh store it made.

The Rust side is the example program examples/python_peer.rs, run as a separate process for
every step, so that each test crosses real process boundaries. The fixture builds it with cargo
if it is missing (`.ci/run` builds it before running pytest).
"""

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _peer_path() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not target.is_absolute():
        target = REPO / target
    return target / "debug" / "examples" / "python_peer"


@pytest.fixture(scope="session")
def peer_exe() -> Path:
    exe = _peer_path()
    if not exe.exists():
        subprocess.run(
            ["cargo", "build", "-q", "-p", "shmstore-examples", "--example", "python_peer"],
            cwd=REPO,
            check=True,
        )
    assert exe.exists(), f"{exe} is missing: run `cargo build -p shmstore-examples --example python_peer`"
    return exe


class Peer:
    """Runs the Rust peer, one process per call, and returns what it printed."""

    def __init__(self, exe: Path, path: Path):
        self.exe = exe
        self.path = path

    def __call__(self, command: str, *args: str) -> str:
        argv = [str(self.exe), command]
        if command != "layout":
            argv.append(str(self.path))
        argv.extend(str(a) for a in args)
        done = subprocess.run(argv, capture_output=True, text=True)
        assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def popen(self, command: str, *args: str) -> subprocess.Popen:
        argv = [str(self.exe), command, str(self.path), *map(str, args)]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def show(self) -> dict:
        """`show`'s lines as a dict: entry (or `samples[3]`) -> its Debug text."""
        lines = self("show").splitlines()
        return dict(line.split(" = ", 1) for line in lines)


@pytest.fixture
def peer(peer_exe: Path, tmp_path: Path) -> Peer:
    """A fresh store made by the Rust peer (`python_peer create`), and the peer to run on it."""
    p = Peer(peer_exe, tmp_path / "peer.shm")
    p("create")
    return p

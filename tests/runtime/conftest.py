"""Helpers for the interpreter tests: run TissLang source in a fresh workspace."""

from __future__ import annotations

import time

import pytest

from runtime.backends import EchoBackend
from runtime.review import Reviewer
from runtime.session import RunOptions, Session
from runtime.trace import Recorder
from tisslang import parse


class Runner:
    def __init__(self, root):
        self.root = root
        self.events = Recorder()
        self.session = None

    def __call__(self, source: str, *, backend=None, reviewer=None, echo=True, **options):
        if backend is None and echo:
            backend = EchoBackend()
        self.events = Recorder()
        self.session = Session(
            self.root,
            backend=backend,
            options=RunOptions(**options),
            listeners=[self.events],
            reviewer=reviewer or Reviewer(assume_yes=True),
        )
        program = parse(source, "test.tiss")
        return self.session.run(program, file="test.tiss", source=source)

    @property
    def vars(self):
        return self.session.variables

    @property
    def last(self):
        return self.session.builtins


@pytest.fixture
def run(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    return Runner(root)


def process_state(pid: int) -> str:
    """The state letter of `pid` from /proc ("R", "S", "Z", ...), or "gone"."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return "gone"


def wait_until_dead(pid: int, timeout: float = 10.0) -> str:
    """Poll until `pid` is gone or a zombie and return its state; a SIGKILLed process takes a
    moment to die on a loaded machine (it shows "R" while the kernel tears it down)."""
    deadline = time.monotonic() + timeout
    state = process_state(pid)
    while state not in ("gone", "Z") and time.monotonic() < deadline:
        time.sleep(0.02)
        state = process_state(pid)
    return state


@pytest.fixture
def dead():
    """`dead(pid)` is true once `pid` has died (waiting up to 10 s for a killed one to go)."""
    return lambda pid, timeout=10.0: wait_until_dead(pid, timeout) in ("gone", "Z")

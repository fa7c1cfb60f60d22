"""Helpers for the interpreter tests: run TissLang source in a fresh workspace."""

from __future__ import annotations

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

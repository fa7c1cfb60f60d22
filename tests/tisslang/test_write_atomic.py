"""`tisslang.commands.write_atomic` (what `tiss fmt` and the REPL's save use): the behaviour
`tests/atomic_contract.py` pins for every package's writer."""

import pytest
from atomic_contract import *  # noqa: F401,F403 -- the shared tests, run here on tisslang's writer

from tisslang import commands


@pytest.fixture
def writer():
    return commands.write_atomic

"""`lm.atomic.write_atomic`: the behaviour `tests/atomic_contract.py` pins for every package's
writer, and what only `lm`'s takes (bytes)."""

import os
import stat

import pytest
from atomic_contract import *  # noqa: F401,F403 -- the shared tests, run here on lm's writer

from lm import atomic


@pytest.fixture
def writer():
    return atomic.write_atomic


def test_bytes_are_written_as_they_are(tmp_path, umask_022):
    atomic.write_atomic(tmp_path / "a.bin", b"\x00\x01\xff")
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01\xff"
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o644


def test_default_file_mode_is_open_s(tmp_path, umask_022):
    with open(tmp_path / "plain", "w"):
        pass
    assert atomic.default_file_mode() == stat.S_IMODE((tmp_path / "plain").stat().st_mode) == 0o644
    os.umask(0o077)
    assert atomic.default_file_mode() == 0o600

"""`lm.atomic.write_atomic`: all or nothing, open()'s mode, no temporary left behind."""

import os

import pytest

from lm import atomic


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_writes_bytes_and_text_with_open_s_mode(tmp_path, umask_022):
    atomic.write_atomic(tmp_path / "a.bin", b"\x00\x01")
    atomic.write_atomic(tmp_path / "b.json", "caf\u00e9\n")
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.json").read_text(encoding="utf-8") == "caf\u00e9\n"
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == {"a.bin": 0o644, "b.json": 0o644}


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "state.json"
    target.write_text("old")

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full_disk)
    with pytest.raises(OSError):
        atomic.write_atomic(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]

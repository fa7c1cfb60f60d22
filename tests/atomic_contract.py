"""The behaviour every package's atomic writer has, as tests over a `writer` fixture.

`lm` and `tisslang` may not share code, so each has its own `write_atomic`; both test folders
import these tests and give the fixture their package's writer, which pins the two to one
behaviour (see `lm/atomic.py`):

- a new file gets `open()`'s mode; a replaced one keeps its mode, owner and group, but never
  the set-user-ID and set-group-ID bits;
- the file is fsynced before the rename and the directory after it;
- a failure (a full disk, a directory in the way, Ctrl-C) leaves the old file and no temporary;
- a symlink stays a link and its target gets the new content.
"""

from __future__ import annotations

import errno
import os
import stat

import pytest


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_new_file_gets_open_s_mode_and_the_text_as_utf8(writer, tmp_path, umask_022):
    writer(tmp_path / "a.txt", "caf\u00e9\r\nline\n")
    assert (tmp_path / "a.txt").read_bytes() == "caf\u00e9\r\nline\n".encode("utf-8")  # newlines untouched
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644  # not mkstemp's 0600
    os.umask(0o027)
    writer(tmp_path / "b.txt", "x")
    assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o640


@pytest.mark.parametrize("mode", [0o600, 0o755, 0o640], ids=oct)
def test_a_replaced_file_keeps_its_mode(writer, tmp_path, umask_022, mode):
    target = tmp_path / "f.txt"
    target.write_text("old")
    target.chmod(mode)
    writer(target, "new")
    assert target.read_text() == "new" and stat.S_IMODE(target.stat().st_mode) == mode


def test_set_user_and_group_id_bits_are_never_carried_onto_new_content(writer, tmp_path):
    target = tmp_path / "tool"
    target.write_text("#!/bin/sh\n")
    target.chmod(0o6755)
    if stat.S_IMODE(target.stat().st_mode) != 0o6755:
        pytest.skip("this file system does not keep set-ID bits")
    writer(target, "#!/bin/sh\necho replaced\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o755


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only root can give files away")
def test_a_replaced_file_keeps_its_owner_and_group(writer, tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    os.chown(target, 12345, 23456)
    writer(target, "new")
    info = target.stat()
    assert (info.st_uid, info.st_gid) == (12345, 23456) and target.read_text() == "new"


def test_the_file_is_fsynced_before_the_rename_and_the_directory_after(writer, tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    target.write_text("old")
    real_fsync, seen = os.fsync, []

    def spy(fd):
        kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        seen.append((kind, target.read_text()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    writer(target, "new")
    assert seen == [("file", "old"), ("dir", "new")]


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(writer, tmp_path, monkeypatch, failure):
    target = tmp_path / "state.json"
    target.write_text("old")

    def fail(fd):
        raise failure

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(type(failure)):
        writer(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_directory_in_the_way_is_an_error_and_leaves_no_temporary(writer, tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(OSError):
        writer(tmp_path / "d", "x")
    assert [p.name for p in tmp_path.iterdir()] == ["d"] and not any((tmp_path / "d").iterdir())


def test_a_symlink_stays_a_link_and_its_target_is_replaced(writer, tmp_path, umask_022):
    real = tmp_path / "real.txt"
    real.write_text("old")
    real.chmod(0o600)
    link = tmp_path / "link.txt"
    link.symlink_to("real.txt")
    writer(link, "new")
    assert link.is_symlink() and os.readlink(link) == "real.txt"
    assert real.read_text() == "new" and stat.S_IMODE(real.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.txt", "real.txt"]

"""Workspace confinement and the file operations: every escape route is refused."""

import os
import stat

import pytest

from runtime.errors import PathError, WorkspaceError
from runtime.workspace import Workspace


@pytest.fixture
def ws(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    return Workspace(root)


def test_write_read_roundtrip_creates_parents(ws):
    ws.write_text("a/b/c.txt", "héllo\n\nworld\n")
    assert (ws.root / "a/b/c.txt").read_text(encoding="utf-8") == "héllo\n\nworld\n"
    assert ws.read_text("a/b/c.txt") == "héllo\n\nworld\n"


def test_write_replaces_atomically_and_keeps_mode(ws):
    target = ws.root / "f.sh"
    target.write_text("old")
    target.chmod(0o755)
    ws.write_text("f.sh", "new")
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    # no temporary file is left next to the target
    assert sorted(os.listdir(ws.root)) == ["f.sh"]


def test_write_failure_leaves_old_content_and_no_temp(ws, monkeypatch):
    target = ws.root / "keep.txt"
    target.write_text("old")

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(PathError, match="No space left"):
        ws.write_text("keep.txt", "new")
    assert target.read_text() == "old"
    assert sorted(os.listdir(ws.root)) == ["keep.txt"]


@pytest.mark.parametrize(
    "path, fragment",
    [
        ("../outside.txt", "climbs out"),
        ("a/../../outside.txt", "climbs out"),
        ("/etc/passwd", "outside the workspace"),
        ("bad\0name", "NUL"),
        ("", "empty"),
    ],
)
def test_escapes_are_refused(ws, path, fragment):
    for op in (
        lambda: ws.write_text(path, "x"),
        lambda: ws.read_text(path),
        lambda: ws.mkdir(path),
        lambda: ws.delete(path),
        lambda: ws.exists(path),
    ):
        with pytest.raises(PathError, match=fragment):
            op()


def test_absolute_path_inside_is_allowed(ws):
    ws.write_text(str(ws.root / "in.txt"), "ok")
    assert ws.read_text("in.txt") == "ok"


def test_dotdot_that_stays_inside_is_allowed(ws):
    ws.write_text("a/../b.txt", "ok")
    assert (ws.root / "b.txt").read_text() == "ok"


def test_symlink_in_any_component_leading_out_is_refused(ws, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    os.symlink(outside, ws.root / "link")
    os.symlink(outside / "secret", ws.root / "filelink")
    os.makedirs(ws.root / "deep/er")
    os.symlink("../../link", ws.root / "deep/er/hop")  # a relative chain of links
    for path in ("link/secret", "link/new.txt", "filelink", "deep/er/hop/secret"):
        with pytest.raises(PathError, match="symlink"):
            ws.read_text(path)
        with pytest.raises(PathError, match="symlink"):
            ws.write_text(path, "pwned")
    with pytest.raises(PathError, match="symlink"):
        ws.mkdir("link/sub")
    with pytest.raises(PathError, match="symlink"):
        ws.delete("link/secret")
    assert (outside / "secret").read_text() == "s"
    assert sorted(os.listdir(outside)) == ["secret"]


def test_symlink_inside_is_followed(ws):
    (ws.root / "real").mkdir()
    os.symlink("real", ws.root / "alias")
    ws.write_text("alias/f.txt", "x")
    assert (ws.root / "real/f.txt").read_text() == "x"


def test_delete_symlink_removes_link_not_target(ws, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("k")
    os.symlink(outside, ws.root / "link")
    ws.delete("link")
    assert not os.path.lexists(ws.root / "link")
    assert (outside / "keep").read_text() == "k"


def test_delete_never_removes_workspace_root(ws):
    (ws.root / "f").write_text("x")
    for path in (".", "./", "a/..", str(ws.root)):
        with pytest.raises(PathError, match="workspace itself"):
            ws.delete(path, recursive=True)
    assert (ws.root / "f").exists()


def test_delete_file_dir_and_tree(ws):
    ws.write_text("f.txt", "x")
    ws.delete("f.txt")
    assert not (ws.root / "f.txt").exists()
    ws.mkdir("empty")
    ws.delete("empty")
    assert not (ws.root / "empty").exists()
    ws.write_text("tree/a/b.txt", "x")
    with pytest.raises(PathError, match="RECURSIVE"):
        ws.delete("tree")
    ws.delete("tree", recursive=True)
    assert not (ws.root / "tree").exists()
    with pytest.raises(PathError, match="no such file"):
        ws.delete("tree")


def test_recursive_delete_does_not_follow_links_inside_tree(ws, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("k")
    ws.mkdir("tree")
    os.symlink(outside, ws.root / "tree/out")
    ws.delete("tree", recursive=True)
    assert (outside / "keep").read_text() == "k"


def test_read_missing_and_directory(ws):
    with pytest.raises(PathError, match="no such file"):
        ws.read_text("nope.txt")
    ws.mkdir("d")
    with pytest.raises(PathError, match="directory"):
        ws.read_text("d")


def test_workspace_must_exist(tmp_path):
    with pytest.raises(WorkspaceError, match="does not exist; create it first"):
        Workspace(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(WorkspaceError, match="is not a directory; --workspace takes the directory") as info:
        Workspace(tmp_path / "file")
    assert "mkdir" not in str(info.value)  # mkdir -p on an existing file would only fail


def test_write_to_a_path_ending_in_slash_is_refused(ws):
    for path in ("newfile/", "d/.", "d/sub/"):
        with pytest.raises(PathError, match="names a directory"):
            ws.write_text(path, "x")
    assert os.listdir(ws.root) == []


def test_read_refuses_binary_fifo_and_the_root(ws):
    (ws.root / "bin").write_bytes(b"ok\xff\x00")
    with pytest.raises(PathError, match=r"not UTF-8 text \(byte 0xff at offset 2\)"):
        ws.read_text("bin")
    os.mkfifo(ws.root / "fifo")
    with pytest.raises(PathError, match="not a regular file"):
        ws.read_text("fifo")  # must not hang waiting for a writer
    with pytest.raises(PathError, match="directory"):
        ws.read_text(".")


def test_through_a_file_is_a_clear_error_and_does_not_exist(ws):
    ws.write_text("f", "x")
    with pytest.raises(PathError, match="'f', which is a file"):
        ws.write_text("f/g.txt", "x")
    with pytest.raises(PathError, match="'f', which is a file"):
        ws.read_text("f/g.txt")
    assert ws.exists("f") and not ws.exists("f/g.txt") and not ws.exists("missing/g.txt")


def test_links_inside_are_followed_physically_and_loops_are_refused(ws):
    ws.write_text("a/b/c/file", "deep")
    os.symlink("a/b/c", ws.root / "short")
    os.symlink("short/..", ws.root / "up")  # physically a/b, as the kernel resolves it
    assert ws.read_text("up/c/file") == "deep"
    os.symlink(str(ws.root / "a"), ws.root / "absolute")  # an absolute link inside is fine
    assert ws.read_text("absolute/b/c/file") == "deep"
    os.symlink("loop2", ws.root / "loop1")
    os.symlink("loop1", ws.root / "loop2")
    with pytest.raises(PathError, match="too many levels of symlinks"):
        ws.read_text("loop1/x")
    os.symlink("../..", ws.root / "a/out")  # ws/a/../.. is the workspace's parent
    with pytest.raises(PathError, match="leads out of the workspace through a symlink"):
        ws.read_text("a/out/x")


def test_delete_with_trailing_slash_removes_the_link_not_the_target(ws, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("k")
    os.symlink(outside, ws.root / "link")
    ws.delete("link/", recursive=True)
    assert not os.path.lexists(ws.root / "link") and (outside / "keep").read_text() == "k"


def test_directory_swapped_for_a_symlink_mid_operation_cannot_escape(ws, tmp_path, monkeypatch):
    """The race, made deterministic: right after the walk has checked and opened `d`, `d` is
    replaced by a symlink to a directory outside. The operation goes on through the descriptor
    it holds, so it lands in the real directory (now named `real`), never outside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    opened = Workspace._open_dir

    def open_then_swap(parent, name, path, create):
        fd = opened(parent, name, path, create)
        if name == "d" and not os.path.islink(ws.root / "d"):
            os.rename(ws.root / "d", ws.root / "real")
            os.symlink(outside, ws.root / "d")
        return fd

    monkeypatch.setattr(Workspace, "_open_dir", staticmethod(open_then_swap))
    (ws.root / "d").mkdir()
    for op in (lambda: ws.write_text("d/f.txt", "x"), lambda: ws.mkdir("d/sub")):
        op()
        os.unlink(ws.root / "d")
        os.rename(ws.root / "real", ws.root / "d")
    assert os.listdir(outside) == []
    assert sorted(os.listdir(ws.root / "d")) == ["f.txt", "sub"]


def test_last_component_swapped_for_a_symlink_is_replaced_not_followed(ws, tmp_path, monkeypatch):
    """After the walk saw that `f` is not a symlink, `f` becomes one (to a file outside). WRITE
    renames over the link itself; READ's open refuses it; the outside file is never touched."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    readlink = Workspace._readlink

    def look_then_swap(parent, name):
        target = readlink(parent, name)
        if name == "f" and target is None:
            try:
                os.unlink(ws.root / "f")
            except FileNotFoundError:
                pass
            os.symlink(outside / "secret", ws.root / "f")
        return target

    monkeypatch.setattr(Workspace, "_readlink", staticmethod(look_then_swap))
    ws.write_text("f", "mine")
    assert not os.path.islink(ws.root / "f") and (ws.root / "f").read_text() == "mine"
    with pytest.raises(PathError, match="became a symlink"):
        ws.read_text("f")
    assert (outside / "secret").read_text() == "s" and os.listdir(outside) == ["secret"]


def test_write_through_a_file_link_inside_replaces_the_target_and_keeps_the_link(ws):
    ws.write_text("real.txt", "old")
    os.symlink("real.txt", ws.root / "alias.txt")
    ws.write_text("alias.txt", "new")
    assert os.readlink(ws.root / "alias.txt") == "real.txt"
    assert (ws.root / "real.txt").read_text() == "new"


def test_os_errors_become_path_errors(ws):
    for op in (lambda: ws.write_text("n" * 300, "x"), lambda: ws.mkdir("d" * 300),
               lambda: ws.read_text("r" * 300), lambda: ws.write_text("p" * 300 + "/f", "x")):
        with pytest.raises(PathError, match="File name too long"):
            op()
    assert os.listdir(ws.root) == []


def test_write_replaces_a_hard_link_instead_of_writing_through_it(ws, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    os.link(outside, ws.root / "hard.txt")
    ws.write_text("hard.txt", "mine")
    assert outside.read_text() == "keep" and (ws.root / "hard.txt").read_text() == "mine"

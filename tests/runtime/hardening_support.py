"""Helpers for the hardening tests: `tiss` in a subprocess (as root or an unprivileged user) and
a hostile model server on 127.0.0.1 (trickles, floods, echoes Authorization, hostile JSON)."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534


def as_user_argv(uid: int | None) -> list[str]:
    """The prefix that runs a command as `uid` (None: as we are)."""
    if uid is None:
        return []
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]


def unprivileged_reason() -> str | None:
    """Why tests cannot run `tiss` as an unprivileged user here, or None when they can."""
    if os.geteuid() != 0:
        return None  # we already are one
    if shutil.which("setpriv") is None:
        return "setpriv (util-linux) is not installed, so root cannot drop to an unprivileged user"
    probe = subprocess.run(
        [*as_user_argv(NOBODY), sys.executable, "-c", "import runtime.cli"],
        cwd="/", capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    if probe.returncode != 0:
        return "the interpreter or the source tree is not readable by an unprivileged user here"
    return None


def users() -> list:
    """pytest params: run as we are, and as `nobody` when we are root (skipped where impossible)."""
    import pytest

    params = [pytest.param(None, id="as-self")]
    if os.geteuid() == 0:
        reason = unprivileged_reason()
        params.append(pytest.param(NOBODY, id="as-nobody", marks=pytest.mark.skipif(
            reason is not None, reason=reason or "")))
    return params


def shared_dir(uid: int | None) -> Path:
    """A fresh directory `uid` may write (tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="tiss-hard-"))
    atexit.register(shutil.rmtree, path, True)  # outside pytest's tmp_path, so removed here
    if uid is not None:
        os.chown(path, uid, uid)
    return path


def tiss(*args: str, uid: int | None = None, env: dict | None = None, timeout: float = 60,
         cwd: str | None = None, **popen) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TISS_")}
    full_env["PYTHONPATH"] = str(REPO)
    full_env.update(env or {})
    return subprocess.run(
        [*as_user_argv(uid), sys.executable, "-m", "runtime", *args],
        capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd or "/", **popen,
    )


def chat(text: str) -> bytes:
    return json.dumps({
        "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
    }).encode()


@dataclass
class Hostile:
    """A model server whose handler is `behave(handler)`; records each request's headers."""

    behave: Callable[[BaseHTTPRequestHandler], None]
    url: str = ""
    requests: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                stub.requests.append({"headers": {k.lower(): v for k, v in self.headers.items()},
                                      "body": json.loads(body or b"{}")})
                try:
                    stub.behave(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def answer(handler: BaseHTTPRequestHandler, body: bytes, status: int = 200) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def trickle_body(handler: BaseHTTPRequestHandler, every: float = 0.2, total: float = 30) -> None:
    """Headers at once, then one byte of body every `every` seconds."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", "100000")
    handler.end_headers()
    handler.wfile.flush()
    end = time.monotonic() + total
    while time.monotonic() < end:
        handler.wfile.write(b" ")
        handler.wfile.flush()
        time.sleep(every)


def trickle_headers(handler: BaseHTTPRequestHandler, every: float = 0.2, total: float = 30) -> None:
    """The status line, then one header byte every `every` seconds (never the blank line)."""
    handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    handler.wfile.flush()
    end = time.monotonic() + total
    while time.monotonic() < end:
        handler.wfile.write(b"a")
        handler.wfile.flush()
        time.sleep(every)


def flood_body(handler: BaseHTTPRequestHandler, total: float = 30) -> None:
    """Headers without a length, then megabytes of body until the client gives up."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Connection", "close")
    handler.end_headers()
    chunk = b"[" * (1 << 20)
    end = time.monotonic() + total
    while time.monotonic() < end:
        handler.wfile.write(chunk)


def flood_headers(handler: BaseHTTPRequestHandler, total: float = 30) -> None:
    """A status line, then header lines without end."""
    handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
    end = time.monotonic() + total
    n = 0
    while time.monotonic() < end:
        handler.wfile.write(b"X-Flood-%d: %s\r\n" % (n, b"z" * 1000))
        n += 1

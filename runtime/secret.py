"""The API key (`TISS_API_KEY`): taken out of the environment once, bound to one origin, redacted.

Three promises rest on this module (docs/running.md, *The API key*):

- **No child can read it.** `take_api_key()` (called first thing by `tiss`) copies the key
  into this module, removes it from `os.environ`, overwrites its bytes in the process's initial
  environment block (which `/proc/PID/environ` shows, and which `unsetenv` never touches) through
  `/proc/self/mem`, and makes the process non-dumpable, so a command run by RUN cannot read it
  from `/proc/$PPID/environ` (nor, as another unprivileged user-id, from `/proc/$PPID/mem`).
- **It goes only to the origin the user configured.** `bind_origin()` is called with the URL of
  `--model` / `TISS_MODEL`; `key_for(url)` gives the key for that scheme://host:port only, so a
  script's `@model "http://elsewhere/v1"` gets no key.
- **It is never printed or written.** `redact()` replaces it in any text, and the runtime calls
  it before any text is cut short (a key straddling a cut would otherwise leak its first part)
  and again at every sink (terminal, trace, JSON report).
"""

from __future__ import annotations

import ctypes
import os
import threading
import urllib.parse
from typing import Any, Mapping

API_KEY_ENV = "TISS_API_KEY"
REDACTED = "[redacted]"
# Shorter "keys" would redact ordinary words everywhere; no real API key is this short.
MIN_SECRET_LENGTH = 4

_PR_SET_DUMPABLE = 4

_lock = threading.Lock()
_taken: str | None = None  # the key taken from the environment, if any
_origin: str | None = None  # scheme://host:port the user configured (--model / TISS_MODEL)
_secrets: list[str] = []  # every value `redact` replaces, longest first


def register(secret: str | None) -> None:
    """Make `redact` replace `secret` from now on."""
    if not secret or len(secret) < MIN_SECRET_LENGTH:
        return
    with _lock:
        if secret not in _secrets:
            _secrets.append(secret)
            _secrets.sort(key=len, reverse=True)


def redact(text: str) -> str:
    """`text` with every registered secret replaced by `[redacted]`."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_value(value: Any) -> Any:
    """`redact` applied to every string inside a JSON-like value (dict keys included)."""
    if not _secrets:
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_value(k): redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v) for v in value]
    return value


def cut(text: str, limit: int, marker: str = "...") -> str:
    """`text` redacted, then shortened to `limit` characters (plus `marker` when it was cut)."""
    text = redact(text)
    return text if len(text) <= limit else text[:limit] + marker


def origin(url: str) -> str | None:
    """`scheme://host:port` of an http(s) URL (default ports filled in), else None."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    port = port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{parts.hostname.lower()}:{port}"


def bind_origin(url: str | None) -> None:
    """The user chose this backend (`--model`, `TISS_MODEL`): only its origin gets the key."""
    global _origin
    _origin = origin(url) if url else None


def bound_origin() -> str | None:
    return _origin


def api_key(env: Mapping[str, str] | None = None) -> str | None:
    """The key: from `env` when one is given, else the one taken at start-up (or still in
    `os.environ` when `take_api_key` never ran, as in library use)."""
    if env is not None and env is not os.environ:
        key = env.get(API_KEY_ENV) or None
    else:
        key = _taken or os.environ.get(API_KEY_ENV) or None
    register(key)
    return key


def key_for(url: str, env: Mapping[str, str] | None = None) -> str | None:
    """The key if `url` is on the origin the user configured; None for any other origin."""
    key = api_key(env)
    if key is None or _origin is None or origin(url) != _origin:
        return None
    return key


def take_api_key() -> None:
    """Move the key out of the environment, so no child process can read it (see above)."""
    global _taken
    key = os.environ.pop(API_KEY_ENV, None) or None
    _taken = key  # each start of `tiss` (once per process; per call in tests) reads it anew
    if key is None:
        return
    register(key)
    try:
        os.unsetenv(API_KEY_ENV)
    except OSError:
        pass
    _scrub_initial_environment()
    _set_non_dumpable()


def _scrub_initial_environment() -> bool:
    """Overwrite `TISS_API_KEY=...` in the environment block the kernel shows as
    /proc/self/environ. Returns whether it was found and overwritten."""
    try:
        with open("/proc/self/stat", "rb") as handle:
            stat = handle.read()
        fields = stat[stat.rindex(b")") + 2 :].split()
        # proc(5): env_start and env_end are fields 50 and 51; `fields` starts at field 3.
        start, end = int(fields[47]), int(fields[48])
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(start)
            block = mem.read(end - start)
            needle = API_KEY_ENV.encode() + b"="
            found = False
            offset = 0
            while True:
                at = block.find(needle, offset)
                if at < 0:
                    break
                offset = at + len(needle)
                if at > 0 and block[at - 1] != 0:
                    continue  # the text inside another variable's value
                value_end = block.find(b"\0", offset)
                value_end = len(block) if value_end < 0 else value_end
                mem.seek(start + offset)
                mem.write(b"\0" * (value_end - offset))
                found = True
            return found
    except (OSError, ValueError, IndexError):
        return False


def _set_non_dumpable() -> None:
    # A non-dumpable process's /proc files (environ, mem, maps) are owned by root and need
    # ptrace rights to read: another unprivileged process cannot read our memory.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _reset_for_tests() -> None:
    global _taken, _origin
    with _lock:
        _taken = None
        _origin = None
        _secrets.clear()

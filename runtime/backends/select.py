"""Choosing the model backend from `--model`, `--model-name` and the environment.

A backend spec is one of:

- `echo`                      the echo backend (answers with its prompt; for tests, dry runs)
- `http://...`, `https://...` an OpenAI-compatible server; the URL is the base under which
                              `/chat/completions` lives, e.g. `http://localhost:8000/v1`
- anything else               a path to a local NumPy checkpoint directory

`--model` wins over the `TISS_MODEL` environment variable. `TISS_API_KEY`, when set, is sent to
HTTP servers as a bearer token. With nothing configured, `resolve_backend` gives the local
backend on the default model shipped in `lm/default_model/`, loaded lazily (no NumPy import, no
weights read) at the first PROMPT_AGENT; where no default model is installed it returns None and
the interpreter raises `BackendNotConfigured` (via `require_backend`) only when a PROMPT_AGENT
actually needs a model, so scripts without one run anywhere.
"""

from __future__ import annotations

import importlib.util
import os
import urllib.parse
from pathlib import Path
from typing import Mapping

from runtime.backends.base import BackendError, BackendNotConfigured, ModelBackend
from runtime.backends.echo import EchoBackend
from runtime.backends.http import HttpBackend

MODEL_ENV = "TISS_MODEL"
API_KEY_ENV = "TISS_API_KEY"


def is_backend_spec(value: str) -> bool:
    """True for the specs that cannot be a model name: `echo` or an http(s) URL."""
    value = value.strip()
    return value == "echo" or urllib.parse.urlsplit(value).scheme in ("http", "https")


def resolve_backend(
    spec: str | None,
    model_name: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    default_local: bool = True,
) -> ModelBackend | None:
    """The backend `spec` names (or `TISS_MODEL` when `spec` is empty); when neither is set, the
    default local model if `default_local` and one is installed, else None.

    `model_name` is the model HTTP servers are asked for (`--model-name`); a script's `@model`
    directive overrides it per call. Raises `BackendError` for a spec that names nothing usable.
    """
    env = os.environ if env is None else env
    if spec is None or not spec.strip():
        spec = env.get(MODEL_ENV, "")
    spec = spec.strip()
    if not spec:
        return _default_local_backend() if default_local else None
    if spec == "echo":
        return EchoBackend()
    scheme = urllib.parse.urlsplit(spec).scheme
    if scheme in ("http", "https"):
        return HttpBackend(spec, model_name, api_key=env.get(API_KEY_ENV) or None)
    if "://" in spec:
        raise BackendError(
            f"unsupported model backend {spec!r}: only http:// and https:// servers are known; "
            "use `--model echo`, `--model http://HOST:PORT/v1` or `--model PATH`"
        )
    return _local_backend(Path(spec).expanduser())


def require_backend(backend: ModelBackend | None) -> ModelBackend:
    """`backend` itself, or `BackendNotConfigured` saying how to configure one."""
    if backend is None:
        raise BackendNotConfigured()
    return backend


def default_model_installed() -> bool:
    """Whether `lm/default_model/` holds weights; found without importing `lm` (and NumPy)."""
    spec = importlib.util.find_spec("lm")
    if spec is None or not spec.submodule_search_locations:
        return False
    return any(
        (Path(location) / "default_model" / "model.safetensors").is_file()
        for location in spec.submodule_search_locations
    )


def _default_local_backend() -> ModelBackend | None:
    if not default_model_installed():
        return None
    from runtime.backends.local import LocalBackend

    return LocalBackend(None, lazy=True)


def _local_backend(path: Path) -> ModelBackend:
    if not path.is_dir():
        raise BackendError(
            f"model backend {str(path)!r} is neither `echo`, an http(s):// URL, nor a checkpoint "
            "directory; pass one of those to --model or TISS_MODEL"
        )
    try:
        # Imported only here: the local model loads NumPy and the checkpoint code, which
        # scripts that use `echo` or an HTTP server never need.
        from runtime.backends.local import LocalBackend
    except ModuleNotFoundError as exc:
        if exc.name not in ("runtime.backends.local",):
            raise
        raise BackendError(
            f"local checkpoints are not available in this build, so {str(path)!r} cannot be "
            "used; choose `--model echo` or `--model http://HOST:PORT/v1`"
        ) from None
    return LocalBackend(path)

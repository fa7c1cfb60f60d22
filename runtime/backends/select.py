"""Choosing the model backend from `--model`, `--model-name` and the environment.

A backend spec is one of:

- `echo`                      the echo backend (answers with its prompt; for tests, dry runs)
- `http://...`, `https://...` an OpenAI-compatible server; the URL is the base under which
                              `/chat/completions` lives, e.g. `http://localhost:8000/v1`
- anything else               a local model for the NumPy engine: a checkpoint directory, a
                              GGUF file, a Hugging Face directory, or a pulled model's name
                              (`smollm2`, see `tiss models`)

`--model` wins over the `TISS_MODEL` environment variable. `TISS_API_KEY`, when set, is sent as
a bearer token to the origin (scheme, host, port) of the server the *user* chose: the backend
resolved with `user=True` (from `--model` / `TISS_MODEL`) binds the key to its origin, and a
script's `@model` URL gets the key only on that same origin; on any other it is called without
one (see `runtime/secret.py`). With nothing configured, `resolve_backend` gives the local
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

from runtime import secret
from runtime.backends.base import BackendError, BackendNotConfigured, ModelBackend
from runtime.backends.echo import EchoBackend
from runtime.backends.http import HttpBackend

MODEL_ENV = "TISS_MODEL"
API_KEY_ENV = secret.API_KEY_ENV


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
    user: bool = False,
) -> ModelBackend | None:
    """The backend `spec` names (or `TISS_MODEL` when `spec` is empty); when neither is set, the
    default local model if `default_local` and one is installed, else None.

    `model_name` is the model HTTP servers are asked for (`--model-name`); a script's `@model`
    directive overrides it per call. Raises `BackendError` for a spec that names nothing usable.

    `user` says the spec is the user's own choice (`--model`, `TISS_MODEL`): the API key is then
    bound to its origin. Otherwise (a script's `@model`) the key is sent only if the spec is on
    the origin the user chose before.
    """
    explicit_env = env
    env = os.environ if env is None else env
    if spec is None or not spec.strip():
        spec = env.get(MODEL_ENV, "")
    spec = spec.strip()
    if user:
        secret.bind_origin(spec)
    if not spec:
        return _default_local_backend() if default_local else None
    if spec == "echo":
        return EchoBackend()
    scheme = urllib.parse.urlsplit(spec).scheme
    if scheme in ("http", "https"):
        return HttpBackend(spec, model_name, api_key=secret.key_for(spec, explicit_env))
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
    path = _pulled_model(path)
    if not path.exists():
        raise BackendError(
            f"model backend {str(path)!r} is neither `echo`, an http(s):// URL, nor a checkpoint "
            "directory, model file (GGUF, Hugging Face directory) or pulled model name "
            "(`tiss models list`); pass one of those to --model or TISS_MODEL"
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


def _pulled_model(path: Path) -> Path:
    """A pulled model's name (`smollm2`) as what it was pulled to (`lm.models.resolve_model`,
    which says how to pull one that is not there yet); any other path as it is."""
    try:
        from lm.models import ModelStoreError, resolve_model
    except ModuleNotFoundError:  # a build without the model package: no names to resolve
        return path
    try:
        resolved = resolve_model(str(path))
    except ModelStoreError as exc:
        raise BackendNotConfigured(str(exc)) from None
    return path if resolved == str(path) else Path(resolved)


def script_endpoints(program) -> list[tuple[int, str, bool]]:
    """Every `@model` in a script that names, or may name, an HTTP server: (line, the value as
    written, whether it is known before the run). For `--dry-run` and `tiss check`."""
    from tisslang import ast

    found = []
    stack = [program]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Directive) and node.name == "model" and node.value is not None:
            value = node.value
            if isinstance(value, ast.String) and value.is_literal:
                if urllib.parse.urlsplit(value.text.strip()).scheme in ("http", "https"):
                    found.append((node.line, value.text, True))
            elif isinstance(value, (ast.String, ast.Ref)):
                shown = value.text if isinstance(value, ast.String) else "{{ " + value.name + " }}"
                found.append((node.line, shown, False))
        stack.extend(reversed(list(ast.iter_child_nodes(node))))
    return sorted(found)


def describe_endpoints(program, user_backend: ModelBackend | None) -> list[str]:
    """Lines for `--dry-run`: the model servers a script would call and which get the API key."""
    lines = []
    user_url = getattr(user_backend, "base_url", None)
    has_key = secret.api_key() is not None
    if user_url:
        lines.append(f"--model {user_url}" + (" (gets TISS_API_KEY)" if has_key else ""))
    for line, text, static in script_endpoints(program):
        if not static:
            lines.append(f'line {line}: @model "{text}" (computed at run time; it gets the API key '
                         "only on the origin of --model)")
        elif not has_key:
            lines.append(f'line {line}: @model "{text}"')
        elif secret.origin(text) == secret.bound_origin():
            lines.append(f'line {line}: @model "{text}" (gets TISS_API_KEY: the origin of --model)')
        else:
            lines.append(f'line {line}: @model "{text}" (no API key: another origin than --model)')
    return lines

"""Model backends for PROMPT_AGENT: the protocol, `echo`, OpenAI-compatible HTTP, selection.

The local NumPy checkpoint backend lives in `runtime.backends.local` and is imported only when a
checkpoint path is selected (see `select.py`).
"""

from runtime.backends.base import (
    BackendCancelled,
    BackendError,
    BackendNotConfigured,
    Completion,
    GenerationSettings,
    ModelBackend,
    SettingsError,
    estimate_tokens,
)
from runtime.backends.echo import EchoBackend
from runtime.backends.guarded import generate_within_budget, prompt_tokens
from runtime.backends.http import HttpBackend
from runtime.backends.select import is_backend_spec, require_backend, resolve_backend

__all__ = [
    "BackendCancelled",
    "BackendError",
    "BackendNotConfigured",
    "Completion",
    "EchoBackend",
    "GenerationSettings",
    "HttpBackend",
    "ModelBackend",
    "SettingsError",
    "estimate_tokens",
    "generate_within_budget",
    "is_backend_spec",
    "prompt_tokens",
    "require_backend",
    "resolve_backend",
]

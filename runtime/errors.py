"""The errors the runtime raises to its users."""

from __future__ import annotations


class TissRuntimeError(Exception):
    """Base of every user-facing runtime error; the CLI prints these as messages."""

    exit_code = 2

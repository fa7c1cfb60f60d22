"""The errors the TissLang package raises to its users."""

from __future__ import annotations


class TissError(Exception):
    """Base of every error in `tisslang`; the CLI prints these as messages, never tracebacks."""

    exit_code = 2

"""The errors the model package raises to its users."""

from __future__ import annotations


class LMError(Exception):
    """Base of every user-facing error in `lm` (bad corpus, bad checkpoint, bad settings)."""

    exit_code = 2

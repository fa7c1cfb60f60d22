"""String literals: decoding escapes and splitting ``{{ ref }}`` interpolations at parse time.

A double-quoted string processes ``\\\\ \\" \\n \\t \\r \\{ \\uXXXX`` and interpolates
``{{ ref }}``; ``\\{`` is decoded in the same left-to-right pass, so it can never start an
interpolation. A single-quoted string is raw: only ``\\'`` and ``\\\\`` are escapes and nothing is
interpolated (like a shell's single quotes and a ``<<'RAW'`` heredoc). A ``{{`` that does not
form ``{{ ref }}`` stays literal text (``tiss check`` warns about it).

Errors raise ``StringError(offset, message)`` with the offset inside the token; the parser turns
it into a positioned ``TissSyntaxError``.
"""

from __future__ import annotations

import re
from typing import Union

from .ast import Ref

# A root name, then object keys or list indexes (`answer.files.0`).
REF_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*(?:\.(?:[A-Za-z_][A-Za-z0-9_]*|[0-9]+))*"
INTERPOLATION = re.compile(r"\{\{[ \t]*(" + REF_PATTERN + r")[ \t]*\}\}")
_DQ_PIECE = re.compile(r"\\(u[0-9A-Fa-f]{4}|.)|" + INTERPOLATION.pattern, re.DOTALL)
_SQ_ESCAPE = re.compile(r"\\([\\'])")
_SIMPLE_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t", "r": "\r", "{": "{"}

Part = Union[str, Ref]


class StringError(Exception):
    def __init__(self, offset: int, message: str) -> None:
        super().__init__(message)
        self.offset = offset
        self.message = message


def _ref(name: str, line: int, column: int, end_column: int) -> Ref:
    return Ref(tuple(name.split(".")), line=line, column=column, end_line=line, end_column=end_column)


def decode_double(token: str, line: int, column: int) -> tuple[Part, ...]:
    """Parts of a double-quoted token (quotes included) that starts at ``line``:``column``."""
    body = token[1:-1]
    if "\\" not in body and "{" not in body:
        return (body,) if body else ()
    parts: list[Part] = []
    text: list[str] = []
    pos = 0
    for m in _DQ_PIECE.finditer(body):
        text.append(body[pos : m.start()])
        pos = m.end()
        escape, ref = m.group(1), m.group(2)
        if ref is not None:
            if text:
                joined = "".join(text)
                if joined:
                    parts.append(joined)
                text = []
            start = column + 1 + m.start()  # +1: the opening quote
            parts.append(_ref(ref, line, start, column + 1 + m.end()))
        elif len(escape) == 5:  # u + four hex digits
            text.append(chr(int(escape[1:], 16)))
        elif escape in _SIMPLE_ESCAPES:
            text.append(_SIMPLE_ESCAPES[escape])
        else:
            raise StringError(1 + m.start(), _bad_escape_message(escape))
    text.append(body[pos:])
    joined = "".join(text)
    if joined:
        parts.append(joined)
    return _check_surrogates(tuple(parts))


def _bad_escape_message(escape: str) -> str:
    if escape == "u":
        return "bad escape \\u: it needs four hex digits, as in \\u00e9"
    return (
        f"unknown escape \\{escape} in a double-quoted string; the escapes are "
        "\\\\ \\\" \\n \\t \\r \\{ \\uXXXX -- for text with backslashes (a regex, a Windows "
        f"path) use single quotes: '...\\{escape}...'"
    )


def _check_surrogates(parts: tuple[Part, ...]) -> tuple[Part, ...]:
    """Join ``\\uD83D\\uDE00`` pairs into one character; a lone surrogate cannot be written out."""
    out: list[Part] = []
    for part in parts:
        if isinstance(part, str) and any("\ud800" <= ch <= "\udfff" for ch in part):
            try:
                part = part.encode("utf-16", "surrogatepass").decode("utf-16")
            except UnicodeDecodeError:
                raise StringError(1, "a \\u escape here is half of a surrogate pair; write the "
                                  "character itself or both halves (\\uD83D\\uDE00)") from None
        out.append(part)
    return tuple(out)


def decode_single(token: str) -> tuple[Part, ...]:
    """Parts of a single-quoted token: raw text, ``\\'`` and ``\\\\`` the only escapes."""
    body = token[1:-1]
    if "\\" in body:
        body = _SQ_ESCAPE.sub(r"\1", body)
    return (body,) if body else ()


def interpolate_line(text: str, line: int, column: int) -> list[Part]:
    """Split one heredoc line (no escapes) into text and refs; ``column`` is where it starts."""
    if "{{" not in text:
        return [text] if text else []
    parts: list[Part] = []
    pos = 0
    for m in INTERPOLATION.finditer(text):
        if m.start() > pos:
            parts.append(text[pos : m.start()])
        parts.append(_ref(m.group(1), line, column + m.start(), column + m.end()))
        pos = m.end()
    if pos < len(text):
        parts.append(text[pos:])
    return parts


def merge_parts(parts: list[Part]) -> tuple[Part, ...]:
    """Adjacent literals joined and empty ones dropped: the canonical form of ``String.parts``.

    Each run of literals is joined once, so a heredoc of many lines stays linear in its size.
    """
    out: list[Part] = []
    run: list[str] = []
    for part in parts:
        if isinstance(part, str):
            run.append(part)
            continue
        if run:
            text = "".join(run)
            if text:
                out.append(text)
            run = []
        out.append(part)
    text = "".join(run)
    if text:
        out.append(text)
    return tuple(out)


# --- writing strings back (the formatter) -----------------------------------------------------

_DQ_ESCAPE_OUT = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "{": "\\{"}


def _escape_char(ch: str) -> str:
    out = _DQ_ESCAPE_OUT.get(ch)
    if out is not None:
        return out
    if ch < " " or ch == "\x7f" or "\ud800" <= ch <= "\udfff" or ch in "\u2028\u2029\x85":
        return "\\u%04x" % ord(ch)
    return ch


def quote(parts: tuple[Part, ...]) -> str:
    """Source text for a string with these parts; ``decode_*`` of it gives the same parts.

    Literal text with backslashes (and nothing single quotes cannot hold) is written in single
    quotes, so regexes stay readable; everything else in double quotes with escapes.
    """
    if all(isinstance(p, str) for p in parts):
        text = "".join(parts)  # type: ignore[arg-type]
        if "\\" in text and _fits_single_quotes(text):
            return "'" + text + "'"
    out = ['"']
    for part in parts:
        if isinstance(part, str):
            out.append("".join(_escape_char(ch) for ch in part))
        else:
            out.append("{{ " + part.name + " }}")
    out.append('"')
    return "".join(out)


def _fits_single_quotes(text: str) -> bool:
    if "'" in text or "\\\\" in text or text.endswith("\\"):
        return False
    return all(_escape_char(ch) == ch or ch in '"{\\' for ch in text)

"""Taint: which text of a value came from a model, carried with the value itself.

Text a model wrote (a PROMPT_AGENT answer, `LAST_PROMPT.TEXT`) is *tainted*, and so is every
value built from it. The command policy (`runtime/policy.py`) asks for approval before a RUN
whose command, or a WRITE / MKDIR / DELETE whose path, holds tainted text.

Taint is provenance that travels with values, never a search for text a model once said (that
would flag an author's own `RUN "ls"` because a model once answered "ls"):

- `TaintedStr` is a `str` that also records the character spans that came from a model.
  Everything that treats it as a `str` (render, comparisons, `==`, hashing, JSON) sees exactly
  the text; only `spans` is extra. String methods (`strip`, slicing ...) return plain `str`:
  only the helpers here carry taint, so every path that must keep it goes through them.
- `TaintedInt` / `TaintedFloat`: a number taken from a model's JSON answer. Booleans and `null`
  stay untainted: they render as words tiss chose (`true`, `false`, nothing), not model text.
- Lists and objects are never tainted as a whole: their items are (`carry` marks the leaves),
  so a field of an object built by the script from one tainted and one clean value is clean.
- `join(parts)` concatenates while keeping each part's spans at their new offsets; string
  interpolation (`runtime/interpolate.py`) builds its result with it, so the tainted spans of
  `"rm {{ answer }}"` are exactly where the answer was substituted.

`TaintedFiles` remembers the workspace files a tainted WRITE wrote in this run, by resolved
path and by file identity (device and inode), so a READ of such a file (under any spelling of
its path, or through a link to it) is tainted; a later clean WRITE or a DELETE clears it.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Iterable

Span = tuple[int, int]


def _merge(spans: Iterable[Span]) -> tuple[Span, ...]:
    """Sorted, non-empty, non-overlapping spans (adjacent ones joined)."""
    out: list[list[int]] = []
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return tuple((a, b) for a, b in out)


class TaintedStr(str):
    """A `str` with the spans (start, end) of its characters that came from a model."""

    spans: tuple[Span, ...]

    def __new__(cls, text: str, spans: Iterable[Span] | None = None) -> "TaintedStr":
        obj = super().__new__(cls, str(text))
        obj.spans = _merge(spans if spans is not None else [(0, len(obj))])
        return obj

    def __reduce__(self) -> Any:  # copy/pickle keep the spans
        return (TaintedStr, (str(self), self.spans))


class TaintedInt(int):
    """A whole number that came from a model (a field of a JSON answer)."""

    def __repr__(self) -> str:
        return int.__repr__(self)

    __str__ = __repr__


class TaintedFloat(float):
    """A number with a fraction that came from a model (a field of a JSON answer)."""

    def __repr__(self) -> str:
        return float.__repr__(self)

    __str__ = __repr__


def taint(text: str) -> str:
    """`text` wholly tainted (model output). The empty string stays a plain `str`."""
    if not isinstance(text, str):
        raise TypeError(f"taint() takes text, got {type(text).__name__}")
    if not text:
        return text
    return TaintedStr(text)


def _taint_value(value: Any) -> Any:
    """`value` with every leaf tainted (strings, numbers, object keys)."""
    if isinstance(value, str):
        return value if isinstance(value, TaintedStr) and value.spans == ((0, len(value)),) else taint(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if isinstance(value, TaintedInt) else TaintedInt(value)
    if isinstance(value, float):
        return value if isinstance(value, TaintedFloat) else TaintedFloat(value)
    if isinstance(value, list):
        return [_taint_value(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_taint_value(item) for item in value)
    if isinstance(value, dict):
        return {_taint_value(key) if isinstance(key, str) else key: _taint_value(item)
                for key, item in value.items()}
    return value


def is_tainted(value: Any) -> bool:
    """Whether any text of `value` (a string, a number, or anything inside a list/object) is tainted."""
    if isinstance(value, TaintedStr):
        return bool(value.spans)
    if isinstance(value, (TaintedInt, TaintedFloat)):
        return True
    if isinstance(value, (list, tuple)):
        return any(is_tainted(item) for item in value)
    if isinstance(value, dict):
        return any(is_tainted(key) or is_tainted(item) for key, item in value.items())
    return False


def spans(text: Any) -> tuple[Span, ...]:
    """The tainted character spans of a string (empty for a clean string or a non-string)."""
    return text.spans if isinstance(text, TaintedStr) else ()


def carry(source: Any, derived: Any) -> Any:
    """`derived` carrying `source`'s taint.

    - An untainted `source`, or `derived` that is `source` itself: `derived` unchanged.
    - A list or object `source`: `derived` unchanged. A container is never tainted as a whole;
      an item or field taken from it already carries its own taint (so `obj.clean` stays clean
      when `obj.dirty` is tainted).
    - A tainted string or number `source` (model text, a line of it, a glob it wrote): every
      string and number in `derived` is tainted, recursively through lists and objects (the
      value parsed from a JSON answer, the lines of an answer, the paths a tainted glob matched).
    """
    if derived is source or not is_tainted(source):
        return derived
    if isinstance(source, (list, tuple, dict)):
        return derived
    return _taint_value(derived)


def rendered(value: Any, text: str) -> str:
    """`text`, the rendering of `value`, with `value`'s taint: a `TaintedStr` keeps its own
    spans; a tainted number, or a list/object with anything tainted inside, taints all its text."""
    if isinstance(value, TaintedStr) and str(value) == text:
        return value
    if is_tainted(value):
        return taint(text)
    return text


def join(parts: Iterable[str]) -> str:
    """Concatenate strings, keeping each `TaintedStr`'s spans at their place in the result.

    The result is a plain `str` when no part is tainted, so clean text stays exactly `str`.
    """
    pieces: list[str] = []
    found: list[Span] = []
    offset = 0
    for part in parts:
        for start, end in spans(part):
            found.append((start + offset, end + offset))
        pieces.append(part)
        offset += len(part)
    text = "".join(pieces)
    return TaintedStr(text, found) if found else text


def sliced(text: str, start: int | None = None, end: int | None = None) -> str:
    """`text[start:end]` keeping exactly the taint of the characters kept (a plain slice of a
    `TaintedStr` is a plain `str`)."""
    plain = str(text)
    first, last, _ = slice(start, end).indices(len(plain))
    last = max(first, last)
    inside = [(max(a, first) - first, min(b, last) - first) for a, b in spans(text) if a < last and b > first]
    piece = plain[first:last]
    return TaintedStr(piece, inside) if inside else piece


def tainted_parts(text: Any) -> list[str]:
    """The tainted substrings of a string, in order (for the trace, the report and messages)."""
    if not isinstance(text, str):
        return []
    return [str.__getitem__(text, slice(start, end)) for start, end in spans(text)]


def marked(text: str, open_mark: str = "[[", close_mark: str = "]]") -> str:
    """`text` with each tainted span between `open_mark` and `close_mark`, for showing a human."""
    out: list[str] = []
    last = 0
    plain = str(text)
    for start, end in spans(text):
        out.append(plain[last:start])
        out.append(open_mark + plain[start:end] + close_mark)
        last = end
    out.append(plain[last:])
    return "".join(out)


def lines(text: str) -> list[str]:
    """`text.splitlines()` with each line keeping exactly the taint of its characters."""
    plain = str(text)
    found = spans(text)
    out: list[str] = []
    position = 0
    for line in plain.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        start, end = position, position + len(body)
        inside = [(max(a, start) - start, min(b, end) - start) for a, b in found if a < end and b > start]
        out.append(TaintedStr(body, inside) if inside else body)
        position += len(line)
    return out


class TaintedFiles:
    """The workspace files a tainted WRITE wrote in this run (see the module docstring).

    Each is recorded by its resolved absolute path with the identity `(st_dev, st_ino)` it had
    right after the write. A file is tainted while some recorded path still holds the file with
    its recorded identity and the file asked about is that same file: so another spelling or a
    hard link to it matches, while a file that replaced it since (a new inode, even one that
    reuses a freed inode number at another path) does not.
    """

    def __init__(self) -> None:
        self._files: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()  # PARALLEL children write at the same time

    @staticmethod
    def _identity(path: str) -> tuple[int, int] | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def wrote(self, path: str | os.PathLike[str], tainted: bool) -> None:
        """Record a WRITE to the resolved `path`: tainted content marks it, clean content clears it."""
        key = os.fspath(path)
        identity = self._identity(key)
        with self._lock:
            if tainted and identity is not None:
                self._files[key] = identity
            else:
                self._files.pop(key, None)
                if identity is not None:  # the same file under another recorded name
                    for other in [p for p, i in self._files.items() if i == identity]:
                        del self._files[other]

    def removed(self, path: str | os.PathLike[str]) -> None:
        """Forget a deleted path and everything under it."""
        key = os.fspath(path)
        prefix = key.rstrip(os.sep) + os.sep
        with self._lock:
            for recorded in [p for p in self._files if p == key or p.startswith(prefix)]:
                del self._files[recorded]

    def is_tainted(self, path: str | os.PathLike[str]) -> bool:
        """Whether the file at the resolved `path` is one a tainted WRITE wrote in this run."""
        return self.holds(self._identity(os.fspath(path)))

    def holds(self, identity: tuple[int, int] | None) -> bool:
        """Whether the file of `identity` (`Workspace.identity`) is one a tainted WRITE wrote
        in this run and still stands at a path it was written to."""
        if identity is None:
            return False
        with self._lock:
            recorded = [p for p, i in self._files.items() if i == identity]
        return any(self._identity(p) == identity for p in recorded)

    def __bool__(self) -> bool:
        return bool(self._files)

"""An open document's text, and positions between the server's and the client's counting.

The server counts lines as TissLang does (``\\n``, ``\\r\\n`` and ``\\r`` end a line) and columns
in code points; a client counts columns in UTF-16 units unless it negotiated UTF-8 or UTF-32.
``Text`` holds the source, its lines and where each line starts, converts positions both ways
and applies ``didChange`` edits.

The edits are applied here rather than by pygls's document store because that store splits lines
with ``str.splitlines``, which also breaks at form feeds, ``\\x85`` and ``\\u2028``: a file holding
one of those would drift out of step with the client's copy after the first incremental edit.
"""

from __future__ import annotations

import bisect
import re
from typing import Callable

from tisslang.source import normalise

_LINE_END = re.compile(r"\r\n|\r|\n")
Units = Callable[[str], int]  # code units of a string in the client's encoding


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def utf8_units(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def units_for(encoding: str | None) -> Units:
    """The unit counter for a negotiated ``positionEncoding`` (UTF-16 unless said otherwise)."""
    return {"utf-8": utf8_units, "utf-32": len}.get(str(encoding or "utf-16"), utf16_units)


class Text:
    """The source of one document; ``lines`` without their line ends, as the parser numbers them."""

    def __init__(self, source: str, units: Units = utf16_units) -> None:
        self.source = source
        self.units = units
        self.normalised = normalise(source)
        # The parser drops a BOM; the client still counts it, on line 0.
        self.bom = units("\ufeff") if source.startswith("\ufeff") else 0
        self.lines = self.normalised.split("\n")
        self._starts: list[int] | None = None  # offsets of lines in `normalised`
        # When every character is one unit for the client (ASCII, or no astral characters
        # for UTF-16), columns need no counting: the common case, and what keeps semantic
        # tokens for a 1 MB file cheap.
        self.one_unit = units(self.normalised) == len(self.normalised)

    # --- positions --------------------------------------------------------------------------

    def to_client(self, line: int, column: int) -> tuple[int, int]:
        """0-based line and code-point column (normalised text) to the client's (line, units)."""
        if line >= len(self.lines):
            return len(self.lines) - 1, self.units(self.lines[-1]) + (self.bom if len(self.lines) == 1 else 0)
        if line < 0:
            return 0, 0
        text = self.lines[line]
        column = max(0, min(column, len(text)))
        shift = self.bom if line == 0 else 0
        if self.one_unit:
            return line, column + shift
        return line, self.units(text[:column]) + shift

    def from_client(self, line: int, units: int) -> tuple[int, int]:
        """The client's (line, units) to a 0-based line and code-point column (clamped)."""
        if line >= len(self.lines):
            return len(self.lines) - 1, len(self.lines[-1])
        if line < 0:
            return 0, 0
        text = self.lines[line]
        if line == 0 and self.bom:
            units -= self.bom
        if units <= 0:
            return line, 0
        if self.one_unit:
            return line, min(units, len(text))
        count = 0
        for index, ch in enumerate(text):
            if count >= units:
                return line, index
            count += self.units(ch)
        return line, len(text)

    def offset(self, line: int, column: int) -> int:
        """Offset in the normalised text of a 0-based line and column."""
        starts = self.line_starts()
        line = max(0, min(line, len(starts) - 1))
        return starts[line] + max(0, min(column, len(self.lines[line])))

    def position(self, offset: int) -> tuple[int, int]:
        """0-based line and column of an offset in the normalised text."""
        starts = self.line_starts()
        line = bisect.bisect_right(starts, offset) - 1
        return line, offset - starts[line]

    def line_starts(self) -> list[int]:
        if self._starts is None:
            starts = [0]
            total = 0
            for text in self.lines[:-1]:
                total += len(text) + 1
                starts.append(total)
            self._starts = starts
        return self._starts

    # --- edits ------------------------------------------------------------------------------

    def apply(self, start: tuple[int, int], end: tuple[int, int], new_text: str) -> "Text":
        """A new ``Text`` with the client range ``start``..``end`` ((line, units) pairs) replaced.

        Offsets are found in the raw source (its own line ends), so ``\\r\\n`` files keep them.
        """
        raw_starts = [0] + [m.end() for m in _LINE_END.finditer(self.source)]
        raw = self.source

        def raw_offset(line: int, units: int) -> int:
            if line >= len(raw_starts):
                return len(raw)
            begin = raw_starts[line]
            stop = raw_starts[line + 1] if line + 1 < len(raw_starts) else len(raw)
            text = raw[begin:stop]
            text = text[: len(text) - len(_trailing_end(text))]
            count = 0
            for index, ch in enumerate(text):
                if count >= units:
                    return begin + index
                count += self.units(ch)
            return begin + len(text)

        a = raw_offset(max(start[0], 0), max(start[1], 0))
        b = raw_offset(max(end[0], 0), max(end[1], 0))
        if b < a:
            a, b = b, a
        return Text(raw[:a] + new_text + raw[b:], self.units)


def _trailing_end(text: str) -> str:
    if text.endswith("\r\n"):
        return "\r\n"
    if text.endswith("\n") or text.endswith("\r"):
        return text[-1]
    return ""

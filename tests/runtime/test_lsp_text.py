"""runtime/lsp/text.py against an independent reference: LSP's rules for lines (\\n, \\r\\n and \\r
end a line) and columns (UTF-16 code units by default, UTF-8 or UTF-32 when negotiated), written
here the slow, obvious way on encoded bytes."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.lsp.text import Text, units_for

ALPHABET = st.sampled_from(list("ab {}\"'#\t") + ["\n", "\r\n", "\r", "é", "😀", "\u2028", "\x0c",
                                                  "\ufeff", "\x00"])
TEXTS = st.lists(ALPHABET, max_size=40).map("".join)
ENCODINGS = st.sampled_from(["utf-16", "utf-8", "utf-32"])


def reference_apply(source: str, start, end, new: str, encoding: str) -> str:
    """Replace the LSP range start..end ((line, unit) pairs, clamped as the spec says)."""
    pieces = re.split(r"(\r\n|\r|\n)", source)
    lines, ends = pieces[0::2], pieces[1::2] + [""]
    codec = {"utf-16": "utf-16-le", "utf-8": "utf-8", "utf-32": "utf-32-le"}[encoding]
    width = {"utf-16": 2, "utf-8": 1, "utf-32": 4}[encoding]

    def offset(line: int, unit: int) -> int:
        if line >= len(lines):
            return len(source)
        before = sum(len(l) + len(e) for l, e in zip(lines[:line], ends[:line]))
        data = lines[line].encode(codec, "surrogatepass")
        cut = min(unit * width, len(data))
        # A position inside a character counts as after it (LSP leaves this open; pygls reads
        # it so too): step forward to the next character boundary.
        while True:
            try:
                return before + len(data[:cut].decode(codec, "surrogatepass"))
            except UnicodeDecodeError:
                cut += 1

    a, b = offset(*start), offset(*end)
    a, b = min(a, b), max(a, b)
    return source[:a] + new + source[b:]


@settings(max_examples=300, deadline=None)
@given(TEXTS, st.lists(st.tuples(st.integers(0, 6), st.integers(0, 12), st.integers(0, 6),
                                 st.integers(0, 12), TEXTS), max_size=6), ENCODINGS)
def test_edits_apply_as_the_lsp_reference_says(source, edits, encoding):
    text = Text(source, units_for(encoding))
    expected = source
    for l1, c1, l2, c2, new in edits:
        start, end = (l1, c1), (l2, c2)
        if (l2, c2) < (l1, c1):
            start, end = end, start
        text = text.apply(start, end, new)
        expected = reference_apply(expected, start, end, new, encoding)
        assert text.source == expected


@settings(max_examples=300, deadline=None)
@given(TEXTS, ENCODINGS)
def test_positions_round_trip_between_server_and_client(source, encoding):
    text = Text(source, units_for(encoding))
    for line, content in enumerate(text.lines):
        for column in range(len(content) + 1):
            client = text.to_client(line, column)
            # The client counts units: its column is the encoded length of what comes before
            # (plus the BOM on line 0, which the parser drops and the client keeps).
            bom = units_for(encoding)("\ufeff") if line == 0 and source.startswith("\ufeff") else 0
            assert client == (line, units_for(encoding)(content[:column]) + bom)
            assert text.from_client(*client) == (line, column)

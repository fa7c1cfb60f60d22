"""Preparing source text for the grammar: newlines, the header, heredoc bodies and comments.

Heredocs are context-sensitive (the body ends at a line chosen by the opener), so they are cut
out here, before Lark sees the text: each body line and the closing delimiter line are replaced by
empty lines, which keeps every other position exact, and the body is stored under the position of
its ``<<DELIM`` token for the parser to pick up. Comments are collected here too, so the formatter
can put them back.

Rules (TissLang spec section 4): the body is every line up to the first line that is only
``DELIM`` (surrounding whitespace allowed); the closing line's indentation is removed from every
body line, and a non-blank line without it is an error; blank lines are kept; the content is the
lines joined by ``\\n`` plus a final ``\\n`` when there is at least one line. ``<<'DELIM'`` bodies
are raw; other bodies interpolate ``{{ ref }}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .ast import Comment, String
from .errors import TissSyntaxError
from .strings import Part, interpolate_line, merge_parts

# One line, split into the pieces that matter: strings (possibly unterminated), a comment, a
# heredoc opener, and everything else. The parser reports bad strings; here they only hide
# the `#` and `<<` inside them.
_LINE_PIECES = re.compile(
    r"""(?P<dq>"(?:[^"\\]|\\.)*"?)"""
    r"""|(?P<sq>'(?:[^'\\]|\\.)*'?)"""
    r"""|(?P<comment>\#.*)"""
    r"""|<<(?P<quote>'?)(?P<delim>[A-Za-z_][A-Za-z0-9_]*)(?P=quote)"""
    r"""|[^"'#<]+|<"""
)
_AFTER_OPENER = re.compile(r"[ \t]*(?:#.*)?")
HEADER_PREFIX = "#TISS!"


@dataclass(frozen=True)
class Heredoc:
    """A cut-out heredoc body, keyed in ``Prepared.heredocs`` by its opener's (line, column)."""

    delimiter: str
    raw: bool
    content: String
    end_line: int  # the closing delimiter's line
    end_column: int  # one past the end of that line


@dataclass(frozen=True)
class Prepared:
    text: str  # what the grammar parses: newlines normalised, heredoc bodies blanked
    lines: list[str]  # the normalised source lines, for error messages
    header: dict[str, str]
    heredocs: dict[tuple[int, int], Heredoc]
    comments: tuple[Comment, ...]


def normalise(source: str) -> str:
    """UTF-8 BOM dropped; ``\\r\\n`` and ``\\r`` read as ``\\n``."""
    if source.startswith("\ufeff"):
        source = source[1:]
    if "\r" in source:
        source = source.replace("\r\n", "\n").replace("\r", "\n")
    return source


def prepare(source: str, filename: str) -> Prepared:
    text = normalise(source)
    lines = text.split("\n")
    header: dict[str, str] = {}
    if lines and lines[0].startswith(HEADER_PREFIX):
        header = _parse_header(lines[0], filename)
    heredocs: dict[tuple[int, int], Heredoc] = {}
    comments: list[Comment] = []
    if "<<" in text:
        lines_out = _cut_heredocs(lines, filename, heredocs)
    else:
        lines_out = lines
    if "#" in text:
        # An empty header (`#TISS!` alone) stays a comment, so tiss fmt does not drop the line.
        _collect_comments(lines_out, comments, skip_header=bool(header))
    prepared_text = "\n".join(lines_out) if lines_out is not lines else text
    if not prepared_text.endswith("\n"):
        prepared_text += "\n"  # so a final comment or statement always ends in a separator
    return Prepared(prepared_text, lines, header, heredocs, tuple(comments))


def _parse_header(line: str, filename: str) -> dict[str, str]:
    header: dict[str, str] = {}
    for m in re.finditer(r"\S+", line[len(HEADER_PREFIX) :]):
        key, eq, value = m.group().partition("=")
        if not eq or not key:
            column = len(HEADER_PREFIX) + m.start() + 1
            raise TissSyntaxError(
                filename, 1, column,
                f"header entry {m.group()!r} is not key=value (as in '#TISS! Language=Python')",
                source_line=line,
            )
        header[key] = value
    return header


def _find_opener(line: str):
    """The first heredoc opener outside strings and comments, or None."""
    for m in _LINE_PIECES.finditer(line):
        if m.group("delim") is not None:
            return m
        if m.group("comment") is not None:
            return None
    return None


def _cut_heredocs(
    lines: list[str], filename: str, heredocs: dict[tuple[int, int], Heredoc]
) -> list[str]:
    out = list(lines)
    n = len(lines)
    i = 0
    while i < n:
        line = lines[i]
        if "<<" not in line:
            i += 1
            continue
        m = _find_opener(line)
        if m is None:
            i += 1
            continue
        lineno, column = i + 1, m.start() + 1
        delim, raw = m.group("delim"), bool(m.group("quote"))
        rest = _AFTER_OPENER.match(line, m.end())
        if rest.end() != len(line):
            raise TissSyntaxError(
                filename, lineno, rest.end() + 1,
                f"nothing may follow {m.group()} on its line: the heredoc body starts on the "
                f"next line and ends at a line holding only {delim}",
                source_line=line,
            )
        j = i + 1
        while j < n and lines[j].strip() != delim:
            j += 1
        if j >= n:
            raise TissSyntaxError(
                filename, lineno, column,
                f"heredoc {m.group()} is never closed: end it with a line holding only {delim}",
                source_line=line,
            )
        closing = lines[j]
        indent = closing[: len(closing) - len(closing.lstrip(" \t"))]
        content = _body(lines, i + 1, j, indent, raw, filename)
        heredocs[(lineno, column)] = Heredoc(delim, raw, content, j + 1, len(closing) + 1)
        for k in range(i + 1, j + 1):
            out[k] = ""
        i = j + 1
    return out


def _body(lines: list[str], start: int, stop: int, indent: str, raw: bool, filename: str) -> String:
    """The content of body lines ``lines[start:stop]`` (0-based) with ``indent`` removed."""
    width = len(indent)
    parts: list[Part] = []
    for k in range(start, stop):
        line = lines[k]
        if line.startswith(indent):
            text = line[width:]
        elif not line.strip():
            text = ""  # a blank line shorter than the indentation is still just a blank line
        else:
            shown = repr(indent) if indent.strip(" ") else f"{width} space(s)"
            raise TissSyntaxError(
                filename, k + 1, 1,
                f"heredoc line is indented less than its closing delimiter: every non-blank "
                f"body line must start with the closing line's indentation ({shown})",
                source_line=line,
            )
        if raw:
            parts.append(text)
        else:
            parts.extend(interpolate_line(text, k + 1, width + 1))
        parts.append("\n")
    if stop > start:
        first, last = start + 1, stop
        return String(merge_parts(parts), line=first, column=1, end_line=last,
                      end_column=len(lines[stop - 1]) + 1)
    return String((), line=stop + 1, column=1, end_line=stop + 1, end_column=1)


def _collect_comments(lines: list[str], comments: list[Comment], skip_header: bool) -> None:
    for i, line in enumerate(lines):
        if "#" not in line or (i == 0 and skip_header):
            continue
        for m in _LINE_PIECES.finditer(line):
            if m.group("comment") is not None:
                text = m.group("comment")[1:].rstrip()
                comments.append(Comment(text, line=i + 1, column=m.start() + 1,
                                        end_line=i + 1, end_column=len(line) + 1))
                break

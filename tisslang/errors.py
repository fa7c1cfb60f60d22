"""The errors the TissLang package raises to its users."""

from __future__ import annotations


class TissError(Exception):
    """Base of every error in `tisslang`; the CLI prints these as messages, never tracebacks."""

    exit_code = 2


class TissSyntaxError(TissError):
    """A script that is not valid TissLang, at a 1-based line and column.

    ``str(e)`` and ``e.render()`` give ``file:line:col: error: message``, then the source line and
    a caret under the column, the way compilers print them. ``source_line`` is the text of the
    offending line when known (the parser always supplies it).
    """

    def __init__(
        self,
        filename: str,
        line: int,
        column: int,
        message: str,
        *,
        source_line: str | None = None,
    ) -> None:
        super().__init__(filename, line, column, message)
        self.filename = filename
        self.line = line
        self.column = column
        self.message = message
        self.source_line = source_line

    def render(self) -> str:
        head = f"{self.filename}:{self.line}:{self.column}: error: {_escaped(self.message)}"
        if self.source_line is None:
            return head
        text = self.source_line.rstrip("\n")
        # Keep the line's own tabs in front of the caret so it lines up in any terminal.
        prefix = _escaped(text[: max(self.column - 1, 0)])
        pad = "".join(ch if ch == "\t" else " " for ch in prefix)
        return f"{head}\n    {_escaped(text)}\n    {pad}^"

    def __str__(self) -> str:
        return self.render()

    def __reduce__(self):
        return (_rebuild, (self.filename, self.line, self.column, self.message, self.source_line))


def _escaped(text: str) -> str:
    """Control characters (other than tab) shown as ``\\x1b``: a script's bytes must not drive
    the terminal that prints its syntax error (clear it, retitle it, rewrite lines)."""
    return "".join(
        f"\\x{ord(c):02x}" if (ord(c) < 0x20 and c != "\t") or 0x7F <= ord(c) <= 0x9F else c
        for c in text
    )


def _rebuild(filename, line, column, message, source_line):
    return TissSyntaxError(filename, line, column, message, source_line=source_line)


class TissFileError(TissError):
    """A script file that cannot be read at all (missing, a directory, no permission)."""

"""Syntax highlighting for the REPL from TissLang's own tokens (see `scan.py`).

Every token kind maps to a style class `tiss.<kind>`; `STYLE` gives those classes colours that
read on dark and light terminals. Text between tokens (spaces) is unstyled.
"""

from __future__ import annotations

from typing import Callable

from prompt_toolkit.document import Document
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.lexers import Lexer
from prompt_toolkit.styles import Style

from runtime.repl import scan as tokens

STYLE = Style.from_dict({
    "tiss.keyword": "bold ansiblue",
    "tiss.directive": "ansimagenta",
    "tiss.builtin": "ansicyan",
    "tiss.name": "",
    "tiss.string": "ansigreen",
    "tiss.escape": "ansiyellow",
    "tiss.interpolation": "bold ansiyellow",
    "tiss.heredoc.mark": "bold ansigreen",
    "tiss.heredoc.body": "ansigreen",
    "tiss.heredoc.end": "bold ansigreen",
    "tiss.comment": "italic ansibrightblack",
    "tiss.header": "italic ansibrightblack",
    "tiss.number": "ansiyellow",
    "tiss.boolean": "ansiyellow",
    "tiss.operator": "ansired",
    "tiss.punctuation": "",
    "tiss.error": "bg:ansired ansiwhite",
    # The REPL's own output.
    "tiss.prompt": "bold",
    "tiss.continuation": "ansibrightblack",
    "tiss.ok": "ansigreen",
    "tiss.fail": "bold ansired",
})


def style_lines(text: str) -> list[StyleAndTextTuples]:
    """The text split into lines of `(style, text)` fragments, one per token or gap."""
    lines: list[StyleAndTextTuples] = [[]]
    position = 0

    def emit(style: str, piece: str) -> None:
        # Tokens never contain a newline except where a gap spans lines.
        parts = piece.split("\n")
        for index, part in enumerate(parts):
            if index:
                lines.append([])
            if part:
                lines[-1].append((style, part))

    for token in tokens.scan(text).tokens:
        if token.start > position:
            emit("", text[position:token.start])
        emit(f"class:tiss.{token.kind}", token.text)
        position = token.end
    if position < len(text):
        emit("", text[position:])
    return lines


class TissLexer(Lexer):
    """A prompt_toolkit lexer for TissLang entries."""

    def lex_document(self, document: Document) -> Callable[[int], StyleAndTextTuples]:
        lines = style_lines(document.text)

        def get_line(number: int) -> StyleAndTextTuples:
            return lines[number] if 0 <= number < len(lines) else []

        return get_line

"""Refuses an entry that will not parse, with the cursor on the error (like ptpython's).

Runs when Enter submits a complete entry (`validate_while_typing` is off: half-typed text is
always "wrong" and a message flickering at every key would only distract). Meta-commands are
checked by their own parser; `:ast ENTRY` also parses ENTRY.
"""

from __future__ import annotations

from prompt_toolkit.document import Document
from prompt_toolkit.validation import ValidationError, Validator

from runtime.repl import meta
from runtime.repl.scan import is_complete

REPL_FILENAME = "<repl>"


def entry_ready(text: str) -> bool:
    """Whether Enter submits `text` (else it inserts a newline); see `scan.is_complete`."""
    if meta.is_meta(text):
        try:
            command = meta.parse_meta(text)
        except meta.MetaCommandError:
            return True  # submit, so the validator shows the message
        return command.name != "ast" or not command.argument or is_complete(command.argument)
    return is_complete(text)


def syntax_error_position(document: Document, line: int | None, column: int | None) -> int:
    """The cursor offset of a 1-based line and column, clamped to the document."""
    row = max(0, min((line or 1) - 1, document.line_count - 1))
    col = max(0, min((column or 1) - 1, len(document.lines[row])))
    return document.translate_row_col_to_index(row, col)


class EntryValidator(Validator):
    """A prompt_toolkit validator for REPL entries."""

    def validate(self, document: Document) -> None:
        text = document.text
        if not text.strip():
            return
        if meta.is_meta(text):
            try:
                command = meta.parse_meta(text)
            except meta.MetaCommandError as exc:
                raise ValidationError(cursor_position=exc.offset, message=str(exc)) from None
            if command.name == "ast" and command.argument:
                offset = text.index(command.argument)
                self._parse(Document(command.argument), offset)
            return
        self._parse(document, 0)

    def _parse(self, document: Document, offset: int) -> None:
        import tisslang
        from tisslang.errors import TissError

        try:
            tisslang.parse(document.text, REPL_FILENAME)
        except TissError as exc:
            line, column = getattr(exc, "line", None), getattr(exc, "column", None)
            message = getattr(exc, "message", None) or str(exc).splitlines()[0]
            position = syntax_error_position(document, line, column) + offset
            where = f"line {line}, column {column}: " if line else ""
            raise ValidationError(cursor_position=position, message=f"{where}{message}") from None
        except Exception as exc:  # a parser bug must not take the REPL down
            raise ValidationError(cursor_position=offset, message=f"internal parser error: {exc!r}") from None

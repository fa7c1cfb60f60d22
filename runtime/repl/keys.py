"""The REPL's key bindings, from one factory (as in ptpython's `key_bindings.py`).

- Enter submits the entry when it is complete (`validator.entry_ready`) and the cursor is at
  its end or the entry is one line (as after the validator moved the cursor to an error);
  otherwise it inserts a newline that keeps the line's indentation, one level more after an
  opening `{` (in a heredoc body: the indentation of the line that opened the heredoc).
  With the completion menu open, Enter takes the selected completion.
- After the validator refused an entry (the cursor is on the error), Enter runs it from
  wherever the cursor is as soon as it parses; until then Enter edits as usual.
- Esc Enter (Alt-Enter) submits wherever the cursor is (the validator still checks it).
- `}` typed on a blank line dedents it one level first (not in a heredoc body, which is text).
- Ctrl-C clears the input (the prompt stays); Ctrl-D on an empty input leaves (the default).
"""

from __future__ import annotations

from typing import Callable

from prompt_toolkit.buffer import Buffer
from prompt_toolkit.filters import Condition, has_completions, has_focus
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.enums import DEFAULT_BUFFER
from prompt_toolkit.validation import ValidationError

from runtime.repl.scan import scan
from runtime.repl.validator import entry_ready

INDENT = "    "


def _in_heredoc_body(buffer: Buffer) -> bool:
    return scan(buffer.document.text_before_cursor).state.in_heredoc_body


def _indentation(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def newline_with_indent(buffer: Buffer) -> None:
    """Insert a newline that continues the current line's indentation (+1 level after `{`).

    In a heredoc body the new line takes the indentation of the line that opened the heredoc,
    not the body line's: the closing delimiter typed there then sits where the formatter puts
    it, and no indentation the user did not type enters the body (a body line's extra
    indentation carried onto the delimiter line would be stripped from every line, or make
    the shallower ones an error).
    """
    before = buffer.document.text_before_cursor
    state = scan(before).state
    if state.in_heredoc_body and state.open_heredoc is not None:
        opener_line = before[before.rfind("\n", 0, state.open_heredoc.start) + 1:].split("\n", 1)[0]
        buffer.insert_text("\n" + _indentation(opener_line))
        return
    line = buffer.document.current_line_before_cursor
    indent = _indentation(line)
    if line.rstrip().endswith("{"):
        indent += INDENT
    buffer.insert_text("\n" + indent)


def create_key_bindings(ready: Callable[[str], bool] = entry_ready) -> KeyBindings:
    """Key bindings for the TissLang prompt; `ready(text)` says whether Enter submits."""
    bindings = KeyBindings()
    focused = has_focus(DEFAULT_BUFFER)
    completion_selected = Condition(
        lambda: has_completions() and _current_buffer().complete_state.current_completion is not None
    )

    @bindings.add("enter", filter=focused & completion_selected)
    def _take_completion(event: KeyPressEvent) -> None:
        buffer = event.current_buffer
        buffer.apply_completion(buffer.complete_state.current_completion)

    # Set while the entry on screen is one the validator refused: the cursor was put on the
    # error, so once the entry parses, Enter runs it from wherever the fix left the cursor
    # (instead of splitting the line there); while it still does not, Enter edits as usual.
    refused = [False]

    @bindings.add("enter", filter=focused & ~completion_selected)
    def _enter(event: KeyPressEvent) -> None:
        buffer = event.current_buffer
        text = buffer.text
        at_end = not buffer.document.text_after_cursor.strip()
        if not text.strip() or ((at_end or "\n" not in text) and ready(text)) or (
                refused[0] and ready(text) and _valid(buffer)):
            # validate_and_handle keeps the entry open, cursor on the error, if it won't parse.
            buffer.validate_and_handle()
            refused[0] = buffer.validation_error is not None
        else:
            newline_with_indent(buffer)

    @bindings.add("escape", "enter", filter=focused)
    def _submit(event: KeyPressEvent) -> None:
        event.current_buffer.validate_and_handle()
        refused[0] = event.current_buffer.validation_error is not None

    @bindings.add("}", filter=focused)
    def _close_block(event: KeyPressEvent) -> None:
        buffer = event.current_buffer
        before = buffer.document.current_line_before_cursor
        # A heredoc body keeps its indentation exactly: there `}` is text, not a block's end.
        if before and not before.strip() and not _in_heredoc_body(buffer):
            buffer.delete_before_cursor(min(len(INDENT), len(before)))
        buffer.insert_text("}")

    @bindings.add("c-c", filter=focused)
    def _clear(event: KeyPressEvent) -> None:
        refused[0] = False
        event.current_buffer.reset()

    return bindings


def _valid(buffer: Buffer) -> bool:
    """Whether the buffer's validator accepts its text (no message shown, cursor kept)."""
    if buffer.validator is None:
        return True
    try:
        buffer.validator.validate(buffer.document)
    except ValidationError:
        return False
    return True


def _current_buffer() -> Buffer:
    from prompt_toolkit.application.current import get_app

    return get_app().current_buffer

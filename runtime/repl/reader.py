"""The reading half of the REPL: one prompt_toolkit session with TissLang's own pieces.

Validator, lexer, completer, history with suggestions, and the key bindings all come together
here; nothing in this module runs an entry. `read_entry` returns the next entry's text, None at
end of input (Ctrl-D), and lets KeyboardInterrupt through only if the caller's bindings do.
"""

from __future__ import annotations

from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.completion import Completer
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.history import History, InMemoryHistory

from runtime.repl.keys import create_key_bindings
from runtime.repl.lexer import STYLE, TissLexer
from runtime.repl.validator import EntryValidator

PROMPT = "tiss> "
CONTINUATION = "....  "


def _continuation(width: int, line_number: int, wrap_count: int) -> StyleAndTextTuples:
    return [("class:tiss.continuation", CONTINUATION.rjust(width))]


def create_prompt_session(
    completer: Completer | None = None,
    history: History | None = None,
    **pt_options: Any,
) -> PromptSession[str]:
    """A PromptSession for TissLang entries; `pt_options` (e.g. `input`, `output`) pass through."""
    session = PromptSession(
        message=[("class:tiss.prompt", PROMPT)],
        multiline=True,
        prompt_continuation=_continuation,
        lexer=TissLexer(),
        validator=EntryValidator(),
        validate_while_typing=False,
        completer=completer,
        complete_while_typing=True,
        auto_suggest=AutoSuggestFromHistory(),
        history=history if history is not None else InMemoryHistory(),
        key_bindings=create_key_bindings(),
        style=STYLE,
        include_default_pygments_style=False,
        enable_open_in_editor=False,
        **pt_options,
    )
    _wrap_validation_toolbar(session)
    return session


def _wrap_validation_toolbar(session: PromptSession[str]) -> None:
    """Let the line under the input that shows why an entry was refused grow to as many rows as
    its message needs, wrapped at the terminal's width: prompt_toolkit's toolbar is one row, so
    a long message (an unknown keyword with its suggestion) was cut at the right edge."""
    from prompt_toolkit.filters import to_filter
    from prompt_toolkit.layout.containers import Window
    from prompt_toolkit.layout.controls import FormattedTextControl

    for container in session.layout.walk():
        if isinstance(container, Window) and isinstance(container.content, FormattedTextControl):
            source = getattr(container.content.text, "__qualname__", "")
            if source.startswith("ValidationToolbar."):
                container.height = None  # as tall as the wrapped message
                container.wrap_lines = to_filter(True)


def read_entry(session: PromptSession[str]) -> str | None:
    """The next entry, or None when the user ends input (Ctrl-D on an empty line)."""
    try:
        return session.prompt()
    except EOFError:
        return None

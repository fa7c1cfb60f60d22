"""A faster stand-in for Lark's basic lexer, made from that lexer and giving the same tokens.

Lark's ``BasicLexer`` spends most of its time per token outside the regular expression: a
``LineCounter`` update, a ``Token`` built through two layers of constructors, a call through
``UnlessCallback`` (a second regex match) to tell keywords from names, and a whole extra round
for every run of ignored blanks. On a 1 MB script (about 100,000 tokens) that was 0.28 s of the
0.66 s parse. ``FastLexer`` runs the same compiled pattern (the same terminals, in Lark's order,
so the same alternative wins at every position), finds keywords in a dict, counts lines only in
the terminals that can hold a newline, and builds each ``Token`` directly.

Nothing about the language lives here: every terminal, its priority and which ones are ignored
or are keywords come from the Lark lexer it is built from, and anything it does not recognise
(a Lark version that lays its lexer out differently, a terminal callback other than Lark's
keyword check) means ``FastLexer.wrap`` hands back Lark's own lexer. Errors are Lark's own:
where no terminal matches, Lark's lexer is asked to continue from that position, so the
``UnexpectedCharacters`` (position, allowed terminals, the last token) is the one it raises.
``tests/tisslang/test_lexer.py`` compares the two token streams, positions included.
"""

from __future__ import annotations

from typing import Any, Iterator

from lark.lexer import BasicLexer, LexerState, Token, UnlessCallback
from lark.lexer import PatternStr

_new_str = str.__new__


class FastLexer:
    """Lark's ``Lexer`` interface (``lex(lexer_state, parser_state)``) over a ``BasicLexer``."""

    __slots__ = ("basic", "_match", "_ignore", "_newline", "_keywords", "_callbacks")

    def __init__(self, basic: BasicLexer, pattern, keywords: dict[str, dict[str, str]],
                 callbacks: dict[str, Any]) -> None:
        self.basic = basic
        self._match = pattern.match
        self._ignore = basic.ignore_types
        self._newline = basic.newline_types
        self._keywords = keywords  # terminal name -> {text: keyword terminal name}
        self._callbacks = callbacks  # any other per-terminal callback, called as Lark does

    @classmethod
    def wrap(cls, lexer: Any) -> Any:
        """A ``FastLexer`` over ``lexer`` when it is a plain ``BasicLexer`` this module
        understands; otherwise ``lexer`` itself, unchanged."""
        if type(lexer) is not BasicLexer or lexer.use_bytes:
            return lexer
        try:
            scanner = lexer.scanner
            patterns = scanner._mres
            callback = dict(lexer.callback)
        except AttributeError:
            return lexer
        if len(patterns) != 1:  # more terminals than one Python pattern holds
            return lexer
        if any(name in callback for name in lexer.ignore_types):
            return lexer  # Lark makes tokens of ignored text for such callbacks; this skips it
        keywords: dict[str, dict[str, str]] = {}
        for name, function in list(callback.items()):
            if type(function) is not UnlessCallback:
                continue
            table = {}
            for terminal in function.scanner.terminals:
                pattern = terminal.pattern
                if not isinstance(pattern, PatternStr) or pattern.flags:
                    return lexer  # a case-insensitive keyword: leave it to Lark
                table[pattern.value] = terminal.name
            keywords[name] = table
            del callback[name]
        return cls(lexer, patterns[0], keywords, callback)

    def lex(self, state: LexerState, parser_state: Any) -> Iterator[Token]:
        text_slice = state.text
        text = text_slice.text
        end = text_slice.end
        counter = state.line_ctr
        pos = counter.char_pos
        line = counter.line
        line_start = counter.line_start_pos
        match = self._match
        ignore = self._ignore
        newline = self._newline
        keywords = self._keywords
        callbacks = self._callbacks
        try:
            while pos < end:
                m = match(text, pos, end)
                if m is None:
                    break
                kind = m.lastgroup
                value = m.group()
                new_pos = m.end()
                start_line, start_column = line, pos - line_start + 1
                if kind in newline:
                    count = value.count("\n")
                    if count:
                        line += count
                        line_start = pos + value.rindex("\n") + 1
                if kind in ignore:
                    pos = new_pos
                    continue
                if kind in keywords:
                    kind = keywords[kind].get(value, kind)
                token = _new_str(Token, value)
                token.type = kind
                token.value = value
                token.start_pos = pos
                token.line = start_line
                token.column = start_column
                token.end_line = line
                token.end_column = new_pos - line_start + 1
                token.end_pos = new_pos
                if kind in callbacks:
                    token = callbacks[kind](token)
                pos = new_pos
                # Kept current at every token, as Lark's lexer keeps it: an interactive parser
                # or an error report may read the state between two tokens.
                counter.char_pos = pos
                counter.line = line
                counter.line_start_pos = line_start
                counter.column = pos - line_start + 1
                state.last_token = token
                yield token
        finally:
            counter.char_pos = pos
            counter.line = line
            counter.line_start_pos = line_start
            counter.column = pos - line_start + 1
        if pos < end:
            # Nothing matches here: Lark's lexer raises its own error from this very state.
            self.basic.next_token(state, parser_state)

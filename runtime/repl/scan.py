"""A tolerant TissLang tokenizer for the REPL: highlighting, completeness and completion context.

The parser's Lark lexer stops at the first error, but a REPL must colour and reason about text
that is half typed: an unclosed block, a string still open, a heredoc whose delimiter has not
come yet. This scanner never fails. It follows the lexical rules of the language (docs/tisslang.md):
comments, double-quoted strings with escapes and `{{ ref }}` interpolation, raw single-quoted
strings, heredocs (`<<DELIM` interpolated, `<<'DELIM'` raw) whose bodies run to the first line
that is only the delimiter, directives, keywords, numbers, references and operators.

`scan(text)` returns the tokens with character offsets and the state at the end of the text,
which is what `is_complete` (does Enter submit?) and the completer (what goes at the cursor?)
need.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tisslang import checker, directives, statements

# Reserved words, from the statement table (tisslang/statements.py). UPPERCASE only: `run` is
# a name, `RUN` a keyword; `true` and `false` are booleans, coloured as such.
STATEMENT_KEYWORDS = statements.STATEMENT_KEYWORDS
CLAUSE_KEYWORDS = statements.CLAUSE_KEYWORDS
EXPRESSION_KEYWORDS = statements.EXPRESSION_KEYWORDS
KEYWORDS = frozenset(STATEMENT_KEYWORDS + CLAUSE_KEYWORDS + EXPRESSION_KEYWORDS)

# Built-in references and their fields, budget names and directives: the checker's and the
# directive table's, so what the REPL colours and completes is what `tiss check` accepts.
BUILTINS = checker.BUILTINS
BUDGET_NAMES = checker.BUDGETS + ("TOKEN_COUNT",)
DIRECTIVES = directives.NAMES
# Statements whose first string is a workspace path (the table's `path_fields`), and FILE,
# whose string is one too: completion offers files there.
PATH_STATEMENTS = statements.PATH_KEYWORDS | {"FILE"}

# Token kinds; the lexer maps each to a style class.
KEYWORD = "keyword"
NAME = "name"
BUILTIN = "builtin"
DIRECTIVE = "directive"
STRING = "string"
ESCAPE = "escape"
INTERPOLATION = "interpolation"
HEREDOC_MARK = "heredoc.mark"
HEREDOC_BODY = "heredoc.body"
HEREDOC_END = "heredoc.end"
COMMENT = "comment"
HEADER = "header"
NUMBER = "number"
BOOLEAN = "boolean"
OPERATOR = "operator"
PUNCTUATION = "punctuation"
ERROR = "error"

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_NUMBER = r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?"  # the grammar's NUMBER

# Every token a code line can hold, in one pattern tried after the blanks (" \t\r\f\v") and the
# line ends (blank lines too) before it: a match is one token, with group 1 (`newline`) the first
# `\n` it skipped, if any. The alternatives start with different characters except where the
# order decides: a heredoc mark before the `<` operator, `@name` before a bare `@`. What no rule
# takes is one ERROR character; the empty `end` matches only at the end of the text.
_TOKEN = re.compile(
    rf"""[ \t\r\f\v]*(?:(?P<newline>\n)[ \t\r\f\v\n]*)?(?:
      (?P<word>{_IDENT})
    # A string closed on its line with no backslash and no `{{{{`: at most three tokens, no escape
    # or interpolation in it. Any other string is `_Scanner.string`'s, from its quote.
    | (?P<string>"[^"\\{{\n]*(?:\{{(?!\{{)[^"\\{{\n]*)*"|'[^'\\\n]*')
    | (?P<open>[{{\[(])
    | (?P<close>[}}\])])
    | (?P<punctuation>[.,:])
    | (?P<heredoc><<(?:'{_IDENT}'|{_IDENT}))
    | (?P<operator>==|!=|<=|>=|<|>|=)
    | (?P<number>{_NUMBER})
    | (?P<quote>["'])
    | (?P<comment>\#[^\n]*)
    | (?P<semicolon>;)
    | (?P<directive>@{_IDENT})
    | (?P<at_end>@(?=\n|\Z))  # a bare `@` ending its line: a directive being typed
    | (?P<error>.)
    | (?P<end>)
    )""",
    re.VERBOSE,
)
# Where a string's literal text stops: a backslash or its closing quote.
_STRING_STOP = {'"': re.compile(r'[\\"]'), "'": re.compile(r"[\\']")}
# Statement keywords whose `{` opens a block that may be followed by ELSE / CATCH.
_CONTINUABLE = {"IF": "ELSE", "TRY": "CATCH"}
_CLAUSES = frozenset(("IF", "ELSE", "TRY", "CATCH"))
_STATEMENT_KEYWORDS = frozenset(STATEMENT_KEYWORDS)


def _word_kind(word: str, after_dot: bool) -> str:
    """A word's kind; after a dot (a field: `LAST_RUN.EXIT_CODE`) keywords and built-ins are names."""
    if word in KEYWORDS and not after_dot:
        return KEYWORD
    if word in ("true", "false"):
        return BOOLEAN
    if (word in BUILTINS and not after_dot) or word in BUDGET_NAMES:
        return BUILTIN
    return NAME


# The same, looked up: every word that is not a NAME, alone and after a dot.
_SPECIAL_WORDS = KEYWORDS | {"true", "false"} | set(BUILTINS) | set(BUDGET_NAMES)
_WORD_KINDS = {word: _word_kind(word, False) for word in _SPECIAL_WORDS}
_FIELD_KINDS = {word: kind for word in _SPECIAL_WORDS if (kind := _word_kind(word, True)) != NAME}


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    start: int  # offset of the first character in the scanned text
    end: int  # offset one past the last character
    text: str


# The scanner makes its tokens without the frozen dataclass's __init__, which calls
# object.__setattr__ once per field: filling the slots directly makes the same Token in half the
# time (a 1 MB script has 120,000 tokens).
_new = object.__new__
_set_kind, _set_start, _set_end, _set_text = (
    Token.__dict__[name].__set__ for name in ("kind", "start", "end", "text"))


def _token(kind: str, start: int, end: int, text: str) -> Token:
    token = _new(Token)
    _set_kind(token, kind)
    _set_start(token, start)
    _set_end(token, end)
    _set_text(token, text)
    return token


@dataclass
class _Heredoc:
    delimiter: str
    raw: bool
    mark: Token


@dataclass
class ScanState:
    """Where the text ends, lexically; what `is_complete` and the completer ask about."""

    depth: int = 0  # open `{ [ (` minus closers; negative after a stray closer
    open_heredoc: Token | None = None  # the `<<DELIM` whose body is still open
    open_string: Token | None = None  # the opening quote of a string the last line left open
    in_string: bool = False  # the text ends inside a string (on its last line)
    in_heredoc_body: bool = False  # the text ends inside a heredoc body line
    in_comment: bool = False
    in_interpolation: bool = False  # the text ends after a `{{` with no `}}` yet
    string_statement: str | None = None  # the statement keyword of the open string (WRITE ...)
    awaiting: str | None = None  # "ELSE" / "CATCH": the entry ended right after an IF/TRY block
    last_significant: Token | None = None


@dataclass
class ScanResult:
    tokens: list[Token] = field(default_factory=list)
    state: ScanState = field(default_factory=ScanState)


class _Scanner:
    """One pass over the text: code lines token by token (`_TOKEN`), heredoc bodies line by line.

    Offsets are the text's throughout. Most tokens are made in `code`'s loop; strings that need
    care (escapes, `{{ }}`, no closing quote) and heredoc bodies have methods of their own.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.result = ScanResult()
        self.tokens = self.result.tokens
        self.state = self.result.state
        self.depth = 0  # the state's, kept here while scanning
        self.statement: str | None = None  # keyword that began the current statement
        self.strings = 0  # strings seen so far in the current statement
        self.clause: str | None = None  # IF/ELSE/TRY/CATCH governing the next top-level `{`
        self.block_clauses: list[str | None] = []
        self.closed_clause: str | None = None

    def add(self, kind: str, start: int, end: int) -> Token:
        token = _token(kind, start, end, self.text[start:end])
        self.tokens.append(token)
        return token

    def last_significant(self) -> Token | None:
        """The last token so far that is not a comment or the header."""
        for token in reversed(self.tokens):
            if token.kind != COMMENT and token.kind != HEADER:
                return token
        return None

    def run(self) -> ScanResult:
        position: int | None = 0
        while position is not None:
            # Code lines up to the end of the text, or to the end of a line that opened heredocs;
            # their bodies follow on the next lines.
            heredocs, position = self.code(position)
            if position is None:
                if heredocs:
                    self.state.open_heredoc = heredocs[0].mark
            else:
                position = self.heredoc_lines(heredocs, position)
        self.state.depth = self.depth
        self.state.last_significant = self.last_significant()
        self.finish()
        return self.result

    def finish(self) -> None:
        last = self.state.last_significant
        if (
            self.state.depth == 0
            and self.closed_clause in _CONTINUABLE
            and last is not None
            and last.text == "}"
            and self.state.open_heredoc is None
        ):
            self.state.awaiting = _CONTINUABLE[self.closed_clause]

    # -- code lines ----------------------------------------------------------------------

    def code(self, position: int) -> tuple[list[_Heredoc], int | None]:
        """Tokens from `position` (a line start) on; returns the heredocs opened on the line where
        it stopped, and where the next line starts (None at the end of the text)."""
        text = self.text
        append = self.tokens.append
        block_clauses = self.block_clauses
        state = self.state
        heredocs: list[_Heredoc] = []
        depth = self.depth
        while True:
            for m in _TOKEN.finditer(text, position):
                if (newline := m.start(1)) >= 0:
                    # A newline ends the statement unless a bracket is open (a value list or
                    # object may span lines); blocks reset it with `{`.
                    state.in_interpolation = False
                    if depth <= len(block_clauses):
                        self.statement = None
                    if heredocs:  # their bodies start on the next line
                        self.depth = depth
                        return heredocs, newline + 1
                group = m.lastgroup
                start, end = m.span(group)
                if group == "word":
                    word = text[start:end]
                    if start and text[start - 1] == ".":
                        kind = _FIELD_KINDS.get(word, NAME)
                    else:
                        kind = _WORD_KINDS.get(word, NAME)
                    append(_token(kind, start, end, word))
                    if kind == KEYWORD:
                        if self.statement is None and word in _STATEMENT_KEYWORDS:
                            self.statement, self.strings = word, 0
                        if depth == 0 and word in _CLAUSES:
                            # `ELSE IF` governs its block as an IF: another ELSE may follow it.
                            self.clause = word
                elif group == "string":
                    self.strings += 1
                    quote = text[start]
                    append(_token(STRING, start, start + 1, quote))
                    if end - start > 2:
                        append(_token(STRING, start + 1, end - 1, text[start + 1:end - 1]))
                    append(_token(STRING, end - 1, end, quote))
                elif group == "open":
                    ch = text[start]
                    append(_token(PUNCTUATION, start, end, ch))
                    if ch == "{":
                        block_clauses.append(self.clause if depth == 0 else None)
                        self.statement = None
                    depth += 1
                elif group == "close":
                    ch = text[start]
                    append(_token(PUNCTUATION, start, end, ch))
                    depth -= 1
                    if ch == "}" and block_clauses:
                        closed = block_clauses.pop()
                        if depth == 0:
                            self.closed_clause = closed
                            self.clause = None
                        self.statement = None
                elif group == "punctuation":
                    append(_token(PUNCTUATION, start, end, text[start]))
                elif group == "operator":
                    append(_token(OPERATOR, start, end, text[start:end]))
                elif group == "number":
                    append(_token(NUMBER, start, end, text[start:end]))
                elif group == "quote":
                    # Go on after the string: its closing quote, or the end of its line.
                    position = self.string(start)
                    break
                elif group == "comment":
                    kind = HEADER if start == 0 and text.startswith("#TISS!") else COMMENT
                    append(_token(kind, start, end, text[start:end]))
                    if end == len(text):
                        state.in_comment = True
                elif group == "heredoc":
                    mark = _token(HEREDOC_MARK, start, end, text[start:end])
                    append(mark)
                    raw = text[start + 2] == "'"
                    delimiter = text[start + 3:end - 1] if raw else text[start + 2:end]
                    heredocs.append(_Heredoc(delimiter, raw, mark))
                elif group == "semicolon":
                    append(_token(PUNCTUATION, start, end, ";"))
                    if depth <= len(block_clauses):
                        self.statement = None
                elif group == "directive" or group == "at_end":
                    append(_token(DIRECTIVE, start, end, text[start:end]))
                elif group == "error":
                    append(_token(ERROR, start, end, text[start]))
                else:  # end: the text ends
                    self.depth = depth
                    return heredocs, None
            else:  # (not reached: `end` matches at the end of the text)
                self.depth = depth
                return heredocs, None

    def string(self, start: int) -> int:
        """The string whose quote is at `start`, to its closing quote or the end of its line; the
        offset after it."""
        text = self.text
        quote = text[start]
        end = text.find("\n", start)
        last = end < 0  # on the text's last line
        if last:
            end = len(text)
        # Only a statement's first string is its path (`WRITE "path" "text"`); in a condition,
        # the string right after FILE is one (`FILE "path" EXISTS`).
        statement = self.statement if self.strings == 0 else None
        previous = self.last_significant()
        if previous is not None and previous.kind == KEYWORD and previous.text == "FILE":
            statement = "FILE"
        self.strings += 1
        self.add(STRING, start, start + 1)
        stop = _STRING_STOP[quote]
        i = segment = start + 1
        while (m := stop.search(text, i, end)) is not None:
            i = m.start()
            if text[i] == quote:
                self.flush_string(segment, i, quote)
                self.add(STRING, i, i + 1)
                self.state.in_interpolation = False
                return i + 1
            if i + 1 == end:
                break  # a backslash ending the line is text
            if quote == "'" and text[i + 1] not in "'\\":
                i += 1  # raw strings keep other backslashes as text
                continue
            self.flush_string(segment, i, quote)
            self.add(ESCAPE, i, i + 2)
            i = segment = i + 2
        # No closing quote on this line: the string is unterminated.
        self.flush_string(segment, end, quote)
        if last:
            self.state.in_string = True
            self.state.open_string = Token(STRING, start, start + 1, quote)
            self.state.string_statement = statement
        return end

    def flush_string(self, start: int, end: int, quote: str) -> None:
        if end <= start:
            if quote == '"':
                self.state.in_interpolation = False
            return
        if quote == "'":
            self.add(STRING, start, end)
        else:
            self.interpolated(start, end, STRING)

    def interpolated(self, start: int, end: int, kind: str) -> None:
        """Literal text of `kind` with `{{ ... }}` pieces as INTERPOLATION tokens."""
        text = self.text
        i = start
        self.state.in_interpolation = False
        while i < end:
            j = text.find("{{", i, end)
            if j < 0:
                self.add(kind, i, end)
                return
            if j > i:
                self.add(kind, i, j)
            close = text.find("}}", j + 2, end)
            if close < 0:
                self.add(INTERPOLATION, j, end)
                self.state.in_interpolation = True
                return
            self.add(INTERPOLATION, j, close + 2)
            i = close + 2

    # -- heredoc bodies ------------------------------------------------------------------

    def heredoc_lines(self, queue: list[_Heredoc], position: int) -> int | None:
        """The bodies of the heredocs in `queue`, one after the other, from the line at `position`
        on: where the next code line starts, or None when the text ends first."""
        text = self.text
        heredoc: _Heredoc | None = queue.pop(0)
        while heredoc is not None:
            newline = text.find("\n", position)
            last = newline < 0
            end = len(text) if last else newline
            line = text[position:end]
            self.state.in_interpolation = False
            if line.strip() == heredoc.delimiter:
                self.add(HEREDOC_END, position, end)
                heredoc = queue.pop(0) if queue else None
            else:
                if not heredoc.raw:
                    self.interpolated(position, end, HEREDOC_BODY)
                elif line:
                    self.add(HEREDOC_BODY, position, end)
                if last:
                    self.state.in_heredoc_body = True
            if last:
                if heredoc is not None:
                    self.state.open_heredoc = heredoc.mark
                return None
            position = newline + 1
        return position


def scan(text: str) -> ScanResult:
    """Tokens of `text` and the lexical state at its end; never raises."""
    return _Scanner(text).run()


def is_complete(text: str) -> bool:
    """Whether Enter should submit `text` as an entry (the validator then checks it parses).

    Incomplete: a block, list or object still open, or a heredoc not closed. Everything else is
    complete, including text that will not parse, so the validator can point at its error.

    An IF or TRY whose block has just closed is complete too: at the prompt ELSE / CATCH go on
    the closing line (`} ELSE {`, the canonical form), as a JavaScript REPL wants `} else {`, so
    Enter after the `}` runs the entry at once instead of asking for a blank line first. Input
    from a pipe can look at the next line, and there an ELSE on the next line still continues
    the entry (`main.iter_entries`, with `ScanState.awaiting`).
    """
    if not text.strip():
        return False
    state = scan(text).state
    return state.open_heredoc is None and state.depth <= 0

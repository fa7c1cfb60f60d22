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

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")  # the grammar's NUMBER
_HEREDOC = re.compile(r"<<(?:'([A-Za-z_][A-Za-z0-9_]*)'|([A-Za-z_][A-Za-z0-9_]*))")
_OPERATORS = ("==", "!=", "<=", ">=", "<", ">", "=")
_PUNCTUATION = "{}[](),:;."
# Statement keywords whose `{` opens a block that may be followed by ELSE / CATCH.
_CONTINUABLE = {"IF": "ELSE", "TRY": "CATCH"}


@dataclass(frozen=True)
class Token:
    kind: str
    start: int  # offset of the first character in the scanned text
    end: int  # offset one past the last character
    text: str


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
    def __init__(self, text: str) -> None:
        self.text = text
        self.result = ScanResult()
        self.state = self.result.state
        self.pending: list[_Heredoc] = []  # heredocs opened on the current line
        self.statement: str | None = None  # keyword that began the current statement
        self.strings = 0  # strings seen so far in the current statement
        self.clause: str | None = None  # IF/ELSE/TRY/CATCH governing the next top-level `{`
        self.block_clauses: list[str | None] = []
        self.closed_clause: str | None = None

    def add(self, kind: str, start: int, end: int) -> Token:
        token = Token(kind, start, end, self.text[start:end])
        self.result.tokens.append(token)
        if kind not in (COMMENT, HEADER):
            self.state.last_significant = token
        return token

    def run(self) -> ScanResult:
        offset = 0
        lines = self.text.split("\n")
        heredoc: _Heredoc | None = None
        queue: list[_Heredoc] = []
        for number, line in enumerate(lines):
            last = number == len(lines) - 1
            if heredoc is not None:
                self.heredoc_line(heredoc, line, offset, last)
                if line.strip() == heredoc.delimiter:
                    heredoc = queue.pop(0) if queue else None
            else:
                self.code_line(line, offset, number == 0, last)
                queue.extend(self.pending)
                self.pending = []
                if queue and not last:
                    heredoc = queue.pop(0)
                if not last:
                    self.end_of_line()
            offset += len(line) + 1
        if heredoc is not None:
            self.state.open_heredoc = heredoc.mark
        elif queue:
            self.state.open_heredoc = queue[0].mark
        self.finish()
        return self.result

    def end_of_line(self) -> None:
        # A newline ends the statement unless a bracket is open (a value list or object may span
        # lines); blocks reset it with `{`.
        if self.state.depth <= len(self.block_clauses):
            self.statement = None

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

    # -- heredoc bodies ------------------------------------------------------------------

    def heredoc_line(self, heredoc: _Heredoc, line: str, offset: int, last: bool) -> None:
        self.state.in_interpolation = False
        if line.strip() == heredoc.delimiter:
            self.add(HEREDOC_END, offset, offset + len(line))
            return
        if heredoc.raw:
            if line:
                self.add(HEREDOC_BODY, offset, offset + len(line))
        else:
            self.interpolated(line, 0, len(line), offset, HEREDOC_BODY)
        if last:
            self.state.in_heredoc_body = True

    def interpolated(self, line: str, start: int, end: int, offset: int, kind: str) -> None:
        """Literal text of `kind` with `{{ ... }}` pieces as INTERPOLATION tokens."""
        i = start
        self.state.in_interpolation = False
        while i < end:
            j = line.find("{{", i, end)
            if j < 0:
                self.add(kind, offset + i, offset + end)
                return
            if j > i:
                self.add(kind, offset + i, offset + j)
            close = line.find("}}", j + 2, end)
            if close < 0:
                self.add(INTERPOLATION, offset + j, offset + end)
                self.state.in_interpolation = True
                return
            self.add(INTERPOLATION, offset + j, offset + close + 2)
            i = close + 2

    # -- code lines ----------------------------------------------------------------------

    def code_line(self, line: str, offset: int, first: bool, last: bool) -> None:
        i, n = 0, len(line)
        self.state.in_string = self.state.in_comment = self.state.in_interpolation = False
        self.state.open_string = None
        while i < n:
            ch = line[i]
            if ch in " \t\r\f\v":
                i += 1
            elif ch == "#":
                kind = HEADER if first and offset == 0 and line.startswith("#TISS!") else COMMENT
                self.add(kind, offset + i, offset + n)
                self.state.in_comment = last
                return
            elif ch == '"' or ch == "'":
                i = self.string(line, i, offset, last)
            elif line.startswith("<<", i) and (m := _HEREDOC.match(line, i)):
                mark = self.add(HEREDOC_MARK, offset + i, offset + m.end())
                self.pending.append(_Heredoc(m.group(1) or m.group(2), m.group(1) is not None, mark))
                i = m.end()
            elif ch == "@" and (m := _IDENT.match(line, i + 1)):
                self.add(DIRECTIVE, offset + i, offset + m.end())
                i = m.end()
            elif ch == "@":
                self.add(DIRECTIVE if i + 1 == n else ERROR, offset + i, offset + i + 1)
                i += 1
            elif (ch.isdigit() or (ch == "-" and i + 1 < n and line[i + 1].isdigit())) and (
                m := _NUMBER.match(line, i)
            ):
                self.add(NUMBER, offset + i, offset + m.end())
                i = m.end()
            elif m := _IDENT.match(line, i):
                self.word(m.group(), offset + i, offset + m.end(), line, i)
                i = m.end()
            elif op := next((o for o in _OPERATORS if line.startswith(o, i)), None):
                self.add(OPERATOR, offset + i, offset + i + len(op))
                i += len(op)
            elif ch in _PUNCTUATION:
                self.punctuation(ch, offset + i)
                i += 1
            else:
                self.add(ERROR, offset + i, offset + i + 1)
                i += 1

    def word(self, word: str, start: int, end: int, line: str, i: int) -> None:
        after_dot = i > 0 and line[i - 1] == "."
        if word in KEYWORDS and not after_dot:
            self.add(KEYWORD, start, end)
            if self.statement is None and word in STATEMENT_KEYWORDS:
                self.statement, self.strings = word, 0
            if self.state.depth == 0 and word in ("IF", "ELSE", "TRY", "CATCH"):
                # `ELSE IF` governs its block as an IF: it may be followed by another ELSE.
                self.clause = word
        elif word in ("true", "false"):
            self.add(BOOLEAN, start, end)
        elif (word in BUILTINS and not after_dot) or word in BUDGET_NAMES:
            self.add(BUILTIN, start, end)
        else:
            self.add(NAME, start, end)

    def punctuation(self, ch: str, start: int) -> None:
        self.add(PUNCTUATION, start, start + 1)
        if ch in "{[(":
            if ch == "{" and self.state.depth == 0:
                self.block_clauses.append(self.clause)
            elif ch == "{":
                self.block_clauses.append(None)
            if ch == "{":
                self.statement = None
            self.state.depth += 1
        elif ch in "}])":
            self.state.depth -= 1
            if ch == "}" and self.block_clauses:
                closed = self.block_clauses.pop()
                if self.state.depth == 0:
                    self.closed_clause = closed
                    self.clause = None
                self.statement = None
        elif ch == ";" and self.state.depth <= len(self.block_clauses):
            self.statement = None

    def string(self, line: str, i: int, offset: int, last: bool) -> int:
        quote = line[i]
        start = i
        # Only a statement's first string is its path (`WRITE "path" "text"`); in a condition,
        # the string right after FILE is one (`FILE "path" EXISTS`).
        statement = self.statement if self.strings == 0 else None
        previous = self.state.last_significant
        if previous is not None and previous.kind == KEYWORD and previous.text == "FILE":
            statement = "FILE"
        self.strings += 1
        self.add(STRING, offset + i, offset + i + 1)
        i += 1
        segment = i
        while i < len(line):
            ch = line[i]
            if ch == "\\" and i + 1 < len(line):
                if quote == "'" and line[i + 1] not in "'\\":
                    i += 1  # raw strings keep other backslashes as text
                    continue
                self.flush_string(line, segment, i, offset, quote)
                self.add(ESCAPE, offset + i, offset + i + 2)
                i += 2
                segment = i
            elif ch == quote:
                self.flush_string(line, segment, i, offset, quote)
                self.add(STRING, offset + i, offset + i + 1)
                self.state.in_interpolation = False
                return i + 1
            else:
                i += 1
        # No closing quote on this line: the string is unterminated.
        self.flush_string(line, segment, len(line), offset, quote)
        if last:
            self.state.in_string = True
            self.state.open_string = Token(STRING, offset + start, offset + start + 1, quote)
            self.state.string_statement = statement
        return len(line)

    def flush_string(self, line: str, start: int, end: int, offset: int, quote: str) -> None:
        if end <= start:
            if quote == '"':
                self.state.in_interpolation = False
            return
        if quote == "'":
            self.add(STRING, offset + start, offset + end)
        else:
            self.interpolated(line, start, end, offset, STRING)


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

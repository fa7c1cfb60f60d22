"""``parse(source)``: TissLang source text to a typed ``Program``.

Three stages: ``source.prepare`` normalises newlines and cuts heredoc bodies out; Lark's LALR
parser (``grammar.py``) runs with ``_Builder`` as its inline transformer, so frozen AST nodes are
built on each reduction with no intermediate parse tree; a final walk checks what the grammar
cannot say (nesting depth, where TASK/SETUP/TEARDOWN may stand). Lark's exceptions never escape:
``friendly.explain`` turns them into a ``TissSyntaxError`` with a message for people.
"""

from __future__ import annotations

import gc
import threading
from contextlib import contextmanager
from functools import lru_cache
from os import PathLike
from pathlib import Path

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedInput

from . import ast
from .errors import TissFileError, TissSyntaxError
from .grammar import load_parser
from .source import Heredoc, prepare
from .strings import StringError, decode_double, decode_single

MAX_DEPTH = 100
"""Deepest allowed nesting of blocks, conditions and lists (leaves -- strings, references,
numbers, booleans -- do not count). Real scripts nest a handful of levels; the limit keeps every
tool that walks a tree recursively (equality, repr, to_dict, an interpreter's visitor) far from
Python's recursion limit, the way CPython's parser limits nested parentheses."""

BUDGET_ALIASES = {"TOKEN_COUNT": "TOKENS"}
# Nodes with no nested structure worth walking (a String's refs are one level below it).
_LEAVES = (ast.String, ast.Ref, ast.Number, ast.Boolean)

# Per-parse state for the shared transformer (one Lark instance per process, parses may run in
# several threads at once).
_state = threading.local()


class _Block:
    """A ``{ ... }`` block on its way into a statement node: the body and the braces' span."""

    __slots__ = ("body", "line", "column", "end_line", "end_column")

    def __init__(self, body: tuple, open_: Token, close: Token) -> None:
        self.body = body
        self.line, self.column = open_.line, open_.column
        self.end_line, self.end_column = close.end_line, close.end_column


def _span(first, last) -> dict[str, int]:
    return {"line": first.line, "column": first.column,
            "end_line": last.end_line, "end_column": last.end_column}


def _error(token, message: str) -> TissSyntaxError:
    lines = _state.lines
    line = token.line
    source_line = lines[line - 1] if 0 < line <= len(lines) else None
    return TissSyntaxError(_state.filename, line, token.column, message, source_line=source_line)


def _name(token: Token, after: str) -> str:
    """A variable name (VAR, READ ... AS, INTO): one identifier, no dots."""
    if "." in token.value:
        raise _error(token, f"a variable name after {after} is one identifier, not the dotted "
                            f"reference {token.value!r}")
    return token.value


class _Builder(Transformer):
    """Lark callbacks, one per rule (and per string/heredoc terminal), each returning a node."""

    # --- terminals (called when the token is shifted) ---

    def STRING(self, tok: Token) -> ast.String:
        value = tok.value
        if value[0] == "'":
            parts = decode_single(value)
        else:
            try:
                parts = decode_double(value, tok.line, tok.column)
            except StringError as exc:
                raise TissSyntaxError(
                    _state.filename, tok.line, tok.column + exc.offset, exc.message,
                    source_line=_state.lines[tok.line - 1],
                ) from None
        return ast.String(parts, line=tok.line, column=tok.column,
                          end_line=tok.end_line, end_column=tok.end_column)

    def NUMBER(self, tok: Token) -> ast.Number:
        text = tok.value
        value = float(text) if ("." in text or "e" in text or "E" in text) else int(text)
        return ast.Number(value, line=tok.line, column=tok.column,
                          end_line=tok.end_line, end_column=tok.end_column)

    def TRUE(self, tok: Token) -> ast.Boolean:
        return ast.Boolean(True, line=tok.line, column=tok.column,
                           end_line=tok.end_line, end_column=tok.end_column)

    def FALSE(self, tok: Token) -> ast.Boolean:
        return ast.Boolean(False, line=tok.line, column=tok.column,
                           end_line=tok.end_line, end_column=tok.end_column)

    def HEREDOC(self, tok: Token) -> Heredoc:
        heredoc = _state.heredocs.get((tok.line, tok.column))
        if heredoc is None:  # the pre-pass and the lexer disagree about this line
            raise _error(tok, f"{tok.value} could not be matched with a heredoc body; put it "
                              "last on its line, outside any string")
        return heredoc

    # --- structure ---

    def start(self, children: list) -> tuple:
        return tuple(children)

    def block(self, c: list) -> _Block:
        return _Block(tuple(c[1:-1]), c[0], c[-1])

    def task(self, c: list) -> ast.Task:
        body = c[2].body if len(c) == 3 else None
        return ast.Task(c[1], body, **_span(c[0], c[-1]))

    def setup(self, c: list) -> ast.Setup:
        return ast.Setup(c[1] if len(c) == 3 else None, c[-1].body, **_span(c[0], c[-1]))

    def teardown(self, c: list) -> ast.Teardown:
        return ast.Teardown(c[1] if len(c) == 3 else None, c[-1].body, **_span(c[0], c[-1]))

    def step(self, c: list) -> ast.Step:
        return ast.Step(c[1], c[2].body, **_span(c[0], c[2]))

    def run(self, c: list) -> ast.Run:
        return ast.Run(c[1], **_span(c[0], c[1]))

    def write(self, c: list) -> ast.Write:
        content = c[2]
        if isinstance(content, Heredoc):
            return ast.Write(c[1], content.content, content.delimiter, content.raw,
                             **_span(c[0], content))
        return ast.Write(c[1], content, None, False, **_span(c[0], content))

    def read(self, c: list) -> ast.Read:
        return ast.Read(c[1], _name(c[3], "AS"), **_span(c[0], c[3]))

    def assert_(self, c: list) -> ast.Assert:
        return ast.Assert(c[1], **_span(c[0], c[1]))

    def prompt(self, c: list) -> ast.PromptAgent:
        variable = _name(c[3], "INTO") if len(c) == 4 else None
        return ast.PromptAgent(c[1], variable, **_span(c[0], c[-1]))

    def var(self, c: list) -> ast.Var:
        return ast.Var(_name(c[1], "VAR"), c[2], **_span(c[0], c[2]))

    def log(self, c: list) -> ast.Log:
        return ast.Log(c[1], **_span(c[0], c[1]))

    def if_(self, c: list) -> ast.If:
        i = 3 if isinstance(c[2], Token) else 2  # c[2] is the THEN keyword or the block
        block = c[i]
        orelse: tuple = ()
        else_line = 0
        if len(c) > i + 1:
            tail = c[i + 2]
            orelse = (tail,) if isinstance(tail, ast.If) else tail.body
            else_line = c[i + 1].end_line  # the ELSE token starts with the separators before it
        return ast.If(c[1], block.body, orelse, else_line=else_line, **_span(c[0], c[-1]))

    def try_(self, c: list) -> ast.Try:
        handler = c[3].body if len(c) == 4 else None
        catch_line = c[2].end_line if len(c) == 4 else 0
        return ast.Try(c[1].body, handler, catch_line=catch_line, **_span(c[0], c[-1]))

    def parallel(self, c: list) -> ast.Parallel:
        return ast.Parallel(c[1].body, **_span(c[0], c[1]))

    def choose(self, c: list) -> ast.Choose:
        return ast.Choose(tuple(c[2:-1]), **_span(c[0], c[-1]))

    def option(self, c: list) -> ast.Option:
        return ast.Option(c[1], c[2].body, **_span(c[0], c[2]))

    def estimate(self, c: list) -> ast.EstimateCost:
        return ast.EstimateCost(c[1].body, **_span(c[0], c[1]))

    def set_budget(self, c: list) -> ast.SetBudget:
        name = _name(c[1], "SET_BUDGET")
        return ast.SetBudget(BUDGET_ALIASES.get(name, name), c[2], **_span(c[0], c[2]))

    def review(self, c: list) -> ast.RequestReview:
        return ast.RequestReview(c[1], **_span(c[0], c[1]))

    def pause(self, c: list) -> ast.Pause:
        return ast.Pause(c[1], **_span(c[0], c[1]))

    def mkdir(self, c: list) -> ast.Mkdir:
        return ast.Mkdir(c[1], **_span(c[0], c[1]))

    def delete(self, c: list) -> ast.Delete:
        return ast.Delete(c[1], len(c) == 3, **_span(c[0], c[-1]))

    def directive(self, c: list) -> ast.Directive:
        value = c[1] if len(c) == 2 else None
        return ast.Directive(c[0].value[1:], value, **_span(c[0], c[-1]))

    def retry(self, c: list) -> ast.Retry:
        delay = c[3] if len(c) == 5 else None
        return ast.Retry(c[1].value, delay, c[-1].body, **_span(c[0], c[-1]))

    def for_(self, c: list) -> ast.For:
        variable = _name(c[1], "FOR")
        if len(c) == 6:  # IN FILES "glob" / IN LINES value
            source, value = c[3].type.lower(), c[4]
        else:
            source, value = "value", c[3]
        return ast.For(variable, source, value, c[-1].body, **_span(c[0], c[-1]))

    # --- values ---

    def ref(self, c: list) -> ast.Ref:
        tok = c[0]
        return ast.Ref(tuple(tok.value.split(".")), **_span(tok, tok))

    def list(self, c: list) -> ast.ListValue:
        return ast.ListValue(tuple(c[1:-1]), **_span(c[0], c[-1]))

    def object(self, c: list) -> ast.ObjectValue:
        seen: dict[str, object] = {}
        for key, _value, key_at in c[1:-1]:
            if key in seen:
                raise _error(key_at, f"duplicate key {key!r} in this object")
            seen[key] = key_at
        entries = tuple((key, value) for key, value, _ in c[1:-1])
        return ast.ObjectValue(entries, **_span(c[0], c[-1]))

    def pair(self, c: list) -> tuple:
        key = c[0]
        if isinstance(key, Token):
            return (_name(key, "an object key"), c[1], key)
        if not key.is_literal:
            raise _error(key, "an object key cannot interpolate {{ }}; write the key literally")
        return (key.text, c[1], key)

    # --- conditions ---

    def or_(self, c: list) -> ast.Or:
        operands = tuple(c[0::2])
        return ast.Or(operands, **_span(c[0], c[-1]))

    def and_(self, c: list) -> ast.And:
        operands = tuple(c[0::2])
        return ast.And(operands, **_span(c[0], c[-1]))

    def negation(self, c: list) -> ast.Not:
        return ast.Not(c[1], **_span(c[0], c[1]))

    def compare(self, c: list) -> ast.Compare:
        return ast.Compare(c[0], c[1].value, c[2], **_span(c[0], c[2]))

    def contains(self, c: list) -> ast.Contains:
        return ast.Contains(c[0], c[2], False, **_span(c[0], c[2]))

    def not_contains(self, c: list) -> ast.Contains:
        return ast.Contains(c[0], c[3], True, **_span(c[0], c[3]))

    def matches(self, c: list) -> ast.Matches:
        return ast.Matches(c[0], c[2], **_span(c[0], c[2]))

    def is_empty(self, c: list) -> ast.IsEmpty:
        return ast.IsEmpty(c[0], False, **_span(c[0], c[1]))

    def is_not_empty(self, c: list) -> ast.IsEmpty:
        return ast.IsEmpty(c[0], True, **_span(c[0], c[1]))

    def length(self, c: list) -> ast.Length:
        return ast.Length(c[1], **_span(c[0], c[1]))

    def file_exists(self, c: list) -> ast.FileExists:
        return ast.FileExists(c[1], **_span(c[0], c[2]))


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return load_parser(_Builder())


def parse(source: str, filename: str = "<string>") -> ast.Program:
    """Parse TissLang source into a ``Program``; raises ``TissSyntaxError`` on invalid input."""
    if not isinstance(source, str):
        raise TypeError(f"parse() takes source text (str), not {type(source).__name__}")
    prepared = prepare(source, filename)
    _state.filename = filename
    _state.lines = prepared.lines
    _state.heredocs = prepared.heredocs
    try:
        with _collector_paused():
            body = _parser().parse(prepared.text)
    except UnexpectedInput as exc:
        from .friendly import explain

        raise explain(exc, prepared, filename, _parser()) from None
    finally:
        _state.heredocs = _state.lines = None  # do not keep the last source alive
    _check_structure(body, prepared.lines, filename)
    last_line = len(prepared.lines)
    return ast.Program(prepared.header, body, prepared.comments, line=1, column=1,
                       end_line=last_line, end_column=len(prepared.lines[-1]) + 1)


_pause_lock = threading.Lock()
_pauses = 0  # parses running now inside _collector_paused
_resume = False  # whether the last of them turns the collector back on


@contextmanager
def _collector_paused():
    """The cyclic garbage collector off while Lark builds the tree, on again after.

    A parse allocates a token and a node or two per token and keeps most nodes: the collector,
    triggered every few hundred allocations, traverses them again and again (about 12% of the
    CPU of a first 1 MB parse in a process the size of the language server) and can free none of
    them, since tokens, nodes and tuples form no cycles. Reference counting frees everything as
    usual meanwhile. Nested and concurrent parses share one pause; a collector that was already
    off (the caller's choice) stays off."""
    global _pauses, _resume
    with _pause_lock:
        if _pauses == 0:
            _resume = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pauses -= 1
            if _pauses == 0 and _resume:
                gc.enable()


def read_source(path: str | PathLike[str]) -> str:
    """The text of a ``.tiss`` file, decoded strictly as UTF-8.

    Raises ``TissFileError`` when the file cannot be read and a positioned ``TissSyntaxError``
    at the first byte that is not UTF-8. Tools that need the source beside the tree (to quote
    lines in messages) read it with this and then call ``parse``.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TissFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise TissSyntaxError(str(path), line, column,
                              "the file is not valid UTF-8; save it as UTF-8") from None


def parse_file(path: str | PathLike[str]) -> ast.Program:
    """Parse a ``.tiss`` file (UTF-8); its path is the filename in error messages."""
    return parse(read_source(path), str(path))


def _check_structure(body: tuple, lines: list[str], filename: str) -> None:
    """What the grammar does not say: depth, one top-level TASK, SETUP/TEARDOWN placement."""

    def fail(node: ast.Node, message: str) -> TissSyntaxError:
        return TissSyntaxError(filename, node.line, node.column, message,
                               source_line=lines[node.line - 1] if node.line else None)

    task = None
    for stmt in body:
        if isinstance(stmt, ast.Task):
            if task is not None:
                raise fail(stmt, f"a second TASK: a script has one TASK (the first is at line "
                                 f"{task.line}); describe the extra work with STEP")
            task = stmt
    # Iterative walk: the tree may be as deep as the input, the Python stack is not.
    # Reversed pushes, so the first problem in the source is the one reported.
    # Leaves are never pushed: they do not count towards the depth and hold no statements.
    stack: list[tuple[object, int, str]] = [(stmt, 1, "top") for stmt in reversed(body)]
    while stack:
        node, depth, where = stack.pop()
        if depth > MAX_DEPTH:
            raise fail(node, f"nesting is deeper than {MAX_DEPTH} levels; split this into "
                             "separate steps or simpler conditions")
        if isinstance(node, ast.Task) and where != "top":
            raise fail(node, "TASK belongs at the top level of the script, not inside a block")
        if isinstance(node, (ast.Setup, ast.Teardown)) and where not in ("top", "task"):
            kind = "SETUP" if isinstance(node, ast.Setup) else "TEARDOWN"
            raise fail(node, f"{kind} belongs at the top level of the script (or directly "
                             "inside the TASK block), not inside another block")
        child_where = "task" if isinstance(node, ast.Task) else "block"
        children = [(child, depth + 1, child_where) for child in ast.iter_child_nodes(node)
                    if not isinstance(child, _LEAVES)]
        stack.extend(reversed(children))

"""Helpers for tools that read scripts while they are being written (editors, the language server).

``parse`` is all or nothing; an editor wants the most it can get from a file that is half typed:

- ``parse_tolerant(source)``: the tree when the source parses; otherwise the syntax error *and*
  the tree of what parsed before it (``parse_before``: the lines above the error, with the blocks
  still open there closed), so an outline and completion keep working while one line is broken.
- ``variable_sites(program, lines)``: every place a variable is set (the statements whose
  table entry says so: ``VAR name``, ``READ ... AS name``, ``PROMPT_AGENT ... INTO name``) or read (a reference, also inside
  ``{{ }}`` in strings and heredocs), with the exact span of the name -- what go to definition,
  find references and rename need.
- ``node_at(program, line, column)``: the innermost node that starts at a position (how a tool
  finds what a ``Diagnostic`` is about), found by descending, not by walking the whole tree.
- ``BUILTIN_DOCS``: what each built-in reference and field holds, for hover help.

Only the standard library and lark, like the rest of ``tisslang``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from . import ast, statements
from .errors import TissSyntaxError
from .parser import _LEAVES, MAX_DEPTH, parse
from .statements import walk

# Attempts at re-parsing a shorter prefix after a syntax error: each one cuts above the error the
# previous attempt met, so a few are enough for the common cases and the cost stays bounded on
# large files.
_PREFIX_ATTEMPTS = 4


@dataclass(frozen=True)
class Tolerant:
    """The outcome of ``parse_tolerant``: ``program`` when the whole source parses, else
    ``error`` and ``partial`` (the tree of the first ``partial_lines`` lines, or None). Spans in
    ``partial`` that reach past those lines end at a ``}`` that was added to close a block."""

    program: ast.Program | None
    error: TissSyntaxError | None
    partial: ast.Program | None
    partial_lines: int = 0

    @property
    def best(self) -> ast.Program | None:
        """The whole tree when there is one, else the partial one (or None)."""
        return self.program if self.program is not None else self.partial


def parse_tolerant(source: str, filename: str = "<string>") -> Tolerant:
    """Parse ``source``; on a syntax error also parse what came before the error line
    (``parse_before``)."""
    try:
        return Tolerant(parse(source, filename), None, None)
    except TissSyntaxError as exc:
        partial, lines = parse_before(source, exc, filename)
        return Tolerant(None, exc, partial, lines)


def parse_before(source: str, error: TissSyntaxError,
                 filename: str = "<string>") -> tuple[ast.Program | None, int]:
    """The tree of the lines above ``error`` (a syntax error of ``source``) and how many lines
    that is; (None, 0) when nothing above it parses.

    The prefix is the lines above the error plus one ``}`` for each block still open there
    (found with the parser's own lexer), so ``STEP "a" { RUN "x"`` followed by a broken line
    still yields the step. Positions in the tree are positions in ``source``.
    """
    lines = source.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    stop = error.line - 1  # keep lines[:stop]
    for _ in range(_PREFIX_ATTEMPTS):
        if stop <= 0:
            break
        prefix = "\n".join(lines[:stop])
        opened = _open_braces(prefix)
        if opened < 0:
            break
        try:
            return parse(prefix + "\n}" * opened + "\n", filename), stop
        except TissSyntaxError as again:
            stop = min(stop - 1, again.line - 1)
    return None, 0


def reparse(program: ast.Program, old_lines: list[str], new_lines: list[str],
            filename: str = "<string>") -> ast.Program | None:
    """The tree of ``new_lines`` made from ``program`` (the tree of ``old_lines``) by parsing
    again only the statement around the lines that changed; None when that cannot be done
    exactly, and the caller parses the whole text.

    It applies when the line count is the same (typing within lines, the common edit), line 1
    (the header) is unchanged and one statement owns every changed line whole (nothing else
    before it on its first line, nothing but a comment after it on its last). That statement's
    lines are parsed alone, with every other line blank so positions stay exact, and must give
    one statement of the same kind; the new node replaces the old one and its comments replace
    the old ones on those lines. Heredocs cannot leak: the statement starts on a code line and
    must close every heredoc it opens within its own lines. A test compares the result with a
    full parse, positions included, over random edits.
    """
    if len(old_lines) != len(new_lines) or not program.body:
        return None
    changed = [i for i, (a, b) in enumerate(zip(old_lines, new_lines)) if a != b]
    if not changed:
        return program
    first, last = changed[0] + 1, changed[-1] + 1
    if first == 1:
        return None
    found = None
    # The innermost owner first; an outer one only when the inner one's lines parse alone as
    # another kind of statement (a STEP inside CHOOSE is an option there, a STEP alone).
    for path in reversed(_owners(program, old_lines, first, last)):
        old = path[-1]
        fragment = "\n" * (old.line - 1) + "\n".join(new_lines[old.line - 1:old.end_line]) + "\n"
        try:
            alone = parse(fragment, filename)
        except TissSyntaxError:
            return None
        if len(alone.body) == 1 and type(alone.body[0]) is type(old):
            found = path, old, alone
            break
    if found is None:
        return None
    path, old, alone = found
    new = alone.body[0]
    if len(path) - 1 + _depth(new) > MAX_DEPTH:
        return None
    # Rebuild the ancestors, innermost first; each keeps its own position (they start above
    # and end below the changed lines).
    replacement = new
    for parent, child in zip(reversed(path[:-1]), reversed(path[1:])):
        replacement = _replace_child(parent, child, replacement)
    body = tuple(replacement if stmt is path[0] else stmt for stmt in program.body)
    comments = tuple(sorted(
        [c for c in program.comments if not old.line <= c.line <= old.end_line]
        + list(alone.comments), key=lambda c: (c.line, c.column)))
    return ast.Program(program.header, body, comments, line=program.line, column=program.column,
                       end_line=len(new_lines), end_column=len(new_lines[-1]) + 1)


def _owners(program: ast.Program, lines: list[str], first: int, last: int) -> list[list[ast.Node]]:
    """The paths (each outermost first) to every statement that owns lines first..last whole,
    outermost statement first."""
    path: list[ast.Node] = []
    owners: list[list[ast.Node]] = []
    node: ast.Node = program
    while True:
        inner = None
        for _, body in statements.blocks(node):
            for stmt in body:
                if stmt.line <= first and last <= stmt.end_line:
                    inner = stmt
                    break
            if inner is not None:
                break
        if inner is None:
            return owners
        path.append(inner)
        before = lines[inner.line - 1][: inner.column - 1]
        after = lines[inner.end_line - 1][inner.end_column - 1:].strip()
        if not before.strip() and (not after or after.startswith("#")):
            owners.append(list(path))
        node = inner


def _depth(node: ast.Node) -> int:
    """How deep ``node`` nests, counted as the parser counts (leaves do not count)."""
    deepest = 0
    stack = [(node, 1)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, _LEAVES):
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(current))
    return deepest


def _replace_child(parent: ast.Node, old: ast.Node, new: ast.Node) -> ast.Node:
    """``parent`` with ``old`` replaced by ``new`` in whichever block holds it."""
    for name, body in statements.blocks(parent):
        if any(stmt is old for stmt in body):
            changes = {name: tuple(new if stmt is old else stmt for stmt in body)}
            return dataclasses.replace(parent, **changes)
    raise ValueError("the statement is not in its parent's blocks")  # cannot happen: _owner's path


def _open_braces(text: str) -> int:
    """``{`` minus ``}`` in ``text`` as the grammar's lexer sees them (strings, comments and
    heredoc bodies do not count); -1 when the text does not even lex."""
    from lark.exceptions import UnexpectedInput
    from lark.lexer import LexerThread

    from .parser import _parser
    from .source import prepare

    try:
        prepared = prepare(text, "<prefix>")
        depth = 0
        for tok in LexerThread.from_text(_parser().parser.lexer, prepared.text).lex(None):
            if tok.type == "LBRACE":
                depth += 1
            elif tok.type == "RBRACE":
                depth -= 1
        return max(depth, 0)
    except (UnexpectedInput, TissSyntaxError):
        return -1


@dataclass(frozen=True)
class Site:
    """One occurrence of a variable name: ``definition`` True where it is set.

    ``line``/``column`` .. ``end_line``/``end_column`` span the name only (1-based, end
    exclusive); for a reference that is its first part (``x`` in ``x.0``).
    """

    name: str
    definition: bool
    line: int
    column: int
    end_line: int
    end_column: int
    node: ast.Node

    def contains(self, line: int, column: int) -> bool:
        return self.line == line and self.column <= column <= self.end_column


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def variable_sites(program: ast.Program, lines: list[str]) -> list[Site]:
    """Every definition and reference of a variable in ``program``, in source order.

    ``lines`` are the source lines (``source.split("\\n")`` after newline normalisation); they
    give the position of the name in ``VAR name = ...``, which the tree does not keep.
    """
    sites: list[Site] = []
    for node in walk(program):
        if isinstance(node, ast.Ref):
            head = node.parts[0]
            column = node.column
            text = lines[node.line - 1] if 0 < node.line <= len(lines) else ""
            if text.startswith("{{", column - 1):
                # An interpolation's span starts at its braces: the name follows them.
                column = _skip_blanks(text, column + 1) + 1
            if text[column - 1:column - 1 + len(head)] != head:
                continue  # a tree built by hand, or positions from other text
            sites.append(Site(head, False, node.line, column, node.line, column + len(head), node))
            continue
        name = _target(node)
        if name is None:
            continue
        # The name either follows the keyword (VAR name = ...) or ends the statement
        # (READ ... AS name, PROMPT_AGENT ... INTO name); blanks are all the grammar skips.
        keyword = statements.BY_NODE[type(node)].keyword
        text = lines[node.line - 1] if 0 < node.line <= len(lines) else ""
        match = _IDENT.match(text, _skip_blanks(text, node.column - 1 + len(keyword)))
        if match is not None and match.group() == name:
            column = match.start() + 1
            sites.append(Site(name, True, node.line, column, node.line, column + len(name), node))
            continue
        text = lines[node.end_line - 1] if 0 < node.end_line <= len(lines) else ""
        if text[node.end_column - 1 - len(name):node.end_column - 1] == name:
            sites.append(Site(name, True, node.end_line, node.end_column - len(name),
                              node.end_line, node.end_column, node))
    sites.sort(key=lambda s: (s.line, s.column))
    return sites


def _skip_blanks(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t":
        index += 1
    return index


def _target(node: ast.Node) -> str | None:
    """The variable a statement sets (its table entry's ``sets`` field), if any."""
    spec = statements.BY_NODE.get(type(node))
    for name in spec.sets if spec is not None else ():
        value = getattr(node, name)
        if isinstance(value, str):
            return value
    return None


def node_at(program: ast.Program, line: int, column: int) -> ast.Node | None:
    """The innermost node that starts at ``line``:``column`` (None when none does).

    It descends through the nodes whose span holds the position, so finding what one
    diagnostic is about costs a path through the tree, not a walk of all of it.
    """
    position = (line, column)
    best: ast.Node | None = None
    node: ast.Node = program
    while True:
        inner = None
        for child in ast.iter_child_nodes(node):
            start = (child.line, child.column)
            if start == position:
                inner = child  # starts here: better than one that only holds the position
                break
            if inner is None and start <= position < (child.end_line, child.end_column):
                inner = child  # (a comment inside a block is the program's child, not the block's)
        if inner is None:
            return best
        if (inner.line, inner.column) == position:
            best = inner
        node = inner


BUILTIN_DOCS: dict[str, tuple[str, dict[str, str]]] = {
    "LAST_RUN": ("the last RUN (in this block of a PARALLEL: this child's)", {
        "EXIT_CODE": "the command's exit status (128 + N when killed by signal N)",
        "STDOUT": "what the command printed, trailing newlines removed",
        "STDERR": "what the command printed to stderr, trailing newlines removed",
        "EXECUTION_TIME": "how long the command ran, in seconds",
        "COMMAND": "the command as it ran, interpolations filled in",
        "TIMED_OUT": "true when the command was killed at its timeout",
        "STDOUT_TRUNCATED": "true when stdout was cut at the capture cap",
        "STDERR_TRUNCATED": "true when stderr was cut at the capture cap",
    }),
    "LAST_ERROR": ("the failure a CATCH block is handling", {
        "MESSAGE": "the failure's message",
        "KIND": "what kind of failure it was (an assertion, a missing file, a timeout ...)",
        "LINE": "the script line where it happened",
        "REPORT": ("a failure report for a prompt: the failing line, the message, and the "
                   "command, exit code and output tails of a RUN in the failed block"),
    }),
    "LAST_PROMPT": ("the last PROMPT_AGENT", {
        "TEXT": "the model's answer",
        "PROMPT_TOKENS": "tokens in the prompt",
        "COMPLETION_TOKENS": "tokens in the answer",
        "FINISH_REASON": 'why the model stopped ("stop", "length" ...)',
    }),
    "LAST_ESTIMATE": ("the cost ESTIMATE_COST computed for its body", {
        "API_CALLS": "model calls the body would make",
        "TOKENS": "tokens the body would use",
        "SECONDS": "seconds the body would take",
        "UNBOUNDED_RUNS": "RUNs whose time could not be bounded",
        "UNBOUNDED_LOOPS": "FOR loops whose item count was not known (counted once)",
    }),
    "LAST_REVIEW": ("the last REQUEST_REVIEW or PAUSE", {
        "APPROVED": "true when the human approved",
        "COMMENT": "what the human wrote",
    }),
    "WORKSPACE": ("the workspace directory the script runs in", {}),
    "TASK": ("the script's TASK", {"DESCRIPTION": "the TASK's description"}),
    "STEP": ("the innermost STEP running", {"DESCRIPTION": "the STEP's description"}),
    "ATTEMPT": ("the attempt number inside a RETRY block, from 1", {}),
}
"""Built-in references: (what the reference is, {field: what it holds}). A test keeps the names
equal to the checker's list, so hover never describes a field ``tiss check`` would reject."""

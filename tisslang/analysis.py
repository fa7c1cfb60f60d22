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
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from itertools import compress, count, islice
from operator import ne

from . import ast, statements
from .errors import TissSyntaxError
from .parser import _LEAVES, MAX_DEPTH, _collector_paused, parse
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

    The changed region is what lies between the longest common prefix and suffix of the two
    line lists: old lines a..b became new lines a..b+delta (delta: lines added, or removed when
    negative; a pure insertion, a..b empty, counts as a change of the line above or the line
    below it). It applies when line 1 (the header) is unchanged and one statement owns old lines
    a..b whole (nothing else before it on its first line, nothing but a comment after it on its
    last). That statement's new lines (its old ones, the last moved by delta) are parsed alone,
    as if every line above them were blank (after one blank line, then moved down), so positions
    are exact, and must give one statement of the same kind: the new node replaces the old one,
    its comments replace the old ones on those lines, and everything after them (later
    statements in every enclosing block and at the top level, the ends and ELSE / CATCH lines of
    the enclosing statements, later comments) moves by delta lines in a copy; what lies above is
    shared, and the old tree is never changed (another thread may still read it). Heredocs
    cannot leak: the statement starts on a code line and must close every heredoc it opens
    within its own lines. Tests compare the result with a full parse, positions and layout
    included, over random edits.

    Before that, a change between the statements of one block (whole statements added, removed
    or repeated, blank and comment lines; see ``_reparse_between``) parses only those lines and
    splices the statements they give into the block, the enclosing statements rebuilt as above.
    """
    if not program.body:
        return None
    n_old, n_new = len(old_lines), len(new_lines)
    shorter = min(n_old, n_new)
    # The first line that differs and how many lines at the end agree, compared in C.
    p = next(compress(count(), map(ne, old_lines, new_lines)), shorter)
    if p == shorter and n_old == n_new:
        return program
    if p == 0:
        return None  # line 1: the header, or a change above every statement
    s = next(compress(count(), map(ne, islice(reversed(old_lines), shorter - p),
                                    reversed(new_lines))), shorter - p)
    delta = n_new - n_old
    first, last = p + 1, n_old - s  # old lines first..last (1-based) were replaced
    between = _reparse_between(program, old_lines, new_lines, first, last, delta, filename)
    if between is not None:
        return between
    if first <= last:
        candidates = list(reversed(_owners(program, old_lines, first, last)))
    else:
        # Lines inserted between old lines p and p + 1: the statement that owns either one,
        # innermost first.
        seen: set[int] = set()
        candidates = []
        for line in (p, p + 1):
            if line <= n_old:
                for path in _owners(program, old_lines, line, line):
                    if id(path[-1]) not in seen:
                        seen.add(id(path[-1]))
                        candidates.append(path)
        candidates.sort(key=lambda path: path[-1].end_line - path[-1].line)
    found = None
    # The innermost owner first; an outer one only when the inner one's lines parse alone as
    # another kind of statement (a STEP inside CHOOSE is an option there, a STEP alone) or as
    # more or fewer than one statement (a line added after it, or all of its lines removed).
    for path in candidates:
        old = path[-1]
        if type(old) is ast.Option:
            continue  # an OPTION is one only inside CHOOSE: never alone, so the CHOOSE it is in
        # Its lines after one blank line (so a first line that reads like a header is not one),
        # then moved down to where they are: the same tree as with every line above blank,
        # without lexing thousands of empty lines.
        fragment = "\n" + "\n".join(new_lines[old.line - 1:old.end_line + delta]) + "\n"
        try:
            alone = parse(fragment, filename)
        except TissSyntaxError:
            return None
        if len(alone.body) == 1 and type(alone.body[0]) is type(old):
            found = path, old, _moved(alone, old.line - 2)
            break
    if found is None:
        return None
    path, old, alone = found
    new = alone.body[0]
    if len(path) - 1 + _depth(new) > MAX_DEPTH:
        return None
    # The statement's place: its block in the statement around it (or the top level).
    try:
        name, index = _slot(path[-2] if len(path) > 1 else program, old)
    except _Inexact:
        return None
    return _assemble(program, path[:-1], name, index, index + 1, alone, old.line, old.end_line,
                     delta, new_lines)


def _reparse_between(program: ast.Program, old_lines: list[str], new_lines: list[str],
                     first: int, last: int, delta: int, filename: str) -> ast.Program | None:
    """``reparse`` for a change between the statements of one block: old lines first..last
    (empty when first > last: lines inserted there) widened to whole statements of the
    innermost block they lie in, with only blank or comment lines between those statements.
    Those lines' new text is parsed alone and its 0..n statements replace the old ones; None
    when the site or the result is not certain to be what a full parse gives (the caller then
    tries ``reparse``'s one-statement path)."""
    site = _site(program, old_lines, first, last, [])
    if site is None:
        return None
    path, name, i, j, start, end = site
    container = path[-1] if path else program
    fragment = "\n" + "\n".join(new_lines[start - 1:end + delta]) + "\n"
    try:
        alone = parse(fragment, filename)
    except TissSyntaxError:
        return None
    # What the structure check of a full parse says of these statements in their place: a TASK
    # only at the top level (and only one: never added or removed here), SETUP / TEARDOWN only
    # at the top level or directly in the TASK, and the depth limit.
    top_level = not path or type(container) is ast.Task
    for stmt in alone.body:
        if type(stmt) is ast.Task:
            return None
        if type(stmt) in (ast.Setup, ast.Teardown) and not top_level:
            return None
        if len(path) + _depth(stmt) > MAX_DEPTH:
            return None
    return _assemble(program, path, name, i, j, _moved(alone, start - 2), start, end, delta,
                     new_lines)


def _assemble(program: ast.Program, path: list[ast.Node], name: str, i: int, j: int,
              alone: ast.Program, start: int, end: int, delta: int,
              new_lines: list[str]) -> ast.Program | None:
    """The new tree: ``alone``'s statements (already at their lines) in place of statements
    i..j-1 of block ``name`` of ``path[-1]`` (the top level when ``path`` is empty), which lay
    on old lines start..end; the statements around it rebuilt, everything after line ``end``
    moved by delta, the comments on those lines replaced by ``alone``'s. None when something of
    an enclosing statement overlaps the changed lines."""
    nodes = [program, *path]
    try:
        with _collector_paused():  # tens of thousands of new nodes, no cycles among them
            replacement = _rebuild_block(nodes[-1], name, i, j, alone.body, start, end, delta)
            # The enclosing statements, innermost first, then the top level: each keeps its
            # start (above the changed lines) and its end moves by delta (it is below them).
            for parent, child in zip(reversed(nodes[:-1]), reversed(nodes[1:])):
                replacement = _rebuild(parent, child, replacement, start, end, delta)
            body = replacement.body
            comments = program.comments
            low = bisect_left(comments, start, key=_line)
            high = bisect_right(comments, end, key=_line)
            comments = comments[:low] + alone.comments + _shift_all(comments[high:], delta)
    except _Inexact:
        return None
    return ast.Program(program.header, body, comments, line=program.line, column=program.column,
                       end_line=len(new_lines), end_column=len(new_lines[-1]) + 1)


def _blank(text: str) -> bool:
    """A line with nothing but spaces and perhaps a comment."""
    text = text.strip()
    return not text or text.startswith("#")


def _site(node: ast.Node, lines: list[str], first: int, last: int, path: list[ast.Node]):
    """Where old lines first..last lie between statements of a block, innermost first:
    ``(path to the block's statement, its field, i, j, start, end)``: statements i..j-1 of the
    block (maybe none) and the blank or comment lines next to them make up old lines
    start..end, which hold first..last. None when no block holds them so."""
    insertion = first > last
    for name, body in statements.blocks(node):
        if insertion:  # the statement that runs across the point between lines last and first
            i = bisect_right(body, last, key=_line)
            j = i
            if i > 0 and body[i - 1].end_line >= first:
                i -= 1
        else:  # the statements overlapping first..last
            j = bisect_right(body, last, key=_line)
            i = j
            while i > 0 and body[i - 1].end_line >= first:
                i -= 1
        if i == j:
            continue
        if j - i == 1 and body[i].line <= first and body[i].end_line >= last:
            inner = _site(body[i], lines, first, last, path + [body[i]])
            if inner is not None:
                return inner
        return _checked(node, name, body, i, j, lines, first, last, path)
    # No statement overlaps: the lines are between two statements, or before the first one or
    # after the last one of a block, if any block is next to them with blank lines between.
    for name, body in statements.blocks(node):
        i = bisect_right(body, last, key=_line)
        if i < len(body) and body[i].line > last:
            after = body[i]
            if all(_blank(lines[k - 1]) for k in range(last + 1, after.line)) and \
                    not lines[after.line - 1][:after.column - 1].strip():
                return _checked(node, name, body, i, i, lines, first, last, path)
        if i > 0 and body[i - 1].end_line < first:
            before = body[i - 1]
            if all(_blank(lines[k - 1]) for k in range(before.end_line + 1, first)) and \
                    _blank(lines[before.end_line - 1][before.end_column - 1:]):
                return _checked(node, name, body, i, i, lines, first, last, path)
    return None


def _checked(node: ast.Node, name: str, body: tuple, i: int, j: int, lines: list[str],
             first: int, last: int, path: list[ast.Node]):
    """The site of statements i..j-1 of ``node``'s block ``name`` and old lines first..last,
    if it is one (see ``_site``); else None."""
    if type(node) is ast.Choose:
        return None  # its block holds OPTIONs, which never parse alone
    if type(node) is ast.If and name == "orelse" and type(body[0]) is ast.If:
        return None  # ELSE IF: that block has no braces
    start, end = first, last
    if i < j:
        start, end = min(first, body[i].line), max(last, body[j - 1].end_line)
        head, tail = body[i], body[j - 1]
        if lines[head.line - 1][:head.column - 1].strip():
            return None
        if not _blank(lines[tail.end_line - 1][tail.end_column - 1:]):
            return None
        if any(type(stmt) is ast.Task for stmt in body[i:j]):
            return None
    if i > 0 and body[i - 1].end_line >= start:
        return None
    if j < len(body) and body[j].line <= end:
        return None
    # The lines between those statements (and around them) are blank or comments.
    gap = start
    for stmt in body[i:j]:
        if not all(_blank(lines[k - 1]) for k in range(gap, stmt.line)):
            return None
        gap = stmt.end_line + 1
    if not all(_blank(lines[k - 1]) for k in range(gap, end + 1)):
        return None
    return path, name, i, j, start, end


def _rebuild_block(parent: ast.Node, name: str, i: int, j: int, new: tuple, start: int,
                   end: int, delta: int) -> ast.Node:
    """A copy of ``parent`` whose block ``name`` holds ``new`` in place of its statements
    i..j-1 (on old lines start..end); everything after line ``end`` moved by delta lines, its
    own end included; what lies above line ``start`` kept. Anything else overlapping
    start..end: raises _Inexact. The top level (a Program) only has its block replaced."""
    copy = _new(type(parent))
    fields = copy.__dict__
    fields.update(parent.__dict__)
    body = fields[name]
    fields[name] = body[:i] + new + _shift_all(body[j:], delta)
    if type(parent) is ast.Program:
        return copy
    if delta:
        fields["end_line"] += delta
        for layout in _LAYOUT.get(type(parent), ()):
            if fields[layout] > end:
                fields[layout] += delta
            elif fields[layout] >= start:
                raise _Inexact
        for field in _NODE_FIELDS[type(parent)]:
            if field != name and fields[field] is not None:
                fields[field] = _place(fields[field], start, end, delta)
    return copy


class _Inexact(Exception):
    """A node of an enclosing statement overlaps the changed lines: reparse gives up."""


def _line(node: ast.Node) -> int:
    return node.line


def _index(body: tuple, stmt: ast.Node) -> int | None:
    """Where ``stmt`` is in ``body`` (a block, in source order), by bisection; None if not."""
    index = bisect_left(body, stmt.line, key=_line)
    while index < len(body) and body[index].line == stmt.line:
        if body[index] is stmt:
            return index
        index += 1
    return None


def _moved(program: ast.Program, delta: int) -> ast.Program:
    """``program``'s statements and comments ``delta`` lines further down (the rest as is)."""
    if not delta:
        return program
    return ast.Program(program.header, _shift_all(program.body, delta),
                       _shift_all(program.comments, delta))


def _rebuild(parent: ast.Node, child: ast.Node, new: ast.Node, start: int, end: int,
             delta: int) -> ast.Node:
    """A copy of ``parent`` (which holds ``child``, a statement on old lines start..end) with
    ``new`` in the child's place, as ``_rebuild_block`` makes it."""
    name, index = _slot(parent, child)
    return _rebuild_block(parent, name, index, index + 1, (new,), start, end, delta)


def _slot(parent: ast.Node, child: ast.Node) -> tuple[str, int]:
    """The block of ``parent`` that holds ``child`` and where in it; raises _Inexact if none
    does (cannot happen for a path that _owners or _site found)."""
    for name in _NODE_FIELDS[type(parent)]:
        value = getattr(parent, name)
        if isinstance(value, tuple):
            index = _index(value, child)
            if index is not None:
                return name, index
    raise _Inexact


def _place(value, start: int, end: int, delta: int):
    """A value of an enclosing statement (not holding the changed lines): moved when after line
    ``end``, kept when above line ``start``."""
    if isinstance(value, ast.Node):
        if value.line > end:
            return _shift(value, delta)
        if value.end_line < start:
            return value
        raise _Inexact
    if isinstance(value, tuple):
        return tuple([_place(item, start, end, delta) for item in value])
    return value


def _shift_all(nodes: tuple, delta: int) -> tuple:
    if not delta:
        return nodes
    return tuple([_shift(node, delta) for node in nodes])


_new = object.__new__
# Annotations of fields that never hold a node: they are copied as they are.
_SCALAR_ANNOTATIONS = frozenset({"str", "str | None", "bool", "int", "Union[int, float]",
                                 "tuple[str, ...]", "dict[str, str]"})


class _FieldTable(dict):
    """Node class -> names of its fields that may hold nodes (filled on first use)."""

    def __missing__(self, cls: type) -> tuple[str, ...]:
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        names = tuple(name for name in ast.field_names(cls)
                      if types[name] not in _SCALAR_ANNOTATIONS)
        self[cls] = names
        return names


_NODE_FIELDS = _FieldTable()
# Layout lines (If.else_line, Try.catch_line): moved like positions, 0 (absent) kept.
_LAYOUT = {ast.If: ("else_line",), ast.Try: ("catch_line",)}


def _shift(node: ast.Node, delta: int) -> ast.Node:
    """A copy of ``node`` and everything under it ``delta`` lines further down (nodes, the
    references inside strings, ObjectValue entries, heredoc contents, ELSE / CATCH lines).

    Copies are made as ``copy.copy`` would (a new instance, its ``__dict__`` filled from the
    old), several times faster than ``dataclasses.replace``, which runs ``__init__``. Recursion
    follows the tree's depth, which the parser keeps under MAX_DEPTH (plus a String and a Ref).
    """
    cls = type(node)
    copy = _new(cls)
    fields = copy.__dict__
    fields.update(node.__dict__)
    fields["line"] += delta
    fields["end_line"] += delta
    layout = _LAYOUT.get(cls)
    if layout is not None:
        for name in layout:
            if fields[name]:
                fields[name] += delta
    for name in _NODE_FIELDS[cls]:
        value = fields[name]
        if isinstance(value, ast.Node):
            fields[name] = _shift(value, delta)
        elif isinstance(value, tuple) and value:
            items = []
            for item in value:
                if isinstance(item, ast.Node):
                    item = _shift(item, delta)
                elif isinstance(item, tuple):  # ObjectValue entries: (key, value)
                    item = tuple([_shift(x, delta) if isinstance(x, ast.Node) else x
                                  for x in item])
                items.append(item)
            fields[name] = tuple(items)
    return copy


def _owners(program: ast.Program, lines: list[str], first: int, last: int) -> list[list[ast.Node]]:
    """The paths (each outermost first) to every statement that owns lines first..last whole,
    outermost statement first."""
    path: list[ast.Node] = []
    owners: list[list[ast.Node]] = []
    node: ast.Node = program
    while True:
        inner = None
        for _, body in statements.blocks(node):
            # The first statement that holds the lines: blocks are in source order, so it is
            # found by bisection (a block may hold thousands of statements).
            index = bisect_right(body, first, key=_line) - 1
            while index > 0 and body[index - 1].end_line >= last:
                index -= 1
            if index >= 0 and body[index].end_line >= last:
                inner = body[index]
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

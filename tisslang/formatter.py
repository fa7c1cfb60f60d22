"""``format(program)``: the canonical TissLang source of a tree (an unparser).

``parse(format(p)) == p`` for every tree the parser produces, and formatting is idempotent.
The canonical layout: one statement per line, blocks opened on the statement's line and closed
on their own line, four spaces per level, ``} ELSE {`` / ``} CATCH {`` on the closing line,
``OPTION`` in CHOOSE, ``TOKENS`` for ``TOKEN_COUNT``, heredoc bodies indented with their block
and closed at its indentation, at most one blank line kept where the source had some, strings
in double quotes (single quotes for literal text with backslashes, such as regexes).

Comments come back from ``Program.comments`` by position: a comment on a line of its own stays
before the statement that followed it; a comment at the end of a line stays at the end of that
statement's first or last line. Trees built by hand (no positions) format without blank lines.
"""

from __future__ import annotations

import math
import re

from . import ast, statements
from .source import HEADER_PREFIX
from .strings import INTERPOLATION, quote

INDENT = "    "
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_INDEX = re.compile(r"[0-9]+\Z")  # a list index in a reference after its root: `files.0`
_RESERVED = statements.KEYWORDS  # words that cannot be names or object keys

# Binding strength of conditions, for parentheses: Or < And < Not < comparisons < operands.
_OR, _AND, _NOT, _CMP, _ATOM = 1, 2, 3, 4, 5


class FormatError(ValueError):
    """A hand-built tree that has no TissLang spelling (e.g. a heredoc body without its final
    newline, or a float that is not finite)."""


def format(program: ast.Program) -> str:  # noqa: A001 - the public name docs/architecture.md fixes
    """Canonical source text for ``program`` (ends with a newline unless empty)."""
    writer = _Writer(program.comments)
    if program.header:
        writer.emit(0, "#TISS! " + " ".join(f"{k}={v}" for k, v in program.header.items()), 1)
    writer.statements(program.body, 0)
    writer.flush_comments(None, 0)
    lines = writer.lines
    if not program.header and lines and lines[0].startswith(HEADER_PREFIX) and lines[0][len(HEADER_PREFIX):].split():
        # A comment such as `#TISS! a=1` below a blank first line is a comment; on line 1 it
        # would be read as the header, so it keeps a blank line above it.
        lines.insert(0, "")
    return "".join(line + "\n" for line in lines)


class _Writer:
    def __init__(self, comments: tuple[ast.Comment, ...]) -> None:
        self.lines: list[str] = []
        self.comments = comments
        self.next_comment = 0
        self.last_line = 0  # the source line of what was emitted last (0: unknown)
        self.block_start = True

    # --- layout primitives ---

    def emit(self, depth: int, text: str, source_line: int = 0, gap: bool = True) -> None:
        """One output line; a blank line first where the source had one (``gap``)."""
        if gap and source_line and self.last_line and source_line > self.last_line + 1 \
                and not self.block_start:
            self.lines.append("")
        self.lines.append(INDENT * depth + text if text else "")
        self.block_start = False
        if source_line:
            self.last_line = source_line

    def flush_comments(self, before_line: int | None, depth: int) -> None:
        """Emit, on lines of their own, the comments that start before ``before_line``."""
        if before_line == 0:
            return
        comments = self.comments
        while self.next_comment < len(comments):
            comment = comments[self.next_comment]
            if before_line is not None and comment.line >= before_line:
                break
            self.emit(depth, "#" + comment.text, comment.line)
            self.next_comment += 1

    def trailing_comment(self, line: int) -> None:
        """Append the comment that sits at the end of source ``line`` to the last output line."""
        if not line or self.next_comment >= len(self.comments):
            return
        comment = self.comments[self.next_comment]
        if comment.line == line:
            self.lines[-1] += "  #" + comment.text
            self.next_comment += 1

    # --- statements ---
    #
    # Blocks are not formatted by recursion: a handler emits its own first line and returns the
    # work that follows (its body's statements, then its closing line) as (function, args) items,
    # which ``statements`` runs from an explicit stack. Any depth formats in constant stack.

    def statements(self, body: tuple, depth: int) -> None:
        stack = [(self.statement, (stmt, depth)) for stmt in reversed(body)]
        while stack:
            function, args = stack.pop()
            more = function(*args)
            if more:
                stack.extend(reversed(more))

    def statement(self, node: ast.Node, depth: int) -> list | None:
        method = getattr(self, "s_" + type(node).__name__, None)
        if method is None:
            raise FormatError(f"{type(node).__name__} is not a statement")
        return method(node, depth)

    def block(self, head: str, node: ast.Node, body: tuple, depth: int) -> list:
        """``head {``, then (as work items) the body one level deeper and ``}``."""
        self.flush_comments(node.line, depth)
        self.emit(depth, head + " {", node.line)
        self.trailing_comment(node.line)
        return self.body_items(body, depth, node.end_line) + [(self.close, (depth, node.end_line))]

    def body_items(self, body: tuple, depth: int, end_line: int) -> list:
        return [(self.begin_body, ()),
                *((self.statement, (stmt, depth + 1)) for stmt in body),
                (self.end_body, (depth, end_line))]

    def begin_body(self) -> None:
        self.block_start = True

    def end_body(self, depth: int, end_line: int) -> None:
        self.flush_comments(end_line, depth + 1)
        self.block_start = False

    def close(self, depth: int, end_line: int, text: str = "}") -> None:
        self.emit(depth, text, end_line, gap=False)
        self.trailing_comment(end_line)

    def simple(self, node: ast.Node, depth: int, text: str) -> None:
        self.flush_comments(node.line, depth)
        self.emit(depth, text, node.line)
        self.trailing_comment(node.line)
        if node.end_line:
            self.last_line = node.end_line

    def s_Task(self, node: ast.Task, depth: int) -> list | None:
        head = "TASK " + _string(node.description)
        if node.body is None:
            self.simple(node, depth, head)
            return None
        return self.block(head, node, node.body, depth)

    def s_Setup(self, node: ast.Setup, depth: int) -> list:
        head = "SETUP" + (" " + _string(node.description) if node.description else "")
        return self.block(head, node, node.body, depth)

    def s_Teardown(self, node: ast.Teardown, depth: int) -> list:
        head = "TEARDOWN" + (" " + _string(node.description) if node.description else "")
        return self.block(head, node, node.body, depth)

    def s_Step(self, node: ast.Step, depth: int) -> list:
        return self.block("STEP " + _string(node.description), node, node.body, depth)

    def s_Option(self, node: ast.Option, depth: int) -> list:
        return self.block("OPTION " + _string(node.description), node, node.body, depth)

    def s_Parallel(self, node: ast.Parallel, depth: int) -> list:
        return self.block("PARALLEL", node, node.body, depth)

    def s_EstimateCost(self, node: ast.EstimateCost, depth: int) -> list:
        return self.block("ESTIMATE_COST", node, node.body, depth)

    def s_Retry(self, node: ast.Retry, depth: int) -> list:
        head = "RETRY " + _number(node.attempts)
        if node.delay is not None:
            head += " DELAY " + _string(node.delay)
        return self.block(head, node, node.body, depth)

    def s_For(self, node: ast.For, depth: int) -> list:
        if node.source == "files":
            source = "FILES " + _string(node.value)
        elif node.source == "lines":
            source = "LINES " + value(node.value)
        elif node.source == "value":
            source = value(node.value)
        else:
            raise FormatError(f"FOR source {node.source!r} is not one of {ast.FOR_SOURCES}")
        return self.block(f"FOR {_name(node.variable)} IN {source}", node, node.body, depth)

    def s_Choose(self, node: ast.Choose, depth: int) -> list:
        for option in node.options:
            if not isinstance(option, ast.Option):
                raise FormatError(f"CHOOSE holds Option nodes, not {type(option).__name__}")
        return self.block("CHOOSE", node, node.options, depth)

    def s_If(self, node: ast.If, depth: int) -> list:
        self.flush_comments(node.line, depth)
        self.emit(depth, "IF " + expression(node.condition) + " {", node.line)
        self.trailing_comment(node.line)
        items: list = []
        current = node
        while True:  # an ELSE IF chain is a loop here, however long it is
            items += self.body_items(current.body, depth, _else_line(current))
            orelse = current.orelse
            if len(orelse) == 1 and isinstance(orelse[0], ast.If):
                current = orelse[0]
                items.append((self.else_if, (depth, current)))
                continue
            if orelse:
                items.append((self.continuation, (depth, "} ELSE {", current.else_line)))
                items += self.body_items(orelse, depth, node.end_line)
            break
        items.append((self.close, (depth, node.end_line)))
        return items

    def continuation(self, depth: int, text: str, line: int) -> None:
        """``} ELSE {`` / ``} CATCH {``, keeping a comment that ended the source line there."""
        self.emit(depth, text)
        self.trailing_comment(line)

    def else_if(self, depth: int, node: ast.If) -> None:
        self.emit(depth, "} ELSE IF " + expression(node.condition) + " {")
        self.trailing_comment(node.line)

    def s_Try(self, node: ast.Try, depth: int) -> list:
        self.flush_comments(node.line, depth)
        self.emit(depth, "TRY {", node.line)
        self.trailing_comment(node.line)
        handler_line = node.catch_line or (node.handler[0].line if node.handler else 0)
        items = self.body_items(node.body, depth, handler_line or node.end_line)
        if node.handler is not None:
            items.append((self.continuation, (depth, "} CATCH {", node.catch_line)))
            items += self.body_items(node.handler, depth, node.end_line)
        items.append((self.close, (depth, node.end_line)))
        return items

    def s_Run(self, node: ast.Run, depth: int) -> None:
        self.simple(node, depth, "RUN " + _string(node.command))

    def s_Write(self, node: ast.Write, depth: int) -> None:
        head = "WRITE " + _string(node.path)
        if node.delimiter is None:
            self.simple(node, depth, head + " " + _string(node.content))
            return
        delim = node.delimiter
        self.flush_comments(node.line, depth)
        self.emit(depth, f"{head} <<'{delim}'" if node.raw else f"{head} <<{delim}", node.line)
        self.trailing_comment(node.line)
        for line in _heredoc_lines(node):
            self.lines.append(INDENT * depth + line if line else line)
        self.lines.append(INDENT * depth + delim)
        if node.end_line:
            self.last_line = node.end_line

    def s_Read(self, node: ast.Read, depth: int) -> None:
        self.simple(node, depth, f"READ {_string(node.path)} AS {_name(node.variable)}")

    def s_Assert(self, node: ast.Assert, depth: int) -> None:
        self.simple(node, depth, "ASSERT " + expression(node.condition))

    def s_PromptAgent(self, node: ast.PromptAgent, depth: int) -> None:
        text = "PROMPT_AGENT " + _string(node.prompt)
        if node.variable is not None:
            text += " INTO " + _name(node.variable)
        self.simple(node, depth, text)

    def s_Var(self, node: ast.Var, depth: int) -> None:
        self.simple(node, depth, f"VAR {_name(node.name)} = {value(node.value)}")

    def s_Log(self, node: ast.Log, depth: int) -> None:
        self.simple(node, depth, "LOG " + _string(node.message))

    def s_SetBudget(self, node: ast.SetBudget, depth: int) -> None:
        self.simple(node, depth, f"SET_BUDGET {_name(node.name)} = {value(node.value)}")

    def s_RequestReview(self, node: ast.RequestReview, depth: int) -> None:
        self.simple(node, depth, "REQUEST_REVIEW " + _string(node.message))

    def s_Pause(self, node: ast.Pause, depth: int) -> None:
        self.simple(node, depth, "PAUSE " + _string(node.message))

    def s_Mkdir(self, node: ast.Mkdir, depth: int) -> None:
        self.simple(node, depth, "MKDIR " + _string(node.path))

    def s_Delete(self, node: ast.Delete, depth: int) -> None:
        self.simple(node, depth, "DELETE " + _string(node.path) + (" RECURSIVE" if node.recursive else ""))

    def s_Directive(self, node: ast.Directive, depth: int) -> None:
        if not _IDENTIFIER.match(node.name):
            raise FormatError(f"directive name {node.name!r} is not an identifier")
        text = "@" + node.name
        if node.value is not None:
            text += " " + value(node.value)
        self.simple(node, depth, text)


def _else_line(node: ast.If) -> int:
    """Where the IF's own block ends, for comments: the ELSE line (else the ELSE part's first)."""
    if node.orelse:
        return node.else_line or node.orelse[0].line
    return node.end_line


def _heredoc_lines(node: ast.Write) -> list[str]:
    parts = node.content.parts
    if node.raw:
        if not node.content.is_literal:
            raise FormatError("a raw (<<'DELIM') heredoc cannot hold interpolations")
        text = "".join(parts)
    else:
        pieces = []
        for part in parts:
            if isinstance(part, str):
                if INTERPOLATION.search(part):
                    raise FormatError("heredoc text that reads as {{ ref }} must use <<'DELIM'")
                pieces.append(part)
            else:
                pieces.append("{{ " + part.name + " }}")
        text = "".join(pieces)
    if not text:
        return []
    if not text.endswith("\n"):
        raise FormatError("a heredoc body always ends with a newline")
    lines = text[:-1].split("\n")
    for line in lines:
        if line.strip() == node.delimiter:
            raise FormatError(f"the heredoc body holds its own delimiter line {node.delimiter!r}")
    return lines


# --- values and conditions --------------------------------------------------------------------


def _string(node: ast.String) -> str:
    if not isinstance(node, ast.String):
        raise FormatError(f"expected a String node, got {type(node).__name__}")
    for part in node.parts:
        # Inside {{ }} any dotted identifier reads back as a reference, keywords included
        # ({{ TASK }}, {{ RUN }}): only code positions reserve them.
        if not isinstance(part, str) and not _dotted(part.parts):
            raise FormatError(f"reference {part.parts!r} is not a dotted identifier")
    return quote(node.parts)


def _name(name: str) -> str:
    if not _IDENTIFIER.match(name) or name in _RESERVED:
        raise FormatError(f"{name!r} cannot be a name (an identifier that is not a keyword)")
    return name


def _dotted(parts: tuple[str, ...]) -> bool:
    """A root identifier, then identifiers or list indexes."""
    return bool(parts) and bool(_IDENTIFIER.match(parts[0])) and all(
        _IDENTIFIER.match(p) or _INDEX.match(p) for p in parts[1:])


def _ref(node: ast.Ref) -> str:
    if not _dotted(node.parts):
        raise FormatError(f"reference {node.parts!r} is not a dotted identifier")
    if len(node.parts) == 1 and node.parts[0] in _RESERVED:
        raise FormatError(f"{node.parts[0]!r} is a keyword, not a reference")
    return node.name


def value(node: ast.Node) -> str:
    """Source text of a value (VAR, SET_BUDGET, directives, list items)."""
    if isinstance(node, ast.String):
        return _string(node)
    if isinstance(node, ast.Boolean):
        return "true" if node.value else "false"
    if isinstance(node, ast.Number):
        return _number(node.value)
    if isinstance(node, ast.Ref):
        return _ref(node)
    if isinstance(node, ast.ListValue):
        return "[" + ", ".join(value(item) for item in node.items) + "]"
    if isinstance(node, ast.ObjectValue):
        entries = ", ".join(f"{_key(k)}: {value(v)}" for k, v in node.entries)
        return "{" + entries + "}"
    raise FormatError(f"{type(node).__name__} is not a value")


def _number(number: int | float) -> str:
    if isinstance(number, bool):
        raise FormatError("a Number holds an int or float, not a bool")
    if isinstance(number, float):
        if not math.isfinite(number):
            raise FormatError(f"{number} has no TissLang spelling")
        return repr(number)
    return str(number)


def _key(key: str) -> str:
    if _IDENTIFIER.match(key) and key not in _RESERVED:
        return key
    return quote((key,) if key else ())


def _precedence(node: ast.Node) -> int:
    if isinstance(node, ast.Or):
        return _OR
    if isinstance(node, ast.And):
        return _AND
    if isinstance(node, ast.Not):
        return _NOT
    if isinstance(node, (ast.Compare, ast.Contains, ast.Matches, ast.IsEmpty, ast.FileExists)):
        return _CMP
    return _ATOM


def expression(node: ast.Node) -> str:
    """Source text of a condition, with the parentheses its structure needs and no others."""
    if isinstance(node, (ast.Or, ast.And)):
        word, own = (" OR ", _OR) if isinstance(node, ast.Or) else (" AND ", _AND)
        if len(node.operands) < 2:
            raise FormatError(f"{type(node).__name__} needs two or more operands")
        return word.join(_wrapped(op, own + 1) for op in node.operands)
    if isinstance(node, ast.Not):
        return "NOT " + _wrapped(node.operand, _NOT)
    if isinstance(node, ast.Compare):
        if node.op not in ("==", "!=", "<", "<=", ">", ">="):
            raise FormatError(f"unknown comparison {node.op!r}")
        return f"{_operand(node.left)} {node.op} {_operand(node.right)}"
    if isinstance(node, ast.Contains):
        word = " NOT CONTAINS " if node.negated else " CONTAINS "
        return _operand(node.left) + word + _operand(node.right)
    if isinstance(node, ast.Matches):
        return f"{_operand(node.left)} MATCHES {_operand(node.pattern)}"
    if isinstance(node, ast.IsEmpty):
        return _operand(node.operand) + (" IS_NOT_EMPTY" if node.negated else " IS_EMPTY")
    if isinstance(node, ast.FileExists):
        return f"FILE {_operand(node.path)} EXISTS"
    if isinstance(node, ast.Length):
        return "LENGTH " + _operand(node.operand)
    if isinstance(node, ast.ObjectValue):
        raise FormatError("an object cannot be used in a condition")
    return value(node)


def _wrapped(node: ast.Node, minimum: int) -> str:
    text = expression(node)
    return text if _precedence(node) >= minimum else "(" + text + ")"


def _operand(node: ast.Node) -> str:
    return _wrapped(node, _ATOM)

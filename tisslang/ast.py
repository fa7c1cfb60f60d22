"""The typed syntax tree of TissLang: one frozen dataclass per construct.

Every node carries its source span as 1-based ``line``, ``column``, ``end_line`` and
``end_column`` (the end column is one past the last character, as in Lark). Positions are
keyword-only, default to 0 (a node built by hand or by a tool) and are kept out of equality and
``repr``, the way CPython keeps ``lineno`` out of ``ast.dump``: two trees are equal when they mean
the same program, wherever it was written.

Statements (``Statement``) -- the fields are the public contract the runtime is built on:

    Program(header, body, comments)     header: dict from the ``#TISS! k=v`` first line ({} if none)
    Task(description, body | None)     body None for the plain ``TASK "d"`` line
    Setup(description | None, body)     Teardown(description | None, body)
    Step(description, body)             Run(command)
    Write(path, content, delimiter, raw)  delimiter/raw: the heredoc's name and quoting
                                        (None/False for ``WRITE "p" "text"``)
    Read(path, variable)                Assert(condition)
    PromptAgent(prompt, variable | None)  Var(name, value)          Log(message)
    If(condition, body, orelse)         orelse: () without ELSE; ``ELSE IF`` is a lone If inside it
    Try(body, handler | None)           handler: the CATCH block, None without CATCH
    Parallel(body)                      Choose(options)            Option(description, body)
    EstimateCost(body)                  SetBudget(name, value)     name canonical: TOKEN_COUNT -> TOKENS
    RequestReview(message)              Pause(message)             Mkdir(path)
    Delete(path, recursive)             Directive(name, value | None)  name without the ``@``
    Retry(attempts, delay | None, body) attempts: the number written (``tiss check`` wants a
                                        whole number, 1 or more); delay: a duration String
    For(variable, source, value, body)  source: ``"value"`` (a list), ``"files"`` (value is the
                                        glob String) or ``"lines"`` (the lines of a string)

Every ``body`` / ``orelse`` / ``handler`` is a tuple of statements. Descriptions, paths, commands,
messages and prompts are ``String`` nodes.

Values (``Value``: VAR, SET_BUDGET, directives, list items, operands):

    String(parts)     parts: a tuple of ``str`` (literal text, escapes already decoded) and
                      ``Ref`` (a ``{{ ref }}`` interpolation), decided at parse time, so ``\\{``
                      stays a literal brace. Adjacent literals are merged, empty ones dropped:
                      the empty string is ``String(())``. Single-quoted strings and
                      ``<<'RAW'`` heredocs never interpolate.
    Number(value)     int or float      Boolean(value)
    ListValue(items)  ObjectValue(entries)  entries: tuple of (key, Value) pairs, in source order
    Ref(parts)        a dotted reference: ``LAST_RUN.EXIT_CODE`` is Ref(("LAST_RUN", "EXIT_CODE"));
                      a part after the first may be digits, a list index (``files.0``)

Conditions (``Expr``: ASSERT, IF), from low to high precedence:

    Or(operands)  And(operands)         n-ary, two or more operands, left to right
    Not(operand)
    Compare(left, op, right)            op one of == != < <= > >=
    Contains(left, right, negated)      ``a CONTAINS b`` / ``a NOT CONTAINS b``
    Matches(left, pattern)              ``a MATCHES "regex"`` (Python ``re.search``)
    IsEmpty(operand, negated)           ``a IS_EMPTY`` / ``a IS_NOT_EMPTY``
    FileExists(path)                    ``FILE "path" EXISTS``
    Length(operand)                     ``LENGTH x``: the number of items or characters (an
                                        operand, so ``LENGTH x > 0`` compares it)
    or a bare Value (its truthiness)

Comments are kept on ``Program.comments`` (``Comment(text)``, text after the ``#``) so ``tiss fmt``
can put them back; they are never part of a body, so interpreters never see them.

``to_dict()`` gives ``{"type": ClassName, <fields>..., "line": .., "column": .., ...}``;
``to_json(node)`` is its JSON text. ``NodeVisitor`` dispatches ``visit_<ClassName>`` like
CPython's ``ast.NodeVisitor``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, Iterator, Union

_POSITION_FIELDS = ("line", "column", "end_line", "end_column")
# Where a continuation keyword was written (If.else_line, Try.catch_line): layout the formatter
# uses to keep a comment on the `} ELSE {` line there. Like positions, out of equality and repr,
# and not fields of the tree (to_dict, dump and walkers skip them).
_LAYOUT_FIELDS = ("else_line", "catch_line")


@dataclass(frozen=True)
class Node:
    """Base of every node: the source span, kept out of equality and repr."""

    line: int = field(default=0, compare=False, repr=False, kw_only=True)
    column: int = field(default=0, compare=False, repr=False, kw_only=True)
    end_line: int = field(default=0, compare=False, repr=False, kw_only=True)
    end_column: int = field(default=0, compare=False, repr=False, kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``{"type": ClassName, ...fields, ...positions}``."""
        out: dict[str, Any] = {"type": type(self).__name__}
        for name in field_names(type(self)):
            value = getattr(self, name)
            # Nodes and tuples of nodes are handled inline: two frames per tree level, so the
            # deepest tree the parser accepts stays far from the recursion limit.
            if isinstance(value, Node):
                out[name] = value.to_dict()
            elif isinstance(value, tuple):
                out[name] = [v.to_dict() if isinstance(v, Node) else _plain(v) for v in value]
            else:
                out[name] = _plain(value)
        for name in _POSITION_FIELDS:
            out[name] = getattr(self, name)
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)


def _plain(value: Any) -> Any:
    if isinstance(value, Node):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def to_json(node: Node, indent: int | None = 2) -> str:
    """The node as JSON text (see ``Node.to_dict``)."""
    return node.to_json(indent=indent)


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def field_names(cls: type) -> tuple[str, ...]:
    """The non-position field names of a node class, in order (cached: walks call it a lot)."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = tuple(f.name for f in fields(cls)
                      if f.name not in _POSITION_FIELDS and f.name not in _LAYOUT_FIELDS)
        _FIELD_NAMES[cls] = names
    return names


def iter_child_nodes(node: Node) -> Iterator[Node]:
    """The direct child nodes of ``node``, in field order (like ``ast.iter_child_nodes``)."""
    for name in field_names(type(node)):
        value = getattr(node, name)
        if isinstance(value, Node):
            yield value
        elif isinstance(value, tuple):
            for item in value:
                if isinstance(item, Node):
                    yield item
                elif isinstance(item, tuple):  # ObjectValue entries: (key, value)
                    for inner in item:
                        if isinstance(inner, Node):
                            yield inner


def dump(node: Node, width: int = 96, indent: str = "    ") -> str:
    """A readable multi-line view of a tree (what ``tiss parse`` prints without ``--json``).

    A node that fits in ``width`` columns prints as its ``repr``; a bigger one prints one field
    per line, its statement lists one statement per line, each with its ``line:col``.
    """
    lines: list[str] = []

    def put(value: Any, prefix: str, level: int, where: str = "") -> None:
        pad = indent * level
        text = repr(value)
        if len(pad) + len(prefix) + len(text) + len(where) <= width or not isinstance(
                value, (Node, tuple)) or not value:
            lines.append(f"{pad}{prefix}{text},{where}" if level else f"{prefix}{text}{where}")
            return
        if isinstance(value, tuple):
            lines.append(f"{pad}{prefix}(")
            for item in value:
                put(item, "", level + 1, f"  # {item.line}:{item.column}"
                    if isinstance(item, Node) and item.line else "")
            lines.append(f"{pad}),")
            return
        lines.append(f"{pad}{prefix}{type(value).__name__}({where}")
        for name in field_names(type(value)):
            put(getattr(value, name), f"{name}=", level + 1)
        lines.append(f"{pad})" + ("," if level else ""))

    put(node, "", 0)
    return "\n".join(lines)


class NodeVisitor:
    """Walks a tree calling ``visit_<ClassName>(node)``; ``generic_visit`` visits the children."""

    def visit(self, node: Node) -> Any:
        method = getattr(self, "visit_" + type(node).__name__, self.generic_visit)
        return method(node)

    def generic_visit(self, node: Node) -> None:
        for child in iter_child_nodes(node):
            self.visit(child)


# --- values and references --------------------------------------------------------------------


@dataclass(frozen=True)
class Ref(Node):
    """A dotted reference to a variable or built-in: ``LAST_RUN.EXIT_CODE``."""

    parts: tuple[str, ...]

    @property
    def name(self) -> str:
        """The reference as written: ``"LAST_RUN.EXIT_CODE"``."""
        return ".".join(self.parts)


@dataclass(frozen=True)
class String(Node):
    """A string: literal text and ``{{ ref }}`` interpolations, in order (see module docstring)."""

    parts: tuple[Union[str, Ref], ...]

    @classmethod
    def of(cls, text: str, **position: int) -> "String":
        """A literal string with no interpolation."""
        return cls((text,) if text else (), **position)

    @property
    def is_literal(self) -> bool:
        """True when the string holds no interpolation."""
        return all(isinstance(p, str) for p in self.parts)

    @property
    def text(self) -> str:
        """The text with each interpolation written back as ``{{ ref }}`` (for messages)."""
        return "".join(p if isinstance(p, str) else "{{ " + p.name + " }}" for p in self.parts)


@dataclass(frozen=True)
class Number(Node):
    value: Union[int, float]


@dataclass(frozen=True)
class Boolean(Node):
    value: bool


@dataclass(frozen=True)
class ListValue(Node):
    items: tuple["Value", ...]


@dataclass(frozen=True)
class ObjectValue(Node):
    """``{key: value, ...}``; keys were identifiers or strings in the source."""

    entries: tuple[tuple[str, "Value"], ...]


Value = Union[String, Number, Boolean, ListValue, ObjectValue, Ref]

# --- conditions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Compare(Node):
    """``left op right`` with op one of ``== != < <= > >=``."""

    left: "Expr"
    op: str
    right: "Expr"


@dataclass(frozen=True)
class Contains(Node):
    """``left CONTAINS right`` (substring or list membership); ``negated`` for NOT CONTAINS."""

    left: "Expr"
    right: "Expr"
    negated: bool = False


@dataclass(frozen=True)
class Matches(Node):
    """``left MATCHES pattern``: Python ``re.search(pattern, left)``."""

    left: "Expr"
    pattern: "Expr"


@dataclass(frozen=True)
class IsEmpty(Node):
    """``operand IS_EMPTY``; ``negated`` for ``IS_NOT_EMPTY``."""

    operand: "Expr"
    negated: bool = False


@dataclass(frozen=True)
class FileExists(Node):
    """``FILE path EXISTS``: the path (inside the workspace) exists."""

    path: "Expr"


@dataclass(frozen=True)
class Length(Node):
    """``LENGTH operand``: how many items a list (or keys an object, characters a string) has."""

    operand: "Expr"


@dataclass(frozen=True)
class Not(Node):
    operand: "Expr"


@dataclass(frozen=True)
class And(Node):
    operands: tuple["Expr", ...]


@dataclass(frozen=True)
class Or(Node):
    operands: tuple["Expr", ...]


Expr = Union[Value, Compare, Contains, Matches, IsEmpty, FileExists, Length, Not, And, Or]

# --- statements -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comment(Node):
    """A ``#`` comment; ``text`` is everything after the ``#`` (trailing spaces removed)."""

    text: str


@dataclass(frozen=True)
class Task(Node):
    description: String
    body: tuple["Statement", ...] | None = None


@dataclass(frozen=True)
class Setup(Node):
    description: String | None
    body: tuple["Statement", ...]


@dataclass(frozen=True)
class Teardown(Node):
    description: String | None
    body: tuple["Statement", ...]


@dataclass(frozen=True)
class Step(Node):
    description: String
    body: tuple["Statement", ...]


@dataclass(frozen=True)
class Run(Node):
    command: String


@dataclass(frozen=True)
class Write(Node):
    """WRITE: ``content`` is the heredoc body (or the string); ``delimiter`` None for a string."""

    path: String
    content: String
    delimiter: str | None = None
    raw: bool = False


@dataclass(frozen=True)
class Read(Node):
    path: String
    variable: str


@dataclass(frozen=True)
class Assert(Node):
    condition: Expr


@dataclass(frozen=True)
class PromptAgent(Node):
    prompt: String
    variable: str | None = None


@dataclass(frozen=True)
class Var(Node):
    name: str
    value: Value


@dataclass(frozen=True)
class Log(Node):
    message: String


@dataclass(frozen=True)
class If(Node):
    condition: Expr
    body: tuple["Statement", ...]
    orelse: tuple["Statement", ...] = ()
    else_line: int = field(default=0, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True)
class Try(Node):
    body: tuple["Statement", ...]
    handler: tuple["Statement", ...] | None = None
    catch_line: int = field(default=0, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True)
class Parallel(Node):
    body: tuple["Statement", ...]


@dataclass(frozen=True)
class Option(Node):
    description: String
    body: tuple["Statement", ...]


@dataclass(frozen=True)
class Choose(Node):
    options: tuple[Option, ...]


@dataclass(frozen=True)
class EstimateCost(Node):
    body: tuple["Statement", ...]


@dataclass(frozen=True)
class SetBudget(Node):
    name: str
    value: Value


@dataclass(frozen=True)
class RequestReview(Node):
    message: String


@dataclass(frozen=True)
class Pause(Node):
    message: String


@dataclass(frozen=True)
class Mkdir(Node):
    path: String


@dataclass(frozen=True)
class Delete(Node):
    path: String
    recursive: bool = False


@dataclass(frozen=True)
class Directive(Node):
    """``@name value``: applies to the rest of its block and the blocks inside it."""

    name: str
    value: Value | None = None


@dataclass(frozen=True)
class Retry(Node):
    """``RETRY n [DELAY "2s"] { ... }``: the body again after a failure, up to n attempts."""

    attempts: Union[int, float]
    delay: String | None
    body: tuple["Statement", ...]


FOR_SOURCES = ("value", "files", "lines")
"""What ``For.source`` may be: ``IN value``, ``IN FILES "glob"``, ``IN LINES value``."""


@dataclass(frozen=True)
class For(Node):
    """``FOR name IN value { ... }`` (or ``IN FILES "glob"``, ``IN LINES value``)."""

    variable: str
    source: str
    value: Value
    body: tuple["Statement", ...]


Statement = Union[
    Task, Setup, Teardown, Step, Run, Write, Read, Assert, PromptAgent, Var, Log, If, Try,
    Parallel, Choose, EstimateCost, SetBudget, RequestReview, Pause, Mkdir, Delete, Directive,
    Retry, For,
]


@dataclass(frozen=True)
class Program(Node):
    """A whole script: the header dict, the top-level statements and every comment."""

    header: dict[str, str] = field(default_factory=dict)
    body: tuple[Statement, ...] = ()
    comments: tuple[Comment, ...] = ()


def __getattr__(name: str) -> Any:
    # BLOCK_FIELDS (the fields that hold nested statements) is the statement table's, which
    # imports this module; it is looked up there on first use rather than written twice.
    if name == "BLOCK_FIELDS":
        from .statements import BLOCK_FIELDS

        return BLOCK_FIELDS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

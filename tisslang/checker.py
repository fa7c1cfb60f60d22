"""``check(program)``: static checks of a parsed script, as a list of ``Diagnostic``.

Errors (the script would fail, or does not mean what it says):
  - a reference to a variable that nothing in the script can have set (no VAR, READ ... AS,
    PROMPT_AGENT ... INTO of that name, not a built-in, not passed in ``known``);
  - a field a built-in does not have (``LAST_RUN.EXITCODE``);
  - a built-in name (``LAST_RUN``, ``WORKSPACE``...) used as a target of VAR, READ or INTO;
  - an unknown budget name, or a literal budget value of the wrong kind;
  - two children of one PARALLEL block that set the same variable;
  - a FOR loop variable or ATTEMPT used outside the FOR / RETRY block that sets it (they exist
    only inside it: the statement table's ``scoped_sets`` and ``scoped_builtins``);
  - ``RETRY 0`` (or any attempt count that is not a whole number, 1 or more), a literal DELAY
    that is not a duration, ``FOR x IN`` a literal that is not a list.
Warnings (legal, probably a mistake):
  - an unknown directive (with the closest known one);
  - statements after an ``ASSERT false`` in the same block (they never run);
  - ``{{`` in an interpolating heredoc that is not a ``{{ ref }}`` interpolation.
  - a RUN whose result nothing reads: no statement after it in its block, up to the next one
    holding a RUN, reads ``LAST_RUN`` (not reported under ``@strict``, where a failing RUN
    fails by itself).

Each finding has a stable rule code (``RULES``: ``T001`` undefined variable ...); a
``# tiss: ignore[T001]`` comment on the finding's line silences it (``# tiss: ignore`` every
code on that line).

The walk (``statements.walk``) is iterative, so a tree of any depth is checked without
recursion; which statements set variables and hold blocks comes from the statement table.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Iterable, Iterator

from . import ast, directives, statements
from .formatter import value as value_text
from .statements import KEYWORDS, walk

# The fields docs/tisslang.md §6 lists, plus the ones the runtime also sets and docs/running.md
# describes: whether a RUN's output was cut at the capture cap, why the model stopped, and how
# many RUNs an estimate could not bound. A field missing here would be a false error in check.
BUILTINS: dict[str, tuple[str, ...]] = {
    "LAST_RUN": ("EXIT_CODE", "STDOUT", "STDERR", "EXECUTION_TIME", "COMMAND", "TIMED_OUT",
                 "STDOUT_TRUNCATED", "STDERR_TRUNCATED"),
    "LAST_ERROR": ("MESSAGE", "KIND", "LINE", "REPORT"),
    "LAST_PROMPT": ("TEXT", "PROMPT_TOKENS", "COMPLETION_TOKENS", "FINISH_REASON"),
    "LAST_ESTIMATE": ("API_CALLS", "TOKENS", "SECONDS", "UNBOUNDED_RUNS", "UNBOUNDED_LOOPS"),
    "LAST_REVIEW": ("APPROVED", "COMMENT"),
    "WORKSPACE": (),
    "TASK": ("DESCRIPTION",),
    "STEP": ("DESCRIPTION",),
    "ATTEMPT": (),
}
# Built-ins that exist only inside the block of the statement that sets them (RETRY's ATTEMPT).
SCOPED_BUILTINS: frozenset[str] = frozenset(
    name for spec in statements.STATEMENTS for name in spec.scoped_builtins)
KNOWN_DIRECTIVES = directives.NAMES  # the directive table's (tisslang/directives.py)
BUDGETS = ("EXECUTION_TIME", "API_CALLS", "TOKENS")
_LOOSE_BRACES = re.compile(r"\{\{")


@dataclass(frozen=True)
class Rule:
    """A kind of finding: its stable code (``T001``), severity and a short name."""

    code: str
    severity: str
    name: str


# Stable codes, as ruff's: T0xx are errors, T1xx warnings. A code is never reused for another
# meaning; docs/tisslang.md's table of rules is kept equal to this one by a test.
RULES: dict[str, Rule] = {rule.code: rule for rule in (
    Rule("T001", "error", "undefined variable"),
    Rule("T002", "error", "unknown field of a built-in"),
    Rule("T003", "error", "built-in name set"),
    Rule("T004", "error", "keyword used as a variable"),
    Rule("T005", "error", "loop variable or ATTEMPT outside its block"),
    Rule("T006", "error", "unknown budget"),
    Rule("T007", "error", "budget value of the wrong kind"),
    Rule("T008", "error", "PARALLEL children set the same variable"),
    Rule("T009", "error", "RETRY count not a whole number, 1 or more"),
    Rule("T010", "error", "DELAY not a duration"),
    Rule("T011", "error", "FOR over a value that is not a list (or IN LINES over a non-string)"),
    Rule("T101", "warning", "unknown directive"),
    Rule("T102", "warning", "unreachable statement"),
    Rule("T103", "warning", "loose {{ in an interpolating heredoc"),
    Rule("T104", "warning", "RUN result never checked"),
)}
# ``# tiss: ignore`` (every finding on its line) or ``# tiss: ignore[T001, T102]``.
_SUPPRESS = re.compile(r"\btiss:\s*ignore(?:\[([A-Za-z0-9,\s]*)\])?")


@dataclass(frozen=True)
class Diagnostic:
    """One finding: ``severity`` is ``"error"`` or ``"warning"``; 1-based line and column;
    ``code`` its rule in ``RULES`` (``T001``)."""

    severity: str
    line: int
    column: int
    message: str
    code: str = ""

    def render(self, path: str = "<string>") -> str:
        code = f" {self.code}" if self.code else ""
        return f"{path}:{self.line}:{self.column}: {self.severity}:{code} {self.message}"


def suppressed(program: ast.Program) -> dict[int, frozenset[str] | None]:
    """The ``# tiss: ignore[...]`` comments of a script: line -> the codes it silences there
    (``None``: every code)."""
    found: dict[int, frozenset[str] | None] = {}
    for comment in program.comments:
        match = _SUPPRESS.search(comment.text)
        if match is None:
            continue
        if match.group(1) is None:
            found[comment.line] = None
        else:
            codes = frozenset(c.strip().upper() for c in match.group(1).split(",") if c.strip())
            previous = found.get(comment.line, frozenset())
            found[comment.line] = None if previous is None else previous | codes
    return found


def check(program: ast.Program, *, known: Iterable[str] = ()) -> list[Diagnostic]:
    """Static diagnostics for ``program``, sorted by position.

    ``known`` names variables set from outside the script (``tiss run --var NAME=...``).
    """
    found: list[Diagnostic] = []
    nodes = list(walk(program))
    # Under @strict a failing RUN fails its step by itself: its result is checked (T104).
    strict = any(isinstance(n, ast.Directive) and n.name == "strict"
                 and (n.value is None or getattr(n.value, "value", None) is True) for n in nodes)
    defined = set(known) | (set(BUILTINS) - SCOPED_BUILTINS)
    scoped: dict[str, ast.Node] = {}  # loop variables and ATTEMPT -> the first statement binding it
    for node in nodes:
        target = _target(node)
        if target is not None:
            defined.add(target)
        for name in _scoped_names(node):
            scoped.setdefault(name, node)
        for name in filter(None, (target, *_scoped_targets(node))):
            if name in BUILTINS:
                found.append(_error("T003", node, f"{name} is built in and cannot be set; choose "
                                          "another name"))
    for ref, bound in _refs_in_scope(program):
        found.extend(_check_ref(ref, defined | bound, scoped))
    for node in nodes:
        if isinstance(node, ast.Retry):
            found.extend(_check_retry(node))
        elif isinstance(node, ast.For):
            found.extend(_check_for(node))
        elif isinstance(node, ast.Directive):
            found.extend(_check_directive(node))
        elif isinstance(node, ast.SetBudget):
            found.extend(_check_budget(node))
        elif isinstance(node, ast.Parallel):
            found.extend(_check_parallel(node))
        elif isinstance(node, ast.Write) and node.delimiter and not node.raw:
            found.extend(_check_heredoc(node))
        for _, body in statements.blocks(node):
            found.extend(_check_unreachable(body))
    if not strict:
        found.extend(_check_unchecked_runs(program.body))
    silenced = suppressed(program)
    found = [d for d in found if d.line not in silenced
             or (silenced[d.line] is not None and d.code not in silenced[d.line])]
    found.sort(key=lambda d: (d.line, d.column, d.message))
    return found


def _error(code: str, node: ast.Node, message: str) -> Diagnostic:
    return Diagnostic("error", node.line, node.column, message, code)


def _warning(code: str, node: ast.Node, message: str) -> Diagnostic:
    return Diagnostic("warning", node.line, node.column, message, code)


def _target(node: ast.Node) -> str | None:
    """The variable a statement sets for what follows (its table entry's ``sets`` field, less
    ``scoped_sets``, which exist only inside its blocks), if any."""
    spec = statements.BY_NODE.get(type(node))
    if spec is None:
        return None
    for name in spec.sets:
        if name in spec.scoped_sets:
            continue
        target = getattr(node, name)
        if target is not None:
            return target
    return None


def _scoped_targets(node: ast.Node) -> tuple[str, ...]:
    """The variables a statement sets only inside its blocks (FOR's loop variable)."""
    spec = statements.BY_NODE.get(type(node))
    if spec is None:
        return ()
    return tuple(getattr(node, name) for name in spec.scoped_sets if getattr(node, name))


def _scoped_names(node: ast.Node) -> tuple[str, ...]:
    """Every name that exists only inside the statement's blocks (variables and built-ins)."""
    spec = statements.BY_NODE.get(type(node))
    if spec is None:
        return ()
    return _scoped_targets(node) + spec.scoped_builtins


def _refs_in_scope(program: ast.Program) -> Iterator[tuple[ast.Ref, frozenset[str]]]:
    """Every reference with the scoped names bound where it stands (iterative, any depth).

    A FOR's loop variable and RETRY's ATTEMPT are bound in the statement's blocks only, so
    ``FOR x IN x.items`` reads the outer ``x``.
    """
    stack: list[tuple[object, frozenset[str]]] = [(program, frozenset())]
    while stack:
        node, bound = stack.pop()
        if isinstance(node, ast.Ref):
            yield node, bound
            continue
        if not isinstance(node, ast.Node):
            continue
        spec = statements.BY_NODE.get(type(node))
        inner = bound | set(_scoped_names(node)) if spec is not None else bound
        children: list[tuple[object, frozenset[str]]] = []
        for name in ast.field_names(type(node)):
            value = getattr(node, name)
            scope = inner if spec is not None and name in spec.block_fields else bound
            items = value if isinstance(value, tuple) else (value,)
            for item in items:
                if isinstance(item, tuple):  # ObjectValue entries: (key, value)
                    children.extend((part, scope) for part in item if isinstance(part, ast.Node))
                elif isinstance(item, ast.Node):
                    children.append((item, scope))
        stack.extend(reversed(children))


def _suggest(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _check_ref(node: ast.Ref, defined: set[str] | frozenset[str],
               scoped: dict[str, ast.Node]) -> Iterator[Diagnostic]:
    head = node.parts[0]
    if head in KEYWORDS and head not in BUILTINS:
        yield _error("T004", node, f"{head!r} is a keyword, so no variable has that name; choose "
                           "another name for the variable")
        return
    if head not in defined and head in scoped:
        owner = scoped[head]
        if isinstance(owner, ast.Retry):
            yield _error("T005", node, f"{head} is set only inside a RETRY block (the attempt number); "
                               "use it inside the block")
        else:
            keyword = statements.BY_NODE[type(owner)].keyword
            yield _error("T005", node, f"{head!r} is the loop variable of the {keyword} at line "
                               f"{owner.line}: it is defined only inside that {keyword}'s "
                               "block; copy it with VAR inside the block to keep it")
        return
    if head not in defined:
        yield _error("T001", node, f"undefined variable {head!r}: nothing in this script sets it (set it "
                           "with VAR, READ ... AS or PROMPT_AGENT ... INTO, or pass --var "
                           f"{head}=...){_suggest(head, defined)}")
        return
    fields = BUILTINS.get(head)
    if fields is not None and len(node.parts) > 1 and node.parts[1] not in fields:
        have = ", ".join(fields) if fields else "no fields"
        yield _error("T002", node, f"{head} has no field {node.parts[1]!r} (it has {have})"
                           f"{_suggest(node.parts[1], fields)}")


def _reads_last_run(node: ast.Node) -> bool:
    return any(isinstance(n, ast.Ref) and n.parts[0] == "LAST_RUN" for n in walk(node))


# Blocks whose end hands LAST_RUN on to the statements after their statement: a RUN last in
# an IF branch is checked by an ASSERT after the IF. A STEP (and so each PARALLEL child) ends
# its own story, and so do TASK, SETUP and TEARDOWN.
_FLOWS_ON = (ast.If, ast.Try, ast.Retry, ast.For, ast.Choose, ast.EstimateCost)


def _check_unchecked_runs(body: tuple[ast.Node, ...], after: tuple[ast.Node, ...] = ()) -> Iterator[Diagnostic]:
    """T104: a RUN whose result nothing reads: the statements that run after it (the rest of
    its block, then of the blocks around it that flow on), up to the next statement that holds
    a RUN (which replaces LAST_RUN), never look at LAST_RUN."""
    for index, stmt in enumerate(body):
        rest = body[index + 1:] + after
        if isinstance(stmt, ast.Run) and not _checked_later(rest):
            yield _warning("T104", stmt, "the result of this RUN is never checked: a failing command "
                           "goes unnoticed; read LAST_RUN.EXIT_CODE after it (ASSERT LAST_RUN.EXIT_CODE "
                           "== 0), or put @strict true in the script so a failing RUN fails its step")
        onward = rest if isinstance(stmt, _FLOWS_ON) else ()
        for _, inner in statements.blocks(stmt):
            if isinstance(stmt, ast.Choose):  # each OPTION's block flows on past the CHOOSE
                for option in inner:
                    for _, option_body in statements.blocks(option):
                        yield from _check_unchecked_runs(option_body, onward)
            else:
                yield from _check_unchecked_runs(inner, onward)


def _checked_later(rest: tuple[ast.Node, ...]) -> bool:
    for later in rest:
        if _reads_last_run(later):
            return True
        if any(isinstance(n, ast.Run) for n in walk(later)):
            return False
    return False


def _check_directive(node: ast.Directive) -> Iterator[Diagnostic]:
    if node.name not in KNOWN_DIRECTIVES:
        known = ["@" + d for d in KNOWN_DIRECTIVES]
        yield _warning("T101", node, f"unknown directive @{node.name}{_suggest('@' + node.name, known)}"
                             f" (known: {', '.join('@' + d for d in KNOWN_DIRECTIVES)})")


def _check_budget(node: ast.SetBudget) -> Iterator[Diagnostic]:
    if node.name not in BUDGETS:
        yield _error("T006", node, f"unknown budget {node.name!r}{_suggest(node.name, BUDGETS)} "
                           f"(budgets: {', '.join(BUDGETS)}, TOKEN_COUNT for TOKENS)")
        return
    value = node.value
    if isinstance(value, ast.Ref):
        return  # known only when the script runs
    if node.name == "EXECUTION_TIME":
        ok = (isinstance(value, ast.Number) and value.value >= 0) or (
            isinstance(value, ast.String) and value.is_literal and directives.DURATION.match(value.text))
        if not ok:
            yield _error("T007", value, 'EXECUTION_TIME is a duration: seconds, or a string like "30s", '
                                '"5m", "500ms"')
    elif not (isinstance(value, ast.Number) and isinstance(value.value, int) and value.value >= 0):
        yield _error("T007", value, f"{node.name} is a count: a whole number, 0 or more")


def _sets(node: ast.Node) -> dict[str, ast.Node]:
    names: dict[str, ast.Node] = {}
    for inner in walk(node):
        target = _target(inner)
        if target is not None:
            names.setdefault(target, inner)
    return names


def _check_parallel(node: ast.Parallel) -> Iterator[Diagnostic]:
    owner: dict[str, ast.Node] = {}
    for child in node.body:
        for name, setter in _sets(child).items():
            if name in owner:
                yield _error("T008", setter, f"two PARALLEL children set {name!r} (also at line "
                                     f"{owner[name].line}); their results cannot be merged")
            else:
                owner[name] = setter


def _check_retry(node: ast.Retry) -> Iterator[Diagnostic]:
    attempts = node.attempts
    if isinstance(attempts, float) and attempts.is_integer():
        attempts = int(attempts)
    if not isinstance(attempts, int) or attempts < 1:
        yield _error("T009", node, f"RETRY {node.attempts} never runs its block as meant: the number "
                           "of attempts is a whole number, 1 or more (RETRY 3 runs it up to "
                           "3 times)")
    delay = node.delay
    if delay is not None and delay.is_literal and not directives.DURATION.match(delay.text):
        yield _error("T010", delay, f"DELAY {delay.text!r} is not a duration; write seconds or a "
                            'string like "2s", "500ms", "1m"')


def _check_for(node: ast.For) -> Iterator[Diagnostic]:
    value = node.value
    if node.source == "value" and isinstance(value, (ast.String, ast.Number, ast.Boolean,
                                                     ast.ObjectValue)):
        hint = " (for the lines of a string write IN LINES)" if isinstance(value, ast.String) else ""
        yield _error("T011", value, f"FOR ... IN needs a list, not {type(value).__name__.lower()} "
                            f"{_literal(value)}{hint}")
    elif node.source == "lines" and isinstance(value, (ast.Number, ast.Boolean, ast.ListValue,
                                                       ast.ObjectValue)):
        yield _error("T011", value, "FOR ... IN LINES needs a string; for the items of a list write IN "
                            "without LINES")


def _literal(node: ast.Node) -> str:
    try:
        return value_text(node)
    except ValueError:
        return ""


def _check_heredoc(node: ast.Write) -> Iterator[Diagnostic]:
    for part in node.content.parts:
        if isinstance(part, str) and _LOOSE_BRACES.search(part):
            yield _warning("T103", node, "this heredoc has '{{' that is not an interpolation "
                                 "({{ name }}); for literal braces use <<'"
                                 f"{node.delimiter}'")
            return


def _check_unreachable(body: tuple) -> Iterator[Diagnostic]:
    for i, stmt in enumerate(body[:-1]):
        if isinstance(stmt, ast.Assert) and isinstance(stmt.condition, ast.Boolean) \
                and stmt.condition.value is False:
            yield _warning("T102", body[i + 1], f"unreachable: the ASSERT false at line {stmt.line} "
                                        "always fails before this runs")
            return

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

One pass over the statements (``_Scan``, iterative, so a tree of any depth is checked without
recursion) gathers what every rule needs: setters, scoped names and where they are bound, the
references with the names bound where each stands, which statements hold a RUN or read
LAST_RUN; the rules that need the whole script (T001, T005, T008, T104) run on that afterwards.
Which statements set variables and hold blocks comes from the statement table.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from . import ast, directives, statements
from .formatter import value as value_text
from .statements import KEYWORDS

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
    scan = _Scan(set(known) | (set(BUILTINS) - SCOPED_BUILTINS))
    scan.run(program)
    found = scan.found
    found.extend(scan.reference_findings())
    found.extend(scan.parallel_findings())
    # Under @strict a failing RUN fails its step by itself: its result is checked (T104).
    if not scan.strict:
        found.extend(scan.unchecked_runs(program.body))
    silenced = suppressed(program)
    if silenced:
        found = [d for d in found if d.line not in silenced
                 or (silenced[d.line] is not None and d.code not in silenced[d.line])]
    found.sort(key=lambda d: (d.line, d.column, d.message))
    return found


def _error(code: str, node: ast.Node, message: str) -> Diagnostic:
    return Diagnostic("error", node.line, node.column, message, code)


def _warning(code: str, node: ast.Node, message: str) -> Diagnostic:
    return Diagnostic("warning", node.line, node.column, message, code)


_NO_REFS = frozenset({ast.Number, ast.Boolean})  # values with nothing under them
_EMPTY: frozenset[str] = frozenset()


def _refs_under(node: ast.Node, out: list[ast.Ref]) -> None:
    """Append every reference in ``node`` (a value, a condition, a string) to ``out``."""
    stack = [node]
    while stack:
        node = stack.pop()
        kind = node.__class__
        if kind is ast.Ref:
            out.append(node)
        elif kind is ast.String:  # the common case: literal text and {{ ref }} parts
            for part in node.parts:
                if part.__class__ is not str:
                    stack.append(part)
        elif kind not in _NO_REFS:
            stack.extend(ast.iter_child_nodes(node))


class _Block:
    """One statement block met in the scan (a block of a statement repeated elsewhere in a tree
    built by hand is met once per place): the names bound in it (a FOR's loop variable, RETRY's
    ATTEMPT, and those of the blocks around it), the statement that holds it (``owner``) and
    the block that statement stands in (``outer``), and the PARALLEL children it is part of
    (each child's first setter of each variable, in source order)."""

    __slots__ = ("bound", "refs", "owner", "outer", "parallel_sets", "marked")

    def __init__(self, bound: frozenset[str], refs: list[ast.Ref], owner: ast.Node,
                 outer: _Block | None, parallel_sets: tuple[dict[str, ast.Node], ...]) -> None:
        self.bound = bound
        self.refs = refs  # the references in its statements (not in their blocks)
        self.owner = owner
        self.outer = outer
        self.parallel_sets = parallel_sets
        self.marked: tuple[str, ...] = ()  # "runs", "reads": see _Scan._mark


class _Scan:
    """One pass over a program, statement by statement in source order (iterative, so any
    depth), that gathers what the rules need: the variables set anywhere, the scoped names and
    the first statement binding each, every reference with the scoped names bound where it
    stands, which statements hold a RUN or read LAST_RUN (T104), the setters of each PARALLEL
    child (T008), ``@strict``, and the findings a statement gives alone."""

    def __init__(self, defined: set[str]) -> None:
        self.defined = defined
        self.scoped: dict[str, ast.Node] = {}  # loop variables and ATTEMPT -> the first binder
        self.refs: dict[frozenset[str], list[ast.Ref]] = {}  # bound names -> references there
        self.found: list[Diagnostic] = []
        self.strict = False
        # id() of every statement that holds a RUN / reads LAST_RUN (itself or anything under it)
        self.runs: set[int] = set()
        self.reads: set[int] = set()
        self.parallels: list[list[dict[str, ast.Node]]] = []  # per PARALLEL, its children's sets

    def run(self, program: ast.Program) -> None:
        self.found.extend(_check_unreachable(program.body))
        top = _Block(_EMPTY, self.refs.setdefault(_EMPTY, []), program, None, ())
        # Each entry: the statements of a block still to take in, and that block.
        stack: list[tuple[Iterator[ast.Node], _Block]] = [(iter(program.body), top)]
        while stack:
            pending, block = stack[-1]
            for node in pending:
                plan = _PLANS.get(node.__class__)
                if plan is None:  # not a statement (a tree built by hand): its references
                    refs: list[ast.Ref] = []
                    _refs_under(node, refs)
                    self._take_refs(refs, node, block)
                    continue
                inner = self._statement(node, plan, block)
                if inner:  # its blocks come next, in source order, then the rest of this one
                    stack.extend(reversed(inner))
                    break
            else:
                stack.pop()

    def _statement(self, node: ast.Node, plan: _Plan,
                   block: _Block) -> list[tuple[Iterator[ast.Node], _Block]]:
        """Take in one statement (not its blocks); the blocks to scan next, in source order."""
        target = None
        for name in plan.targets:
            target = getattr(node, name)
            if target is not None:
                break
        if target is not None:
            self.defined.add(target)
            for sets in block.parallel_sets:
                sets.setdefault(target, node)
            if target in BUILTINS:
                self.found.append(_builtin_set(node, target))
        scoped: tuple[str, ...] = ()
        if plan.scoping:
            scoped = tuple(name for name in (getattr(node, f) for f in plan.scoped_targets) if name)
            for name in scoped:
                if name in BUILTINS:
                    self.found.append(_builtin_set(node, name))
            scoped += plan.scoped_builtins
            for name in scoped:
                self.scoped.setdefault(name, node)
        refs: list[ast.Ref] = []
        for name in plan.values:
            value = getattr(node, name)
            if value.__class__ is ast.String:  # most values: text and {{ ref }} parts
                for part in value.parts:
                    if part.__class__ is ast.Ref:
                        refs.append(part)
                    elif part.__class__ is not str:
                        _refs_under(part, refs)
            elif isinstance(value, ast.Node):
                _refs_under(value, refs)
        if refs:
            self._take_refs(refs, node, block)
        if node.__class__ is ast.Run:
            self._mark("runs", node, block)
        elif node.__class__ is ast.Directive and node.name == "strict" and (
                node.value is None or getattr(node.value, "value", None) is True):
            self.strict = True
        if plan.check is not None:
            self.found.extend(plan.check(node))
        if not plan.blocks:
            return []
        bound = block.bound | frozenset(scoped) if scoped else block.bound
        inner_refs = self.refs.setdefault(bound, [])
        inner = []
        for body in _bodies(node):
            self.found.extend(_check_unreachable(body))
            if node.__class__ is ast.Parallel:  # each child gathers its own setters (T008)
                children = [{} for _ in body]
                self.parallels.append(children)
                inner.extend((iter((child,)), _Block(bound, inner_refs, node, block,
                                                     block.parallel_sets + (sets,)))
                             for child, sets in zip(body, children))
            else:
                inner.append((iter(body), _Block(bound, inner_refs, node, block,
                                                 block.parallel_sets)))
        return inner

    def _take_refs(self, refs: list[ast.Ref], node: ast.Node, block: _Block) -> None:
        """Keep the references of ``node`` (not of its blocks), which stands in ``block``."""
        block.refs.extend(refs)
        if any(ref.parts[0] == "LAST_RUN" for ref in refs):
            self._mark("reads", node, block)

    def _mark(self, kind: str, node: ast.Node, block: _Block | None) -> None:
        """Add ``node`` and every statement around it to ``self.runs`` or ``self.reads``."""
        flags: set[int] = getattr(self, kind)
        flags.add(id(node))
        # A block marked before has its owner and every statement around it in already.
        while block is not None and kind not in block.marked:
            block.marked += (kind,)
            flags.add(id(block.owner))
            block = block.outer

    def reference_findings(self) -> Iterator[Diagnostic]:
        """T001, T002, T004, T005 for every reference, once every setter is known."""
        # A name set somewhere that is neither a keyword nor a built-in: nothing to report.
        plain = self.defined.difference(KEYWORDS, BUILTINS)
        for bound, refs in self.refs.items():
            for ref in refs:
                if ref.parts[0] not in plain:
                    yield from _check_ref(ref, self.defined, bound, self.scoped)

    def parallel_findings(self) -> Iterator[Diagnostic]:
        """T008: a variable that two children of one PARALLEL set."""
        for children in self.parallels:
            owner: dict[str, ast.Node] = {}
            for sets in children:
                for name, setter in sets.items():
                    if name in owner:
                        yield _error("T008", setter, f"two PARALLEL children set {name!r} (also at "
                                     f"line {owner[name].line}); their results cannot be merged")
                    else:
                        owner[name] = setter

    def unchecked_runs(self, body: tuple[ast.Node, ...]) -> Iterator[Diagnostic]:
        """T104: a RUN whose result nothing reads: the statements that run after it (the rest of
        its block, then of the blocks around it that flow on), up to the next statement that
        holds a RUN (which replaces LAST_RUN), never look at LAST_RUN. Iterative, any depth."""
        reads, runs = self.reads, self.runs
        # (block, whether what runs after the block reads LAST_RUN before a RUN replaces it)
        stack: list[tuple[tuple[ast.Node, ...], bool]] = [(body, False)]
        while stack:
            body, checked = stack.pop()
            for stmt in reversed(body):  # checked: what runs after stmt reads LAST_RUN first
                key = id(stmt)
                if key in runs:  # a statement without a RUN has no T104 inside
                    if stmt.__class__ is ast.Run and not checked:
                        yield _warning("T104", stmt, _UNCHECKED_RUN)
                    onward = checked if stmt.__class__ in _FLOWS_ON else False
                    for inner in _bodies(stmt):
                        if stmt.__class__ is ast.Choose:  # each OPTION's block flows on past it
                            stack.extend((option_body, onward)
                                         for option in inner for option_body in _bodies(option))
                        else:
                            stack.append((inner, onward))
                if key in reads:
                    checked = True
                elif key in runs:
                    checked = False


_UNCHECKED_RUN = ("the result of this RUN is never checked: a failing command goes unnoticed; "
                  "read LAST_RUN.EXIT_CODE after it (ASSERT LAST_RUN.EXIT_CODE == 0), or put "
                  "@strict true in the script so a failing RUN fails its step")


def _bodies(node: ast.Node) -> list[tuple[ast.Node, ...]]:
    """A statement's blocks that hold statements, in source order (``statements.blocks`` less
    the empty ones, where there is nothing to check)."""
    plan = _PLANS.get(node.__class__)
    return [body for name in plan.blocks if (body := getattr(node, name))] if plan else []


def _builtin_set(node: ast.Node, name: str) -> Diagnostic:
    return _error("T003", node, f"{name} is built in and cannot be set; choose another name")


def _suggest(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _check_ref(node: ast.Ref, defined: set[str], bound: frozenset[str],
               scoped: dict[str, ast.Node]) -> Iterator[Diagnostic]:
    """The findings of one reference, where the scoped names ``bound`` are bound (a FOR's loop
    variable and RETRY's ATTEMPT in the statement's blocks only, so ``FOR x IN x.items`` reads
    the outer ``x``)."""
    head = node.parts[0]
    if head in KEYWORDS and head not in BUILTINS:
        yield _error("T004", node, f"{head!r} is a keyword, so no variable has that name; choose "
                           "another name for the variable")
        return
    known = head in defined or head in bound
    if not known and head in scoped:
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
    if not known:
        yield _error("T001", node, f"undefined variable {head!r}: nothing in this script sets it (set it "
                           "with VAR, READ ... AS or PROMPT_AGENT ... INTO, or pass --var "
                           f"{head}=...){_suggest(head, defined | bound)}")
        return
    fields = BUILTINS.get(head)
    if fields is not None and len(node.parts) > 1 and node.parts[1] not in fields:
        have = ", ".join(fields) if fields else "no fields"
        yield _error("T002", node, f"{head} has no field {node.parts[1]!r} (it has {have})"
                           f"{_suggest(node.parts[1], fields)}")


# Blocks whose end hands LAST_RUN on to the statements after their statement: a RUN last in
# an IF branch is checked by an ASSERT after the IF. A STEP (and so each PARALLEL child) ends
# its own story, and so do TASK, SETUP and TEARDOWN.
_FLOWS_ON = frozenset({ast.If, ast.Try, ast.Retry, ast.For, ast.Choose, ast.EstimateCost})


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


def _check_heredoc_write(node: ast.Write) -> Iterable[Diagnostic]:
    return _check_heredoc(node) if node.delimiter and not node.raw else ()


@dataclass(frozen=True, slots=True)
class _Plan:
    """What the checker reads of one statement class, from its statement table entry."""

    targets: tuple[str, ...]  # ``sets`` less ``scoped_sets``: the variable it sets for what follows
    scoped_targets: tuple[str, ...]  # ``scoped_sets``: set only inside its blocks (FOR's variable)
    scoped_builtins: tuple[str, ...]  # built-ins set only inside its blocks (RETRY's ATTEMPT)
    values: tuple[str, ...]  # every other field but the blocks: where its references stand
    blocks: tuple[str, ...]  # ``block_fields``
    scoping: bool  # whether it binds names in its blocks (FOR, RETRY)
    check: Callable[[Any], Iterable[Diagnostic]] | None  # its own rules (RETRY 0 ...)


# The rules of single statements, by class (the functions above).
_CHECKS: dict[type, Callable[[Any], Iterable[Diagnostic]]] = {
    ast.Retry: _check_retry,
    ast.For: _check_for,
    ast.Directive: _check_directive,
    ast.SetBudget: _check_budget,
    ast.Write: _check_heredoc_write,
}
_PLANS: dict[type, _Plan] = {
    spec.node: _Plan(
        targets=tuple(name for name in spec.sets if name not in spec.scoped_sets),
        scoped_targets=spec.scoped_sets,
        scoped_builtins=spec.scoped_builtins,
        values=tuple(name for name in ast.field_names(spec.node)
                     if name not in spec.block_fields and name not in spec.sets),
        blocks=spec.block_fields,
        scoping=bool(spec.scoped_sets or spec.scoped_builtins),
        check=_CHECKS.get(spec.node),
    )
    for spec in statements.STATEMENTS
}

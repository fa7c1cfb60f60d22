"""The statement table: what every TissLang statement is, written once.

Each ``StatementSpec`` gives a statement's keyword, its AST node class, the grammar rule that
builds it, the fields that hold nested statements (``block_fields``, in source order) and the
keywords that continue them (``ELSE``, ``CATCH``), the fields that are workspace paths, the
fields naming the variable it sets and the built-ins it sets (and which of those exist only
inside its blocks: FOR's loop variable, RETRY's ATTEMPT), the other keywords it uses, a
one-line description and an example (for hover, completion and docs).

Who reads it: the grammar (``grammar.py`` writes the list of statement alternatives into
``tisslang.lark`` from ``GRAMMAR_RULES``), the friendly parse errors, the formatter's reserved
words, the checker, ``walk``, and in the runtime the REPL's scanner, completer and lexer, the
interpreter, the cost estimator and the dry-run plan. Tests check that each of those has a
handler for every node class here (``tests/tisslang/test_statement_table.py``).

``walk(node)`` yields a node and everything under it, like CPython's ``ast.walk`` but in
source order (depth first, pre-order); ``walk(node, blocks_only=True)`` follows only the
statement blocks (what runs), skipping values and conditions. Iterative: any depth is fine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from . import ast


@dataclass(frozen=True)
class StatementSpec:
    """One statement (see the module docstring)."""

    keyword: str  # "@" for a directive (``@name value``)
    node: type[ast.Node]
    rule: str  # the rule in tisslang.lark; "" for OPTION, which only CHOOSE's rule holds
    description: str
    example: str
    block_fields: tuple[str, ...] = ()  # fields holding tuples of statements, in source order
    continuations: tuple[tuple[str, str], ...] = ()  # (block field, keyword that opens it)
    path_fields: tuple[str, ...] = ()  # String fields naming a path in the workspace
    sets: tuple[str, ...] = ()  # fields holding the name of a variable it sets
    sets_builtins: tuple[str, ...] = ()  # LAST_* references it sets
    scoped_sets: tuple[str, ...] = ()  # those of ``sets`` that exist only inside its blocks (FOR)
    scoped_builtins: tuple[str, ...] = ()  # built-ins set only inside its blocks (ATTEMPT)
    clauses: tuple[str, ...] = ()  # other keywords it uses (AS, INTO, THEN, ...)
    within: str | None = None  # the only statement it may stand in (OPTION: CHOOSE)

    @property
    def is_keyword(self) -> bool:
        """False for the directive, which starts with ``@name`` rather than a keyword."""
        return self.keyword != "@"

    def continuation(self, name: str) -> str | None:
        """The keyword that opens block ``name`` (``ELSE`` for IF's orelse), if any."""
        return dict(self.continuations).get(name)


STATEMENTS: tuple[StatementSpec, ...] = (
    StatementSpec(
        "TASK", ast.Task, "task",
        description=("what the script is for: TASK.DESCRIPTION; with a block, the script's "
                     "statements"),
        example='TASK "Build and test the project"',
        block_fields=("body",),
    ),
    StatementSpec(
        "SETUP", ast.Setup, "setup",
        description="a block reported as a setup step, run where it stands",
        example='SETUP "prepare" {\n    MKDIR "build"\n}',
        block_fields=("body",),
    ),
    StatementSpec(
        "TEARDOWN", ast.Teardown, "teardown",
        description=("a block run once at the end, whatever happened (after a failure and "
                     "after Ctrl-C too)"),
        example='TEARDOWN "clean up" {\n    DELETE "build" RECURSIVE\n}',
        block_fields=("body",),
    ),
    StatementSpec(
        "STEP", ast.Step, "step",
        description=("a named block reported as one step; a failure inside fails it and skips "
                     "the steps after it"),
        example='STEP "Run the tests" {\n    RUN "make test"\n}',
        block_fields=("body",),
    ),
    StatementSpec(
        "RUN", ast.Run, "run",
        description=("run a shell command in the workspace; sets LAST_RUN (a non-zero exit "
                     "code does not fail the script by itself)"),
        example='RUN "make test"',
        sets_builtins=("LAST_RUN",),
    ),
    StatementSpec(
        "WRITE", ast.Write, "write",
        description="write text (a string or a heredoc) to a file in the workspace, atomically",
        example='WRITE "hello.txt" <<EOF\nHello, {{ name }}\nEOF',
        path_fields=("path",),
    ),
    StatementSpec(
        "READ", ast.Read, "read",
        description="read a workspace file's text into a variable",
        example='READ "config.json" AS config',
        path_fields=("path",),
        sets=("variable",),
        clauses=("AS",),
    ),
    StatementSpec(
        "ASSERT", ast.Assert, "assert_",
        description="fail unless the condition holds; the message shows the values involved",
        example="ASSERT LAST_RUN.EXIT_CODE == 0",
    ),
    StatementSpec(
        "PROMPT_AGENT", ast.PromptAgent, "prompt",
        description="ask the model; sets LAST_PROMPT and, with INTO, a variable",
        example='PROMPT_AGENT "Summarise {{ notes }}" INTO summary',
        sets=("variable",),
        sets_builtins=("LAST_PROMPT",),
        clauses=("INTO",),
    ),
    StatementSpec(
        "VAR", ast.Var, "var",
        description="set a variable to a value",
        example='VAR name = "world"',
        sets=("name",),
    ),
    StatementSpec(
        "LOG", ast.Log, "log",
        description="add a line to the run's log",
        example='LOG "built {{ name }}"',
    ),
    StatementSpec(
        "IF", ast.If, "if_",
        description="run the block when the condition holds, else the ELSE block (ELSE IF chains)",
        example='IF LAST_RUN.EXIT_CODE != 0 {\n    LOG "failed"\n} ELSE {\n    LOG "passed"\n}',
        block_fields=("body", "orelse"),
        continuations=(("orelse", "ELSE"),),
        clauses=("THEN", "ELSE"),
    ),
    StatementSpec(
        "TRY", ast.Try, "try_",
        description=("run the block; a failure inside is caught, sets LAST_ERROR and runs the "
                     "CATCH block"),
        example='TRY {\n    RUN "make lint"\n} CATCH {\n    LOG "{{ LAST_ERROR.MESSAGE }}"\n}',
        block_fields=("body", "handler"),
        continuations=(("handler", "CATCH"),),
        sets_builtins=("LAST_ERROR",),
        clauses=("CATCH",),
    ),
    StatementSpec(
        "PARALLEL", ast.Parallel, "parallel",
        description=("run each child at the same time, each with its own variables, merged "
                     "when all are done"),
        example='PARALLEL {\n    RUN "make a"\n    RUN "make b"\n}',
        block_fields=("body",),
    ),
    StatementSpec(
        "CHOOSE", ast.Choose, "choose",
        description=('try the options in order (or cheapest first with @choose "cheapest") and '
                     "keep the first that succeeds"),
        example=("CHOOSE {\n"
                 '    OPTION "fast" {\n'
                 '        RUN "make quick"\n'
                 "    }\n"
                 '    OPTION "thorough" {\n'
                 '        RUN "make all"\n'
                 "    }\n"
                 "}"),
        block_fields=("options",),
    ),
    StatementSpec(
        "OPTION", ast.Option, "",
        description="one alternative of a CHOOSE (STEP is accepted too)",
        example='OPTION "fast" {\n    RUN "make quick"\n}',
        block_fields=("body",),
        within="CHOOSE",
    ),
    StatementSpec(
        "ESTIMATE_COST", ast.EstimateCost, "estimate",
        description=("estimate the block's cost (LAST_ESTIMATE) and run it only if it fits the "
                     "budgets"),
        example='ESTIMATE_COST {\n    PROMPT_AGENT "Plan the work"\n}',
        block_fields=("body",),
        sets_builtins=("LAST_ESTIMATE",),
    ),
    StatementSpec(
        "SET_BUDGET", ast.SetBudget, "set_budget",
        description="limit EXECUTION_TIME, API_CALLS or TOKENS for the rest of the run",
        example="SET_BUDGET TOKENS = 2000",
    ),
    StatementSpec(
        "REQUEST_REVIEW", ast.RequestReview, "review",
        description="ask a person to approve; a rejection fails the script; sets LAST_REVIEW",
        example='REQUEST_REVIEW "Deploy to production?"',
        sets_builtins=("LAST_REVIEW",),
    ),
    StatementSpec(
        "PAUSE", ast.Pause, "pause",
        description="wait until a person says to go on; sets LAST_REVIEW",
        example='PAUSE "Check the output, then press Enter"',
        sets_builtins=("LAST_REVIEW",),
    ),
    StatementSpec(
        "MKDIR", ast.Mkdir, "mkdir",
        description="create a directory (and its parents) in the workspace",
        example='MKDIR "build/out"',
        path_fields=("path",),
    ),
    StatementSpec(
        "DELETE", ast.Delete, "delete",
        description="delete a file, or with RECURSIVE a directory tree, in the workspace",
        example='DELETE "build" RECURSIVE',
        path_fields=("path",),
        clauses=("RECURSIVE",),
    ),
    StatementSpec(
        "RETRY", ast.Retry, "retry",
        description=("run the block; after a failure set LAST_ERROR (with REPORT) and run it "
                     "again, up to n attempts (ATTEMPT counts from 1); the last attempt's failure "
                     "propagates"),
        example=('RETRY 3 DELAY "2s" {\n'
                 '    RUN "make test"\n'
                 "    ASSERT LAST_RUN.EXIT_CODE == 0\n"
                 "}"),
        block_fields=("body",),
        sets_builtins=("LAST_ERROR",),
        scoped_builtins=("ATTEMPT",),
        clauses=("DELAY",),
    ),
    StatementSpec(
        "FOR", ast.For, "for_",
        description=("run the block once per item of a list, FILES \"glob\" (workspace paths, "
                     "sorted) or LINES value; the name is set only inside the block"),
        example='FOR path IN FILES "src/*.py" {\n    LOG "{{ path }}"\n}',
        block_fields=("body",),
        sets=("variable",),
        scoped_sets=("variable",),
        clauses=("IN", "FILES", "LINES"),
    ),
    StatementSpec(
        "@", ast.Directive, "directive",
        description=("set a directive for the rest of the block and the blocks inside it (see "
                     "tisslang/directives.py)"),
        example='@timeout "30s"',
    ),
)
for _spec in STATEMENTS:
    if not _spec.rule and _spec.within is None:  # pragma: no cover - a table error
        raise ValueError(f"{_spec.keyword} has no grammar rule")
del _spec

BY_NODE: dict[type, StatementSpec] = {spec.node: spec for spec in STATEMENTS}
BY_KEYWORD: dict[str, StatementSpec] = {spec.keyword: spec for spec in STATEMENTS}

# The rules that may stand wherever a statement may (top level and blocks), in table order:
# grammar.py writes this list into tisslang.lark where it says {{STATEMENT}}.
GRAMMAR_RULES: tuple[str, ...] = tuple(spec.rule for spec in STATEMENTS if spec.within is None)

STATEMENT_KEYWORDS: tuple[str, ...] = tuple(spec.keyword for spec in STATEMENTS if spec.is_keyword)
"""Every word that starts a statement (OPTION included, which stands only in CHOOSE)."""
BLOCK_STATEMENT_KEYWORDS: tuple[str, ...] = tuple(
    spec.keyword for spec in STATEMENTS if spec.is_keyword and spec.within is None)
"""The words that start a statement anywhere a statement may stand (OPTION left out)."""
CLAUSE_KEYWORDS: tuple[str, ...] = (
    "THEN", "ELSE", "CATCH", "AS", "INTO", "RECURSIVE", "DELAY", "IN", "FILES", "LINES")
"""The other words of statements (each entry's ``clauses``; a test checks they agree)."""
EXPRESSION_KEYWORDS: tuple[str, ...] = (
    "AND", "OR", "NOT", "CONTAINS", "MATCHES", "IS_EMPTY", "IS_NOT_EMPTY", "FILE", "EXISTS",
    "LENGTH",
)
"""The words of conditions (``ast.Expr``)."""
LITERALS: tuple[str, ...] = ("true", "false")
KEYWORDS: frozenset[str] = frozenset(
    STATEMENT_KEYWORDS + CLAUSE_KEYWORDS + EXPRESSION_KEYWORDS + LITERALS)
"""Every reserved word: none of them can name a variable."""

BLOCK_FIELDS: tuple[str, ...] = tuple(dict.fromkeys(
    name for spec in STATEMENTS for name in spec.block_fields))
"""Every field name that holds nested statements (``body``, ``orelse``, ``handler``, ``options``)."""
PATH_KEYWORDS: frozenset[str] = frozenset(spec.keyword for spec in STATEMENTS if spec.path_fields)
"""Statements whose first string is a workspace path."""


def spec_of(node: ast.Node) -> StatementSpec:
    """The table entry of a statement node; ``KeyError`` naming the class if it has none."""
    try:
        return BY_NODE[type(node)]
    except KeyError:
        raise KeyError(f"{type(node).__name__} is not a statement in tisslang/statements.py") from None


def blocks(node: ast.Node) -> Iterator[tuple[str, tuple]]:
    """The statement blocks of ``node`` as ``(field, statements)``, in source order.

    A block that is not there is left out: ``None`` (TASK without a block, TRY without CATCH)
    and IF's empty ``orelse`` (IF without ELSE). ``Program`` counts, with its ``body``.
    """
    if isinstance(node, ast.Program):
        yield "body", node.body
        return
    spec = BY_NODE.get(type(node))
    if spec is None:
        return
    for name in spec.block_fields:
        body = getattr(node, name)
        if body is None or (name == "orelse" and not body):
            continue
        yield name, body


def walk(node: ast.Node, *, blocks_only: bool = False) -> Iterator[ast.Node]:
    """``node`` and every node under it, in source order (see the module docstring)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        if blocks_only:
            children = [stmt for _, body in blocks(current) for stmt in body]
        else:
            children = list(ast.iter_child_nodes(current))
        stack.extend(reversed(children))

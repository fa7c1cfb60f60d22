"""`tiss run --dry-run`: what a script would do, one line per statement, without doing any of it.

Strings are shown as written (`{{ ref }}` not interpolated, since nothing has run to give the
references values); blocks are indented under their statement, following the statement
table's block fields (`tisslang/statements.py`); the static cost estimate (`estimate.py`) closes
the plan.
"""

from __future__ import annotations

from typing import Any, Callable

from tisslang import ast, statements
from tisslang.formatter import expression as expr_text


def _s(string: ast.String | None) -> str:
    return "" if string is None else expr_text(string)


def _value(node: Any) -> str:
    return "" if node is None else expr_text(node)


def _write(stmt: ast.Write) -> str:
    text = stmt.content.text
    lines = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
    return f"WRITE {_s(stmt.path)} ({lines} line{'s' if lines != 1 else ''})"


def _for(stmt: ast.For) -> str:
    source = {"files": "FILES ", "lines": "LINES "}.get(stmt.source, "")
    return f"FOR {stmt.variable} IN {source}{_value(stmt.value)} (the block once per item)"


# One heading per statement of the table (tests/tisslang/test_statement_table.py checks that
# none is missing); what a statement would do, with its strings as written.
_HEADINGS: dict[type, Callable[[Any], str]] = {
    ast.Task: lambda s: f"TASK {_s(s.description)}",
    ast.Setup: lambda s: f"SETUP {_s(s.description)}".rstrip(),
    ast.Teardown: lambda s: " ".join(filter(None, ("TEARDOWN", _s(s.description), "(runs last, always)"))),
    ast.Step: lambda s: f"STEP {_s(s.description)}",
    ast.Option: lambda s: f"OPTION {_s(s.description)}",
    ast.Run: lambda s: f"RUN {_s(s.command)}",
    ast.Write: _write,
    ast.Read: lambda s: f"READ {_s(s.path)} AS {s.variable}",
    ast.Assert: lambda s: f"ASSERT {expr_text(s.condition)}",
    ast.PromptAgent: lambda s: f"PROMPT_AGENT {_s(s.prompt)}" + (f" INTO {s.variable}" if s.variable else ""),
    ast.Var: lambda s: f"VAR {s.name} = {_value(s.value)}",
    ast.Log: lambda s: f"LOG {_s(s.message)}",
    ast.If: lambda s: f"IF {expr_text(s.condition)}",
    ast.Try: lambda s: "TRY",
    ast.Parallel: lambda s: "PARALLEL (children run at the same time)",
    ast.Choose: lambda s: "CHOOSE (the first option that succeeds is kept)",
    ast.EstimateCost: lambda s: "ESTIMATE_COST (the body runs only if it fits the budgets)",
    ast.SetBudget: lambda s: f"SET_BUDGET {s.name} = {_value(s.value)}",
    ast.RequestReview: lambda s: f"REQUEST_REVIEW {_s(s.message)}",
    ast.Pause: lambda s: f"PAUSE {_s(s.message)}",
    ast.Mkdir: lambda s: f"MKDIR {_s(s.path)}",
    ast.Delete: lambda s: f"DELETE {_s(s.path)}{' RECURSIVE' if s.recursive else ''}",
    ast.Directive: lambda s: f"@{s.name} {_value(s.value)}".rstrip(),
    ast.Retry: lambda s: (f"RETRY {_value(ast.Number(s.attempts))}"
                          + (f" DELAY {_s(s.delay)}" if s.delay is not None else "")
                          + " (the block again after a failure, up to "
                          + f"{_value(ast.Number(s.attempts))} attempts)"),
    ast.For: _for,
}
HEADINGS = frozenset(_HEADINGS)
"""The node classes the plan has a heading for."""


def _heading(stmt: ast.Node) -> str:
    try:
        heading = _HEADINGS[type(stmt)]
    except KeyError:
        raise TypeError(f"the dry-run plan has no heading for {type(stmt).__name__} statements; "
                        "add one to runtime/plan.py") from None
    return heading(stmt)


def plan_lines(body: tuple[ast.Node, ...] | None, depth: int = 0) -> list[str]:
    lines: list[str] = []
    pad = "  " * depth
    for stmt in body or ():
        where = f"{stmt.line:>4}  " if stmt.line else "      "
        lines.append(f"{where}{pad}{_heading(stmt)}")
        spec = statements.BY_NODE[type(stmt)]
        # The statement's blocks from the table, each continuation (ELSE, CATCH) on its own line.
        for name, block in statements.blocks(stmt):
            word = spec.continuation(name)
            if word is not None:
                lines.append(f"      {pad}{word}")
            lines.extend(plan_lines(block, depth + 1))
    return lines


def format_plan(program: ast.Program) -> str:
    return "\n".join(plan_lines(program.body))

"""`tiss run --dry-run`: what a script would do, one line per statement, without doing any of it.

Strings are shown as written (`{{ ref }}` not interpolated, since nothing has run to give the
references values); blocks are indented under their statement; the static cost estimate
(`estimate.py`) closes the plan.
"""

from __future__ import annotations

from typing import Any

from tisslang import ast
from tisslang.formatter import expression as expr_text


def _s(string: ast.String | None) -> str:
    return "" if string is None else expr_text(string)


def _value(node: Any) -> str:
    return "" if node is None else expr_text(node)


def _heading(stmt: ast.Node) -> str:
    if isinstance(stmt, ast.Task):
        return f"TASK {_s(stmt.description)}"
    if isinstance(stmt, (ast.Setup, ast.Teardown)):
        word = "SETUP" if isinstance(stmt, ast.Setup) else "TEARDOWN (runs last, always)"
        return f"{word} {_s(stmt.description)}".rstrip()
    if isinstance(stmt, (ast.Step, ast.Option)):
        return f"{'STEP' if isinstance(stmt, ast.Step) else 'OPTION'} {_s(stmt.description)}"
    if isinstance(stmt, ast.Run):
        return f"RUN {_s(stmt.command)}"
    if isinstance(stmt, ast.Write):
        text = stmt.content.text
        lines = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
        return f"WRITE {_s(stmt.path)} ({lines} line{'s' if lines != 1 else ''})"
    if isinstance(stmt, ast.Read):
        return f"READ {_s(stmt.path)} AS {stmt.variable}"
    if isinstance(stmt, ast.Assert):
        return f"ASSERT {expr_text(stmt.condition)}"
    if isinstance(stmt, ast.PromptAgent):
        into = f" INTO {stmt.variable}" if stmt.variable else ""
        return f"PROMPT_AGENT {_s(stmt.prompt)}{into}"
    if isinstance(stmt, ast.Var):
        return f"VAR {stmt.name} = {_value(stmt.value)}"
    if isinstance(stmt, ast.Log):
        return f"LOG {_s(stmt.message)}"
    if isinstance(stmt, ast.If):
        return f"IF {expr_text(stmt.condition)}"
    if isinstance(stmt, ast.Try):
        return "TRY"
    if isinstance(stmt, ast.Parallel):
        return "PARALLEL (children run at the same time)"
    if isinstance(stmt, ast.Choose):
        return "CHOOSE (the first option that succeeds is kept)"
    if isinstance(stmt, ast.EstimateCost):
        return "ESTIMATE_COST (the body runs only if it fits the budgets)"
    if isinstance(stmt, ast.SetBudget):
        return f"SET_BUDGET {stmt.name} = {_value(stmt.value)}"
    if isinstance(stmt, ast.RequestReview):
        return f"REQUEST_REVIEW {_s(stmt.message)}"
    if isinstance(stmt, ast.Pause):
        return f"PAUSE {_s(stmt.message)}"
    if isinstance(stmt, ast.Mkdir):
        return f"MKDIR {_s(stmt.path)}"
    if isinstance(stmt, ast.Delete):
        return f"DELETE {_s(stmt.path)}{' RECURSIVE' if stmt.recursive else ''}"
    if isinstance(stmt, ast.Directive):
        return f"@{stmt.name} {_value(stmt.value)}".rstrip()
    return type(stmt).__name__


def plan_lines(body: tuple[ast.Node, ...] | None, depth: int = 0) -> list[str]:
    lines: list[str] = []
    pad = "  " * depth
    for stmt in body or ():
        where = f"{stmt.line:>4}  " if stmt.line else "      "
        lines.append(f"{where}{pad}{_heading(stmt)}")
        if isinstance(stmt, ast.Choose):
            lines.extend(plan_lines(stmt.options, depth + 1))
        elif isinstance(stmt, ast.If):
            lines.extend(plan_lines(stmt.body, depth + 1))
            if stmt.orelse:
                lines.append(f"      {pad}ELSE")
                lines.extend(plan_lines(stmt.orelse, depth + 1))
        elif isinstance(stmt, ast.Try):
            lines.extend(plan_lines(stmt.body, depth + 1))
            if stmt.handler is not None:
                lines.append(f"      {pad}CATCH")
                lines.extend(plan_lines(stmt.handler, depth + 1))
        else:
            body_of = getattr(stmt, "body", None)
            if isinstance(body_of, tuple):
                lines.extend(plan_lines(body_of, depth + 1))
    return lines


def format_plan(program: ast.Program) -> str:
    return "\n".join(plan_lines(program.body))

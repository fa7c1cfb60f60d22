"""`@strict true` and `tiss run --strict`: a RUN that exits non-zero fails, as under `set -e`.

Without it a failing command is a value: `LAST_RUN.EXIT_CODE` says how it went and the script
decides. With it, a RUN that exits non-zero fails its step unless the statement right after it
reads `LAST_RUN.EXIT_CODE` (an ASSERT, an IF, a LOG, anything that reads it): the script has
said it handles the status. `check_after_run` is called by the interpreter's `run_block` after
each statement.
"""

from __future__ import annotations

from typing import Any

from runtime.errors import CommandError
from tisslang import ast, walk


class UncheckedExit(CommandError):
    """A RUN exited non-zero under @strict and the next statement does not look at it."""


def reads_exit_code(stmt: ast.Node | None) -> bool:
    """Whether `stmt` (or anything inside it) reads `LAST_RUN.EXIT_CODE` (or all of LAST_RUN)."""
    if stmt is None:
        return False
    for node in walk(stmt):
        if isinstance(node, ast.Ref) and node.parts[0] == "LAST_RUN" and node.parts[1:2] in ((), ("EXIT_CODE",)):
            return True
    return False


def strict_in(ctx: Any, options: Any) -> bool:
    return bool(getattr(options, "strict", False) or ctx.directives.get("strict") is True)


def check_after_run(stmt: ast.Node, following: ast.Node | None, ctx: Any, options: Any) -> None:
    """Raise `UncheckedExit` when `stmt` was a RUN that exited non-zero under strict mode and
    `following` (the next statement in the block, None at its end) does not read its status."""
    if not isinstance(stmt, ast.Run) or not strict_in(ctx, options):
        return
    last = ctx.last.get("LAST_RUN")
    code = last.get("EXIT_CODE") if isinstance(last, dict) else None
    if not code or reads_exit_code(following):
        return
    where = "--strict" if getattr(options, "strict", False) else "@strict"
    raise UncheckedExit(
        f"RUN exited with status {code} ({where}: a failing command fails its step); to go on "
        "after it, read its status in the next statement, e.g. IF LAST_RUN.EXIT_CODE != 0 { ... } "
        "or ASSERT LAST_RUN.EXIT_CODE == 1"
    )

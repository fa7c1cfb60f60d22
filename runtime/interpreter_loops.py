"""RETRY and FOR, and the failure report RETRY and TRY put in `LAST_ERROR.REPORT`.

A mixin of `Interpreter` (`runtime/interpreter.py`):

- `RETRY n [DELAY d] { ... }` runs its block up to n times. After a failed attempt it sets
  `LAST_ERROR` (with `REPORT`, made by `failure_report`), marks the attempt's failed steps as
  caught, waits the delay and runs the block again; variables the failed attempt set stay set,
  and every attempt's model calls and time count against the budgets. `ATTEMPT` (1-based) is
  set only inside the block. The last attempt's failure propagates as usual; a `BudgetExceeded`
  propagates at once (another attempt could only spend more of a budget that is gone).
- `FOR name IN value | FILES "glob" | LINES value { ... }` runs its block once per item: the
  items of a list, the workspace paths the glob matches (sorted, confined to the workspace by
  `Workspace.glob`), or the lines of a string. `name` exists only inside the block: after the
  loop it is what it was before (unset if it was unset). Each item carries the taint of what it
  came from (`runtime.taint.carry`).
"""

from __future__ import annotations

from collections import ChainMap
from typing import TYPE_CHECKING, Any, Callable

from runtime import values
from runtime.budget import BudgetExceeded
from runtime.errors import ScriptFailure
from runtime.interpreter_policy import quoting
from runtime.result import FAILED, Failure
from runtime.secret import redact
from runtime.taint import carry, join, lines, sliced
from tisslang import ast, directives as directive_table

if TYPE_CHECKING:
    from runtime.budget import Budgets
    from runtime.context import Context
    from runtime.workspace import Workspace

REPORT_TAIL_LINES = 30
"""Lines of a command's stdout and of its stderr a failure report keeps (the last ones)."""
REPORT_TAIL_CHARS = 2000
"""Characters of each tail a failure report keeps, at most (the last ones)."""
REPORT_MESSAGE_CHARS = 1500
_UNSET = object()


def _redacted(text: str) -> str:
    """`redact(text)` with `text`'s taint: its exact spans when no secret was replaced (redact
    returns the very same string then), else all of it when any of it was tainted."""
    return carry(text, redact(text))


def _rows(rows: list[str]) -> str:
    """Lines joined with newlines, each keeping its taint at its new place."""
    return join([piece for index, row in enumerate(rows) for piece in ((row,) if index == 0 else ("\n", row))])


def _split(text: str) -> list[str]:
    """`text.splitlines()` (every line break it knows), each line keeping its taint."""
    rows, position = [], 0
    for line in str(text).splitlines(keepends=True):
        rows.append(sliced(text, position, position + len(line.splitlines()[0])))
        position += len(line)
    return rows


def _tail(text: str) -> str:
    text = _redacted(text)  # before the cuts below: no part of a secret may survive them
    rows = _split(sliced(text, 0, len(str(text).rstrip("\n"))))
    kept = _rows(rows[-REPORT_TAIL_LINES:])
    if len(kept) > REPORT_TAIL_CHARS:
        kept = join(["...", sliced(kept, -REPORT_TAIL_CHARS)])
    elif len(rows) > REPORT_TAIL_LINES:
        kept = join([f"... ({len(rows) - REPORT_TAIL_LINES} earlier lines left out)\n", kept])
    return kept


def failure_report(failure: Failure, run: dict[str, Any] | None) -> str:
    """A failure as text for a prompt: where (with the source line), what, and the command.

    `run` is the `LAST_RUN` of the failed block when a command ran in it (the failing RUN, or
    the RUN an ASSERT after it checked): its command, exit code and the tails of its output,
    each bounded (`REPORT_TAIL_LINES`, `REPORT_TAIL_CHARS`). Secrets are redacted.

    The report keeps the exact taint of the model text it quotes (a message quoting an answer,
    a command made from one): it is built with `taint.join` / `sliced`, never f-strings over
    quoted values, so `RUN "{{ LAST_ERROR.REPORT }}"` asks for approval exactly when it should.
    """
    where = failure.location()
    lines = [f"The statement at {where} failed."]
    if failure.source_line is not None:
        lines.append(f"Line {failure.line}: {failure.source_line.strip()}")
    message = _redacted(failure.message)  # before the cut
    if len(message) > REPORT_MESSAGE_CHARS:
        message = join([sliced(message, 0, REPORT_MESSAGE_CHARS), "..."])
    lines.append(join([f"Error ({failure.kind}): ", message]))
    if run is not None:
        lines.append(join(["Command: ", run.get("COMMAND", "")]))
        code = run.get("EXIT_CODE")
        lines.append(f"Exit code: {code}" + (" (timed out)" if run.get("TIMED_OUT") else ""))
        for name, key in (("Standard output", "STDOUT"), ("Standard error", "STDERR")):
            text = run.get(key) or ""
            text = text if isinstance(text, str) else str(text)  # a str keeps its taint
            if text.strip():
                lines.append(f"{name} (last lines):")
                lines.append(_tail(text))
            else:
                lines.append(f"{name}: (empty)")
    return _redacted(_rows(lines))


def attempt_count(node: ast.Retry) -> int:
    """RETRY's number of attempts, or a failure saying what it must be (tiss check says it too)."""
    attempts = node.attempts
    if isinstance(attempts, float) and attempts.is_integer():
        attempts = int(attempts)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise values.TypeMismatch(
            f"RETRY {node.attempts}: the number of attempts is a whole number, 1 or more "
            "(RETRY 3 runs the block up to 3 times)", line=node.line, column=node.column)
    return attempts


class LoopsMixin:
    """`visit_Retry`, `visit_For` and `error_value`; see the module docstring."""

    budgets: "Budgets"
    workspace: "Workspace"
    value: Callable[[ast.Node, "Context"], Any]
    text: Callable[[ast.String, "Context"], str]
    run_block: Callable[..., None]
    record_failure: Callable[..., Failure]
    emit: Callable[..., None]
    check_cancel: Callable[["Context"], None]
    check_target: Callable[[str, ast.Node], None]

    def error_value(self, failure: Failure, ctx: "Context", run_before: Any) -> dict[str, Any]:
        """`LAST_ERROR` for a failure caught by TRY or RETRY; `run_before` is the `LAST_RUN`
        when the block began, so only a command the block ran goes into the report."""
        run = ctx.last.get("LAST_RUN")
        ran = run if isinstance(run, dict) and run is not run_before else None
        # MESSAGE and REPORT keep the exact taint of the model text they quote (the failure's
        # message was built with taint.join where it was raised; failure_report keeps it).
        report = failure_report(failure, ran)
        return {"MESSAGE": failure.message, "KIND": failure.kind, "LINE": failure.line,
                "REPORT": report}

    @staticmethod
    def mark_caught(steps: list) -> None:
        for step in steps:
            for inner in step.walk():
                if inner.status == FAILED:
                    inner.caught = True

    # -- RETRY -----------------------------------------------------------------------------

    def visit_Retry(self, node: ast.Retry, ctx: "Context") -> dict[str, Any]:
        attempts = attempt_count(node)
        delay = self._retry_delay(node, ctx)
        previous = ctx.last.get("ATTEMPT", _UNSET)  # a RETRY inside a RETRY: restored after
        try:
            for attempt in range(1, attempts + 1):
                ctx.last["ATTEMPT"] = attempt
                run_before = ctx.last.get("LAST_RUN")
                mark = len(ctx.container)
                try:
                    self.run_block(node.body, ctx.nested())
                    return {"attempts": attempt}
                except ScriptFailure as exc:
                    failure = self.record_failure(exc, node, ctx)
                    ctx.last["LAST_ERROR"] = self.error_value(failure, ctx, run_before)
                    if attempt == attempts or isinstance(exc, BudgetExceeded):
                        raise
                    self.mark_caught(ctx.container[mark:])
                    self.emit("caught", line=node.line, kind=failure.kind, message=failure.message,
                              attempt=attempt, attempts=attempts)
                self._wait(delay, ctx)
        finally:
            if previous is _UNSET:
                ctx.last.pop("ATTEMPT", None)
            else:
                ctx.last["ATTEMPT"] = previous
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover

    def _retry_delay(self, node: ast.Retry, ctx: "Context") -> float:
        if node.delay is None:
            return 0.0
        text = self.text(node.delay, ctx)
        seconds = directive_table.duration_seconds(text)
        if seconds is None:
            raise values.TypeMismatch(join([
                "RETRY DELAY ", values.shown(text), " is not a duration; write seconds or a string "
                'like "2s", "500ms", "1m"']), line=node.delay.line, column=node.delay.column)
        return seconds

    def _wait(self, seconds: float, ctx: "Context") -> None:
        """The delay between attempts: Ctrl-C ends it, and it never outlasts EXECUTION_TIME
        (except in TEARDOWN, which that budget does not bind)."""
        if seconds <= 0:
            return
        remaining = None if ctx.in_teardown else self.budgets.remaining_seconds()
        if remaining is not None:
            seconds = min(seconds, remaining)
        ctx.cancel.wait(seconds)
        self.check_cancel(ctx)
        if not ctx.in_teardown:
            self.budgets.check_time()

    # -- FOR -------------------------------------------------------------------------------

    def visit_For(self, node: ast.For, ctx: "Context") -> dict[str, Any]:
        self.check_target(node.variable, node)
        items = self.loop_items(node, ctx)
        # The loop variable exists only inside the block (tiss check says so too): afterwards
        # the layer it was written to is as before. In a PARALLEL child that is the child's own
        # layer, so a loop leaves nothing there to merge (or to conflict with a sibling's loop).
        own = ctx.vars.maps[0] if isinstance(ctx.vars, ChainMap) else ctx.vars
        saved = own.get(node.variable, _UNSET)
        try:
            for item in items:
                self.check_cancel(ctx)
                own[node.variable] = item
                self.run_block(node.body, ctx.nested())
        finally:
            if saved is _UNSET:
                own.pop(node.variable, None)
            else:
                own[node.variable] = saved
        return {"variable": node.variable, "items": len(items)}

    def count_items(self, node: ast.For, ctx: "Context") -> int | None:
        """For estimates: the items a FOR would run over now, or None when that is not known
        (a variable set only later, say)."""
        try:
            return len(self.loop_items(node, ctx))
        except ScriptFailure:
            return None

    def loop_items(self, node: ast.For, ctx: "Context") -> list[Any]:
        """What FOR iterates over, each item carrying the taint of its source."""
        if node.source == "files":
            if not isinstance(node.value, ast.String):
                raise values.TypeMismatch("FOR ... IN FILES takes a glob string",
                                          line=node.value.line, column=node.value.column)
            pattern = self.text(node.value, ctx)
            with quoting(pattern):  # a failure quoting a model's glob is tainted
                return [carry(pattern, path) for path in self.workspace.glob(pattern)]
        source = self.value(node.value, ctx)
        if node.source == "lines":
            if not isinstance(source, str):
                raise values.TypeMismatch(join([
                    f"FOR ... IN LINES needs a string, got {values.type_name(source)} ",
                    values.shown(source)]), line=node.value.line, column=node.value.column)
            return lines(source)  # each line keeps exactly the taint of its characters
        if not isinstance(source, (list, tuple)):
            hint = "; for the lines of a string write IN LINES" if isinstance(source, str) else ""
            raise values.TypeMismatch(join([
                f"FOR ... IN needs a list, got {values.type_name(source)} ", values.shown(source),
                hint]), line=node.value.line, column=node.value.column)
        return [carry(source, item) for item in source]

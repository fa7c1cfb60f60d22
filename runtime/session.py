"""`Session`: the persistent state programs run in, and `run()`, the one-shot entry point.

A `Session` keeps, from one program to the next: variables, the `LAST_*` built-ins
(`LAST_RUN`, `LAST_ERROR`, `LAST_PROMPT`, `LAST_ESTIMATE`, `LAST_REVIEW`), top-level
directives, budgets, the task description, the workspace and the model backend. `tiss run`
uses it once; `tiss repl` keeps one for all its entries.

    session = Session(Workspace("."), backend=EchoBackend(), options=RunOptions(assume_yes=True))
    result = session.execute(tisslang.parse('VAR x = 1'), file="<repl>")  # state persists
    result = session.execute(tisslang.parse('ASSERT x == 1'), file="<repl>")
    session.variables["x"]         # -> 1
    final = session.close()        # runs the TEARDOWN blocks seen so far, once

- `execute(program, file=, source=)` runs one program's statements in the session and returns
  its `RunResult`. A failure stops that program only; the session stays usable. TEARDOWN blocks
  are collected (also those never reached) and run by `close()`.
- `run(program, file=, source=)` is `execute` then `close` with script semantics: TEARDOWN
  always runs, after a failure and after Ctrl-C too, and its outcome is folded into the result.
- `close()` runs the pending TEARDOWN blocks; a second call does nothing.
- `cancel()` (any thread, e.g. a signal handler) kills the running commands and stops the
  program at the next statement; `execute` then returns a result with status `interrupted`.
- `estimate(program)` is the static cost (`--dry-run`), `plan(program)` what would run.
- Listeners passed at construction (or `events.add`) receive every event (see `trace.py`).

`source` is the script text, used to quote the failing line and ASSERT's condition in messages.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from runtime.budget import Budgets
from runtime.errors import ScriptFailure
from runtime.estimate import Estimate
from runtime.interpreter import Context, Interpreter, RunInterrupted
from runtime.result import FAILED, INTERRUPTED, PASSED, RunResult
from runtime.review import Reviewer
from runtime.shell import DEFAULT_CAP
from runtime.trace import EventBus, Listener
from runtime.workspace import Workspace
from tisslang import ast
from tisslang.formatter import expression as expr_text  # source text of a node, for messages


@dataclass(frozen=True)
class RunOptions:
    """How to run: the `tiss run` flags that are not about choosing the script."""

    timeout: float | None = None  # --timeout: seconds per RUN (None: 10 minutes, or @timeout)
    sandbox: str | None = None  # --sandbox workspace: RUN inside bubblewrap
    assume_yes: bool = False  # --yes: approve REQUEST_REVIEW and PAUSE without asking
    variables: Mapping[str, Any] = field(default_factory=dict)  # --var NAME=VALUE
    model_name: str | None = None  # --model-name: the model HTTP servers are asked for
    output_cap: int = DEFAULT_CAP  # bytes of stdout / stderr kept per RUN


class Session:
    """See the module docstring."""

    def __init__(
        self,
        workspace: Workspace | str,
        *,
        backend: Any = None,
        options: RunOptions | None = None,
        listeners: tuple[Listener, ...] | list[Listener] = (),
        reviewer: Reviewer | None = None,
    ) -> None:
        self.workspace = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
        self.backend = backend
        self.options = options or RunOptions()
        self.events = EventBus(listeners)
        self.reviewer = reviewer or Reviewer(assume_yes=self.options.assume_yes)
        self.budgets = Budgets()
        self._cancel = threading.Event()
        self.task_description: str | None = None
        self.file: str | None = None
        self._source_lines: list[str] = []
        self._vars: dict[str, Any] = dict(self.options.variables)
        self._last: dict[str, Any] = {}
        self._directives: dict[str, Any] = {}
        self._teardowns: list[ast.Teardown] = []
        self._teardown_ids: set[int] = set()
        self._result: RunResult | None = None
        self._closed = False
        self.interpreter = Interpreter(self)

    # -- state the REPL shows ------------------------------------------------------------------

    @property
    def variables(self) -> Mapping[str, Any]:
        return MappingProxyType(self._vars)

    @property
    def builtins(self) -> Mapping[str, Any]:
        """The `LAST_*` values set so far."""
        return MappingProxyType(self._last)

    @property
    def directives(self) -> Mapping[str, Any]:
        return MappingProxyType(self._directives)

    def _root_context(self, container: list) -> Context:
        return Context(vars=self._vars, last=self._last, directives=self._directives,
                       container=container, cancel=self._cancel)

    @property
    def cancel_event(self) -> threading.Event:
        """The cancel event of what runs now (each program and each TEARDOWN gets a fresh one)."""
        return self._cancel

    def root_lookup(self, ref: ast.Ref) -> Any:
        return self.interpreter.lookup(ref, self._root_context([]))

    # -- helpers the interpreter calls ---------------------------------------------------------

    def source_line(self, line: int | None) -> str | None:
        if line is None or not (1 <= line <= len(self._source_lines)):
            return None
        return self._source_lines[line - 1]

    def source_span(self, node: ast.Node) -> str:
        """The source text of a node (one or more lines), or a reconstruction without source."""
        if node.line and node.end_line and self._source_lines and node.end_line <= len(self._source_lines):
            if node.line == node.end_line:
                return self._source_lines[node.line - 1][node.column - 1 : node.end_column - 1]
            first = self._source_lines[node.line - 1][node.column - 1 :]
            middle = self._source_lines[node.line : node.end_line - 1]
            last = self._source_lines[node.end_line - 1][: node.end_column - 1]
            return " ".join(part.strip() for part in [first, *middle, last])
        return expr_text(node)

    def log(self, message: str) -> None:
        if self._result is not None:
            self._result.logs.append(message)

    def defer_teardown(self, node: ast.Teardown) -> None:
        """Remember a TEARDOWN block for `close()`; the same block is remembered once."""
        if id(node) not in self._teardown_ids:
            self._teardown_ids.add(id(node))
            self._teardowns.append(node)

    def cancel(self) -> None:
        """Stop what runs now: its commands are killed and it ends as `interrupted`."""
        self._cancel.set()

    # -- running -------------------------------------------------------------------------------

    def _collect_teardowns(self, body: tuple[ast.Node, ...]) -> None:
        for stmt in body:
            if isinstance(stmt, ast.Teardown):
                self.defer_teardown(stmt)
            elif isinstance(stmt, ast.Task) and stmt.body:
                self._collect_teardowns(stmt.body)

    def _task_of(self, body: tuple[ast.Node, ...]) -> None:
        for stmt in body:
            if isinstance(stmt, ast.Task):
                self.task_description = self.interpreter.describe(stmt)
                return

    def execute(self, program: ast.Program, *, file: str | None = None, source: str | None = None) -> RunResult:
        """Run `program`'s statements in this session (TEARDOWN deferred to `close`)."""
        if self._closed:
            raise RuntimeError("this session is closed")
        self.file = file
        if source is not None and source.startswith("\ufeff"):
            source = source[1:]  # the parser ignores a BOM; positions are counted without it
        self._source_lines = source.splitlines() if source is not None else []
        result = RunResult(file=file)
        self._result = result
        self._collect_teardowns(program.body)
        self._task_of(program.body)
        result.task = self.task_description
        self._cancel = threading.Event()
        self.events.emit("run_start", file=file, workspace=str(self.workspace.root))
        started = time.monotonic()
        try:
            self.interpreter.run_block(program.body, self._root_context(result.steps))
        except ScriptFailure as exc:
            result.status = FAILED
            result.failure = getattr(exc, "failure", None) or self.interpreter.record_failure(
                exc, program, self._root_context(result.steps)
            )
        except (KeyboardInterrupt, RunInterrupted):
            # Stop every thread and command of this program for good; TEARDOWN and later
            # programs get a fresh event, so nothing of this one can resume under them.
            self._cancel.set()
            result.status = INTERRUPTED
        finally:
            result.duration = time.monotonic() - started
        if result.status != INTERRUPTED:
            self.events.emit("program_end", status=result.status, duration=round(result.duration, 6))
        return result

    def close(self, result: RunResult | None = None) -> RunResult:
        """Run the pending TEARDOWN blocks (once); their outcome goes into `result` if given."""
        result = result if result is not None else RunResult(file=self.file)
        if self._closed:
            return result
        self._closed = True
        self._result = result
        self._cancel = threading.Event()
        started = time.monotonic()
        teardowns, self._teardowns = self._teardowns, []
        for node in teardowns:
            try:
                self.interpreter.run_teardown(node, self._root_context(result.steps))
            except ScriptFailure as exc:
                failure = getattr(exc, "failure", None)
                if failure is not None:
                    result.teardown_failures.append(failure)
                if result.status == PASSED:
                    result.status = FAILED
                    result.failure = failure
            except (KeyboardInterrupt, RunInterrupted):
                result.status = INTERRUPTED
                break
        result.duration += time.monotonic() - started
        self.events.emit("run_end", status=result.status, exit_code=result.exit_code,
                         duration=round(result.duration, 6))
        return result

    def run(self, program: ast.Program, *, file: str | None = None, source: str | None = None) -> RunResult:
        """A whole script: its statements, then TEARDOWN whatever happened."""
        result = self.execute(program, file=file, source=source)
        try:
            return self.close(result)
        except KeyboardInterrupt:
            result.status = INTERRUPTED
            return result

    # -- without running -----------------------------------------------------------------------

    def estimate(self, program: ast.Program) -> Estimate:
        ctx = self._root_context([])
        return self.interpreter.estimator(ctx).block(program.body, dict(self._directives))


def run(
    program: ast.Program,
    *,
    workspace: Workspace | str,
    backend: Any = None,
    options: RunOptions | None = None,
    file: str | None = None,
    source: str | None = None,
    listeners: tuple[Listener, ...] | list[Listener] = (),
    reviewer: Reviewer | None = None,
) -> RunResult:
    """Run a whole program in a fresh session (see `Session.run`)."""
    session = Session(workspace, backend=backend, options=options, listeners=listeners, reviewer=reviewer)
    return session.run(program, file=file, source=source)

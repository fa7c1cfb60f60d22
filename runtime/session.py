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
from types import MappingProxyType
from typing import Any

from runtime.budget import Budgets
from runtime.context import Context, RunInterrupted, ScriptText, SessionState
from runtime.errors import ScriptFailure
from runtime.estimate import Estimate
from runtime.interpreter import Interpreter, internal_error
from runtime.interpreter_directives import Backends
from runtime.options import RunOptions
from runtime.result import FAILED, INTERRUPTED, PASSED, RunResult
from runtime.review import Reviewer
from runtime.trace import EventBus, Listener
from runtime.workspace import Workspace
from tisslang import ast, walk

__all__ = ["Session", "RunOptions", "run"]


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
        self._backends = Backends(backend, self.options.model_name)
        self._state = SessionState()
        self._cancel = threading.Event()
        self._script = ScriptText()
        self._vars: dict[str, Any] = dict(self.options.variables)
        self._last: dict[str, Any] = {}
        self._directives: dict[str, Any] = {}
        self._closed = False

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

    @property
    def file(self) -> str | None:
        """The file name of the program that ran last."""
        return self._script.file

    @property
    def task_description(self) -> str | None:
        """`TASK.DESCRIPTION`: the description of the last TASK seen."""
        return self._state.task_description

    @property
    def cancel_event(self) -> threading.Event:
        """The cancel event of what runs now (each program and each TEARDOWN gets a fresh one)."""
        return self._cancel

    def cancel(self) -> None:
        """Stop what runs now: its commands are killed and it ends as `interrupted`."""
        self._cancel.set()

    # -- running -------------------------------------------------------------------------------

    def _interpreter(self, container: list) -> Interpreter:
        """An interpreter for what runs now, on the session's state (it never calls back here)."""
        root = Context(vars=self._vars, last=self._last, directives=self._directives,
                       container=container, cancel=self._cancel)
        return Interpreter(
            workspace=self.workspace, backends=self._backends, budgets=self.budgets,
            reviewer=self.reviewer, events=self.events, options=self.options,
            state=self._state, root=root, script=self._script,
        )

    def _collect_teardowns(self, program: ast.Program) -> None:
        """Defer every TEARDOWN of the program, also those never reached.

        The parser lets TEARDOWN stand only at the top level or directly in the TASK block.
        """
        for node in walk(program, blocks_only=True):
            if isinstance(node, ast.Teardown):
                self._state.defer_teardown(node)

    def _task_of(self, body: tuple[ast.Node, ...], interpreter: Interpreter) -> None:
        for stmt in body:
            if isinstance(stmt, ast.Task):
                self._state.task_description = interpreter.describe(stmt)
                return

    def execute(self, program: ast.Program, *, file: str | None = None, source: str | None = None) -> RunResult:
        """Run `program`'s statements in this session (TEARDOWN deferred to `close`)."""
        if self._closed:
            raise RuntimeError("this session is closed")
        self._script = ScriptText(file, source)
        result = RunResult(file=file)
        self._state.logs = result.logs
        self._state.decisions = result.policy
        self._cancel = threading.Event()
        interpreter = self._interpreter(result.steps)
        self._collect_teardowns(program)
        self._task_of(program.body, interpreter)
        result.task = self._state.task_description
        self.events.emit("run_start", file=file, workspace=str(self.workspace.root))
        started = time.monotonic()
        try:
            interpreter.run_block(program.body, interpreter.root)
        except Exception as caught:  # ScriptFailure; anything else is a bug, still a failure
            exc = caught if isinstance(caught, ScriptFailure) else internal_error(caught)
            result.status = FAILED
            result.failure = getattr(exc, "failure", None) or interpreter.record_failure(
                exc, program, interpreter.root
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
        self._state.logs = result.logs
        self._state.decisions = result.policy
        self._cancel = threading.Event()
        started = time.monotonic()
        teardowns, self._state.teardowns = self._state.teardowns, []
        for node in teardowns:
            interpreter = self._interpreter(result.steps)
            try:
                interpreter.run_teardown(node, interpreter.root)
            except Exception as caught:  # ScriptFailure; anything else is a bug, still a failure
                exc = caught if isinstance(caught, ScriptFailure) else internal_error(caught)
                failure = getattr(exc, "failure", None) or interpreter.record_failure(exc, node, interpreter.root)
                if failure is not None:
                    result.teardown_failures.append(failure)
                if result.status == PASSED:
                    result.status = FAILED
                    result.failure = failure
            except (KeyboardInterrupt, RunInterrupted):
                result.status = INTERRUPTED
                result.teardown_complete = False
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
            result.teardown_complete = False
            return result

    # -- without running -----------------------------------------------------------------------

    def estimate(self, program: ast.Program) -> Estimate:
        interpreter = self._interpreter([])
        return interpreter.estimator(interpreter.root).block(program.body, dict(self._directives))


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

"""The interpreter: a visitor over the TissLang AST, one `visit_<Node>` handler per statement.

`Interpreter` is built from what it needs -- the workspace, the model backends, the budgets,
the reviewer, an event sink, the run options, the script's text -- and the session state it
writes (`SessionState`: TASK.DESCRIPTION, deferred TEARDOWNs, LOG lines). It never calls back
into a `Session`; a session builds one per program. Everything that changes while statements
run is in a `Context`, one per block (`runtime/context.py`).

By concern: conditions and their explanations are in `interpreter_conditions.py`, PARALLEL and
CHOOSE in `interpreter_concurrency.py`, directives and the model settings they make in
`interpreter_directives.py`, RETRY, FOR and the failure report in `interpreter_loops.py`, the
command policy's gate in `interpreter_policy.py`; this module has dispatch, failures, steps and
the other statements.

Failures are `ScriptFailure`s. `execute` gives each one the statement's position (unless it
carries a more precise one) and a `Failure` record the first time it passes; the innermost
STEP marks itself failed, every later STEP at each level is reported as skipped, and TRY catches.
Ctrl-C arrives as `KeyboardInterrupt` in the main thread; worker threads notice their
context's cancel event and raise `RunInterrupted`. Neither is a `ScriptFailure`, so TRY never
catches them. Each run of a program (and the TEARDOWN after it) has its own cancel event, so a
straggling PARALLEL child of an interrupted program can never resume while TEARDOWN runs.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from runtime import values
from runtime.answers import answer_format, parse_answer
from runtime.backends.base import BackendCancelled
from runtime.backends.guarded import generate_within_budget
from runtime.budget import Budgets, parse_duration
from runtime.context import Context, RunInterrupted, ScriptText, SessionState
from runtime.errors import AssertionFailed, InternalError, ReservedName, ScriptFailure, Timeout, Unsupported
from runtime.estimate import Estimator
from runtime.interpolate import (
    BUILTIN_ROOTS,
    builtin_not_set,
    field_path,
    interpolate,
    undefined_variable,
)
from runtime.interpreter_conditions import ConditionsMixin
from runtime.interpreter_concurrency import ConcurrencyMixin
from runtime.interpreter_directives import Backends, DirectivesMixin
from runtime.interpreter_loops import LoopsMixin
from runtime.interpreter_policy import PolicyMixin, quoting
from runtime.options import RunOptions
from runtime.result import DESELECTED, FAILED, INTERRUPTED, PASSED, SKIPPED, Failure, StepResult
from runtime.review import Reviewer, ReviewRejected
from runtime.secret import redact
from runtime.shell import DEFAULT_TIMEOUT, run_command
from runtime.strict import check_after_run
from runtime.taint import carry, join, taint
from runtime.trace import EventBus
from runtime.workspace import Workspace
from tisslang import ast, statements

__all__ = ["Interpreter", "Context", "RunInterrupted", "Backends", "SessionState", "ScriptText"]

_STDERR_TAIL_LINES = 20
_TRACE_TEXT_CAP = 4096  # characters of stdout/stderr a statement event carries


def internal_error(exc: BaseException, stmt: ast.Node | None = None) -> InternalError:
    """An unexpected exception as the failure it becomes (kind `InternalError`)."""
    where = f" while running {type(stmt).__name__}" if stmt is not None else ""
    detail = redact(str(exc))[:300] or "no message"
    return InternalError(
        f"internal error in tiss{where}: {type(exc).__name__}: {detail}; this is a bug in tiss, "
        "please report it (with --trace output)"
    )


class Interpreter(ConditionsMixin, ConcurrencyMixin, DirectivesMixin, LoopsMixin, PolicyMixin):
    """Runs one program's statements. `execute(stmt, ctx)` is the single entry point."""

    def __init__(
        self,
        *,
        workspace: Workspace,
        backends: Backends,
        budgets: Budgets,
        reviewer: Reviewer,
        events: EventBus,
        options: RunOptions,
        state: SessionState,
        root: Context,
        script: ScriptText | None = None,
    ) -> None:
        self.workspace = workspace
        self.backends = backends
        self.budgets = budgets
        self.reviewer = reviewer
        self.events = events
        self.options = options
        self.state = state
        self.root = root
        self.script = script or ScriptText()

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def file(self) -> str | None:
        return self.script.file

    def emit(self, event: str, /, **fields: Any) -> None:
        self.events.emit(event, **fields)

    def check_cancel(self, ctx: Context) -> None:
        if ctx.cancel.is_set():
            if threading.current_thread() is threading.main_thread():
                raise KeyboardInterrupt
            raise RunInterrupted()

    def execute(self, stmt: ast.Node, ctx: Context) -> None:
        """Run one statement: dispatch on its class, position its failure, emit its event."""
        handler: Callable[[Any, Context], dict[str, Any] | None] | None = getattr(
            self, "visit_" + type(stmt).__name__, None
        )
        started = time.monotonic()
        try:
            self.check_cancel(ctx)
            if handler is None:
                raise Unsupported(
                    f"the interpreter has no handler for {type(stmt).__name__} statements; "
                    "this is a bug in tiss, please report it"
                )
            if not ctx.in_teardown and not isinstance(stmt, ast.Teardown):
                self.budgets.check_time()
            info = handler(stmt, ctx) or {}
        except Exception as caught:
            # Anything else is a bug in tiss: it still fails this statement where it happened,
            # so the step fails, TEARDOWN runs and the trace and report are complete.
            exc = caught if isinstance(caught, ScriptFailure) else internal_error(caught, stmt)
            self.record_failure(exc, stmt, ctx)
            self.emit(
                "statement", node=type(stmt).__name__, line=stmt.line, column=stmt.column,
                status=FAILED, duration=round(time.monotonic() - started, 6),
                error={"kind": exc.kind, "message": exc.message},
            )
            if exc is caught:
                raise
            raise exc from caught
        self.emit(
            "statement", node=type(stmt).__name__, line=stmt.line, column=stmt.column,
            status=PASSED, duration=round(time.monotonic() - started, 6), **info,
        )

    def record_failure(self, exc: ScriptFailure, stmt: ast.Node, ctx: Context) -> Failure:
        """Give a failure its position and `Failure` record, once (the innermost statement)."""
        existing = getattr(exc, "failure", None)
        if existing is not None:
            return existing
        exc.located(self.file, stmt.line or None, stmt.column or None)
        last_run = ctx.last.get("LAST_RUN")
        tails: dict[str, str | None] = {"STDERR": None, "STDOUT": None}
        for stream in tails:  # build tools and test runners report on stdout, others on stderr
            if isinstance(last_run, dict) and last_run.get(stream):
                tails[stream] = "\n".join(str(last_run[stream]).splitlines()[-_STDERR_TAIL_LINES:])
        failure = Failure(
            message=exc.message,
            kind=exc.kind,
            file=exc.file,
            line=exc.line,
            column=exc.column,
            source_line=self.script.line(exc.line),
            stderr_tail=tails["STDERR"],
            stdout_tail=tails["STDOUT"],
        )
        exc.failure = failure  # type: ignore[attr-defined]
        return failure

    def run_block(self, body: tuple[ast.Node, ...] | None, ctx: Context) -> None:
        """Run statements in order; on a failure the steps not reached are reported as skipped."""
        body = body or ()
        for index, stmt in enumerate(body):
            try:
                self.execute(stmt, ctx)
                # @strict / --strict: an unchecked failing RUN fails here (runtime/strict.py)
                following = body[index + 1] if index + 1 < len(body) else None
                try:
                    check_after_run(stmt, following, ctx, self.options)
                except ScriptFailure as exc:
                    self.record_failure(exc, stmt, ctx)
                    raise
            except (ScriptFailure, KeyboardInterrupt, RunInterrupted):
                self.skip(body[index + 1 :], ctx.container)
                raise

    def skip(self, body: tuple[ast.Node, ...] | None, container: list[StepResult], status: str = SKIPPED) -> None:
        """Report every step inside `body` as skipped (it was never reached).

        `status` applies to the outermost steps found (NOT_CHOSEN for CHOOSE options never
        tried); the steps inside them are always SKIPPED.
        """
        for stmt in body or ():
            if isinstance(stmt, (ast.Step, ast.Setup, ast.Option)):
                step = StepResult(
                    kind=type(stmt).__name__.lower(),
                    description=self.describe(stmt),
                    line=stmt.line or None,
                    column=stmt.column or None,
                    status=status,
                )
                container.append(step)
                self.skip(stmt.body, step.children)
                self.emit("step_end", kind=step.kind, description=step.description, line=step.line,
                          status=status, duration=0.0, failure=None, started=False)
            elif isinstance(stmt, ast.Teardown):
                continue  # teardowns run at the end whatever happened
            else:
                for _, block in statements.blocks(stmt):  # CHOOSE's options are steps too
                    self.skip(block, container)

    def describe(self, node: ast.Node, ctx: Context | None = None) -> str:
        """A block's description, interpolated where its references are set (else as written)."""
        description = getattr(node, "description", None)
        if description is None:
            return type(node).__name__.lower()
        try:
            if ctx is not None:
                return self.text(description, ctx)
            return interpolate(description, lambda ref: self.lookup(ref, self.root))
        except ScriptFailure:
            return description.text

    # -- values and references -----------------------------------------------------------------

    def lookup(self, ref: ast.Ref, ctx: Context) -> Any:
        root = ref.parts[0]
        if root in BUILTIN_ROOTS and root not in ctx.vars:
            if root == "WORKSPACE":
                value: Any = str(self.workspace.root)
            elif root == "TASK":
                if self.state.task_description is None:
                    raise builtin_not_set(ref)
                value = {"DESCRIPTION": self.state.task_description}
            elif root == "STEP":
                if ctx.step is None:
                    raise builtin_not_set(ref)
                value = {"DESCRIPTION": ctx.step.description}
            else:
                value = ctx.last.get(root)
                if value is None:
                    raise builtin_not_set(ref)
            return carry(value, field_path(value, ref))
        if root not in ctx.vars:
            raise undefined_variable(ref, ctx.vars.keys())
        value = ctx.vars[root]
        # A field or item carries the taint of what it was taken from (runtime/taint.py).
        return carry(value, field_path(value, ref))

    def text(self, string: ast.String, ctx: Context) -> str:
        return interpolate(string, lambda ref: self.lookup(ref, ctx))

    def value(self, node: ast.Node, ctx: Context) -> Any:
        if isinstance(node, ast.String):
            return self.text(node, ctx)
        if isinstance(node, (ast.Number, ast.Boolean)):
            return node.value
        if isinstance(node, ast.Ref):
            return self.lookup(node, ctx)
        if isinstance(node, ast.ListValue):
            return [self.value(item, ctx) for item in node.items]
        if isinstance(node, ast.ObjectValue):
            return {key: self.value(item, ctx) for key, item in node.entries}
        if isinstance(node, ast.Length):
            measured = self.value(node.operand, ctx)
            if isinstance(measured, (str, list, tuple, dict)):
                return len(measured)
            raise values.TypeMismatch(join([
                f"LENGTH needs a list, string or object, got {values.type_name(measured)} ",
                values.shown(measured)]), line=node.line, column=node.column)
        raise Unsupported(f"{type(node).__name__} is not a value", line=node.line, column=node.column)

    # -- blocks that report as steps -----------------------------------------------------------

    def run_step(
        self,
        kind: str,
        node: ast.Node,
        body: tuple[ast.Node, ...],
        ctx: Context,
        *,
        failed_status: str = FAILED,
    ) -> StepResult:
        step = StepResult(kind=kind, description=self.describe(node, ctx), line=node.line or None,
                          column=node.column or None, status=PASSED)
        ctx.container.append(step)
        self.emit("step_start", kind=kind, description=step.description, line=step.line)
        inner = ctx.nested(container=step.children, step=step)
        started = time.monotonic()
        try:
            self.run_block(body, inner)
        except ScriptFailure as exc:
            step.status = failed_status
            step.failure = self.record_failure(exc, node, inner)
            raise
        except (KeyboardInterrupt, RunInterrupted):
            step.status = INTERRUPTED
            raise
        finally:
            step.duration = time.monotonic() - started
            self.emit(
                "step_end", kind=kind, description=step.description, line=step.line,
                status=step.status, duration=round(step.duration, 6),
                failure=step.failure.to_dict() if step.failure else None, started=True,
            )
        return step

    def visit_Step(self, node: ast.Step, ctx: Context) -> None:
        selector = self.options.select  # tiss run -k (runtime/selection.py)
        if selector is not None and not selector.wanted(node, description := self.describe(node, ctx)):
            step = StepResult(kind="step", description=description, line=node.line or None,
                              column=node.column or None, status=DESELECTED)
            ctx.container.append(step)
            self.emit("step_end", kind="step", description=description, line=step.line,
                      status=DESELECTED, duration=0.0, failure=None, started=False)
            return
        self.run_step("step", node, node.body, ctx)

    def visit_Setup(self, node: ast.Setup, ctx: Context) -> None:
        self.run_step("setup", node, node.body, ctx)

    def visit_Teardown(self, node: ast.Teardown, ctx: Context) -> dict[str, Any]:
        # TEARDOWN runs at the very end (the session collected it before the run began).
        self.state.defer_teardown(node)
        return {"deferred": True}

    def run_teardown(self, node: ast.Teardown, ctx: Context) -> None:
        self.run_step("teardown", node, node.body, ctx.nested(in_teardown=True))

    def visit_Task(self, node: ast.Task, ctx: Context) -> None:
        self.state.task_description = self.describe(node)
        if node.body is not None:
            self.run_block(node.body, ctx)

    # -- simple statements ---------------------------------------------------------------------

    def visit_Var(self, node: ast.Var, ctx: Context) -> dict[str, Any]:
        self.assign(node.name, self.value(node.value, ctx), ctx, node)
        return {"name": node.name}

    def assign(self, name: str, value: Any, ctx: Context, node: ast.Node) -> None:
        self.check_target(name, node)
        ctx.vars[name] = value

    @staticmethod
    def check_target(name: str, node: ast.Node) -> None:
        if name in BUILTIN_ROOTS:
            raise ReservedName(
                f"{name} is a built-in reference and cannot be set; choose another variable name",
                line=node.line, column=node.column,
            )

    def visit_Log(self, node: ast.Log, ctx: Context) -> dict[str, Any]:
        message = self.text(node.message, ctx)
        self.state.log(message)
        self.emit("log", message=message, line=node.line,
                  step=ctx.step.description if ctx.step else None)
        return {}

    def visit_SetBudget(self, node: ast.SetBudget, ctx: Context) -> dict[str, Any]:
        self.budgets.set(node.name, self.value(node.value, ctx))
        return {"name": node.name}

    def visit_Assert(self, node: ast.Assert, ctx: Context) -> dict[str, Any]:
        if self.condition(node.condition, ctx):
            return {}
        source = self.script.span(node.condition)
        detail = self.explain(node.condition, ctx)
        message = join([f"assertion failed: {source}", *((" (", detail, ")") if detail else ())])
        raise AssertionFailed(message)

    def visit_If(self, node: ast.If, ctx: Context) -> dict[str, Any]:
        taken = self.condition(node.condition, ctx)
        self.run_block(node.body if taken else node.orelse, ctx.nested())
        return {"taken": taken}

    def visit_Try(self, node: ast.Try, ctx: Context) -> dict[str, Any]:
        mark = len(ctx.container)
        run_before = ctx.last.get("LAST_RUN")
        try:
            self.run_block(node.body, ctx.nested())
        except ScriptFailure as exc:
            failure = self.record_failure(exc, node, ctx)
            self.mark_caught(ctx.container[mark:])
            ctx.last["LAST_ERROR"] = self.error_value(failure, ctx, run_before)
            self.emit("caught", line=node.line, kind=failure.kind, message=failure.message)
            if node.handler is not None:
                self.run_block(node.handler, ctx.nested())
            return {"caught": True}
        return {"caught": False}

    # -- the workspace -------------------------------------------------------------------------

    def _path(self, node: ast.String, ctx: Context) -> str:
        return self.text(node, ctx)

    def visit_Write(self, node: ast.Write, ctx: Context) -> dict[str, Any]:
        path = self._path(node.path, ctx)
        content = self.text(node.content, ctx)
        self.guard("WRITE", path, node, ctx)  # the command policy (interpreter_policy.py)
        with quoting(path):  # a failure quoting a model's path is tainted
            self.note_write(self.workspace.write_text(path, content), content)
        return {"path": path, "bytes": len(content.encode("utf-8"))}

    def visit_Read(self, node: ast.Read, ctx: Context) -> dict[str, Any]:
        self.check_target(node.variable, node)
        path = self._path(node.path, ctx)
        with quoting(path):  # a failure quoting a model's path is tainted
            text = self.workspace.read_text(path)
            identity = self.workspace.identity(path)
        # Tainted when a tainted WRITE of this run wrote that very file (interpreter_policy.py).
        self.assign(node.variable, self.read_taint(identity, text), ctx, node)
        return {"path": path, "variable": node.variable}

    def visit_Mkdir(self, node: ast.Mkdir, ctx: Context) -> dict[str, Any]:
        path = self._path(node.path, ctx)
        self.guard("MKDIR", path, node, ctx)
        with quoting(path):  # a failure quoting a model's path is tainted
            self.workspace.mkdir(path)
        return {"path": path}

    def visit_Delete(self, node: ast.Delete, ctx: Context) -> dict[str, Any]:
        path = self._path(node.path, ctx)
        self.guard("DELETE", path, node, ctx)
        with quoting(path):  # a failure quoting a model's path is tainted
            self.state.tainted_files.removed(self.workspace.delete(path, recursive=node.recursive))
        return {"path": path, "recursive": node.recursive}

    # -- commands ------------------------------------------------------------------------------

    def visit_Run(self, node: ast.Run, ctx: Context) -> dict[str, Any]:
        command = self.text(node.command, ctx)
        self.guard("RUN", command, node, ctx)  # deny rules and approval, before anything starts
        limits: list[tuple[float, str]] = []
        if "timeout" in ctx.directives:
            limits.append((parse_duration(ctx.directives["timeout"], what="@timeout"), "@timeout"))
        limits.append((self.options.timeout if self.options.timeout is not None else DEFAULT_TIMEOUT,
                       "--timeout" if self.options.timeout is not None else "the default timeout"))
        if not ctx.in_teardown:
            remaining = self.budgets.remaining_seconds()
            self.budgets.check_time()
            if remaining is not None:
                limits.append((remaining, "the EXECUTION_TIME budget"))
        timeout, source = min(limits, key=lambda item: item[0])
        # `@shell` was checked where it was written (a non-empty string).
        shell = ctx.directives.get("shell", "/bin/sh")
        with quoting(shell):  # "shell ... was not found" quotes the @shell, maybe a model's
            result = run_command(
                command,
                cwd=self.workspace.command_cwd(),  # fails if a command moved or replaced the workspace
                timeout=timeout,
                shell=shell,
                cap=self.options.output_cap,
                sandbox=self.options.sandbox,
                cancel=ctx.cancel,
                on_output=self.options.on_output,  # tiss run -v
            )
        ctx.last["LAST_RUN"] = {
            "EXIT_CODE": result.exit_code,
            "STDOUT": result.stdout.rstrip("\n"),
            "STDERR": result.stderr.rstrip("\n"),
            "EXECUTION_TIME": round(result.duration, 6),
            "COMMAND": command,
            "TIMED_OUT": result.timed_out,
            "STDOUT_TRUNCATED": result.stdout_truncated,
            "STDERR_TRUNCATED": result.stderr_truncated,
        }
        if result.cancelled:
            self.check_cancel(ctx)
            raise RunInterrupted()
        info = {
            "command": command,
            "exit_code": result.exit_code,
            "timed_out": result.timed_out,
            "run_time": round(result.duration, 6),
            # Redacted before the cut, so no part of the API key survives it.
            "stdout": redact(result.stdout)[-_TRACE_TEXT_CAP:],
            "stderr": redact(result.stderr)[-_TRACE_TEXT_CAP:],
            "stdout_truncated": result.stdout_truncated,
            "stderr_truncated": result.stderr_truncated,
        }
        if result.timed_out:
            if source == "the EXECUTION_TIME budget":
                self.budgets.check_time()  # raises BudgetExceeded naming the budget
            raise Timeout(join([  # join: the quoted command keeps its model text's taint
                f"RUN timed out after {timeout:g}s ({source}); the command and every process it "
                "started were killed: ", command,
            ]))
        return info

    # -- the model -----------------------------------------------------------------------------

    def visit_PromptAgent(self, node: ast.PromptAgent, ctx: Context) -> dict[str, Any]:
        if node.variable is not None:
            self.check_target(node.variable, node)  # before the call is paid for, not after
        prompt = self.text(node.prompt, ctx)
        shape = answer_format(ctx.directives)  # a bad @output fails before the call is paid for
        backend = self.backend_for(ctx)
        settings = self.settings(ctx)
        try:  # ctx.cancel lets Ctrl-C stop a call in a PARALLEL child at once
            completion = generate_within_budget(backend, prompt, settings.replace(cancel=ctx.cancel), self.budgets)
        except BackendCancelled:
            self.check_cancel(ctx)
            raise RunInterrupted() from None
        said = taint(completion.text)  # model text: the command policy asks before running it
        ctx.last["LAST_PROMPT"] = {
            "TEXT": said,
            "PROMPT_TOKENS": completion.prompt_tokens,
            "COMPLETION_TOKENS": completion.completion_tokens,
            "FINISH_REASON": completion.finish_reason,
        }
        self.emit(
            "prompt", line=node.line, backend=getattr(backend, "name", type(backend).__name__),
            prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens,
            finish_reason=completion.finish_reason, duration=round(completion.elapsed, 6),
        )
        answer: Any = said
        if shape == "json":
            # Not JSON fails the step with the text in the message, so RETRY can ask again; the
            # value carries the answer's taint (every field and item of it too).
            answer = carry(said, parse_answer(said))
        if node.variable is not None:
            self.assign(node.variable, answer, ctx, node)
        return {"variable": node.variable, "prompt_tokens": completion.prompt_tokens,
                "completion_tokens": completion.completion_tokens}

    # -- the human -----------------------------------------------------------------------------

    def visit_RequestReview(self, node: ast.RequestReview, ctx: Context) -> dict[str, Any]:
        message = self.text(node.message, ctx)
        answer = self.reviewer.review(message)
        ctx.last["LAST_REVIEW"] = {"APPROVED": answer.approved, "COMMENT": answer.comment}
        self.emit("review", kind="REQUEST_REVIEW", message=message, approved=answer.approved,
                  comment=answer.comment, asked=answer.asked)
        if not answer.approved:
            why = f": {answer.comment}" if answer.comment else ""
            raise ReviewRejected(join(["review rejected for ", values.shown(message), why]))
        return {"approved": True}

    def visit_Pause(self, node: ast.Pause, ctx: Context) -> dict[str, Any]:
        message = self.text(node.message, ctx)
        answer = self.reviewer.pause(message)
        ctx.last["LAST_REVIEW"] = {"APPROVED": answer.approved, "COMMENT": answer.comment}
        self.emit("review", kind="PAUSE", message=message, approved=True, comment="", asked=answer.asked)
        return {}

    # -- cost ----------------------------------------------------------------------------------

    def estimator(self, ctx: Context) -> Estimator:
        backend = self.backends.default
        try:
            backend = self.backend_for(ctx)
        except ScriptFailure:
            pass
        return Estimator(backend, lambda node: self.value(node, ctx), lambda s: self.text(s, ctx),
                         lambda node: self.count_items(node, ctx))

    def visit_EstimateCost(self, node: ast.EstimateCost, ctx: Context) -> dict[str, Any]:
        estimate = self.estimator(ctx).block(node.body, ctx.directives)
        ctx.last["LAST_ESTIMATE"] = estimate.as_value()
        self.emit("estimate", line=node.line, **estimate.as_value())
        # Refused here, before the body has done anything, when the estimate does not fit.
        self.budgets.check_fits(
            api_calls=estimate.api_calls, tokens=estimate.tokens, seconds=estimate.seconds
        )
        self.run_block(node.body, ctx.nested())
        return {"estimate": estimate.as_value()}


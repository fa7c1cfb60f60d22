"""The interpreter: a visitor over the TissLang AST, one `visit_<Node>` handler per statement.

`Interpreter` holds what does not change while a session lives (the session itself, which owns
the workspace, backend, budgets, reviewer and event bus). Everything that does change while
statements run is in a `Context`, one per block: the variables, the `LAST_*` built-ins, the
directives in scope and where step results go. Nested blocks share the variables and `LAST_*`
of their parent and copy its directives (a directive applies to the rest of its block and the
blocks inside it). A PARALLEL child or a CHOOSE option gets a private overlay of variables and
its own `LAST_*`, merged back when it finishes.

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
from collections import ChainMap
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, MutableMapping

from runtime import values
from runtime.backends.base import BackendNotConfigured, GenerationSettings
from runtime.backends.guarded import generate_within_budget
from runtime.backends.select import is_backend_spec
from runtime.budget import parse_duration
from runtime.errors import CommandError, ScriptFailure
from runtime.estimate import Estimate, Estimator
from runtime.interpolate import (
    BUILTIN_ROOTS,
    BUILTIN_SOURCES,
    builtin_not_set,
    field_path,
    interpolate,
    undefined_variable,
)
from runtime.result import FAILED, INTERRUPTED, NOT_CHOSEN, PASSED, SKIPPED, Failure, StepResult
from runtime.review import ReviewRejected
from runtime.shell import DEFAULT_TIMEOUT, run_command
from tisslang import ast

if TYPE_CHECKING:
    from runtime.session import Session

_STDERR_TAIL_LINES = 20
_TRACE_TEXT_CAP = 4096  # characters of stdout/stderr a statement event carries
_CHILD_POLL = 0.1  # seconds between checks while waiting for PARALLEL children


class RunInterrupted(BaseException):
    """A worker thread saw the session's cancel event (Ctrl-C): stop now, TRY does not catch it."""


class AssertionFailed(ScriptFailure):
    kind = "AssertionFailed"


class Timeout(ScriptFailure):
    kind = "Timeout"


class ParallelFailed(ScriptFailure):
    kind = "ParallelFailed"


class NoOptionSucceeded(ScriptFailure):
    kind = "NoOptionSucceeded"


class Unsupported(ScriptFailure):
    kind = "Unsupported"


@dataclass
class Context:
    """The mutable state one block runs with (see the module docstring)."""

    vars: MutableMapping[str, Any]
    last: dict[str, Any]
    directives: dict[str, Any]
    container: list[StepResult]
    cancel: threading.Event = field(default_factory=threading.Event)
    step: StepResult | None = None
    in_teardown: bool = False

    def nested(self, **changes: Any) -> "Context":
        """The context of a block inside this one: same variables and LAST_*, own directives."""
        child = Context(
            vars=self.vars,
            last=self.last,
            directives=dict(self.directives),
            container=self.container,
            cancel=self.cancel,
            step=self.step,
            in_teardown=self.in_teardown,
        )
        for name, value in changes.items():
            setattr(child, name, value)
        return child

    def isolated(self, container: list[StepResult]) -> "Context":
        """A context whose variable writes and LAST_* stay private until merged back."""
        vars_ = self.vars.new_child() if isinstance(self.vars, ChainMap) else ChainMap({}, self.vars)
        return Context(
            vars=vars_,
            last=dict(self.last),
            directives=dict(self.directives),
            container=container,
            cancel=self.cancel,
            step=self.step,
            in_teardown=self.in_teardown,
        )


@dataclass
class _Outcome:
    """How one PARALLEL child or CHOOSE option ended."""

    node: ast.Node
    context: Context
    failure: ScriptFailure | None = None
    interrupted: bool = False
    steps: list[StepResult] = field(default_factory=list)


class Interpreter:
    """Runs statements for a `Session`. `execute(stmt, ctx)` is the single entry point."""

    def __init__(self, session: "Session") -> None:
        self.session = session
        self._backends: dict[str, Any] = {}
        self._backends_lock = threading.Lock()

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def file(self) -> str | None:
        return self.session.file

    def emit(self, event: str, /, **fields: Any) -> None:
        self.session.events.emit(event, **fields)

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
                self.session.budgets.check_time()
            info = handler(stmt, ctx) or {}
        except ScriptFailure as exc:
            self.record_failure(exc, stmt, ctx)
            self.emit(
                "statement", node=type(stmt).__name__, line=stmt.line, column=stmt.column,
                status=FAILED, duration=round(time.monotonic() - started, 6),
                error={"kind": exc.kind, "message": exc.message},
            )
            raise
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
        tail = None
        if isinstance(last_run, dict) and last_run.get("STDERR"):
            tail = "\n".join(str(last_run["STDERR"]).splitlines()[-_STDERR_TAIL_LINES:])
        failure = Failure(
            message=exc.message,
            kind=exc.kind,
            file=exc.file,
            line=exc.line,
            column=exc.column,
            source_line=self.session.source_line(exc.line),
            stderr_tail=tail,
        )
        exc.failure = failure  # type: ignore[attr-defined]
        return failure

    def run_block(self, body: tuple[ast.Node, ...] | None, ctx: Context) -> None:
        """Run statements in order; on a failure the steps not reached are reported as skipped."""
        body = body or ()
        for index, stmt in enumerate(body):
            try:
                self.execute(stmt, ctx)
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
            elif isinstance(stmt, ast.Choose):
                self.skip(stmt.options, container)
            elif isinstance(stmt, ast.Teardown):
                continue  # teardowns run at the end whatever happened
            else:
                for name in ("body", "orelse", "handler"):
                    block = getattr(stmt, name, None)
                    if isinstance(block, tuple):
                        self.skip(block, container)

    def describe(self, node: ast.Node, ctx: Context | None = None) -> str:
        """A block's description, interpolated where its references are set (else as written)."""
        description = getattr(node, "description", None)
        if description is None:
            return type(node).__name__.lower()
        try:
            if ctx is not None:
                return self.text(description, ctx)
            return interpolate(description, lambda ref: self.session.root_lookup(ref))
        except ScriptFailure:
            return description.text

    # -- values and references -----------------------------------------------------------------

    def lookup(self, ref: ast.Ref, ctx: Context) -> Any:
        root = ref.parts[0]
        if root in BUILTIN_ROOTS and root not in ctx.vars:
            if root == "WORKSPACE":
                value: Any = str(self.session.workspace.root)
            elif root == "TASK":
                if self.session.task_description is None:
                    raise builtin_not_set(ref)
                value = {"DESCRIPTION": self.session.task_description}
            elif root == "STEP":
                if ctx.step is None:
                    raise builtin_not_set(ref)
                value = {"DESCRIPTION": ctx.step.description}
            else:
                value = ctx.last.get(root)
                if value is None:
                    raise builtin_not_set(ref)
            return field_path(value, ref)
        if root not in ctx.vars:
            raise undefined_variable(ref, ctx.vars.keys())
        return field_path(ctx.vars[root], ref)

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
        raise Unsupported(f"{type(node).__name__} is not a value", line=node.line, column=node.column)

    def _positioned(self, node: ast.Node, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except ScriptFailure as exc:
            if exc.line is None and node.line:
                exc.line, exc.column = node.line, node.column
            raise

    def condition(self, expr: ast.Node, ctx: Context) -> bool:
        """The truth of an ASSERT / IF condition; operators follow `runtime.values`."""
        if isinstance(expr, ast.Or):
            return any(self.condition(operand, ctx) for operand in expr.operands)
        if isinstance(expr, ast.And):
            return all(self.condition(operand, ctx) for operand in expr.operands)
        if isinstance(expr, ast.Not):
            return not self.condition(expr.operand, ctx)
        if isinstance(expr, ast.Compare):
            left, right = self.value(expr.left, ctx), self.value(expr.right, ctx)
            return self._positioned(expr, lambda: values.compare(expr.op, left, right))
        if isinstance(expr, ast.Contains):
            left, right = self.value(expr.left, ctx), self.value(expr.right, ctx)
            found = self._positioned(expr, lambda: values.contains(left, right))
            return not found if expr.negated else found
        if isinstance(expr, ast.Matches):
            left, pattern = self.value(expr.left, ctx), self.value(expr.pattern, ctx)
            return self._positioned(expr, lambda: values.matches(left, pattern))
        if isinstance(expr, ast.IsEmpty):
            operand = self.value(expr.operand, ctx)
            empty = self._positioned(expr, lambda: values.is_empty(operand))
            return not empty if expr.negated else empty
        if isinstance(expr, ast.FileExists):
            path = self.value(expr.path, ctx)
            if not isinstance(path, str):
                raise values.TypeMismatch(
                    f"FILE needs a path string, got {values.type_name(path)} {values.show(path)}",
                    line=expr.line, column=expr.column,
                )
            return self._positioned(expr, lambda: self.session.workspace.exists(path))
        value = self.value(expr, ctx)
        return self._positioned(expr, lambda: values.truth(value))

    def explain(self, expr: ast.Node, ctx: Context) -> str:
        """Why a condition is false, with the values involved (for ASSERT's message)."""
        if isinstance(expr, ast.And):
            for operand in expr.operands:
                if not self.condition(operand, ctx):
                    return self.explain(operand, ctx)
        if isinstance(expr, ast.Compare):
            left, right = self.value(expr.left, ctx), self.value(expr.right, ctx)
            return f"left is {values.show(left)}, right is {values.show(right)}"
        if isinstance(expr, ast.Contains):
            left, right = self.value(expr.left, ctx), self.value(expr.right, ctx)
            word = "contains" if expr.negated else "does not contain"
            return f"{values.show(left)} {word} {values.show(right)}"
        if isinstance(expr, ast.Matches):
            left, pattern = self.value(expr.left, ctx), self.value(expr.pattern, ctx)
            return f"{values.show(left)} does not match {values.show(pattern)}"
        if isinstance(expr, ast.IsEmpty):
            operand = self.value(expr.operand, ctx)
            return f"the value is {values.show(operand)}"
        if isinstance(expr, ast.FileExists):
            return f"{values.show(self.value(expr.path, ctx))} does not exist in the workspace"
        if isinstance(expr, (ast.Ref, ast.String, ast.Number, ast.Boolean, ast.ListValue, ast.ObjectValue)):
            return f"the value is {values.show(self.value(expr, ctx))}"
        return ""

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
        self.run_step("step", node, node.body, ctx)

    def visit_Setup(self, node: ast.Setup, ctx: Context) -> None:
        self.run_step("setup", node, node.body, ctx)

    def visit_Teardown(self, node: ast.Teardown, ctx: Context) -> dict[str, Any]:
        # TEARDOWN runs at the very end (the session collected it before the run began).
        self.session.defer_teardown(node)
        return {"deferred": True}

    def run_teardown(self, node: ast.Teardown, ctx: Context) -> None:
        self.run_step("teardown", node, node.body, ctx.nested(in_teardown=True))

    def visit_Task(self, node: ast.Task, ctx: Context) -> None:
        self.session.task_description = self.describe(node)
        if node.body is not None:
            self.run_block(node.body, ctx)

    # -- simple statements ---------------------------------------------------------------------

    def visit_Directive(self, node: ast.Directive, ctx: Context) -> dict[str, Any]:
        value = True if node.value is None else self.value(node.value, ctx)
        self._check_directive(node.name, value)  # where it is written, not at the RUN it affects
        ctx.directives[node.name] = value
        return {"name": node.name}

    @staticmethod
    def _check_directive(name: str, value: Any) -> None:
        if name == "timeout":
            seconds = parse_duration(value, what="@timeout")
            if seconds <= 0:
                raise ScriptFailure(
                    f"@timeout must be more than zero seconds, got {values.show(value)}; "
                    'write e.g. @timeout "30s"', kind="DirectiveError",
                )
        elif name == "shell" and (not isinstance(value, str) or not value.strip()):
            raise ScriptFailure(
                f'@shell must name a shell program such as "bash" or "/bin/zsh", got {values.show(value)}',
                kind="DirectiveError",
            )
        elif name == "choose" and value not in ("cheapest", "first", "ordered", True):
            raise ScriptFailure(
                f'@choose must be "cheapest" or "first", got {values.show(value)}', kind="DirectiveError"
            )

    def visit_Var(self, node: ast.Var, ctx: Context) -> dict[str, Any]:
        self.assign(node.name, self.value(node.value, ctx), ctx, node)
        return {"name": node.name}

    def assign(self, name: str, value: Any, ctx: Context, node: ast.Node) -> None:
        self.check_target(name, node)
        ctx.vars[name] = value

    @staticmethod
    def check_target(name: str, node: ast.Node) -> None:
        if name in BUILTIN_ROOTS:
            raise ScriptFailure(
                f"{name} is a built-in reference and cannot be set; choose another variable name",
                kind="ReservedName", line=node.line, column=node.column,
            )

    def visit_Log(self, node: ast.Log, ctx: Context) -> dict[str, Any]:
        message = self.text(node.message, ctx)
        self.session.log(message)
        self.emit("log", message=message, line=node.line,
                  step=ctx.step.description if ctx.step else None)
        return {}

    def visit_SetBudget(self, node: ast.SetBudget, ctx: Context) -> dict[str, Any]:
        self.session.budgets.set(node.name, self.value(node.value, ctx))
        return {"name": node.name}

    def visit_Assert(self, node: ast.Assert, ctx: Context) -> dict[str, Any]:
        if self.condition(node.condition, ctx):
            return {}
        source = self.session.source_span(node.condition)
        detail = self.explain(node.condition, ctx)
        message = f"assertion failed: {source}" + (f" ({detail})" if detail else "")
        raise AssertionFailed(message)

    def visit_If(self, node: ast.If, ctx: Context) -> dict[str, Any]:
        taken = self.condition(node.condition, ctx)
        self.run_block(node.body if taken else node.orelse, ctx.nested())
        return {"taken": taken}

    def visit_Try(self, node: ast.Try, ctx: Context) -> dict[str, Any]:
        mark = len(ctx.container)
        try:
            self.run_block(node.body, ctx.nested())
        except ScriptFailure as exc:
            failure = self.record_failure(exc, node, ctx)
            for step in ctx.container[mark:]:
                for inner in step.walk():
                    if inner.status == FAILED:
                        inner.caught = True
            ctx.last["LAST_ERROR"] = {"MESSAGE": failure.message, "KIND": failure.kind,
                                      "LINE": failure.line}
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
        self.session.workspace.write_text(path, content)
        return {"path": path, "bytes": len(content.encode("utf-8"))}

    def visit_Read(self, node: ast.Read, ctx: Context) -> dict[str, Any]:
        self.check_target(node.variable, node)
        path = self._path(node.path, ctx)
        self.assign(node.variable, self.session.workspace.read_text(path), ctx, node)
        return {"path": path, "variable": node.variable}

    def visit_Mkdir(self, node: ast.Mkdir, ctx: Context) -> dict[str, Any]:
        path = self._path(node.path, ctx)
        self.session.workspace.mkdir(path)
        return {"path": path}

    def visit_Delete(self, node: ast.Delete, ctx: Context) -> dict[str, Any]:
        path = self._path(node.path, ctx)
        self.session.workspace.delete(path, recursive=node.recursive)
        return {"path": path, "recursive": node.recursive}

    # -- commands ------------------------------------------------------------------------------

    def visit_Run(self, node: ast.Run, ctx: Context) -> dict[str, Any]:
        session = self.session
        command = self.text(node.command, ctx)
        limits: list[tuple[float, str]] = []
        if "timeout" in ctx.directives:
            limits.append((parse_duration(ctx.directives["timeout"], what="@timeout"), "@timeout"))
        limits.append((session.options.timeout if session.options.timeout is not None else DEFAULT_TIMEOUT,
                       "--timeout" if session.options.timeout is not None else "the default timeout"))
        if not ctx.in_teardown:
            remaining = session.budgets.remaining_seconds()
            session.budgets.check_time()
            if remaining is not None:
                limits.append((remaining, "the EXECUTION_TIME budget"))
        timeout, source = min(limits, key=lambda item: item[0])
        shell = ctx.directives.get("shell", "/bin/sh")
        if not isinstance(shell, str) or not shell:
            raise CommandError(f"@shell must name a shell program, got {values.show(shell)}")
        result = run_command(
            command,
            cwd=str(session.workspace.root),
            timeout=timeout,
            shell=shell,
            cap=session.options.output_cap,
            sandbox=session.options.sandbox,
            cancel=ctx.cancel,
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
            "stdout": result.stdout[-_TRACE_TEXT_CAP:],
            "stderr": result.stderr[-_TRACE_TEXT_CAP:],
            "stdout_truncated": result.stdout_truncated,
            "stderr_truncated": result.stderr_truncated,
        }
        if result.timed_out:
            if source == "the EXECUTION_TIME budget":
                session.budgets.check_time()  # raises BudgetExceeded naming the budget
            raise Timeout(
                f"RUN timed out after {timeout:g}s ({source}); the command and every process it "
                f"started were killed: {command}"
            )
        return info

    # -- the model -----------------------------------------------------------------------------

    def backend_for(self, ctx: Context):
        spec = ctx.directives.get("model")
        # `@model` picks a backend when it names one (echo, a URL), and also when it names a
        # checkpoint directory while no backend was chosen; otherwise it is the model name the
        # chosen backend is asked for.
        if isinstance(spec, str) and (is_backend_spec(spec) or self.session.backend is None):
            with self._backends_lock:
                if spec not in self._backends:
                    from runtime.backends.select import resolve_backend

                    self._backends[spec] = resolve_backend(spec, self.session.options.model_name)
                return self._backends[spec]
        if self.session.backend is None:
            raise BackendNotConfigured()
        return self.session.backend

    def settings(self, ctx: Context) -> GenerationSettings:
        directives = dict(ctx.directives)
        if isinstance(directives.get("model"), str) and is_backend_spec(directives["model"]):
            directives.pop("model")  # it chose the backend, it is not a model name
        settings = GenerationSettings.from_directives(directives)
        if settings.model is None and self.session.options.model_name:
            settings = settings.replace(model=self.session.options.model_name)
        return settings

    def visit_PromptAgent(self, node: ast.PromptAgent, ctx: Context) -> dict[str, Any]:
        if node.variable is not None:
            self.check_target(node.variable, node)  # before the call is paid for, not after
        prompt = self.text(node.prompt, ctx)
        backend = self.backend_for(ctx)
        settings = self.settings(ctx)
        completion = generate_within_budget(backend, prompt, settings, self.session.budgets)
        ctx.last["LAST_PROMPT"] = {
            "TEXT": completion.text,
            "PROMPT_TOKENS": completion.prompt_tokens,
            "COMPLETION_TOKENS": completion.completion_tokens,
            "FINISH_REASON": completion.finish_reason,
        }
        if node.variable is not None:
            self.assign(node.variable, completion.text, ctx, node)
        self.emit(
            "prompt", line=node.line, backend=getattr(backend, "name", type(backend).__name__),
            prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens,
            finish_reason=completion.finish_reason, duration=round(completion.elapsed, 6),
        )
        return {"variable": node.variable, "prompt_tokens": completion.prompt_tokens,
                "completion_tokens": completion.completion_tokens}

    # -- the human -----------------------------------------------------------------------------

    def visit_RequestReview(self, node: ast.RequestReview, ctx: Context) -> dict[str, Any]:
        message = self.text(node.message, ctx)
        answer = self.session.reviewer.review(message)
        ctx.last["LAST_REVIEW"] = {"APPROVED": answer.approved, "COMMENT": answer.comment}
        self.emit("review", kind="REQUEST_REVIEW", message=message, approved=answer.approved,
                  comment=answer.comment, asked=answer.asked)
        if not answer.approved:
            why = f": {answer.comment}" if answer.comment else ""
            raise ReviewRejected(f"review rejected for {values.show(message)}{why}")
        return {"approved": True}

    def visit_Pause(self, node: ast.Pause, ctx: Context) -> dict[str, Any]:
        message = self.text(node.message, ctx)
        answer = self.session.reviewer.pause(message)
        ctx.last["LAST_REVIEW"] = {"APPROVED": answer.approved, "COMMENT": answer.comment}
        self.emit("review", kind="PAUSE", message=message, approved=True, comment="", asked=answer.asked)
        return {}

    # -- cost ----------------------------------------------------------------------------------

    def estimator(self, ctx: Context) -> Estimator:
        backend = self.session.backend
        try:
            backend = self.backend_for(ctx)
        except ScriptFailure:
            pass
        return Estimator(backend, lambda node: self.value(node, ctx), lambda s: self.text(s, ctx))

    def visit_EstimateCost(self, node: ast.EstimateCost, ctx: Context) -> dict[str, Any]:
        estimate = self.estimator(ctx).block(node.body, ctx.directives)
        ctx.last["LAST_ESTIMATE"] = estimate.as_value()
        self.emit("estimate", line=node.line, **estimate.as_value())
        # Refused here, before the body has done anything, when the estimate does not fit.
        self.session.budgets.check_fits(
            api_calls=estimate.api_calls, tokens=estimate.tokens, seconds=estimate.seconds
        )
        self.run_block(node.body, ctx.nested())
        return {"estimate": estimate.as_value()}

    # -- concurrency and choice ----------------------------------------------------------------

    def _run_child(self, outcome: _Outcome, done: threading.Event) -> None:
        try:
            self._run_isolated(outcome.node, outcome)
        finally:
            done.set()

    @staticmethod
    def _wait_for_children(done: list[threading.Event], ctx: Context) -> bool:
        """Wait for every PARALLEL child; on Ctrl-C cancel them all, then still wait for them.

        Events rather than `Thread.join`: on Python 3.11 a join interrupted by Ctrl-C can mark
        a thread as stopped while it still runs, and the children must really be gone before
        TEARDOWN starts. After a Ctrl-C, children stop within one poll of their command; a
        child inside a model call stops when the call returns (bounded by its timeout).
        """
        interrupted = False
        while True:
            try:
                pending = [event for event in done if not event.is_set()]
                if not pending:
                    return interrupted
                pending[0].wait(_CHILD_POLL)
            except KeyboardInterrupt:
                interrupted = True
                ctx.cancel.set()  # every child's command is killed at its next poll

    def _run_isolated(self, node: ast.Node, outcome: _Outcome) -> None:
        try:
            self.execute(node, outcome.context)
        except ScriptFailure as exc:
            self.record_failure(exc, node, outcome.context)
            outcome.failure = exc
        except (KeyboardInterrupt, RunInterrupted):
            outcome.interrupted = True
        except BaseException as exc:  # a bug must not vanish inside a thread
            outcome.failure = ScriptFailure(f"internal error in a PARALLEL child: {exc!r}", kind="InternalError")
            self.record_failure(outcome.failure, node, outcome.context)

    def visit_Parallel(self, node: ast.Parallel, ctx: Context) -> dict[str, Any]:
        # Directives among the children set the scope for all of them, not for one thread.
        scope = ctx.nested()
        children = []
        for child in node.body:
            if isinstance(child, ast.Directive):
                self.execute(child, scope)
            else:
                children.append(child)
        outcomes = []
        for child in children:
            steps: list[StepResult] = []
            outcomes.append(_Outcome(child, scope.isolated(steps), steps=steps))
        done = [threading.Event() for _ in outcomes]
        for index, outcome in enumerate(outcomes):
            threading.Thread(
                target=self._run_child, args=(outcome, done[index]),
                name=f"parallel-{node.line}-{index}", daemon=True,
            ).start()
        interrupted = self._wait_for_children(done, ctx)
        for outcome in outcomes:
            ctx.container.extend(outcome.steps)
        if interrupted or any(o.interrupted for o in outcomes):
            ctx.cancel.set()
            self.check_cancel(ctx)
            raise RunInterrupted()
        self._merge(node, ctx, outcomes)
        failed = [o for o in outcomes if o.failure is not None]
        if failed:
            reports = "; ".join(
                f"line {o.failure.line}: {o.failure.message}" for o in failed  # type: ignore[union-attr]
            )
            raise ParallelFailed(
                f"{len(failed)} of {len(outcomes)} PARALLEL children failed: {reports}"
            )
        return {"children": len(outcomes)}

    def _merge(self, node: ast.Node, ctx: Context, outcomes: list[_Outcome]) -> None:
        """Merge the children's variables (a name set by two children is an error) and LAST_*."""
        setters: dict[str, _Outcome] = {}
        for outcome in outcomes:
            own = outcome.context.vars.maps[0]  # type: ignore[attr-defined]
            for name in own:
                if name in setters:
                    first = setters[name].node
                    raise ScriptFailure(
                        f"PARALLEL children at lines {first.line} and {outcome.node.line} both set "
                        f"variable {name}; give each child its own variable names",
                        kind="ParallelConflict",
                    )
                setters[name] = outcome
        for name, outcome in setters.items():
            ctx.vars[name] = outcome.context.vars[name]
        for outcome in outcomes:  # the last child (in source order) that set a LAST_* wins
            for name in BUILTIN_SOURCES:
                if outcome.context.last.get(name) is not ctx.last.get(name) and name in outcome.context.last:
                    ctx.last[name] = outcome.context.last[name]

    def option_estimate(self, option: ast.Node, ctx: Context) -> Estimate:
        return self.estimator(ctx).block(option.body, ctx.directives)  # type: ignore[attr-defined]

    def visit_Choose(self, node: ast.Choose, ctx: Context) -> dict[str, Any]:
        options = list(node.options)
        order = ctx.directives.get("choose")
        if order == "cheapest":
            costs = {id(option): self.option_estimate(option, ctx).cost_key() for option in options}
            options.sort(key=lambda option: costs[id(option)])  # stable: ties keep source order
        elif order not in (None, "first", "ordered", True):
            raise ScriptFailure(
                f"@choose must be \"cheapest\" or \"first\", got {values.show(order)}", kind="DirectiveError"
            )
        reasons = []
        for index, option in enumerate(options):
            steps: list[StepResult] = []
            option_ctx = ctx.isolated(steps)
            try:
                self.run_step("option", option, option.body, option_ctx, failed_status=NOT_CHOSEN)
            except ScriptFailure as exc:
                ctx.container.extend(steps)
                failure = self.record_failure(exc, option, option_ctx)
                reasons.append(f"{self.describe(option, option_ctx)!r} (line {failure.line}: {failure.message})")
                continue
            except (KeyboardInterrupt, RunInterrupted):
                ctx.container.extend(steps)
                raise
            ctx.container.extend(steps)
            own = option_ctx.vars.maps[0]  # type: ignore[attr-defined]
            for name, value in own.items():
                ctx.vars[name] = value
            ctx.last.update(option_ctx.last)
            self.skip(tuple(options[index + 1 :]), ctx.container, status=NOT_CHOSEN)
            return {"chosen": self.describe(option, ctx)}
        raise NoOptionSucceeded(f"CHOOSE: none of its {len(options)} options succeeded: " + "; ".join(reasons))

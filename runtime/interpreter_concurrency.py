"""PARALLEL and CHOOSE: blocks whose children run in isolated contexts and are merged back.

A mixin of `Interpreter` (`runtime/interpreter.py`): it uses the interpreter's `execute`,
`record_failure`, `run_step`, `skip`, `describe`, `check_cancel` and `estimator`.

PARALLEL runs each child in its own thread with a private overlay of variables and its own
`LAST_*` (`Context.isolated`); when all are done, their variables are merged (a name set by two
children is a `ParallelConflict`) and the last child in source order that set a `LAST_*` wins.
CHOOSE tries its options in order (or cheapest first under `@choose "cheapest"`) and keeps the
first that succeeds; the others are reported as not chosen.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runtime.context import Context, RunInterrupted
from runtime.errors import InternalError, NoOptionSucceeded, ParallelConflict, ParallelFailed, ScriptFailure
from runtime.interpolate import BUILTIN_SOURCES
from runtime.result import NOT_CHOSEN, StepResult
from runtime.taint import join
from tisslang import ast

if TYPE_CHECKING:
    from runtime.estimate import Estimator
    from runtime.result import Failure

_CHILD_POLL = 0.1  # seconds between checks while waiting for PARALLEL children


@dataclass
class _Outcome:
    """How one PARALLEL child or CHOOSE option ended."""

    node: ast.Node
    context: Context
    failure: ScriptFailure | None = None
    interrupted: bool = False
    steps: list[StepResult] = field(default_factory=list)


class ConcurrencyMixin:
    """`visit_Parallel` and `visit_Choose`; see the module docstring."""

    # What this mixin uses of the interpreter (defined in runtime/interpreter.py).
    if TYPE_CHECKING:
        def execute(self, stmt: ast.Node, ctx: Context) -> None: ...
        def record_failure(self, exc: ScriptFailure, stmt: ast.Node, ctx: Context) -> Failure: ...
        def run_step(self, kind: str, node: ast.Node, body: tuple[ast.Node, ...], ctx: Context, *,
                     failed_status: str = ...) -> StepResult: ...
        def skip(self, body: tuple[ast.Node, ...] | None, container: list[StepResult],
                 status: str = ...) -> None: ...
        def describe(self, node: ast.Node, ctx: Context | None = None) -> str: ...
        def check_cancel(self, ctx: Context) -> None: ...
        def estimator(self, ctx: Context) -> Estimator: ...

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
            outcome.failure = InternalError(f"internal error in a PARALLEL child: {exc!r}")
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
            # taint.join: a child's message quoting model text keeps its taint in this one
            reports = [piece for index, o in enumerate(failed)
                       for piece in ("; " if index else "", f"line {o.failure.line}: ",  # type: ignore[union-attr]
                                     o.failure.message)]  # type: ignore[union-attr]
            raise ParallelFailed(
                join([f"{len(failed)} of {len(outcomes)} PARALLEL children failed: ", *reports])
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
                    raise ParallelConflict(
                        f"PARALLEL children at lines {first.line} and {outcome.node.line} both set "
                        f"variable {name}; give each child its own variable names",
                    )
                setters[name] = outcome
        for name, outcome in setters.items():
            ctx.vars[name] = outcome.context.vars[name]
        for outcome in outcomes:  # the last child (in source order) that set a LAST_* wins
            for name in BUILTIN_SOURCES:
                if outcome.context.last.get(name) is not ctx.last.get(name) and name in outcome.context.last:
                    ctx.last[name] = outcome.context.last[name]

    def option_estimate(self, option: ast.Option, ctx: Context) -> tuple[float, float, float]:
        """The option's `cost_key`; an option whose estimate refuses a directive value would fail
        when tried, so it is tried last (as before, the CHOOSE then goes on to the next one)."""
        try:
            return self.estimator(ctx).block(option.body, ctx.directives).cost_key()
        except ScriptFailure:
            return (math.inf, math.inf, math.inf)

    def visit_Choose(self, node: ast.Choose, ctx: Context) -> dict[str, Any]:
        options = list(node.options)
        # `@choose` was validated where it was written (directives.py), so it is one of these.
        if ctx.directives.get("choose") == "cheapest":
            costs = {id(option): self.option_estimate(option, ctx) for option in options}
            options.sort(key=lambda option: costs[id(option)])  # stable: ties keep source order
        reasons = []
        for index, option in enumerate(options):
            steps: list[StepResult] = []
            option_ctx = ctx.isolated(steps)
            try:
                self.run_step("option", option, option.body, option_ctx, failed_status=NOT_CHOSEN)
            except ScriptFailure as exc:
                ctx.container.extend(steps)
                failure = self.record_failure(exc, option, option_ctx)
                reasons.append(join([f"{self.describe(option, option_ctx)!r} (line {failure.line}: ",
                                     failure.message, ")"]))  # join: keeps the message's taint
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
        raise NoOptionSucceeded(join([f"CHOOSE: none of its {len(options)} options succeeded: ",
                                      *[piece for index, reason in enumerate(reasons)
                                        for piece in ("; " if index else "", reason)]]))

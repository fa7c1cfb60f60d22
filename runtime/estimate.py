"""The static cost estimate of a block: what ESTIMATE_COST, `@choose "cheapest"` and `--dry-run` use.

The estimate walks the statements without running anything and is an upper bound where it can
be one:

- each PROMPT_AGENT is one API call and costs its prompt's tokens plus the `@max_tokens` in
  scope; the prompt is counted as the budgets charge it before the call
  (`runtime.backends.guarded.prompt_tokens`): through the backend's `count_prompt_tokens` where
  it has one (an instruct model's chat template included, exactly; an HTTP server's upper
  bound), else its `count_tokens` of the prompt and the persona;
- each RUN costs the `@timeout` in scope in seconds when one is set (its upper bound); a RUN
  without one adds nothing to `seconds` and is counted in `unbounded_runs`;
- IF takes the costlier branch, TRY the body plus the handler, CHOOSE the sum of all options
  (in the worst case every option runs), PARALLEL the sum of calls and tokens but the longest
  child in seconds;
- RETRY n is n times its body (every attempt may run all of it) plus n - 1 delays;
- FOR is its body times the number of items when that is known before the loop runs: a list
  written in the script, a value already set that nothing estimated before the loop (in source
  order) may set again, the workspace files a FILES glob matches now when nothing before the
  loop writes, deletes or runs anything. Otherwise the body is counted once and the loop is
  counted in `unbounded_loops`: the estimate is then no upper bound, and says so.

Prompts are interpolated with the values known when the estimate is made; a reference that is
not set yet counts as its `{{ name }}` text.

Directive values are read through the directive table (`tisslang/directives.py`) with the
interpreter's own conversions: `check_directive` where a directive is written (`@timeout`) and
`GenerationSettings.from_directives` at a PROMPT_AGENT (`@persona`, `@max_tokens`). A value the
run would refuse is refused here with the same error, positioned at the statement the run would
fail at: an estimate is a dry run, and a figure computed from a value that can never be used
(`@max_tokens -5` once gave an estimate 5 tokens smaller) would be no bound at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from runtime.backends.base import GenerationSettings, ModelBackend, estimate_tokens
from runtime.backends.guarded import prompt_tokens
from runtime.backends.select import is_backend_spec
from runtime.errors import ScriptFailure, Unsupported
from runtime.interpreter_directives import check_directive
from tisslang import ast, statements
from tisslang import directives as directive_table
from tisslang.directives import duration_seconds
from tisslang.statements import walk


@dataclass(frozen=True)
class Estimate:
    api_calls: int = 0
    tokens: int = 0
    seconds: float = 0.0
    unbounded_runs: int = 0  # RUNs with no @timeout, whose time cannot be known in advance
    unbounded_loops: int = 0  # FOR loops whose item count was not known (body counted once)

    def __add__(self, other: "Estimate") -> "Estimate":
        return Estimate(
            self.api_calls + other.api_calls,
            self.tokens + other.tokens,
            self.seconds + other.seconds,
            self.unbounded_runs + other.unbounded_runs,
            self.unbounded_loops + other.unbounded_loops,
        )

    def times(self, count: int) -> "Estimate":
        """The cost of running something `count` times (RETRY's attempts, FOR's items); the
        loops of unknown length inside are still the same loops, counted once."""
        return Estimate(self.api_calls * count, self.tokens * count, self.seconds * count,
                        self.unbounded_runs * count, self.unbounded_loops)

    def worst(self, other: "Estimate") -> "Estimate":
        """The costlier of two alternatives, field by field (an upper bound for either)."""
        return Estimate(
            max(self.api_calls, other.api_calls),
            max(self.tokens, other.tokens),
            max(self.seconds, other.seconds),
            max(self.unbounded_runs, other.unbounded_runs),
            max(self.unbounded_loops, other.unbounded_loops),
        )

    def cost_key(self) -> tuple[int, int, float]:
        """How `@choose "cheapest"` orders options: tokens, then API calls, then seconds."""
        return (self.tokens, self.api_calls, self.seconds)

    def as_value(self) -> dict[str, Any]:
        """`LAST_ESTIMATE`."""
        return {
            "API_CALLS": self.api_calls,
            "TOKENS": self.tokens,
            "SECONDS": round(self.seconds, 3),
            "UNBOUNDED_RUNS": self.unbounded_runs,
            "UNBOUNDED_LOOPS": self.unbounded_loops,
        }


class Estimator:
    """Estimates blocks. `evaluate(value_node)` and `render(string_node)` give values when known;
    `count_items(for_node)` the number of items a FOR would run over, or None when unknown."""

    def __init__(
        self,
        backend: ModelBackend | None,
        evaluate: Callable[[ast.Node], Any],
        render: Callable[[ast.String], str],
        count_items: Callable[[ast.For], int | None] | None = None,
    ) -> None:
        self.backend = backend
        self._evaluate = evaluate
        self._render = render
        self._count_items = count_items
        # What the statements estimated so far (source order, the order they run in) may change
        # before a later FOR runs: the names they set, and whether they may touch files.
        self._assigned: set[str] = set()
        self._touches_files = False

    def _count(self, text: str) -> int:
        return self.backend.count_tokens(text) if self.backend is not None else estimate_tokens(text)

    def _text(self, string: ast.String) -> str:
        try:
            return self._render(string)
        except ScriptFailure:
            return string.text

    def _value(self, node: ast.Node | None) -> Any:
        if node is None:
            return True
        try:
            return self._evaluate(node)
        except ScriptFailure:
            return None

    def block(self, body: tuple[ast.Node, ...] | None, directives: dict[str, Any]) -> Estimate:
        directives = dict(directives)  # directives set inside stay inside
        total = Estimate()
        for stmt in body or ():
            if isinstance(stmt, ast.Directive):
                value = self._value(stmt.value)
                if value is not None:  # None: a reference not known yet, checked when it runs
                    try:
                        check_directive(stmt.name, value)  # as the interpreter, where written
                    except ScriptFailure as exc:
                        raise exc.located(None, stmt.line, stmt.column) from None
                directives[stmt.name] = value
                continue
            total = total + self.statement(stmt, directives)
        return total

    def statement(self, stmt: ast.Node, directives: dict[str, Any]) -> Estimate:
        """The cost of one statement; a statement this estimator does not know is an error."""
        try:
            method = _COSTS[type(stmt)]
        except KeyError:
            raise Unsupported(f"the cost estimate has no rule for {type(stmt).__name__} statements; "
                              "this is a bug in tiss, please report it") from None
        try:
            cost = method(self, stmt, directives)
        except ScriptFailure as exc:  # a value the run would refuse here (an inner one keeps its own)
            raise exc.located(None, stmt.line, stmt.column) from None
        self._note(stmt)
        return cost

    def _note(self, stmt: ast.Node) -> None:
        for node in walk(stmt, blocks_only=True):
            spec = statements.BY_NODE.get(type(node))
            if spec is None:
                continue
            self._assigned.update(getattr(node, name) for name in spec.sets if getattr(node, name))
            self._assigned.update(spec.sets_builtins)
            if spec.path_fields or isinstance(node, ast.Run):
                self._touches_files = True

    def _prompt_agent(self, stmt: ast.PromptAgent, directives: dict[str, Any]) -> Estimate:
        return self.prompt(self._text(stmt.prompt), directives)

    def _run(self, stmt: ast.Run, directives: dict[str, Any]) -> Estimate:
        timeout = directives.get("timeout")
        if timeout is None:
            return Estimate(unbounded_runs=1)
        # Checked where it was written (`block`), so the table's conversion cannot refuse it.
        return Estimate(seconds=directive_table.BY_NAME["timeout"].convert(timeout))

    def _if(self, stmt: ast.If, directives: dict[str, Any]) -> Estimate:
        return self.block(stmt.body, directives).worst(self.block(stmt.orelse, directives))

    def _try(self, stmt: ast.Try, directives: dict[str, Any]) -> Estimate:
        return self.block(stmt.body, directives) + self.block(stmt.handler, directives)

    def _choose(self, stmt: ast.Choose, directives: dict[str, Any]) -> Estimate:
        total = Estimate()
        for option in stmt.options:
            total = total + self.block(option.body, directives)
        return total

    def _parallel(self, stmt: ast.Parallel, directives: dict[str, Any]) -> Estimate:
        total, longest = Estimate(), 0.0
        for child in stmt.body:
            cost = self.block((child,), directives)
            total = total + cost
            longest = max(longest, cost.seconds)
        return Estimate(total.api_calls, total.tokens, longest, total.unbounded_runs)

    def _retry(self, stmt: ast.Retry, directives: dict[str, Any]) -> Estimate:
        attempts = stmt.attempts
        if isinstance(attempts, float) and attempts.is_integer():
            attempts = int(attempts)
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            return Estimate()  # the RETRY fails before its body runs
        total = self.block(stmt.body, directives).times(attempts)
        delay = 0.0
        if stmt.delay is not None:
            delay = duration_seconds(self._text(stmt.delay)) or 0.0
        return total + Estimate(seconds=delay * (attempts - 1))

    def _for(self, stmt: ast.For, directives: dict[str, Any]) -> Estimate:
        count = self.items(stmt)  # before the body, which is estimated (and noted) after it
        body = self.block(stmt.body, directives)
        if count is None:
            return body + Estimate(unbounded_loops=1)
        return body.times(count)

    def items(self, stmt: ast.For) -> int | None:
        """How many items the FOR would run over, when that can be known now."""
        if stmt.source == "files" and self._touches_files:
            return None
        if any(isinstance(node, ast.Ref) and node.parts[0] in self._assigned
               for node in walk(stmt.value)):
            return None
        if self._count_items is not None:
            return self._count_items(stmt)
        if stmt.source == "files":
            return None
        value = self._value(stmt.value)
        if stmt.source == "lines":
            return len(value.splitlines()) if isinstance(value, str) else None
        return len(value) if isinstance(value, (list, tuple)) else None

    def _body(self, stmt: Any, directives: dict[str, Any]) -> Estimate:
        """STEP, SETUP, TEARDOWN, TASK, OPTION, ESTIMATE_COST: the cost of the block."""
        return self.block(stmt.body, directives)

    def _free(self, stmt: ast.Node, directives: dict[str, Any]) -> Estimate:
        """Statements that call no model and start no command."""
        return Estimate()

    def prompt(self, prompt: str, directives: dict[str, Any]) -> Estimate:
        # The settings the PROMPT_AGENT would be given: its conversions, and its errors
        # (SettingsError for e.g. `@max_tokens 2.5`).
        directives = dict(directives)
        if isinstance(directives.get("model"), str) and is_backend_spec(directives["model"]):
            directives.pop("model")  # it chose the backend, it is not a model name
        settings = GenerationSettings.from_directives(directives)
        if self.backend is not None:
            tokens = prompt_tokens(self.backend, prompt, settings)  # what the call is charged
        else:
            tokens = self._count(prompt) + (self._count(settings.persona) if settings.persona else 0)
        if settings.max_tokens is not None:
            tokens += settings.max_tokens
        return Estimate(api_calls=1, tokens=tokens)


# One rule per statement of the table (tests/tisslang/test_statement_table.py checks that none
# is missing). Directives never reach `statement`: `block` applies them to the scope.
_COSTS: dict[type, Callable[[Estimator, Any, dict[str, Any]], Estimate]] = {
    ast.PromptAgent: Estimator._prompt_agent,
    ast.Run: Estimator._run,
    ast.If: Estimator._if,
    ast.Try: Estimator._try,
    ast.Choose: Estimator._choose,
    ast.Parallel: Estimator._parallel,
    ast.Task: Estimator._body,
    ast.Setup: Estimator._body,
    ast.Teardown: Estimator._body,
    ast.Step: Estimator._body,
    ast.Option: Estimator._body,
    ast.EstimateCost: Estimator._body,
    ast.Write: Estimator._free,
    ast.Read: Estimator._free,
    ast.Assert: Estimator._free,
    ast.Var: Estimator._free,
    ast.Log: Estimator._free,
    ast.SetBudget: Estimator._free,
    ast.RequestReview: Estimator._free,
    ast.Pause: Estimator._free,
    ast.Mkdir: Estimator._free,
    ast.Delete: Estimator._free,
    ast.Directive: Estimator._free,
    ast.Retry: Estimator._retry,
    ast.For: Estimator._for,
}
COST_RULES = frozenset(_COSTS)
"""The node classes the estimator has a rule for."""

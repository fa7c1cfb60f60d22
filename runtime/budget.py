"""Run budgets: EXECUTION_TIME, API_CALLS and TOKENS, counted across a whole run.

One `Budgets` object lives for a run (or a REPL session) and is shared by every thread the run
starts, PARALLEL children included, so all of its methods take one lock. How the interpreter
uses it:

- `SET_BUDGET NAME = value`   → `budgets.set(name, value)`
- before a model call          → `r = budgets.reserve_call(prompt_tokens, max_tokens)`; it raises
  `BudgetExceeded` and the call is never sent when API_CALLS or TOKENS would be exceeded
- after the call               → `budgets.record(r, prompt_tokens, completion_tokens)`, or
  `budgets.release(r)` when the call failed without reporting usage
- before a RUN                 → `timeout = budgets.bound_timeout(timeout)`
- between statements           → `budgets.check_time()` ends the run once EXECUTION_TIME is spent
- ESTIMATE_COST                → `budgets.check_fits(api_calls=..., tokens=..., seconds=...)`
- a REPL between entries       → `budgets.pause()` / `budgets.resume()`: time spent waiting at
  the prompt is not execution time

Tokens of calls in flight are reserved (prompt plus `@max_tokens`) so that concurrent calls can
not jointly overshoot TOKENS; when the answer arrives the reservation is replaced by the tokens
the backend reports. A call without `@max_tokens` under a TOKENS budget gets a completion cap
(`Reservation.max_tokens`, what the backend is told) of what remains of TOKENS after its prompt,
and that is what it reserves; a call whose prompt leaves no room for one completion token is
never sent. So no call can take the run past TOKENS by its completion (in PARALLEL, give each
call its own `@max_tokens`: a call without one reserves all that is left).
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from dataclasses import dataclass
from typing import Callable

from runtime.errors import ScriptFailure
from tisslang import directives as directive_table

EXECUTION_TIME = "EXECUTION_TIME"
API_CALLS = "API_CALLS"
TOKENS = "TOKENS"
BUDGET_NAMES = (EXECUTION_TIME, API_CALLS, TOKENS)
BUDGET_ALIASES = {"TOKEN_COUNT": TOKENS}

# What a duration string looks like is the language's (the checker uses the same pattern).
_DURATION = directive_table.DURATION
_UNIT_SECONDS = directive_table.UNIT_SECONDS


class BudgetError(ScriptFailure):
    """A SET_BUDGET the script got wrong: unknown budget name or a value of the wrong kind."""

    exit_code = 2
    kind = "BudgetError"


class BudgetExceeded(ScriptFailure):
    """A budget is spent; the message names the budget, its limit and what was used.

    Like every `ScriptFailure` it fails the innermost STEP unless a TRY catches it; the
    interpreter gives it the statement's position with `located`.
    """

    exit_code = 1
    kind = "BudgetExceeded"

    def __init__(self, budget: str, limit: float, used: float, detail: str) -> None:
        self.budget = budget
        self.limit = limit
        self.used = used
        super().__init__(f"budget {budget} exceeded: {detail}")


# The longest duration anything accepts (about 126 years): longer ones overflow the timers
# (threading.TIMEOUT_MAX is about 9.2e9 s on Linux), and mean "never" anyway.
MAX_SECONDS = 4e9


def parse_duration(value: object, what: str = EXECUTION_TIME) -> float:
    """Seconds from a number or a string such as "500ms", "30s", "5m", "1h" or "90".

    >>> parse_duration("5m"), parse_duration("500ms"), parse_duration(2.5)
    (300.0, 0.5, 2.5)
    """
    if isinstance(value, bool):
        raise BudgetError(f"{what} must be a duration like 30, \"30s\", \"5m\" or \"500ms\", got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise BudgetError(f"{what} must be a duration like 30, \"30s\", \"5m\" or \"500ms\", got {value!r}")
    if math.isnan(seconds) or seconds < 0:
        raise BudgetError(f"{what} must be a duration of zero or more seconds, got {value!r}")
    if seconds > MAX_SECONDS:  # 1e400 is inf: too large, not negative
        raise BudgetError(f"{what} {value!r} is too large: at most {MAX_SECONDS:g} seconds (about 126 years)")
    return seconds


def _count(name: str, value: object) -> int:
    """A non-negative whole number from a budget value (`3`, `3.0` or `"3"`)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BudgetError(f"{name} must be a whole number of zero or more, got {value!r}")
    return value


def canonical_budget_name(name: str) -> str:
    """The budget a SET_BUDGET name refers to (`TOKEN_COUNT` is `TOKENS`)."""
    canonical = BUDGET_ALIASES.get(name, name)
    if canonical not in BUDGET_NAMES:
        known = ", ".join(BUDGET_NAMES + tuple(BUDGET_ALIASES))
        raise BudgetError(f"unknown budget {name!r}; the budgets are {known}")
    return canonical


def format_seconds(seconds: float) -> str:
    """A duration for messages: "500ms", "30s", "2.5s"."""
    if 0 < seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    return f"{seconds:.3g}s" if seconds < 100 else f"{seconds:.0f}s"


@dataclass(frozen=True)
class Reservation:
    """One model call admitted by `reserve_call`; hand it back to `record` or `release`."""

    id: int
    tokens: int
    max_tokens: int | None = None  # the completion cap the call must be sent with (None: none)


@dataclass(frozen=True)
class BudgetUsage:
    """What a run has used so far; limits are `None` when that budget was never set."""

    api_calls: int
    tokens: int
    tokens_in_flight: int
    seconds: float
    api_calls_limit: int | None
    tokens_limit: int | None
    seconds_limit: float | None


class Budgets:
    """The budgets of one run; thread-safe. See the module docstring for how to use it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._started = clock()
        self._paused_at: float | None = None
        self._paused_total = 0.0
        self._lock = threading.Lock()
        self._limits: dict[str, float | int] = {}
        self._api_calls = 0
        self._tokens = 0
        self._in_flight: dict[int, int] = {}
        self._ids = itertools.count(1)

    # -- limits ---------------------------------------------------------------------------

    def set(self, name: str, value: object) -> None:
        """SET_BUDGET: set (or replace) one limit. Raises `BudgetError` for a bad name or value."""
        budget = canonical_budget_name(name)
        limit = parse_duration(value) if budget == EXECUTION_TIME else _count(budget, value)
        with self._lock:
            self._limits[budget] = limit

    def limit(self, name: str) -> float | int | None:
        with self._lock:
            return self._limits.get(canonical_budget_name(name))

    def usage(self) -> BudgetUsage:
        with self._lock:
            return BudgetUsage(
                api_calls=self._api_calls,
                tokens=self._tokens,
                tokens_in_flight=sum(self._in_flight.values()),
                seconds=self._elapsed_locked(),
                api_calls_limit=self._limits.get(API_CALLS),  # type: ignore[arg-type]
                tokens_limit=self._limits.get(TOKENS),  # type: ignore[arg-type]
                seconds_limit=self._limits.get(EXECUTION_TIME),
            )

    # -- time -----------------------------------------------------------------------------

    def elapsed(self) -> float:
        """Seconds of execution so far: since the run began, minus the paused stretches."""
        with self._lock:
            return self._elapsed_locked()

    def _elapsed_locked(self) -> float:
        now = self._clock()
        paused = self._paused_total + (now - self._paused_at if self._paused_at is not None else 0.0)
        return now - self._started - paused

    def pause(self) -> None:
        """Stop counting EXECUTION_TIME (a REPL waiting for the next entry); idempotent."""
        with self._lock:
            if self._paused_at is None:
                self._paused_at = self._clock()

    def resume(self) -> None:
        """Count EXECUTION_TIME again after `pause`; idempotent."""
        with self._lock:
            if self._paused_at is not None:
                self._paused_total += self._clock() - self._paused_at
                self._paused_at = None

    def remaining_seconds(self) -> float | None:
        """Seconds left of EXECUTION_TIME (never negative), or None when it is not set."""
        with self._lock:
            limit = self._limits.get(EXECUTION_TIME)
        if limit is None:
            return None
        return max(0.0, limit - self.elapsed())

    def check_time(self) -> None:
        """Raise `BudgetExceeded` when EXECUTION_TIME is spent."""
        with self._lock:
            limit = self._limits.get(EXECUTION_TIME)
        if limit is None:
            return
        used = self.elapsed()
        if used >= limit:
            raise BudgetExceeded(
                EXECUTION_TIME, limit, used,
                f"limit {format_seconds(limit)}, {format_seconds(used)} used",
            )

    def bound_timeout(self, timeout: float | None) -> float | None:
        """The least of `timeout` and the remaining EXECUTION_TIME (None: no bound at all).

        Raises `BudgetExceeded` when no time is left, so a RUN never starts with a zero timeout.
        """
        self.check_time()
        remaining = self.remaining_seconds()
        if remaining is None:
            return timeout
        return remaining if timeout is None else min(timeout, remaining)

    # -- model calls ----------------------------------------------------------------------

    def reserve_call(self, prompt_tokens: int, max_tokens: int | None) -> Reservation:
        """Admit one model call before it is sent, or raise `BudgetExceeded`.

        The call counts against API_CALLS from here on (it was attempted); its prompt tokens
        plus `max_tokens` are reserved against TOKENS until `record` or `release`. Without
        `max_tokens`, under a TOKENS limit, the cap is what the prompt leaves of TOKENS (refused
        when that is nothing); without either, the prompt alone is reserved. The returned
        reservation's `max_tokens` is the cap the call must be sent with.
        """
        self.check_time()
        with self._lock:
            call_limit = self._limits.get(API_CALLS)
            if call_limit is not None and self._api_calls + 1 > call_limit:
                raise BudgetExceeded(
                    API_CALLS, call_limit, self._api_calls,
                    f"limit {_calls(call_limit)}, {self._api_calls} used; the call was not sent",
                )
            token_limit = self._limits.get(TOKENS)
            in_flight = sum(self._in_flight.values())
            if token_limit is not None and max_tokens is None:
                # No cap of its own: the completion may take what the prompt leaves, no more.
                room = token_limit - self._tokens - in_flight - prompt_tokens
                if room < 1:
                    flight = f" (+{in_flight} reserved by calls in flight)" if in_flight else ""
                    raise BudgetExceeded(
                        TOKENS, token_limit, self._tokens,
                        f"limit {token_limit} tokens, {self._tokens} used{flight}; this call's "
                        f"{prompt_tokens} prompt tokens leave no room for an answer, so it was "
                        "not sent",
                    )
                max_tokens = room
            needed = prompt_tokens + (max_tokens or 0)
            if token_limit is not None and self._tokens + in_flight + needed > token_limit:
                need = f"{prompt_tokens} prompt tokens"
                if max_tokens:
                    need += f" + @max_tokens {max_tokens}"
                flight = f" (+{in_flight} reserved by calls in flight)" if in_flight else ""
                raise BudgetExceeded(
                    TOKENS, token_limit, self._tokens,
                    f"limit {token_limit} tokens, {self._tokens} used{flight}; this call needs "
                    f"{need} = {needed}, so it was not sent",
                )
            self._api_calls += 1
            reservation = Reservation(next(self._ids), needed, max_tokens)
            self._in_flight[reservation.id] = needed
            return reservation

    def record(self, reservation: Reservation, prompt_tokens: int, completion_tokens: int) -> None:
        """Replace a reservation with the tokens the call really used.

        Raises `BudgetExceeded` when the real usage took TOKENS past its limit (the backend's
        own count can exceed the estimate the reservation was made with); the usage stays
        recorded either way.
        """
        used_now = prompt_tokens + completion_tokens
        with self._lock:
            self._take(reservation)
            self._tokens += used_now
            token_limit = self._limits.get(TOKENS)
            total = self._tokens
        if token_limit is not None and total > token_limit:
            raise BudgetExceeded(
                TOKENS, token_limit, total,
                f"limit {token_limit} tokens, {total} used after a call that took "
                f"{prompt_tokens} prompt + {completion_tokens} completion tokens",
            )

    def release(self, reservation: Reservation) -> None:
        """Give back a reservation's tokens for a call that failed before reporting usage."""
        with self._lock:
            self._take(reservation)

    def _take(self, reservation: Reservation) -> None:
        if self._in_flight.pop(reservation.id, None) is None:
            # A programming error in the caller, not something a script can cause.
            raise ValueError(f"reservation {reservation.id} was already recorded or released")

    # -- estimates ------------------------------------------------------------------------

    def check_fits(self, *, api_calls: int = 0, tokens: int = 0, seconds: float = 0.0) -> None:
        """Raise `BudgetExceeded` unless an estimated cost fits what is left of every budget."""
        self.check_time()
        with self._lock:
            call_limit = self._limits.get(API_CALLS)
            token_limit = self._limits.get(TOKENS)
            time_limit = self._limits.get(EXECUTION_TIME)
            calls_used = self._api_calls
            tokens_used = self._tokens + sum(self._in_flight.values())
        if call_limit is not None and calls_used + api_calls > call_limit:
            raise BudgetExceeded(
                API_CALLS, call_limit, calls_used,
                f"limit {_calls(call_limit)}, {calls_used} used; the estimate needs {api_calls} more",
            )
        if token_limit is not None and tokens_used + tokens > token_limit:
            raise BudgetExceeded(
                TOKENS, token_limit, tokens_used,
                f"limit {token_limit} tokens, {tokens_used} used; the estimate needs {tokens} more",
            )
        if time_limit is not None:
            used = self.elapsed()
            if used + seconds > time_limit:
                raise BudgetExceeded(
                    EXECUTION_TIME, time_limit, used,
                    f"limit {format_seconds(time_limit)}, {format_seconds(used)} used; "
                    f"the estimate needs {format_seconds(seconds)} more",
                )


def _calls(n: int) -> str:
    """`1 call`, `2 calls`: budget messages are read by people."""
    return f"{n} call" if n == 1 else f"{n} calls"

"""Run budgets: parsing, each kind of limit, messages, and concurrent use from threads."""

from __future__ import annotations

import doctest
import threading

import pytest
from hypothesis import given, settings, strategies as st

import runtime.budget
from runtime.budget import (
    BudgetError,
    BudgetExceeded,
    Budgets,
    canonical_budget_name,
    parse_duration,
)


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_docstring_examples_hold():
    result = doctest.testmod(runtime.budget)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("text, seconds", [
    ("5m", 300.0), ("30s", 30.0), ("500ms", 0.5), ("1h", 3600.0), ("90", 90.0),
    (" 2.5s ", 2.5), (".5s", 0.5), (12, 12.0), (0.25, 0.25), (0, 0.0),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["5 minutes", "", "-3s", -1, True, None, [1], "1d", float("nan")])
def test_bad_durations_are_budget_errors(value):
    with pytest.raises(BudgetError, match="EXECUTION_TIME must be a duration"):
        parse_duration(value)


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["ms", "s", "m", "h"]))
def test_duration_units_scale(n, unit):
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    assert parse_duration(f"{n}{unit}") == pytest.approx(n * scale)


def test_budget_names_and_alias():
    assert canonical_budget_name("TOKEN_COUNT") == "TOKENS"
    with pytest.raises(BudgetError, match="unknown budget 'MONEY'; the budgets are EXECUTION_TIME, "
                                          "API_CALLS, TOKENS, TOKEN_COUNT"):
        Budgets().set("MONEY", 3)


@pytest.mark.parametrize("value", [-1, 2.5, "many", True, None])
def test_counts_must_be_whole_numbers(value):
    with pytest.raises(BudgetError, match="API_CALLS must be a whole number of zero or more"):
        Budgets().set("API_CALLS", value)


def test_counts_accept_integral_floats_and_digit_strings():
    budgets = Budgets()
    budgets.set("API_CALLS", 3.0)
    budgets.set("TOKEN_COUNT", "1000")
    assert budgets.limit("API_CALLS") == 3 and budgets.limit("TOKENS") == 1000


def test_api_calls_refuses_the_call_past_the_limit():
    budgets = Budgets()
    budgets.set("API_CALLS", 2)
    for _ in range(2):
        budgets.record(budgets.reserve_call(5, None), 5, 1)
    with pytest.raises(BudgetExceeded) as info:
        budgets.reserve_call(5, None)
    assert str(info.value) == "budget API_CALLS exceeded: limit 2 calls, 2 used; the call was not sent"
    assert (info.value.budget, info.value.limit, info.value.used) == ("API_CALLS", 2, 2)
    assert info.value.exit_code == 1
    assert budgets.usage().api_calls == 2


def test_zero_api_calls_allows_none():
    budgets = Budgets()
    budgets.set("API_CALLS", 0)
    with pytest.raises(BudgetExceeded, match="limit 0 calls, 0 used"):
        budgets.reserve_call(1, 1)


def test_tokens_reserve_prompt_plus_max_tokens_then_record_actual():
    budgets = Budgets()
    budgets.set("TOKENS", 100)
    first = budgets.reserve_call(20, 50)  # 70 reserved
    with pytest.raises(BudgetExceeded) as info:
        budgets.reserve_call(10, 25)  # 70 + 35 > 100
    assert str(info.value) == (
        "budget TOKENS exceeded: limit 100 tokens, 0 used (+70 reserved by calls in flight); "
        "this call needs 10 prompt tokens + @max_tokens 25 = 35, so it was not sent"
    )
    budgets.record(first, 20, 10)  # only 30 really used
    second = budgets.reserve_call(10, 25)
    budgets.record(second, 10, 25)
    usage = budgets.usage()
    assert (usage.tokens, usage.tokens_in_flight, usage.api_calls) == (65, 0, 2)


def test_record_past_the_limit_fails_and_keeps_the_usage():
    budgets = Budgets()
    budgets.set("TOKENS", 50)
    reservation = budgets.reserve_call(10, None)  # no @max_tokens: only the prompt is known
    with pytest.raises(BudgetExceeded, match="limit 50 tokens, 60 used after a call that took "
                                             "10 prompt \\+ 50 completion tokens"):
        budgets.record(reservation, 10, 50)
    assert budgets.usage().tokens == 60
    with pytest.raises(BudgetExceeded):
        budgets.reserve_call(1, None)


def test_release_returns_tokens_but_the_attempt_counts():
    budgets = Budgets()
    budgets.set("TOKENS", 10)
    reservation = budgets.reserve_call(4, 6)
    budgets.release(reservation)
    assert budgets.usage().tokens_in_flight == 0 and budgets.usage().api_calls == 1
    with pytest.raises(ValueError):
        budgets.release(reservation)
    budgets.reserve_call(4, 6)


def test_execution_time_with_a_clock():
    clock = FakeClock()
    budgets = Budgets(clock=clock)
    assert budgets.remaining_seconds() is None and budgets.bound_timeout(7.0) == 7.0
    budgets.set("EXECUTION_TIME", "30s")
    clock.now += 10
    assert budgets.remaining_seconds() == pytest.approx(20)
    assert budgets.bound_timeout(None) == pytest.approx(20)
    assert budgets.bound_timeout(5) == 5
    assert budgets.bound_timeout(60) == pytest.approx(20)
    budgets.check_time()
    clock.now += 21
    assert budgets.remaining_seconds() == 0
    with pytest.raises(BudgetExceeded) as info:
        budgets.check_time()
    assert str(info.value) == "budget EXECUTION_TIME exceeded: limit 30s, 31s used"
    with pytest.raises(BudgetExceeded, match="EXECUTION_TIME"):
        budgets.bound_timeout(10)
    with pytest.raises(BudgetExceeded, match="EXECUTION_TIME"):
        budgets.reserve_call(1, 1)  # no model call once time is spent


def test_paused_time_is_not_execution_time():
    clock = FakeClock()
    budgets = Budgets(clock=clock)
    budgets.set("EXECUTION_TIME", "10s")
    clock.now += 4
    budgets.pause()
    budgets.pause()  # idempotent
    clock.now += 100  # a REPL user thinking
    assert budgets.elapsed() == pytest.approx(4)
    budgets.check_time()
    budgets.resume()
    budgets.resume()
    clock.now += 5
    assert budgets.remaining_seconds() == pytest.approx(1)
    assert budgets.usage().seconds == pytest.approx(9)
    clock.now += 2
    with pytest.raises(BudgetExceeded, match="limit 10s, 11s used"):
        budgets.check_time()


def test_sub_second_limits_read_in_milliseconds():
    clock = FakeClock()
    budgets = Budgets(clock=clock)
    budgets.set("EXECUTION_TIME", "500ms")
    clock.now += 0.75
    with pytest.raises(BudgetExceeded, match="limit 500ms, 750ms used"):
        budgets.check_time()


def test_check_fits_for_estimates():
    clock = FakeClock()
    budgets = Budgets(clock=clock)
    budgets.check_fits(api_calls=100, tokens=10**6, seconds=1e6)  # nothing set: anything fits
    budgets.set("API_CALLS", 3)
    budgets.set("TOKENS", 100)
    budgets.set("EXECUTION_TIME", 60)
    budgets.record(budgets.reserve_call(10, 10), 10, 10)
    budgets.check_fits(api_calls=2, tokens=80, seconds=60)
    with pytest.raises(BudgetExceeded, match="API_CALLS exceeded: limit 3 calls, 1 used; the estimate needs 3 more"):
        budgets.check_fits(api_calls=3)
    with pytest.raises(BudgetExceeded, match="TOKENS exceeded: limit 100 tokens, 20 used; the estimate needs 81 more"):
        budgets.check_fits(tokens=81)
    clock.now += 30
    with pytest.raises(BudgetExceeded, match="EXECUTION_TIME exceeded: limit 60s, 30s used; the estimate needs 31s more"):
        budgets.check_fits(seconds=31)


def test_concurrent_calls_never_exceed_api_calls():
    budgets = Budgets()
    budgets.set("API_CALLS", 7)
    admitted, refused = [], []
    barrier = threading.Barrier(20)

    def worker():
        barrier.wait()
        try:
            reservation = budgets.reserve_call(1, 1)
        except BudgetExceeded:
            refused.append(1)
            return
        admitted.append(1)
        budgets.record(reservation, 1, 1)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(admitted) == 7 and len(refused) == 13
    assert budgets.usage().api_calls == 7 and budgets.usage().tokens == 14


def test_concurrent_reservations_never_overshoot_tokens():
    budgets = Budgets()
    budgets.set("TOKENS", 1000)
    lock = threading.Lock()
    peak = [0]
    barrier = threading.Barrier(8)

    def worker():
        barrier.wait()
        for _ in range(200):
            try:
                reservation = budgets.reserve_call(3, 7)
            except BudgetExceeded:
                continue
            usage = budgets.usage()
            with lock:
                peak[0] = max(peak[0], usage.tokens + usage.tokens_in_flight)
            budgets.record(reservation, 3, 2)  # each call really uses 5 of its 10

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    usage = budgets.usage()
    assert peak[0] <= 1000
    assert usage.tokens_in_flight == 0 and usage.tokens <= 1000
    # Calls stop only when a further 10-token reservation cannot fit.
    assert usage.tokens > 1000 - 10


@settings(max_examples=60, deadline=None)
@given(
    limit=st.integers(min_value=0, max_value=200),
    calls=st.lists(st.tuples(st.integers(0, 40), st.none() | st.integers(1, 40),
                             st.integers(0, 40), st.booleans()), max_size=30),
)
def test_admitted_calls_fit_while_usage_stays_within_reservations(limit, calls):
    budgets = Budgets()
    budgets.set("TOKENS", limit)
    for prompt, max_tokens, completion, fails in calls:
        try:
            reservation = budgets.reserve_call(prompt, max_tokens)
        except BudgetExceeded:
            usage = budgets.usage()
            # Refused only when the prompt and its cap (at least one answer token) cannot fit.
            assert usage.tokens + usage.tokens_in_flight + prompt + (max_tokens or 1) > limit
            continue
        assert budgets.usage().tokens + budgets.usage().tokens_in_flight <= limit
        # The cap the call is sent with: its own @max_tokens, or what its prompt leaves.
        assert reservation.max_tokens is not None and reservation.max_tokens >= 1
        assert max_tokens is None or reservation.max_tokens == max_tokens
        if fails:
            budgets.release(reservation)
        else:
            # A backend never answers past the cap it was sent, so usage never passes TOKENS.
            budgets.record(reservation, prompt, min(completion, reservation.max_tokens))
            assert budgets.usage().tokens <= limit


def test_a_limit_of_one_call_reads_in_the_singular():
    budgets = Budgets()
    budgets.set("API_CALLS", 1)
    budgets.reserve_call(1, None)
    with pytest.raises(BudgetExceeded, match="limit 1 call, 1 used; the call was not sent"):
        budgets.reserve_call(1, None)
    with pytest.raises(BudgetExceeded, match="limit 1 call, 1 used; the estimate needs 1 more"):
        budgets.check_fits(api_calls=1)

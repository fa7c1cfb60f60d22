"""Issue 4 in the interpreter: PROMPT_AGENT, budgets, PARALLEL, CHOOSE, ESTIMATE_COST, review."""

import io
import re
import threading
import time

from runtime.backends import Completion, estimate_tokens
from runtime.result import FAILED, NOT_CHOSEN, PASSED, SKIPPED
from runtime.review import Reviewer


class CountingBackend:
    """Echo that records every prompt it was actually sent (to prove refusals never send)."""

    name = "counting"

    def __init__(self):
        self.sent = []
        self.settings = []
        self._lock = threading.Lock()

    def count_tokens(self, text):
        return estimate_tokens(text)

    def generate(self, prompt, settings):
        with self._lock:
            self.sent.append(prompt)
            self.settings.append(settings)
        return Completion(f"answer to {prompt}", estimate_tokens(prompt), 5, "stop", model="count")


# -- PROMPT_AGENT --------------------------------------------------------------------------------


def test_prompt_agent_into_variable_and_last_prompt(run):
    result = run(
        'VAR topic = "tests"\n'
        '@persona "You are terse."\n'
        'PROMPT_AGENT "Write about {{ topic }}" INTO answer\n'
        'PROMPT_AGENT "again"\n'
        'ASSERT LAST_PROMPT.TEXT CONTAINS "again"\n'
    )
    assert result.status == PASSED, result.failure
    assert run.vars["answer"] == "You are terse.\n\nWrite about tests"
    assert run.last["LAST_PROMPT"]["PROMPT_TOKENS"] > 0
    prompts = run.events.named("prompt")
    assert len(prompts) == 2 and prompts[0]["line"] == 3 and prompts[0]["completion_tokens"] > 0


def test_directives_reach_the_backend_settings(run):
    backend = CountingBackend()
    result = run(
        '@temperature 0.5\n@max_tokens 7\n@seed 3\n@stop ["END"]\n@model "tiny"\n'
        'STEP "s" {\n  @top_p 0.9\n  PROMPT_AGENT "x"\n}\n',
        backend=backend,
    )
    assert result.status == PASSED, result.failure
    s = backend.settings[0]
    assert (s.temperature, s.max_tokens, s.seed, s.stop, s.model, s.top_p) == (0.5, 7, 3, ("END",), "tiny", 0.9)


def test_model_directive_can_select_echo_backend(run):
    result = run('@model "echo"\nPROMPT_AGENT "hi" INTO a\n', echo=False)
    assert result.status == PASSED, result.failure
    assert run.vars["a"] == "hi"


def test_prompt_agent_without_backend_says_how_to_configure(run, monkeypatch):
    monkeypatch.delenv("TISS_MODEL", raising=False)
    result = run('STEP "ask" {\n  PROMPT_AGENT "hi"\n}\n', echo=False)
    assert result.status == FAILED and result.failure.line == 2
    assert "--model echo" in result.failure.message and "TISS_MODEL" in result.failure.message


def test_bad_directive_value_is_a_positioned_failure(run):
    result = run('@temperature "hot"\nPROMPT_AGENT "x"\n')
    assert result.failure.line == 2 and "@temperature" in result.failure.message


# -- budgets -------------------------------------------------------------------------------------


def test_api_calls_budget_refuses_before_sending(run):
    backend = CountingBackend()
    result = run(
        'SET_BUDGET API_CALLS = 2\nPROMPT_AGENT "one"\nPROMPT_AGENT "two"\nPROMPT_AGENT "three"\n',
        backend=backend,
    )
    assert result.status == FAILED and result.failure.line == 4
    assert backend.sent == ["one", "two"]
    assert result.failure.message == "budget API_CALLS exceeded: limit 2 calls, 2 used; the call was not sent"


def test_tokens_budget_counts_prompt_plus_max_tokens_and_never_sends(run):
    backend = CountingBackend()
    result = run(
        'SET_BUDGET TOKEN_COUNT = 30\n@max_tokens 20\nPROMPT_AGENT "' + "x" * 60 + '"\n',
        backend=backend,
    )
    assert result.status == FAILED and backend.sent == []
    assert "TOKENS" in result.failure.message and "35" in result.failure.message  # 15 + 20


def test_budgets_are_shared_by_parallel_children(run):
    backend = CountingBackend()
    result = run(
        'SET_BUDGET API_CALLS = 3\n'
        'PARALLEL {\n' + "".join(f'  PROMPT_AGENT "p{i}"\n' for i in range(6)) + '}\n',
        backend=backend,
    )
    assert result.status == FAILED
    assert len(backend.sent) == 3
    assert result.failure.kind == "ParallelFailed" and "3 of 6" in result.failure.message


def test_execution_time_bounds_run_and_ends_the_run(run):
    started = time.monotonic()
    result = run('SET_BUDGET EXECUTION_TIME = "500ms"\nSTEP "long" { RUN "sleep 20" }\nSTEP "after" { LOG "x" }\n')
    assert time.monotonic() - started < 10  # vs 20-60 s without the kill; margin for load
    assert result.status == FAILED
    assert result.failure.kind == "BudgetExceeded"
    assert re.fullmatch(r"budget EXECUTION_TIME exceeded: limit 500ms, [\d.]+m?s used", result.failure.message)
    assert [s.status for s in result.steps] == [FAILED, SKIPPED]


def test_execution_time_spent_fails_next_statement_but_teardown_runs(run):
    result = run(
        'SET_BUDGET EXECUTION_TIME = "200ms"\nRUN "sleep 0.1"\nRUN "sleep 0.3"\n'
        'LOG "not reached"\nTEARDOWN { RUN "echo td > td.txt" }\n'
    )
    assert result.status == FAILED and "EXECUTION_TIME" in result.failure.message
    assert (run.root / "td.txt").read_text() == "td\n"


def test_unknown_budget_name(run):
    result = run('SET_BUDGET MONEY = 3\n')
    assert result.status == FAILED


# -- PARALLEL ------------------------------------------------------------------------------------


def test_parallel_children_overlap_and_have_their_own_last_run(run):
    # A rendezvous rather than a stopwatch (which flakes on a loaded machine): each child marks
    # that it started and then waits for the other's mark. Run one after the other, the first
    # would wait out its 20 s and fail; run together, both pass at once.
    wait_for = 'touch {me}.on; i=0; while [ ! -e {other}.on ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; ' \
        '[ -e {other}.on ] && echo {me}'
    result = run(
        'PARALLEL {\n'
        f'  STEP "a" {{\n    RUN "{wait_for.format(me="a", other="b")}"\n    VAR a = LAST_RUN.STDOUT\n  }}\n'
        f'  STEP "b" {{\n    RUN "{wait_for.format(me="b", other="a")}"\n    VAR b = LAST_RUN.STDOUT\n  }}\n'
        '}\n'
        'ASSERT a == "a"\nASSERT b == "b"\n'
    )
    assert result.status == PASSED, result.failure
    assert [s.description for s in result.steps] == ["a", "b"]
    assert {e.get("thread") for e in run.events.named("step_start")} == {"parallel-1-0", "parallel-1-1"}
    # each child had its own LAST_RUN; after the block the last child in source order wins
    assert run.last["LAST_RUN"]["STDOUT"] == "b"


def test_parallel_conflicting_variable_is_an_error(run):
    result = run('PARALLEL {\n  VAR x = 1\n  VAR x = 2\n}\n')
    assert result.status == FAILED and result.failure.kind == "ParallelConflict"
    assert "lines 2 and 3" in result.failure.message and "x" in result.failure.message


def test_parallel_reports_each_failed_child_and_waits_for_all(run):
    result = run(
        'STEP "p" {\n  PARALLEL {\n    STEP "bad1" { ASSERT 1 == 2 }\n    STEP "slow" { RUN "sleep 0.3; echo ok > ok.txt" }\n'
        '    STEP "bad2" { READ "nope" AS x }\n  }\n}\n'
    )
    assert result.status == FAILED and result.failure.kind == "ParallelFailed"
    assert "2 of 3" in result.failure.message
    assert "line 3" in result.failure.message and "line 5" in result.failure.message
    assert (run.root / "ok.txt").exists()
    statuses = {s.description: s.status for s in result.steps[0].children}
    assert statuses == {"bad1": FAILED, "slow": PASSED, "bad2": FAILED}


# -- CHOOSE --------------------------------------------------------------------------------------


def test_choose_keeps_first_that_succeeds(run):
    result = run(
        'CHOOSE {\n'
        '  OPTION "fails" {\n    VAR picked = "first"\n    ASSERT 1 == 2\n  }\n'
        '  OPTION "works" {\n    VAR picked = "second"\n  }\n'
        '  OPTION "never" {\n    VAR picked = "third"\n  }\n'
        '}\n'
    )
    assert result.status == PASSED and result.exit_code == 0, result.failure
    assert run.vars["picked"] == "second"
    assert [(s.description, s.status) for s in result.steps] == [
        ("fails", NOT_CHOSEN), ("works", PASSED), ("never", NOT_CHOSEN)
    ]
    assert result.steps[0].failure is not None  # why it was not chosen


def test_a_failed_option_leaves_no_variables_or_last_run_behind(run):
    result = run(
        'RUN "echo before"\n'
        'CHOOSE {\n'
        '  OPTION "fails" {\n    VAR only_in_failed = 1\n    RUN "echo failed-option"\n    ASSERT false\n  }\n'
        '  OPTION "works" {\n    VAR kept = 2\n  }\n'
        '}\n'
    )
    assert result.status == PASSED, result.failure
    assert "only_in_failed" not in run.vars and run.vars["kept"] == 2
    assert run.last["LAST_RUN"]["STDOUT"] == "before"  # the failed option's LAST_RUN is gone too


def test_choose_fails_when_no_option_succeeds(run):
    result = run('CHOOSE {\n  OPTION "a" { ASSERT false }\n  OPTION "b" { ASSERT false }\n}\n')
    assert result.status == FAILED and result.failure.kind == "NoOptionSucceeded"
    assert "'a'" in result.failure.message and "'b'" in result.failure.message


def test_choose_cheapest_orders_by_estimate(run):
    backend = CountingBackend()
    result = run(
        '@choose "cheapest"\n'
        'CHOOSE {\n'
        '  OPTION "expensive" { PROMPT_AGENT "' + "long prompt " * 20 + '" }\n'
        '  OPTION "two calls" {\n    PROMPT_AGENT "a"\n    PROMPT_AGENT "b"\n  }\n'
        '  OPTION "free" { LOG "no model" }\n'
        '}\n',
        backend=backend,
    )
    assert result.status == PASSED, result.failure
    assert backend.sent == []
    assert [(s.description, s.status) for s in result.steps] == [
        ("free", PASSED), ("two calls", NOT_CHOSEN), ("expensive", NOT_CHOSEN)
    ]


# -- ESTIMATE_COST -------------------------------------------------------------------------------


def test_estimate_cost_refuses_before_any_side_effect(run):
    backend = CountingBackend()
    result = run(
        'SET_BUDGET TOKENS = 49\n@max_tokens 40\n'
        'ESTIMATE_COST {\n  WRITE "side-effect.txt" "x"\n  RUN "touch ran"\n'
        '  PROMPT_AGENT "' + "y" * 40 + '"\n}\n',
        backend=backend,
    )
    assert result.status == FAILED and result.failure.kind == "BudgetExceeded"
    assert result.failure.line == 3
    assert not (run.root / "side-effect.txt").exists() and not (run.root / "ran").exists()
    assert backend.sent == []
    assert run.last["LAST_ESTIMATE"] == {"API_CALLS": 1, "TOKENS": 50, "SECONDS": 0, "UNBOUNDED_RUNS": 1,
                                        "UNBOUNDED_LOOPS": 0}


def test_estimate_cost_runs_body_when_it_fits(run):
    result = run(
        'SET_BUDGET API_CALLS = 5\n@timeout "2s"\n'
        'ESTIMATE_COST {\n  PROMPT_AGENT "a"\n  RUN "true"\n  IF 1 == 1 { PROMPT_AGENT "b" } ELSE { LOG "x" }\n}\n'
        'ASSERT LAST_ESTIMATE.API_CALLS == 2\nASSERT LAST_ESTIMATE.SECONDS == 2\n'
    )
    assert result.status == PASSED, result.failure


# -- review --------------------------------------------------------------------------------------


def test_review_without_terminal_or_yes_fails_with_instructions(run):
    reviewer = Reviewer(assume_yes=False, stdin=io.StringIO(""), interactive=False)
    result = run('STEP "gate" {\n  REQUEST_REVIEW "deploy?"\n}\n', reviewer=reviewer)
    assert result.status == FAILED and result.failure.line == 2
    assert "--yes" in result.failure.message and "terminal" in result.failure.message
    result = run('PAUSE "look"\n', reviewer=reviewer)
    assert result.status == FAILED and "--yes" in result.failure.message


def test_review_interactive_approve_and_reject_with_comment(run):
    answers = iter(["maybe", "y", "looks good"])
    out = io.StringIO()
    reviewer = Reviewer(ask=lambda prompt: next(answers), stdout=out)
    result = run('REQUEST_REVIEW "ship?"\nASSERT LAST_REVIEW.COMMENT == "looks good"\n', reviewer=reviewer)
    assert result.status == PASSED, result.failure
    assert "ship?" in out.getvalue() and "answer y" in out.getvalue()
    answers = iter(["n", "too risky"])
    reviewer = Reviewer(ask=lambda prompt: next(answers), stdout=io.StringIO())
    result = run(
        'TRY { REQUEST_REVIEW "ship?" } CATCH { LOG "{{ LAST_REVIEW.APPROVED }}: {{ LAST_REVIEW.COMMENT }}" }\n',
        reviewer=reviewer,
    )
    assert result.logs == ["false: too risky"]


def test_pause_waits_for_enter(run):
    reviewer = Reviewer(ask=lambda prompt: "", stdout=io.StringIO())
    result = run('PAUSE "check the files"\nASSERT LAST_REVIEW.APPROVED\n', reviewer=reviewer)
    assert result.status == PASSED, result.failure


def test_prompt_into_a_builtin_is_refused_before_the_call_is_sent(run):
    class Counting:
        name = "counting"
        sent = 0

        def count_tokens(self, text):
            return 1

        def generate(self, prompt, settings):
            Counting.sent += 1
            return Completion(text="x", prompt_tokens=1, completion_tokens=1, finish_reason="stop")

    result = run('PROMPT_AGENT "hi" INTO LAST_RUN\n', backend=Counting())
    assert result.failure.kind == "ReservedName" and Counting.sent == 0

"""RETRY, FOR, structured answers (`@output "json"`), list indexes and LENGTH, run for real."""

from __future__ import annotations

import os
import threading
import time

import pytest

from runtime.backends import Completion, estimate_tokens
from runtime.interpreter_loops import REPORT_TAIL_CHARS, REPORT_TAIL_LINES
from runtime.plan import format_plan
from runtime.result import FAILED, PASSED
from runtime.taint import is_tainted
from tisslang import parse


class ScriptedBackend:
    """Answers from a list, one per call, and records every prompt it was sent."""

    name = "scripted"

    def __init__(self, answers):
        self.answers = list(answers)
        self.prompts: list[str] = []
        self.settings = []
        self._lock = threading.Lock()

    def count_tokens(self, text):
        return estimate_tokens(text)

    def generate(self, prompt, settings):
        with self._lock:
            self.prompts.append(prompt)
            self.settings.append(settings)
            text = self.answers.pop(0)
        return Completion(text, estimate_tokens(prompt), estimate_tokens(text), "stop", model="s")


# -- RETRY ---------------------------------------------------------------------------------------

FIX_LOOP = '''STEP "fix" {
    RETRY 3 {
        IF ATTEMPT > 1 {
            PROMPT_AGENT "Fix it. Attempt {{ ATTEMPT }}.\\n{{ LAST_ERROR.REPORT }}" INTO fix
            WRITE "value.txt" "{{ fix }}"
        }
        RUN "echo checking; v=$(cat value.txt); echo got $v >&2; test \\"$v\\" = 42"
        ASSERT LAST_RUN.EXIT_CODE == 0
    }
}
'''


def test_a_self_correcting_script_passes_on_the_third_attempt_with_the_report_in_its_prompt(run):
    (run.root / "value.txt").write_text("1")
    backend = ScriptedBackend(["41", "42"])
    result = run(FIX_LOOP, backend=backend)
    assert result.status == PASSED, result.failure
    assert (run.root / "value.txt").read_text() == "42"
    assert len(backend.prompts) == 2  # attempts 2 and 3 asked; the third passed
    first, second = backend.prompts
    assert first.startswith("Fix it. Attempt 2.\n") and second.startswith("Fix it. Attempt 3.\n")
    # The report: where, the failing line, the message, the command, its exit code and output.
    assert "The statement at test.tiss:8:9 failed." in first
    assert "Line 8: ASSERT LAST_RUN.EXIT_CODE == 0" in first
    assert "Error (AssertionFailed): assertion failed: LAST_RUN.EXIT_CODE == 0 (left is 1, right is 0)" in first
    assert 'Command: echo checking; v=$(cat value.txt)' in first and "Exit code: 1" in first
    assert "Standard output (last lines):\nchecking" in first
    assert "Standard error (last lines):\ngot 1" in first
    assert "got 41" in second  # the second report is about the second attempt
    # The failed attempts' steps are reported as caught, the run passed.
    caught = run.events.named("caught")
    assert [(e["attempt"], e["attempts"]) for e in caught] == [(1, 3), (2, 3)]
    assert "ATTEMPT" not in run.last  # set only inside the block


def test_the_last_failure_propagates_and_variables_of_failed_attempts_stay(run):
    result = run(
        'VAR tries = []\n'
        'STEP "s" {\n'
        '    RETRY 2 {\n'
        '        VAR seen = ATTEMPT\n'
        '        ASSERT ATTEMPT == 5\n'
        '    }\n'
        '}\n'
        'STEP "after" {\n    LOG "never"\n}\n'
    )
    assert result.status == FAILED
    assert result.failure.kind == "AssertionFailed" and result.failure.line == 5
    assert run.vars["seen"] == 2  # the second attempt saw what the first left (it set it again)
    assert result.steps[0].status == FAILED and result.steps[1].status == "skipped"
    assert run.last["LAST_ERROR"]["LINE"] == 5 and "Line 5: ASSERT ATTEMPT == 5" in run.last["LAST_ERROR"]["REPORT"]


def test_a_failed_attempt_leaves_its_variables_for_the_next(run):
    result = run(
        'RETRY 3 {\n'
        '    IF ATTEMPT == 1 {\n'
        '        VAR note = "from attempt 1"\n'
        '        ASSERT false\n'
        '    }\n'
        '    LOG "{{ note }}"\n'
        '}\n'
    )
    assert result.status == PASSED, result.failure
    assert result.logs == ["from attempt 1"]


def test_budgets_count_every_attempt_and_a_spent_budget_is_not_retried(run):
    backend = ScriptedBackend(["no", "no", "no"])
    result = run(
        'SET_BUDGET API_CALLS = 2\n'
        'RETRY 5 {\n'
        '    PROMPT_AGENT "again" INTO a\n'
        '    ASSERT a == "yes"\n'
        '}\n',
        backend=backend,
    )
    assert result.status == FAILED and result.failure.kind == "BudgetExceeded"
    assert len(backend.prompts) == 2  # the third attempt was refused before sending, and ended it


def test_retry_delay_waits_between_attempts(run):
    started = time.monotonic()
    result = run('TRY {\n    RETRY 3 DELAY "100ms" {\n        ASSERT false\n    }\n}\n')
    assert result.status == PASSED, result.failure
    assert time.monotonic() - started >= 0.2  # two delays, none after the last attempt


def test_a_delay_never_outlasts_execution_time(run):
    started = time.monotonic()
    result = run('SET_BUDGET EXECUTION_TIME = "300ms"\nRETRY 2 DELAY "30s" {\n    ASSERT false\n}\n')
    assert result.status == FAILED and result.failure.kind == "BudgetExceeded"
    assert time.monotonic() - started < 10


def test_retry_counts_and_delays_that_cannot_run_fail_positioned(run):
    result = run('STEP "s" {\n    RETRY 0 {\n        LOG "x"\n    }\n}\n')
    assert result.status == FAILED and result.failure.line == 2
    assert "whole number, 1 or more" in result.failure.message
    result = run('VAR d = "soon"\nRETRY 2 DELAY "{{ d }}" {\n    ASSERT false\n}\n')
    assert result.status == FAILED and "not a duration" in result.failure.message


def test_the_report_keeps_only_the_tails_of_long_output(run):
    result = run(
        'TRY {\n'
        '    RUN "seq 1 5000; seq 1 5000 >&2; exit 3"\n'
        '    ASSERT LAST_RUN.EXIT_CODE == 0\n'
        '}\n'
    )
    assert result.status == PASSED
    report = run.last["LAST_ERROR"]["REPORT"]
    assert "Exit code: 3" in report and report.count("\n5000") == 2
    assert "\n1\n" not in report  # the heads are gone
    assert len(report) < 2 * REPORT_TAIL_CHARS + 1500
    out_tail = report.split("Standard output (last lines):\n", 1)[1].split("\nStandard error", 1)[0]
    assert len(out_tail.splitlines()) <= REPORT_TAIL_LINES + 1


def test_a_report_quoting_model_text_is_tainted(run):
    backend = ScriptedBackend(["not json", "false"])
    result = run(
        'TRY {\n    @output "json"\n    PROMPT_AGENT "x"\n}\n'
        'VAR first = LAST_ERROR.REPORT\n'
        'PROMPT_AGENT "y" INTO answer\n'
        'TRY {\n    RUN "{{ answer }}"\n    ASSERT LAST_RUN.EXIT_CODE == 0\n}\n'
        'VAR second = LAST_ERROR.REPORT\n'
        'TRY {\n    RUN "false"\n    ASSERT LAST_RUN.EXIT_CODE == 0\n}\n',
        backend=backend, assume_yes=True,
    )
    assert result.status == PASSED, result.failure
    assert "not json" in run.vars["first"] and is_tainted(run.vars["first"])
    assert "Command: false" in run.vars["second"] and is_tainted(run.vars["second"])
    assert not is_tainted(run.last["LAST_ERROR"]["REPORT"])  # the script's own command


def test_the_report_leaves_out_a_command_the_failed_block_did_not_run(run):
    result = run('RUN "true"\nTRY {\n    ASSERT 1 == 2\n}\n')
    assert result.status == PASSED
    assert "Command:" not in run.last["LAST_ERROR"]["REPORT"]


# -- FOR -----------------------------------------------------------------------------------------


def test_for_over_lists_lines_and_nested_loops_with_scoped_names(run):
    result = run(
        'VAR names = ["a", "b"]\n'
        'VAR x = "outer"\n'
        'FOR x IN names {\n'
        '    FOR n IN [1, 2] {\n'
        '        LOG "{{ x }}{{ n }}"\n'
        '    }\n'
        '}\n'
        'FOR line IN LINES "one\\ntwo" {\n'
        '    LOG "{{ line }}"\n'
        '}\n'
        'LOG "{{ x }}"\n'
    )
    assert result.status == PASSED, result.failure
    assert result.logs == ["a1", "a2", "b1", "b2", "one", "two", "outer"]
    assert "n" not in run.vars and "line" not in run.vars and run.vars["x"] == "outer"


def test_loops_in_parallel_children_leave_nothing_to_merge(run):
    result = run(
        'VAR i = "outer"\n'
        'PARALLEL {\n'
        '    FOR i IN [1, 2] {\n'
        '        LOG "a{{ i }}"\n'
        '    }\n'
        '    FOR i IN [3] {\n'
        '        VAR b = i\n'
        '    }\n'
        '}\n'
        'LOG "{{ i }} {{ b }}"\n'
    )
    assert result.status == PASSED, result.failure
    assert result.logs[-1] == "outer 3" and sorted(result.logs[:-1]) == ["a1", "a2"]


def test_for_over_a_value_that_is_not_a_list_fails_positioned(run):
    result = run('VAR s = "abc"\nSTEP "s" {\n    FOR c IN s {\n        LOG "{{ c }}"\n    }\n}\n')
    assert result.status == FAILED and result.failure.kind == "TypeMismatch"
    assert (result.failure.line, result.failure.column) == (3, 14)
    assert "IN LINES" in result.failure.message


def test_for_files_is_sorted_and_confined_and_skips_symlinks_that_lead_out(run, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.py").write_text("x")
    (run.root / "src").mkdir()
    for name in ("b.py", "a.py"):
        (run.root / "src" / name).write_text("")
    (run.root / "src" / "c.txt").write_text("")
    os.symlink(outside / "secret.py", run.root / "src" / "leak.py")
    os.symlink(outside, run.root / "src" / "outdir")
    os.symlink("a.py", run.root / "src" / "z.py")  # inside: kept
    result = run(
        'FOR f IN FILES "src/*.py" {\n    LOG "{{ f }}"\n}\n'
        'FOR f IN FILES "**/*.py" {\n    LOG "deep {{ f }}"\n}\n'
        'FOR f IN FILES "src/outdir/*" {\n    LOG "out {{ f }}"\n}\n'
    )
    assert result.status == PASSED, result.failure
    assert result.logs == ["src/a.py", "src/b.py", "src/z.py",
                           "deep src/a.py", "deep src/b.py", "deep src/z.py"]
    result = run('FOR f IN FILES "../*" {\n    LOG "{{ f }}"\n}\n')
    assert result.status == FAILED and result.failure.kind == "PathError"
    assert "climbs out of the workspace" in result.failure.message


# -- structured answers, list indexes, LENGTH ----------------------------------------------------


def test_json_answers_become_values_with_indexes_length_and_taint(run):
    answer = 'Here you go:\n```json\n{"files": ["a.py", "b.py"], "count": 2}\n```\nDone.'
    backend = ScriptedBackend([answer])
    result = run(
        '@output "json"\n'
        'PROMPT_AGENT "list the files" INTO answer\n'
        'ASSERT LENGTH answer.files == 2 AND answer.files.0 == "a.py"\n'
        'ASSERT LENGTH answer.files.1 == 4\n'
        'FOR f IN answer.files {\n'
        '    LOG "{{ f }}"\n'
        '}\n'
        'VAR first = answer.files.0\n',
        backend=backend,
    )
    assert result.status == PASSED, result.failure
    assert run.vars["answer"] == {"files": ["a.py", "b.py"], "count": 2}
    assert result.logs == ["a.py", "b.py"]
    assert run.last["LAST_PROMPT"]["TEXT"] == answer  # the text stays text
    # Model text: every value taken from it is tainted (fields, items, FOR items).
    assert is_tainted(run.vars["first"]) and is_tainted(run.vars["answer"]["files"][1])


def test_for_items_and_lines_carry_the_taint_of_model_text(run):
    backend = ScriptedBackend(["one\ntwo"])
    result = run(
        'PROMPT_AGENT "x" INTO text\n'
        'VAR got = []\n'
        'FOR line IN LINES text {\n'
        '    VAR last = line\n'
        '}\n'
        'FOR s IN ["plain"] {\n'
        '    VAR clean = s\n'
        '}\n',
        backend=backend,
    )
    assert result.status == PASSED, result.failure
    assert run.vars["last"] == "two" and is_tainted(run.vars["last"])
    assert not is_tainted(run.vars["clean"])


def test_an_answer_that_is_not_json_fails_and_retry_asks_again(run):
    backend = ScriptedBackend(["Sure! The answer is yes.", '[1, 2, 3]'])
    result = run(
        '@output "json"\n'
        'STEP "ask" {\n'
        '    RETRY 2 {\n'
        '        PROMPT_AGENT "numbers as a JSON list" INTO numbers\n'
        '    }\n'
        '}\n'
        'ASSERT LENGTH numbers == 3\n'
        'ASSERT LAST_ERROR.KIND == "InvalidAnswer"\n',
        backend=backend,
    )
    assert result.status == PASSED, result.failure
    assert "Sure! The answer is yes." in run.last["LAST_ERROR"]["MESSAGE"]
    one = ScriptedBackend(["no json here {nor here"])
    result = run('@output "json"\nPROMPT_AGENT "x" INTO a\n', backend=one)
    assert result.status == FAILED and result.failure.kind == "InvalidAnswer"
    assert result.failure.line == 2 and "no json here {nor here" in result.failure.message


def test_output_takes_text_or_json_where_a_prompt_uses_it(run):
    backend = ScriptedBackend(["x"])
    result = run('@output "yaml"\nPROMPT_AGENT "x"\n', backend=backend)
    assert result.status == FAILED and result.failure.kind == "SettingsError"
    assert '@output must be "text" or "json"' in result.failure.message and backend.prompts == []
    assert run('@output "compact"\nLOG "no prompt, no check"\n').status == PASSED


def test_an_index_past_the_end_and_length_of_a_number_fail_with_what_to_do(run):
    result = run('VAR xs = [1]\nLOG "{{ xs.3 }}"\n')
    assert result.status == FAILED and result.failure.kind == "UndefinedReference"
    assert "xs has 1 item, so there is no item 3" in result.failure.message
    result = run('ASSERT LENGTH 3 > 0\n')
    assert result.status == FAILED and result.failure.kind == "TypeMismatch"
    assert "LENGTH needs a list, string or object" in result.failure.message


# -- estimates and plans -------------------------------------------------------------------------


def estimate(run, source, backend=None):
    from runtime.session import Session

    session = Session(run.root, backend=backend or ScriptedBackend([]))
    return session.estimate(parse(source))


def test_estimates_multiply_by_attempts_and_items_or_say_they_are_no_upper_bound(run):
    one = estimate(run, '@max_tokens 10\nPROMPT_AGENT "abcd"\n')
    assert (one.api_calls, one.tokens) == (1, 11)
    three = estimate(run, '@max_tokens 10\nRETRY 3 DELAY "2s" {\n    PROMPT_AGENT "abcd"\n}\n')
    assert (three.api_calls, three.tokens, three.seconds) == (3, 33, 4.0)
    items = estimate(run, '@max_tokens 10\nFOR x IN [1, 2] {\n    PROMPT_AGENT "abcd"\n}\n')
    assert (items.api_calls, items.tokens, items.unbounded_loops) == (2, 22, 0)
    (run.root / "a.py").write_text("")
    (run.root / "b.py").write_text("")
    (run.root / "c.py").write_text("")
    files = estimate(run, '@max_tokens 10\nFOR f IN FILES "*.py" {\n    PROMPT_AGENT "abcd"\n}\n')
    assert files.api_calls == 3
    unknown = estimate(run, '@max_tokens 10\nPROMPT_AGENT "x" INTO a\nFOR x IN a {\n    PROMPT_AGENT "abcd"\n}\n')
    assert unknown.api_calls == 2 and unknown.unbounded_loops == 1
    assert unknown.as_value()["UNBOUNDED_LOOPS"] == 1


def test_an_item_count_the_script_may_change_before_the_loop_is_not_taken_as_known(run):
    (run.root / "a.py").write_text("")
    loop = 'FOR f IN FILES "*.py" {\n    PROMPT_AGENT "abcd"\n}\n'
    assert estimate(run, loop).api_calls == 1 and estimate(run, loop).unbounded_loops == 0
    # A WRITE (or RUN, MKDIR, DELETE) before the loop may add files: the count is unknown.
    written = estimate(run, 'STEP "s" {\n    WRITE "b.py" ""\n}\nRETRY 2 {\n' + loop + '}\n')
    assert (written.api_calls, written.unbounded_loops) == (2, 1)  # the one loop, counted once
    # A variable set again before the loop: its value now says nothing about the loop's items.
    runner_vars = 'VAR xs = [1, 2, 3]\nFOR x IN xs {\n    PROMPT_AGENT "abcd"\n}\n'
    assert estimate(run, runner_vars).unbounded_loops == 1


def test_estimate_cost_around_a_retry_refuses_what_all_attempts_would_cost(run):
    backend = ScriptedBackend(["a", "b", "c"])
    result = run(
        'SET_BUDGET API_CALLS = 2\n'
        'ESTIMATE_COST {\n'
        '    RETRY 3 {\n'
        '        PROMPT_AGENT "x"\n'
        '    }\n'
        '}\n',
        backend=backend,
    )
    assert result.status == FAILED and result.failure.kind == "BudgetExceeded"
    assert "the estimate needs 3 more" in result.failure.message and backend.prompts == []


def test_dry_run_plans_show_loops_and_their_blocks():
    program = parse('RETRY 3 DELAY "2s" {\n    FOR f IN FILES "*.py" {\n        RUN "lint {{ f }}"\n'
                    '    }\n    FOR l IN LINES text {\n        LOG "{{ l }}"\n    }\n}\n')
    assert format_plan(program).splitlines() == [
        '   1  RETRY 3 DELAY "2s" (the block again after a failure, up to 3 attempts)',
        '   2    FOR f IN FILES "*.py" (the block once per item)',
        '   3      RUN "lint {{ f }}"',
        '   5    FOR l IN LINES text (the block once per item)',
        '   6      LOG "{{ l }}"',
    ]


def test_tiss_run_dry_run_says_an_estimate_with_unknown_loops_is_no_upper_bound(tmp_path, capsys):
    from runtime import cli

    script = tmp_path / "s.tiss"
    script.write_text('PROMPT_AGENT "x" INTO a\nFOR x IN a {\n    RUN "echo {{ x }}"\n}\n')
    ws = tmp_path / "ws"
    ws.mkdir()
    assert cli.main(["run", str(script), "--workspace", str(ws), "--dry-run", "--model", "echo"]) == 0
    out = capsys.readouterr().out
    assert "FOR x IN a (the block once per item)" in out
    assert "not an upper bound: 1 FOR loop over items not known before the run" in out


def test_loops_at_the_repl_prompt(tmp_path):
    import io

    from runtime.backends import EchoBackend
    from runtime.repl.engine import Repl
    from runtime.review import Reviewer
    from runtime.session import RunOptions, Session
    from runtime.workspace import Workspace

    (tmp_path / "ws").mkdir()
    out = io.StringIO()
    repl = Repl(lambda listeners: Session(
        Workspace(tmp_path / "ws"), backend=EchoBackend(), listeners=listeners,
        options=RunOptions(assume_yes=True), reviewer=Reviewer(assume_yes=True)), out)
    assert repl.handle('FOR x IN ["one", "two"] {\n    LOG "item {{ x }}"\n}') == 0
    assert repl.handle('RETRY 3 {\n    VAR n = ATTEMPT\n    ASSERT ATTEMPT == 2\n}') == 0
    assert repl.session.variables["n"] == 2 and "x" not in repl.session.variables
    assert repl.handle('LOG "{{ x }}"') == 1  # the loop variable is gone after the loop
    text = out.getvalue()
    assert "item one" in text and "item two" in text and "undefined reference x" in text

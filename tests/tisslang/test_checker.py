"""check(): static diagnostics with positions, severities and pinned messages."""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from tiss_strategies import programs

from tisslang import check, format, parse
from tisslang.checker import Diagnostic

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.tiss"))


def diagnostics(source, **kwargs):
    return [(d.severity, d.line, d.column, d.message) for d in check(parse(source), **kwargs)]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_check_clean(path):
    assert check(parse(path.read_text(encoding="utf-8"))) == []


def test_variables_set_anywhere_count_and_builtins_are_known():
    source = (
        'VAR a = 1\nREAD "f" AS b\nPROMPT_AGENT "p" INTO c\n'
        'LOG "{{ a }} {{ b }} {{ c }} {{ LAST_RUN.STDOUT }} {{ WORKSPACE }} {{ TASK.DESCRIPTION }}"\n'
        "ASSERT LAST_ERROR.KIND IS_EMPTY OR LAST_PROMPT.TEXT IS_EMPTY OR LAST_REVIEW.APPROVED\n"
        "ASSERT LAST_ESTIMATE.TOKENS > 0 AND STEP.DESCRIPTION IS_NOT_EMPTY AND a.field == 1\n"
    )
    assert diagnostics(source) == []


def test_undefined_variable_with_suggestion_and_known_names():
    source = 'VAR count = 1\nASSERT cuont == 1\nLOG "{{ who }}"\n'
    assert diagnostics(source) == [
        ("error", 2, 8, "undefined variable 'cuont': nothing in this script sets it (set it with "
                        "VAR, READ ... AS or PROMPT_AGENT ... INTO, or pass --var cuont=...); did "
                        "you mean 'count'?"),
        ("error", 3, 6, "undefined variable 'who': nothing in this script sets it (set it with "
                        "VAR, READ ... AS or PROMPT_AGENT ... INTO, or pass --var who=...)"),
    ]
    assert diagnostics(source, known=["cuont", "who"]) == []


def test_a_keyword_in_an_interpolation_is_no_variable():
    assert diagnostics('LOG "{{ RUN }} {{ TASK }}"', known=["RUN"]) == [
        ("error", 1, 6, "'RUN' is a keyword, so no variable has that name; choose another name "
                        "for the variable"),
    ]


def test_unknown_builtin_field():
    assert diagnostics("ASSERT LAST_RUN.EXITCODE == 0") == [
        ("error", 1, 8, "LAST_RUN has no field 'EXITCODE' (it has EXIT_CODE, STDOUT, STDERR, "
                        "EXECUTION_TIME, COMMAND, TIMED_OUT, STDOUT_TRUNCATED, STDERR_TRUNCATED); "
                        "did you mean 'EXIT_CODE'?"),
    ]


def test_fields_the_runtime_sets_beyond_the_spec_are_known():
    source = (
        'ASSERT NOT LAST_RUN.STDOUT_TRUNCATED AND NOT LAST_RUN.STDERR_TRUNCATED\n'
        'LOG "{{ LAST_PROMPT.FINISH_REASON }} {{ LAST_ESTIMATE.UNBOUNDED_RUNS }}"\n'
    )
    assert diagnostics(source) == []


def test_builtin_name_as_a_target():
    assert diagnostics('VAR LAST_RUN = 1\nREAD "f" AS WORKSPACE\nPROMPT_AGENT "p" INTO STEP_X') == [
        ("error", 1, 1, "LAST_RUN is built in and cannot be set; choose another name"),
        ("error", 2, 1, "WORKSPACE is built in and cannot be set; choose another name"),
    ]


def test_unknown_directive_is_a_warning():
    assert diagnostics('@modle "echo"\n@temperature 0.5') == [
        ("warning", 1, 1, "unknown directive @modle; did you mean '@model'? (known: @persona, "
                          "@model, @temperature, @top_k, @top_p, @min_p, @max_tokens, @seed, "
                          "@stop, @timeout, @shell, @output, @choose, @strict)"),
    ]


def test_budget_names_and_values():
    source = ('SET_BUDGET TOKEN = 5\nSET_BUDGET TOKEN_COUNT = 5\nSET_BUDGET EXECUTION_TIME = "5 min"\n'
              'SET_BUDGET EXECUTION_TIME = "500ms"\nSET_BUDGET EXECUTION_TIME = 2.5\n'
              "SET_BUDGET API_CALLS = 1.5\nVAR n = 3\nSET_BUDGET API_CALLS = n\n")
    assert diagnostics(source) == [
        ("error", 1, 1, "unknown budget 'TOKEN'; did you mean 'TOKENS'? (budgets: EXECUTION_TIME, "
                        "API_CALLS, TOKENS, TOKEN_COUNT for TOKENS)"),
        ("error", 3, 29, 'EXECUTION_TIME is a duration: seconds, or a string like "30s", "5m", '
                         '"500ms"'),
        ("error", 6, 24, "API_CALLS is a count: a whole number, 0 or more"),
    ]


def test_parallel_children_setting_one_variable():
    source = 'PARALLEL {\n  STEP "a" { VAR x = 1 }\n  STEP "b" { READ "f" AS x }\n}\n'
    assert diagnostics(source) == [
        ("error", 3, 14, "two PARALLEL children set 'x' (also at line 2); their results cannot "
                         "be merged"),
    ]


def test_unreachable_after_assert_false_and_loose_braces_in_heredoc():
    source = 'STEP "s" {\n  ASSERT false\n  LOG "never"\n}\nWRITE "f" <<EOF\n{{ oops\nEOF\n'
    assert diagnostics(source) == [
        ("warning", 3, 3, "unreachable: the ASSERT false at line 2 always fails before this runs"),
        ("warning", 5, 1, "this heredoc has '{{' that is not an interpolation ({{ name }}); for "
                          "literal braces use <<'EOF'"),
    ]


def test_diagnostic_render():
    assert Diagnostic("warning", 3, 7, "m").render("a.tiss") == "a.tiss:3:7: warning: m"
    assert Diagnostic("error", 3, 7, "m", "T001").render("a.tiss") == "a.tiss:3:7: error: T001 m"


def test_deep_trees_check_without_recursion():
    source = "".join('STEP "s" {\n' for _ in range(99)) + "ASSERT x\n" + "}\n" * 99
    assert [d.line for d in check(parse(source))] == [100]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_check_handles_any_program(program):
    parsed = parse(format(program))
    found = check(parsed)
    assert all(d.severity in ("error", "warning") and d.line >= 1 and d.column >= 1 for d in found)
    assert found == sorted(found, key=lambda d: (d.line, d.column, d.message))


def test_a_run_checked_after_the_block_it_ends_is_checked():
    # The RUN last in an IF branch (or a TRY, a RETRY, a CHOOSE option) hands LAST_RUN on to the
    # statements after that statement; a STEP, and so each PARALLEL child, does not.
    source = ('STEP "s" {\n  IF x == 1 THEN {\n    RUN "make"\n  } ELSE {\n    RUN "just"\n  }\n'
              '  ASSERT LAST_RUN.EXIT_CODE == 0\n'
              '  CHOOSE {\n    OPTION "a" {\n      RUN "a"\n    }\n  }\n  LOG "{{ LAST_RUN.STDOUT }}"\n'
              '  PARALLEL {\n    STEP "p" {\n      RUN "p"\n    }\n  }\n'
              '  ASSERT LAST_RUN.EXIT_CODE == 0\n}\n')
    found = [(d.line, d.code) for d in check(parse(source), known=("x",))]
    assert found == [(16, "T104")]


def test_unchecked_runs_in_deep_trees():
    source = "".join('STEP "s" {\n' for _ in range(99)) + 'RUN "x"\n' + "}\n" * 99
    assert [(d.line, d.code) for d in check(parse(source))] == [(100, "T104")]

"""The static cost estimate: how blocks compose (an upper bound), checked against hand sums."""

from runtime.backends import EchoBackend, estimate_tokens
from runtime.estimate import Estimate, Estimator
from tisslang import ast, parse


def _literal(node):
    if isinstance(node, ast.String):
        return node.text
    return node.value  # Number, Boolean (the tests use no references in directives)


def estimate(source, directives=None):
    program = parse(source)
    # Values of references are unknown here: a prompt counts as written.
    estimator = Estimator(EchoBackend(), evaluate=_literal, render=lambda s: s.text)
    return estimator.block(program.body, directives or {})


def test_prompt_costs_prompt_persona_and_max_tokens():
    cost = estimate('@persona "Be brief."\n@max_tokens 50\nPROMPT_AGENT "abcdefgh"\n')
    assert cost == Estimate(api_calls=1, tokens=estimate_tokens("abcdefgh") + estimate_tokens("Be brief.") + 50)


def test_directives_stay_inside_their_block():
    cost = estimate('STEP "a" {\n  @max_tokens 100\n  PROMPT_AGENT "x"\n}\nPROMPT_AGENT "y"\n')
    assert cost.tokens == 100 + 1 + 1 and cost.api_calls == 2


def test_if_takes_the_costlier_branch_try_adds_handler_choose_adds_options():
    source = (
        'IF 1 == 1 {\n  PROMPT_AGENT "aaaa"\n} ELSE {\n  PROMPT_AGENT "a"\n  PROMPT_AGENT "b"\n}\n'
        'TRY { PROMPT_AGENT "c" } CATCH { PROMPT_AGENT "d" }\n'
        'CHOOSE {\n  OPTION "x" { PROMPT_AGENT "e" }\n  OPTION "y" { PROMPT_AGENT "f" }\n}\n'
    )
    cost = estimate(source)
    assert cost.api_calls == 2 + 2 + 2
    assert cost.tokens == 2 + 2 + 2


def test_runs_count_timeout_as_upper_bound_and_parallel_takes_the_longest():
    source = (
        '@timeout "2s"\nRUN "a"\n'
        'PARALLEL {\n  RUN "b"\n  STEP "s" {\n    @timeout 5\n    RUN "c"\n    RUN "d"\n  }\n}\n'
    )
    cost = estimate(source)
    assert cost.seconds == 2 + max(2, 10)
    assert cost.unbounded_runs == 0
    assert estimate('RUN "x"\n').unbounded_runs == 1


def test_cost_key_orders_by_tokens_then_calls_then_seconds():
    cheap, dear = Estimate(api_calls=5, tokens=1), Estimate(api_calls=1, tokens=2)
    assert sorted([dear, cheap], key=Estimate.cost_key) == [cheap, dear]


# -- directive values go through the directive table, as the run reads them --------------------

import pytest

from runtime import cli
from runtime.backends.base import SettingsError
from runtime.budget import BudgetError
from runtime.session import run as run_program


@pytest.mark.parametrize("value, message", [
    ("-5", "@max_tokens must be a whole number of at least 1, got -5"),
    ("2.5", "@max_tokens must be a whole number, got 2.5"),
])
def test_a_max_tokens_the_run_refuses_is_refused_by_the_estimate_with_the_same_error(tmp_path, value, message):
    # Before: -5 made the estimate 5 tokens *smaller* and 2.5 counted as 2, while the run fails.
    source = f'@max_tokens {value}\nPROMPT_AGENT "abcdefgh"\n'
    with pytest.raises(SettingsError) as refused:
        estimate(source)
    assert (refused.value.message, refused.value.line, refused.value.column) == (message, 2, 1)
    result = run_program(parse(source), workspace=str(tmp_path), backend=EchoBackend())
    assert result.failure.message == message and result.failure.line == 2


def test_a_timeout_the_run_refuses_is_refused_where_it_is_written():
    with pytest.raises(BudgetError) as refused:
        estimate('RUN "true"\n@timeout -5\nRUN "true"\n')
    assert refused.value.line == 2 and "@timeout must be a duration" in refused.value.message


def test_a_persona_that_is_not_a_string_is_refused_and_a_valid_one_counts_as_before():
    with pytest.raises(SettingsError, match="@persona must be a string, got 3"):
        estimate('@persona 3\nPROMPT_AGENT "x"\n')
    cost = estimate('@persona "Be brief."\n@max_tokens 7.0\n@timeout "2m"\nPROMPT_AGENT "x"\nRUN "y"\n')
    assert cost == Estimate(api_calls=1, tokens=1 + estimate_tokens("Be brief.") + 7, seconds=120.0)


def test_dry_run_reports_the_error_positioned_with_status_2(tmp_path, capsys):
    script = tmp_path / "bad.tiss"
    script.write_text('STEP "s" {\n  @max_tokens -5\n  PROMPT_AGENT "abcdefgh"\n}\n')
    assert cli.main(["run", str(script), "--workspace", str(tmp_path), "--model", "echo", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"{script}:3:3: error: @max_tokens must be a whole number of at least 1, got -5" in err
    assert "Traceback" not in err


def test_choose_cheapest_tries_an_option_the_estimate_refuses_last_and_goes_on(tmp_path):
    source = ('@choose "cheapest"\nCHOOSE {\n'
              '  OPTION "bad" {\n    @max_tokens -5\n    PROMPT_AGENT "x"\n  }\n'
              '  OPTION "good" {\n    LOG "fine"\n  }\n}\n')
    result = run_program(parse(source), workspace=str(tmp_path), backend=EchoBackend())
    assert result.status == "passed", result.failure

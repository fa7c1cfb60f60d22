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

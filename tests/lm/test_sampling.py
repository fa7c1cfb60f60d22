"""`lm.sampling`: filters against a plain-Python reference, hand-worked examples, and draws whose
frequencies are checked against the filtered softmax with a chi-square statistic."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lm.errors import LMError
from lm.sampling import filtered_probs, sample_token


def reference_probs(logits, temperature, top_k, top_p, min_p):
    """The filter chain written out with Python lists and sorting, independently of the module."""
    z = [float(v) / temperature for v in logits]
    idx = list(range(len(z)))
    alive = set(idx)
    if top_k is not None:
        kth = sorted(z, reverse=True)[min(top_k, len(z)) - 1]
        alive = {i for i in alive if z[i] >= kth}

    def softmax(alive):
        m = max(z[i] for i in alive)
        e = {i: math.exp(z[i] - m) for i in alive}
        s = sum(e.values())
        return {i: e[i] / s for i in alive}

    p = softmax(alive)
    if top_p is not None:
        kept, mass = set(), 0.0
        for i in sorted(alive, key=lambda i: (-p[i], i)):
            if mass >= top_p:
                break
            kept.add(i)
            mass += p[i]
        alive = kept
        s = sum(p[i] for i in alive)
        p = {i: p[i] / s for i in alive}
    if min_p is not None:
        top = max(p.values())
        alive = {i for i in alive if p[i] >= min_p * top}
        s = sum(p[i] for i in alive)
        p = {i: p[i] / s for i in alive}
    return np.array([p.get(i, 0.0) for i in idx])


def chi_square(counts, probs):
    """Pearson's statistic and degrees of freedom over the tokens with non-zero probability."""
    n = counts.sum()
    support = probs > 0
    expected = n * probs[support]
    stat = float(((counts[support] - expected) ** 2 / expected).sum())
    return stat, int(support.sum()) - 1


def draw(logits, n, seed=0, **kw):
    rng = np.random.default_rng(seed)
    counts = np.zeros(len(logits), dtype=np.int64)
    for _ in range(n):
        counts[sample_token(logits, rng, **kw)] += 1
    return counts


def test_temperature_zero_is_greedy_and_uses_no_randomness():
    rng = np.random.default_rng(5)
    before = rng.bit_generator.state
    logits = np.array([0.1, 3.0, 3.0, -1.0], dtype=np.float32)
    assert sample_token(logits, rng, temperature=0) == 1  # the first maximum on a tie
    assert rng.bit_generator.state == before


def test_hand_worked_composition_order():
    # probabilities 0.4, 0.3, 0.2, 0.1
    logits = np.log(np.array([0.4, 0.3, 0.2, 0.1]))
    # top-p alone keeps 0.4+0.3+0.2 (mass before the third is 0.7 < 0.75)
    np.testing.assert_allclose(filtered_probs(logits, top_p=0.75), [4 / 9, 3 / 9, 2 / 9, 0], atol=1e-12)
    # top-k first renormalises to 4/9, 3/9, 2/9; then mass before the third is 7/9 >= 0.75
    np.testing.assert_allclose(filtered_probs(logits, top_k=3, top_p=0.75), [4 / 7, 3 / 7, 0, 0], atol=1e-12)
    # min-p last: 3/7 < 0.8 * 4/7, so only the first survives
    np.testing.assert_allclose(filtered_probs(logits, top_k=3, top_p=0.75, min_p=0.8), [1, 0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(filtered_probs(logits, min_p=0.5), [0.4 / 0.9, 0.3 / 0.9, 0.2 / 0.9, 0], atol=1e-12)
    # temperature 2 flattens: p ∝ sqrt(p)
    flat = np.sqrt([0.4, 0.3, 0.2, 0.1])
    np.testing.assert_allclose(filtered_probs(logits, temperature=2.0), flat / flat.sum(), atol=1e-12)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    logits=st.lists(st.floats(-8, 8, allow_nan=False), min_size=1, max_size=12),
    temperature=st.floats(0.2, 3.0),
    top_k=st.none() | st.integers(1, 14),
    top_p=st.none() | st.floats(0.05, 1.0),
    min_p=st.none() | st.floats(0.0, 1.0),
)
def test_filters_match_plain_python_reference(logits, temperature, top_k, top_p, min_p):
    logits = np.round(np.array(logits), 3)  # keep exact ties exact, as a real tie would be
    got = filtered_probs(logits, temperature, top_k, top_p, min_p)
    want = reference_probs(logits, temperature, top_k, top_p, min_p)
    assert abs(got.sum() - 1) < 1e-9
    np.testing.assert_allclose(got, want, atol=1e-9, err_msg=f"max diff {np.abs(got - want).max()}")


@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(temperature=0.7),
        dict(top_k=5),
        dict(top_p=0.8),
        dict(min_p=0.2),
        dict(temperature=1.3, top_k=8, top_p=0.9, min_p=0.05),
    ],
)
def test_sampled_frequencies_match_filtered_softmax(kw):
    logits = np.random.default_rng(42).normal(0, 1.5, size=12).astype(np.float32)
    probs = filtered_probs(logits, **kw)
    n = 12_000
    counts = draw(logits, n, seed=7, **kw)
    assert counts[probs == 0].sum() == 0, "a filtered-out token was sampled"
    stat, dof = chi_square(counts, probs)
    # mean dof, sd sqrt(2 dof): 5 sd above the mean is a false alarm about once in 10^6 seeds.
    limit = dof + 5 * math.sqrt(2 * max(dof, 1))
    assert stat < limit, f"chi-square {stat:.1f} over {dof} dof exceeds {limit:.1f}; counts {counts}"


def test_chi_square_check_detects_a_wrong_distribution():
    # The statistic must be able to fail: draws from the plain softmax against temperature-0.7 probs.
    logits = np.random.default_rng(42).normal(0, 1.5, size=12)
    counts = draw(logits, 12_000, seed=7)
    stat, dof = chi_square(counts, filtered_probs(logits, temperature=0.7))
    assert stat > dof + 5 * math.sqrt(2 * dof)


def test_seeded_generators_reproduce_draws():
    logits = np.linspace(-1, 1, 50)
    a = [sample_token(logits, r, top_p=0.9) for r in [np.random.default_rng(3)] for _ in range(30)]
    b = [sample_token(logits, r, top_p=0.9) for r in [np.random.default_rng(3)] for _ in range(30)]
    c = [sample_token(logits, r, top_p=0.9) for r in [np.random.default_rng(4)] for _ in range(30)]
    assert a == b and a != c


def test_minus_infinity_logits_are_never_sampled():
    logits = np.array([-np.inf, 0.0, -np.inf, 0.0])
    counts = draw(logits, 500)
    assert counts[0] == counts[2] == 0 and counts[1] > 0 and counts[3] > 0


@pytest.mark.parametrize(
    "kw, fragment",
    [
        (dict(temperature=-1), "temperature"),
        (dict(temperature=float("nan")), "temperature"),
        (dict(top_k=0), "top_k"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.5), "top_p"),
        (dict(min_p=-0.1), "min_p"),
    ],
)
def test_bad_settings_are_clear_errors(kw, fragment):
    with pytest.raises(LMError, match=fragment):
        sample_token(np.zeros(3), np.random.default_rng(0), **kw)


def test_all_masked_logits_is_an_error_not_a_crash():
    with pytest.raises(LMError, match="no token"):
        sample_token(np.full(3, -np.inf), np.random.default_rng(0))

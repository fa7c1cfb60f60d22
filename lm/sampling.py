"""Choosing the next token from a vector of logits: temperature, top-k, top-p, min-p.

The filters compose in a fixed order, as in Hugging Face's logits warpers: the logits are divided
by the temperature, then top-k keeps the k most likely tokens, then top-p (nucleus) keeps the
smallest set of the survivors whose probability mass reaches p, then min-p drops every survivor
whose probability is below `min_p` times the most likely token's. The token is drawn from the
renormalised remainder with an explicit `numpy.random.Generator`, never global random state.

Letters: V vocabulary size.
"""

from __future__ import annotations

import math

import numpy as np

from lm.errors import LMError


class SamplingError(LMError):
    """A sampling setting out of range (negative temperature, top_p outside (0, 1], ...)."""


def validate_sampling(
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
) -> None:
    """Raise `SamplingError` naming the first setting that is out of range."""
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature >= 0):
        raise SamplingError(f"temperature must be a number >= 0 (0 means greedy), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise SamplingError(f"top_k must be a whole number >= 1, got {top_k!r}")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0.0 < top_p <= 1.0):
        raise SamplingError(f"top_p must be in (0, 1], got {top_p!r}")
    if min_p is not None and not (isinstance(min_p, (int, float)) and 0.0 <= min_p <= 1.0):
        raise SamplingError(f"min_p must be in [0, 1], got {min_p!r}")


def filtered_probs(
    logits: np.ndarray,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
) -> np.ndarray:
    """The distribution `sample_token` draws from, as float64 probabilities summing to 1.

    With temperature 0 it is one-hot on the first maximum (greedy).
    """
    validate_sampling(temperature, top_k, top_p, min_p)
    z = np.asarray(logits, dtype=np.float64).reshape(-1)  # (V,)
    if z.size == 0:
        raise SamplingError("cannot sample from an empty logits vector")
    if temperature == 0:
        probs = np.zeros_like(z)
        probs[int(np.argmax(z))] = 1.0
        return probs
    z = z / temperature
    keep = np.isfinite(z)
    if not keep.any():
        raise SamplingError("every logit is -inf or NaN; there is no token to sample")
    z = np.where(keep, z, -np.inf)
    if top_k is not None and top_k < z.size:
        # Ties at the k-th value are all kept, so the result never depends on the sort order.
        kth = np.partition(z, z.size - top_k)[z.size - top_k]
        z = np.where(z >= kth, z, -np.inf)
    probs = np.exp(z - z.max())
    probs /= probs.sum()
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        cum = np.cumsum(probs[order])
        # The nucleus is the shortest prefix whose mass reaches top_p: every token whose
        # preceding mass is still below top_p stays (so the most likely token always stays).
        before = cum - probs[order]
        drop = order[before >= top_p]
        probs[drop] = 0.0
        probs /= probs.sum()
    if min_p is not None and min_p > 0.0:
        probs[probs < min_p * probs.max()] = 0.0
        probs /= probs.sum()
    return probs


def sample_token(
    logits: np.ndarray,
    rng: np.random.Generator,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
) -> int:
    """Draw one token id from `logits` (V,) after temperature, top-k, top-p and min-p filtering.

    `temperature=0` is greedy (argmax; the first maximum on ties) and consumes no randomness.
    Exactly one `rng.random()` draw is used otherwise, so a seeded generator reproduces a run.

    >>> rng = np.random.default_rng(0)
    >>> sample_token(np.array([0.0, 5.0, 1.0]), rng, temperature=0)
    1
    >>> sample_token(np.array([0.0, 5.0, 1.0]), rng, top_k=1)
    1
    """
    if temperature == 0:
        validate_sampling(temperature, top_k, top_p, min_p)
        return int(np.argmax(logits))
    probs = filtered_probs(logits, temperature, top_k, top_p, min_p)
    cum = np.cumsum(probs)
    # Inverse-CDF draw: the first token whose cumulative mass exceeds u; u can round up to the
    # total, and then the last token with any mass is the right answer.
    index = int(np.searchsorted(cum, rng.random() * cum[-1], side="right"))
    if index >= probs.size:
        index = int(np.flatnonzero(probs)[-1])
    return index

"""Cross-entropy over logits, with its fused softmax backward.

`cross_entropy_forward` turns the logits into probabilities once and keeps them as the cache, so
the backward is `probs - onehot(target)` written over that same buffer: no second softmax, no
second (N, V) array. Shape letters: N rows (B*T), V vocabulary.
"""

from __future__ import annotations

import numpy as np

from lm.errors import LMError

#: Target value excluded from the mean, as in `torch.nn.functional.cross_entropy`.
IGNORE_INDEX = -100


def cross_entropy_forward(
    logits: np.ndarray, targets: np.ndarray, ignore_index: int | None = IGNORE_INDEX, inplace: bool = False
) -> tuple[float, tuple]:
    """Mean of `logsumexp(logits) - logits[target]` over rows whose target is not ignored.

    `logits` is (..., V) and `targets` the matching (...) ints. With `inplace=True` the logits
    buffer is overwritten with the exponentials the backward needs (for callers that no longer
    need the logits). The loss is computed stably (max subtracted first) and returned as a
    Python float.
    """
    V = logits.shape[-1]
    z = logits.reshape(-1, V)  # (N, V)
    t = np.asarray(targets).reshape(-1)  # (N,)
    if t.shape[0] != z.shape[0]:
        raise LMError(f"cross_entropy: {z.shape[0]} rows of logits but {t.shape[0]} targets")
    valid = t != ignore_index if ignore_index is not None else np.ones(t.shape, dtype=bool)  # (N,)
    t_safe = np.where(valid, t, 0)
    if np.any((t_safe < 0) | (t_safe >= V)):
        raise LMError(f"cross_entropy: target ids must lie in [0, {V})")
    probs = z if inplace else z.copy()  # (N, V)
    N = probs.shape[0]
    probs -= probs.max(axis=1, keepdims=True)
    picked = probs[np.arange(N), t_safe].astype(np.float64)  # (N,) shifted logit of the target
    np.exp(probs, out=probs)
    # Row sums as a matrix-vector product: BLAS does them several times faster than sum().
    total = np.matmul(probs, np.ones(V, dtype=probs.dtype))[:, None]  # (N, 1) sum of exponentials
    n_valid = int(valid.sum())
    losses = np.log(total[:, 0].astype(np.float64)) - picked  # (N,)
    loss = float(losses[valid].sum() / n_valid) if n_valid else 0.0
    # The normalisation by `total` is left to the backward, where it merges with the scaling.
    return loss, (probs, total, t_safe, valid, n_valid, logits.shape)


def cross_entropy_backward(dloss: float, cache: tuple) -> np.ndarray:
    """Gradient of `dloss * loss` with respect to the logits; consumes (overwrites) the cache.

    d loss / d logits = (softmax - onehot(target)) / n_valid for each counted row.
    """
    exps, total, t_safe, valid, n_valid, shape = cache
    scale = dloss / max(n_valid, 1)
    row_scale = np.reciprocal(total, out=total)  # (N, 1)
    row_scale *= scale
    exps *= row_scale  # softmax * scale in one pass
    exps[np.arange(exps.shape[0]), t_safe] -= scale
    if n_valid < exps.shape[0]:
        exps[~valid] = 0.0
    return exps.reshape(shape)  # (..., V)

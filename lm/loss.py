"""Cross-entropy over logits, with its fused softmax backward.

`cross_entropy_forward` turns the logits into probabilities once and keeps them as the cache, so
the backward is `probs - onehot(target)` written over that same buffer: no second softmax, no
second (N, V) array. The same row-wise pieces (`target_rows`, `exp_rows_`, `grad_rows_`) serve
the training head (`lm.layers.OutputHead.loss`), which runs them on a few rows of logits at a
time so that the whole (N, V) array never exists. Shape letters: N rows (B*T), V vocabulary.
"""

from __future__ import annotations

import numpy as np

from lm.errors import LMError

#: Target value excluded from the mean, as in `torch.nn.functional.cross_entropy`.
IGNORE_INDEX = -100


def target_rows(targets: np.ndarray, n_rows: int, V: int, ignore_index: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The flat targets checked against N rows of V logits: `(valid, t_safe)`, a (N,) mask of the
    counted rows and the targets with ignored ones replaced by 0 (a harmless column to read)."""
    t = np.asarray(targets).reshape(-1)  # (N,)
    if t.shape[0] != n_rows:
        raise LMError(f"cross_entropy: {n_rows} rows of logits but {t.shape[0]} targets")
    valid = t != ignore_index if ignore_index is not None else np.ones(t.shape, dtype=bool)  # (N,)
    t_safe = np.where(valid, t, 0)
    if np.any((t_safe < 0) | (t_safe >= V)):
        raise LMError(f"cross_entropy: target ids must lie in [0, {V})")
    return valid, t_safe


def exp_rows_(z: np.ndarray, t_safe: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Overwrite the (n, V) logits `z` with exp(z - row max); return each row's
    `logsumexp - logit[target]` (float64, (n,)) and the row sums of the exponentials ((n, 1))."""
    n, V = z.shape
    z -= z.max(axis=1, keepdims=True)
    picked = z[np.arange(n), t_safe].astype(np.float64)  # (n,) shifted logit of the target
    np.exp(z, out=z)
    # Row sums as a matrix-vector product: BLAS does them several times faster than sum().
    total = np.matmul(z, np.ones(V, dtype=z.dtype))[:, None]  # (n, 1) sum of exponentials
    return np.log(total[:, 0].astype(np.float64)) - picked, total


def grad_rows_(exps: np.ndarray, total: np.ndarray, t_safe: np.ndarray, valid: np.ndarray, scale: float) -> None:
    """Turn `exp_rows_`'s exponentials into `scale * (softmax - onehot(target))` in place, zero on
    ignored rows; consumes `total`."""
    row_scale = np.reciprocal(total, out=total)  # (n, 1)
    row_scale *= scale
    exps *= row_scale  # softmax * scale in one pass
    exps[np.arange(exps.shape[0]), t_safe] -= scale
    if not valid.all():
        exps[~valid] = 0.0


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
    valid, t_safe = target_rows(targets, z.shape[0], V, ignore_index)
    probs = z if inplace else z.copy()  # (N, V)
    losses, total = exp_rows_(probs, t_safe)
    n_valid = int(valid.sum())
    loss = float(losses[valid].sum() / n_valid) if n_valid else 0.0
    # The normalisation by `total` is left to the backward, where it merges with the scaling.
    return loss, (probs, total, t_safe, valid, n_valid, logits.shape)


def cross_entropy_backward(dloss: float, cache: tuple) -> np.ndarray:
    """Gradient of `dloss * loss` with respect to the logits; consumes (overwrites) the cache.

    d loss / d logits = (softmax - onehot(target)) / n_valid for each counted row.
    """
    exps, total, t_safe, valid, n_valid, shape = cache
    grad_rows_(exps, total, t_safe, valid, dloss / max(n_valid, 1))
    return exps.reshape(shape)  # (..., V)

"""A numerical gradient checker: central differences in float64, usable on any layer or model.

`gradcheck(f, arrays, analytic)` perturbs each element of each named array in place by ±eps,
evaluates the scalar `f()` (which must read those arrays), and compares
`(f(+eps) - f(-eps)) / 2eps` with the analytic gradient. An element passes when
`|analytic - numeric| <= atol + rtol * |numeric|`. The result records the largest differences and
where they occurred, and its `str()` is a report fit for a failing test's message.

To check a layer's backward, take `f = sum(forward(x) * R)` for a fixed random R: its gradient
is exactly `backward(R)`, so every output element's gradient path is exercised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from lm.errors import LMError


@dataclass(frozen=True)
class GradcheckResult:
    ok: bool
    max_abs_diff: float  # largest |analytic - numeric| over every checked element
    max_rel_diff: float  # largest |analytic - numeric| / max(|analytic|, |numeric|, 1e-12)
    worst: str  # "name[index]: analytic=... numeric=..." of the element furthest beyond tolerance
    checked: int  # number of elements compared
    atol: float
    rtol: float

    def __str__(self) -> str:
        verdict = "passed" if self.ok else "FAILED"
        return (
            f"gradcheck {verdict}: {self.checked} elements, max abs diff {self.max_abs_diff:.3e}, "
            f"max rel diff {self.max_rel_diff:.3e} (atol {self.atol:g}, rtol {self.rtol:g}); "
            f"worst {self.worst}"
        )


def gradcheck(
    f: Callable[[], float],
    arrays: dict[str, np.ndarray],
    analytic: dict[str, np.ndarray],
    *,
    eps: float = 1e-6,
    atol: float = 1e-7,
    rtol: float = 1e-5,
    max_per_array: int | None = None,
    seed: int = 0,
) -> GradcheckResult:
    """Compare `analytic[name]` with central differences of `f` over `arrays[name]`.

    The arrays must be float64 (float32 differences are too coarse to check anything) and are
    restored exactly after each perturbation. `max_per_array` checks a seeded random sample of
    elements from larger arrays instead of all of them.
    """
    rng = np.random.default_rng(seed)
    max_abs = max_rel = 0.0
    worst, worst_excess = "none", -np.inf
    checked = 0
    for name, arr in arrays.items():
        if arr.dtype != np.float64:
            raise LMError(f"gradcheck: {name} is {arr.dtype}; checks need float64 arrays")
        grad = np.asarray(analytic[name])
        if grad.shape != arr.shape:
            raise LMError(f"gradcheck: gradient for {name} has shape {grad.shape}, parameter {arr.shape}")
        flat_index = np.arange(arr.size)
        if max_per_array is not None and arr.size > max_per_array:
            flat_index = rng.choice(arr.size, size=max_per_array, replace=False)
        for fi in flat_index:
            idx = np.unravel_index(int(fi), arr.shape)
            old = arr[idx]
            arr[idx] = old + eps
            f_plus = float(f())
            arr[idx] = old - eps
            f_minus = float(f())
            arr[idx] = old
            numeric = (f_plus - f_minus) / (2.0 * eps)
            a = float(grad[idx])
            diff = abs(a - numeric)
            rel = diff / max(abs(a), abs(numeric), 1e-12)
            max_abs, max_rel = max(max_abs, diff), max(max_rel, rel)
            excess = diff - (atol + rtol * abs(numeric))
            if excess > worst_excess:
                worst_excess = excess
                worst = f"{name}{[int(i) for i in idx]}: analytic={a:.10g} numeric={numeric:.10g}"
            checked += 1
    return GradcheckResult(
        ok=checked > 0 and worst_excess <= 0.0,
        max_abs_diff=max_abs,
        max_rel_diff=max_rel,
        worst=worst,
        checked=checked,
        atol=atol,
        rtol=rtol,
    )

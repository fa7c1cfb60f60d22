"""AdamW, global-norm gradient clipping and the warmup + cosine learning-rate schedule.

`AdamW` performs exactly `torch.optim.AdamW`'s update (decoupled decay `p -= lr·wd·p`, then
bias-corrected Adam with eps added after the square root), with weight decay only on parameters of
`ndim >= 2`. It keeps its moments in flat buffers and updates every parameter in one vectorised
pass. When the parameters are views tiling one flat buffer (as `Transformer.params` are), that
buffer is updated in place directly; otherwise the optimiser gathers and scatters.
"""

from __future__ import annotations

import math

import numpy as np

from lm.errors import LMError


_BLOCK = 1 << 15  # elements per block: five float32 blocks (p, g, m, v, tmp) fit in L2 cache

def _packed_layout(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, int]] | None:
    """If the arrays are C-contiguous views that exactly tile one 1-D buffer, return the buffer
    and each name's element offset in it; else None."""
    base = None
    offsets: dict[str, int] = {}
    for name, a in arrays.items():
        root = a
        while root.base is not None and isinstance(root.base, np.ndarray):
            root = root.base
        if root is a or not a.flags.c_contiguous or root.ndim != 1 or not root.flags.c_contiguous:
            return None
        if base is None:
            base = root
        elif root is not base or a.dtype != base.dtype:
            return None
        byte_offset = a.__array_interface__["data"][0] - base.__array_interface__["data"][0]
        offsets[name] = byte_offset // a.itemsize
    spans = sorted((offsets[n], arrays[n].size) for n in arrays)
    cursor = 0
    for start, size in spans:
        if start != cursor:
            return None
        cursor += size
    if base is None or cursor != base.size:
        return None
    return base, offsets


class AdamW:
    """`AdamW(params, lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)`; `step(grads, lr=None)`.

    `params` is a dict of float arrays updated in place; `grads` a dict with the same keys and
    shapes. `lr` passed to `step` overrides the constructor's (the schedule sets it per step).
    """

    def __init__(self, params: dict[str, np.ndarray], lr: float, betas=(0.9, 0.95), eps: float = 1e-8,
                 weight_decay: float = 0.1) -> None:
        if not params:
            raise LMError("AdamW: no parameters to optimise")
        if not lr >= 0 or not 0 <= betas[0] < 1 or not 0 <= betas[1] < 1 or not eps > 0 or weight_decay < 0:
            raise LMError(f"AdamW: invalid settings lr={lr} betas={betas} eps={eps} weight_decay={weight_decay}")
        self.params = params
        self.lr, self.betas, self.eps, self.weight_decay = lr, tuple(betas), eps, weight_decay
        self.t = 0  # completed steps, for bias correction
        dtypes = {p.dtype for p in params.values()}
        if len(dtypes) != 1 or not np.issubdtype(next(iter(dtypes)), np.floating):
            raise LMError("AdamW: parameters must all share one float dtype")
        packed = _packed_layout(params)
        if packed is not None:
            self._flat, self.offsets = packed
            self._owns_flat = False
        else:
            self.offsets, cursor = {}, 0
            for name, p in params.items():
                self.offsets[name] = cursor
                cursor += p.size
            self._flat = np.empty(cursor, dtype=next(iter(dtypes)))
            self._owns_flat = True
        n = self._flat.size
        self.m = np.zeros(n, dtype=self._flat.dtype)
        self.v = np.zeros(n, dtype=self._flat.dtype)
        self._gbuf: np.ndarray | None = None
        # Scratch for one block at a time (a whole-size buffer would cost as much as a moment).
        self._tmp = np.empty(min(n, _BLOCK), dtype=self._flat.dtype)
        # Decayed parameters as merged contiguous [start, stop) ranges of the flat buffer.
        ranges: list[list[int]] = []
        for name in sorted(params, key=self.offsets.__getitem__):
            if params[name].ndim < 2:
                continue
            start, stop = self.offsets[name], self.offsets[name] + params[name].size
            if ranges and ranges[-1][1] == start:
                ranges[-1][1] = stop
            else:
                ranges.append([start, stop])
        self._decay_ranges = [tuple(r) for r in ranges]

    def _flat_grads(self, grads: dict[str, np.ndarray]) -> np.ndarray:
        if set(grads) != set(self.params):
            missing = sorted(set(self.params) - set(grads))
            extra = sorted(set(grads) - set(self.params))
            raise LMError(f"AdamW: gradient names differ from parameters (missing {missing}, extra {extra})")
        packed = _packed_layout(grads)
        if packed is not None and packed[1] == self.offsets:
            return packed[0]
        if self._gbuf is None:
            self._gbuf = np.empty_like(self._flat)
        for name, g in grads.items():
            p = self.params[name]
            if g.shape != p.shape:
                raise LMError(f"AdamW: gradient {name} has shape {g.shape}, parameter {p.shape}")
            self._gbuf[self.offsets[name] : self.offsets[name] + p.size] = g.reshape(-1)
        return self._gbuf

    def step(self, grads: dict[str, np.ndarray], lr: float | None = None) -> None:
        lr = self.lr if lr is None else lr
        g = self._flat_grads(grads)
        p = self._flat
        if self._owns_flat:
            for name, a in self.params.items():
                p[self.offsets[name] : self.offsets[name] + a.size] = a.reshape(-1)
        self.t += 1
        # Memory-bound: done in cache-sized blocks, so that a dozen passes per block touch main
        # memory once (faster than whole-array passes; docs/model.md has the figure).
        for lo in range(0, p.size, _BLOCK):
            self._update(lo, min(lo + _BLOCK, p.size), g, lr)
        if self._owns_flat:
            for name, a in self.params.items():
                a[...] = p[self.offsets[name] : self.offsets[name] + a.size].reshape(a.shape)

    def _update(self, s: int, e: int, g: np.ndarray, lr: float) -> None:
        """The AdamW update of flat elements [s, e) (one cache-sized block)."""
        b1, b2 = self.betas
        p, gb, m, v, tmp = self._flat[s:e], g[s:e], self.m[s:e], self.v[s:e], self._tmp[: e - s]
        decay = 1.0 - lr * self.weight_decay
        if decay != 1.0:
            for start, stop in self._decay_ranges:  # decoupled decay, matrices only
                a, b = max(start, s), min(stop, e)
                if a < b:
                    p[a - s : b - s] *= decay
        # m = b1*m + (1-b1)*g ; v = b2*v + (1-b2)*g²
        m *= b1
        np.multiply(gb, 1.0 - b1, out=tmp)
        m += tmp
        v *= b2
        np.multiply(gb, gb, out=tmp)
        tmp *= 1.0 - b2
        v += tmp
        # p -= lr/bias1 * m / (sqrt(v)/sqrt(bias2) + eps)
        np.sqrt(v, out=tmp)
        tmp *= 1.0 / math.sqrt(1.0 - b2**self.t)
        tmp += self.eps
        np.divide(m, tmp, out=tmp)
        tmp *= -lr / (1.0 - b1**self.t)
        p += tmp

    # -- state for checkpoints --------------------------------------------------------------------

    def state_tensors(self) -> dict[str, np.ndarray]:
        """First and second moments per parameter, named `m.<name>` and `v.<name>`."""
        out: dict[str, np.ndarray] = {}
        for name, a in self.params.items():
            sl = slice(self.offsets[name], self.offsets[name] + a.size)
            out[f"m.{name}"] = self.m[sl].reshape(a.shape)
            out[f"v.{name}"] = self.v[sl].reshape(a.shape)
        return out

    def load_state_tensors(self, tensors: dict[str, np.ndarray], t: int) -> None:
        """Restore moments saved by `state_tensors` and the step count `t`; checks every name."""
        expected = {f"{k}.{n}" for n in self.params for k in ("m", "v")}
        if set(tensors) != expected:
            missing = sorted(expected - set(tensors))[:3]
            extra = sorted(set(tensors) - expected)[:3]
            raise LMError(f"optimizer state does not match the model (missing {missing}, unexpected {extra})")
        for name, a in self.params.items():
            sl = slice(self.offsets[name], self.offsets[name] + a.size)
            for key, buf in (("m", self.m), ("v", self.v)):
                t_arr = tensors[f"{key}.{name}"]
                if t_arr.shape != a.shape:
                    raise LMError(f"optimizer state {key}.{name} has shape {t_arr.shape}, parameter {a.shape}")
                buf[sl] = t_arr.reshape(-1)
        self.t = int(t)


def clip_grad_norm(grads: dict[str, np.ndarray], max_norm: float) -> float:
    """Scale all gradients in place so their global L2 norm is at most `max_norm`.

    Returns the norm before clipping. As in `torch.nn.utils.clip_grad_norm_`, the scale is
    `max_norm / (norm + 1e-6)` and is applied only when it is below 1.
    """
    total = math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))
    scale = max_norm / (total + 1e-6)
    if scale < 1.0:
        for g in grads.values():
            g *= scale
    return total


def cosine_lr(step: int, warmup: int, total: int, max_lr: float, min_lr: float) -> float:
    """Linear warmup to `max_lr` over `warmup` steps, then cosine decay to `min_lr` at `total`.

    `max_lr·(step+1)/warmup` while `step < warmup`; after it
    `min_lr + ½(1 + cos(π·r))(max_lr − min_lr)` with `r = min(1, (step − warmup)/max(1, total − warmup))`.
    """
    if step < warmup:
        return max_lr * (step + 1) / warmup
    r = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * r)) * (max_lr - min_lr)

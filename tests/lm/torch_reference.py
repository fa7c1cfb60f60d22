"""The model contract written directly in PyTorch: the independent oracle for `lm`'s math.

Nothing here imports `lm`. Parameter names and shapes, the block math and the optimiser follow
the documented contract (docs/model.md, "Architecture"; y = x @ W, so W is `[in, out]`), written
from scratch in torch ops, so an error in `lm` cannot hide by being shared with its reference.

Two users: the live tests (`test_against_torch.py`, `test_optim.py`), which run where torch is
installed, and `fixtures/make_torch_reference.py`, which saves what this module computes so that
`test_torch_fixtures.py` checks `lm` against it in every CI run, torch or not.

A configuration is a plain mapping with the `ModelConfig` field names. Grouped-query attention is
covered already: `n_kv_heads` (default `n_heads`) and `head_dim` (default `d_model // n_heads`)
are read when present, query head h using key/value head h // (n_heads / n_kv_heads) as in Llama.

Shape letters: B batch, T time, C model width, V vocabulary, H query heads, K key/value heads,
D head size.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch

F = torch.nn.functional


def heads(cfg: Mapping) -> tuple[int, int, int]:
    """(query heads, key/value heads, head size) of a configuration."""
    n_heads = cfg["n_heads"]
    n_kv = cfg.get("n_kv_heads") or n_heads
    head_dim = cfg.get("head_dim") or cfg["d_model"] // n_heads
    return n_heads, n_kv, head_dim


def param_shapes(cfg: Mapping) -> dict[str, tuple[int, ...]]:
    """Every parameter's contracted name and shape, in contract order."""
    V, C, Fh = cfg["vocab_size"], cfg["d_model"], cfg["ffn_hidden"]
    H, K, D = heads(cfg)
    shapes: dict[str, tuple[int, ...]] = {"tok_emb": (V, C)}
    for i in range(cfg["n_layers"]):
        p = f"layers.{i}."
        shapes[p + "attn_norm"] = (C,)
        shapes[p + "wq"] = (C, H * D)
        shapes[p + "wk"] = (C, K * D)
        shapes[p + "wv"] = (C, K * D)
        shapes[p + "wo"] = (H * D, C)
        shapes[p + "ffn_norm"] = (C,)
        shapes[p + "w1"] = (C, Fh)
        shapes[p + "w3"] = (C, Fh)
        shapes[p + "w2"] = (Fh, C)
    shapes["norm"] = (C,)
    if not cfg.get("tie_embeddings", False):
        shapes["lm_head"] = (C, V)
    return shapes


def draw_params(cfg: Mapping, seed: int) -> dict[str, np.ndarray]:
    """float64 parameters larger than any training init, so that differences would show.

    Norm weights are drawn around 1 and matrices around 0, all with standard deviation 0.2.
    """
    rng = np.random.default_rng(seed)
    return {
        name: rng.normal(1.0 if len(shape) == 1 else 0.0, 0.2, size=shape)
        for name, shape in param_shapes(cfg).items()
    }


def to_torch(params: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """float64 leaf tensors (requiring gradients) holding copies of `params`."""
    return {k: torch.tensor(np.array(v, dtype=np.float64), requires_grad=True) for k, v in params.items()}


def loss_and_logits(P: Mapping[str, torch.Tensor], ids, targets, cfg: Mapping):
    """Mean cross-entropy over every position and the logits (B, T, V), from the contract."""
    ids, targets = torch.as_tensor(np.asarray(ids)), torch.as_tensor(np.asarray(targets))
    H, K, D = heads(cfg)
    B, T = ids.shape
    theta, eps = cfg.get("rope_theta", 10000.0), cfg.get("norm_eps", 1e-5)
    freqs = theta ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)  # (D/2,)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * freqs[None]  # (T, D/2)
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)  # (T, D)

    def rope(x):  # rotate-half: dimension j pairs with j + D/2
        x1, x2 = x[..., : D // 2], x[..., D // 2 :]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    def norm(x, w):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w

    x = P["tok_emb"][ids]  # (B, T, C)
    for i in range(cfg["n_layers"]):
        p = f"layers.{i}."
        h = norm(x, P[p + "attn_norm"])
        q = (h @ P[p + "wq"]).view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        k = (h @ P[p + "wk"]).view(B, T, K, D).transpose(1, 2)  # (B, K, T, D)
        v = (h @ P[p + "wv"]).view(B, T, K, D).transpose(1, 2)
        k, v = k.repeat_interleave(H // K, dim=1), v.repeat_interleave(H // K, dim=1)  # (B, H, T, D)
        y = F.scaled_dot_product_attention(rope(q), rope(k), v, is_causal=True)  # scale 1/sqrt(D)
        x = x + y.transpose(1, 2).reshape(B, T, H * D) @ P[p + "wo"]
        h = norm(x, P[p + "ffn_norm"])
        x = x + (F.silu(h @ P[p + "w1"]) * (h @ P[p + "w3"])) @ P[p + "w2"]
    head = P["tok_emb"].T if cfg.get("tie_embeddings", False) else P["lm_head"]
    logits = norm(x, P["norm"]) @ head  # (B, T, V)
    return F.cross_entropy(logits.reshape(-1, cfg["vocab_size"]), targets.reshape(-1)), logits


def adamw(P: Mapping[str, torch.Tensor], lr: float, *, betas=(0.9, 0.95), eps=1e-8,
          weight_decay=0.1, foreach: bool | None = None) -> torch.optim.AdamW:
    """torch's AdamW with the contract's grouping: decoupled decay on ndim >= 2 only."""
    decay = [t for t in P.values() if t.dim() >= 2]
    no_decay = [t for t in P.values() if t.dim() < 2]
    groups = [g for g in ({"params": decay, "weight_decay": weight_decay},
                          {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, foreach=foreach)


def cosine_lr(step: int, warmup: int, total: int, max_lr: float, min_lr: float) -> float:
    """Linear warmup over `warmup` steps to `max_lr`, then half a cosine down to `min_lr` at
    `total` (the schedule nanoGPT uses; written here again so the reference owes `lm` nothing)."""
    import math

    if step < warmup:
        return max_lr * (step + 1) / warmup
    r = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + math.cos(math.pi * r))


def train(P: Mapping[str, torch.Tensor], batches: Iterable[tuple[np.ndarray, np.ndarray]],
          lrs: Sequence[float], cfg: Mapping, *, clip: float, weight_decay: float,
          betas=(0.9, 0.95), eps=1e-8) -> list[float]:
    """Train `P` in place: per batch, loss and gradients, global-norm clipping, an AdamW step
    at that step's learning rate. Returns the loss before each step."""
    opt = adamw(P, lrs[0], betas=betas, eps=eps, weight_decay=weight_decay)
    losses = []
    for (ids, targets), lr in zip(batches, lrs, strict=True):
        opt.zero_grad()
        loss, _ = loss_and_logits(P, ids, targets, cfg)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(P.values()), clip)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        losses.append(loss.item())
    return losses


def adamw_steps(params: Mapping[str, np.ndarray], grads: Sequence[Mapping[str, np.ndarray]],
                lrs: Sequence[float], *, betas=(0.9, 0.95), eps=1e-8,
                weight_decay=0.1) -> dict[str, np.ndarray]:
    """The parameters after one torch AdamW step per (gradients, learning rate), unfused."""
    P = to_torch(params)
    opt = adamw(P, lrs[0], betas=betas, eps=eps, weight_decay=weight_decay, foreach=False)
    for g, lr in zip(grads, lrs, strict=True):
        for group in opt.param_groups:
            group["lr"] = lr
        for name, t in P.items():
            t.grad = torch.tensor(np.asarray(g[name], dtype=np.float64))
        opt.step()
    return {k: t.detach().numpy().copy() for k, t in P.items()}

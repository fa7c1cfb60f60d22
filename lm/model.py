"""The decoder-only transformer: embedding, pre-norm blocks, final norm, output projection.

All parameters live in one flat buffer and all gradients in another; `model.params` and
`model.grads` are dicts of named views into them (names and shapes as contracted in
docs/architecture.md). Matrices come first in the buffer and vectors (the norm weights) last, so an
optimiser sees weight-decayed and non-decayed parameters as two contiguous ranges and can update
everything in one vectorised pass.

Shape letters: B batch, T time, C model width, V vocabulary.
"""

from __future__ import annotations

import math

import numpy as np

from lm.config import ModelConfig
from lm.errors import LMError
from lm.layers import (
    Block, Buffers, CausalSelfAttention, Embedding, OutputHead, RMSNorm, SwiGLU, rope_rotations, rope_tables,
)
from lm.loss import IGNORE_INDEX


def param_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter's name and shape, in the contracted order."""
    V, C, F = config.vocab_size, config.d_model, config.ffn_hidden
    QD, KD = config.n_heads * config.head_dim, config.n_kv_heads * config.head_dim
    shapes: dict[str, tuple[int, ...]] = {"tok_emb": (V, C)}
    for i in range(config.n_layers):
        p = f"layers.{i}."
        shapes[p + "attn_norm"] = (C,)
        shapes[p + "wq"] = (C, QD)
        shapes[p + "wk"] = (C, KD)
        shapes[p + "wv"] = (C, KD)
        shapes[p + "wo"] = (QD, C)
        shapes[p + "ffn_norm"] = (C,)
        shapes[p + "w1"] = (C, F)
        shapes[p + "w3"] = (C, F)
        shapes[p + "w2"] = (F, C)
    shapes["norm"] = (C,)
    if not config.tie_embeddings:
        shapes["lm_head"] = (C, V)
    return shapes


def _flat_views(shapes: dict[str, tuple[int, ...]], buffer: np.ndarray) -> dict[str, np.ndarray]:
    """Named views into `buffer`: matrices first, then vectors, each group in contract order.

    Every view is contiguous and together they tile the buffer, which the optimiser relies on
    to update all parameters as one array (`lm.optim`).
    """
    order = [n for n, s in shapes.items() if len(s) >= 2] + [n for n, s in shapes.items() if len(s) < 2]
    views: dict[str, np.ndarray] = {}
    offset = 0
    for name in order:
        size = math.prod(shapes[name])
        views[name] = buffer[offset : offset + size].reshape(shapes[name])
        offset += size
    return {name: views[name] for name in shapes}  # dict order follows the contract


class Transformer:
    """A Llama-style decoder. `Transformer(config, seed=0)` initialises float32 parameters.

    `dtype=np.float64` gives a model for gradient checks. Initialisation follows GPT-2 and Llama
    practice: normal(0, 0.02) for every matrix, the output projections of residual branches (wo,
    w2) scaled by 1/sqrt(2·n_layers) so the residual stream's variance does not grow with depth,
    and ones for the norm weights. `init=False` leaves every parameter zero, for a loader that
    fills them (a pretrained model's 100 million random draws would cost seconds).
    """

    def __init__(self, config: ModelConfig, seed: int = 0, dtype=np.float32, *, init: bool = True) -> None:
        self.config = config
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise LMError(f"model dtype must be float32 or float64, got {self.dtype}")
        shapes = param_shapes(config)
        total = sum(math.prod(s) for s in shapes.values())
        self.flat_params = np.zeros(total, dtype=self.dtype)
        self.flat_grads = np.zeros(total, dtype=self.dtype)
        self.params: dict[str, np.ndarray] = _flat_views(shapes, self.flat_params)
        self.grads: dict[str, np.ndarray] = _flat_views(shapes, self.flat_grads)
        if init:
            self._init_params(seed)
        self._build_layers()

    @property
    def n_params(self) -> int:
        return int(self.flat_params.size)

    def replica(self) -> "Transformer":
        """A model on the same parameter arrays, with its own gradient and activation buffers.

        What a data-parallel worker runs (`lm.parallel`): an optimiser step on this model's
        parameters is the replica's too, while their `loss_and_grads` calls may run at the
        same time on different threads.
        """
        twin = object.__new__(Transformer)
        twin.config, twin.dtype = self.config, self.dtype
        twin.flat_params, twin.params = self.flat_params, self.params
        twin.flat_grads = np.zeros_like(self.flat_grads)
        twin.grads = _flat_views(param_shapes(self.config), twin.flat_grads)
        twin._build_layers()
        return twin

    def _init_params(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        residual_scale = 1.0 / math.sqrt(2 * self.config.n_layers)
        for name, p in self.params.items():
            if p.ndim == 1:
                p[...] = 1.0
                continue
            std = 0.02 * (residual_scale if name.endswith((".wo", ".w2")) else 1.0)
            p[...] = rng.normal(0.0, std, size=p.shape)

    def _build_layers(self) -> None:
        cfg, P, G = self.config, self.params, self.grads
        cos, sin = rope_tables(cfg.max_seq_len, cfg.head_dim, cfg.rope_theta, self.dtype)
        rot = rope_rotations(cos, sin)  # shared by every layer
        self.embedding = Embedding(P["tok_emb"], G["tok_emb"])
        self.blocks: list[Block] = []
        for i in range(cfg.n_layers):
            p = f"layers.{i}."
            attn = CausalSelfAttention(
                P[p + "wq"], P[p + "wk"], P[p + "wv"], P[p + "wo"],
                G[p + "wq"], G[p + "wk"], G[p + "wv"], G[p + "wo"],
                cfg.n_heads, cos, sin, cfg.n_kv_heads, rot,
            )
            ffn = SwiGLU(P[p + "w1"], P[p + "w3"], P[p + "w2"], G[p + "w1"], G[p + "w3"], G[p + "w2"])
            self.blocks.append(
                Block(
                    RMSNorm(P[p + "attn_norm"], G[p + "attn_norm"], cfg.norm_eps), attn,
                    RMSNorm(P[p + "ffn_norm"], G[p + "ffn_norm"], cfg.norm_eps), ffn,
                )
            )
        self.final_norm = RMSNorm(P["norm"], G["norm"], cfg.norm_eps)
        if cfg.tie_embeddings:
            self.head = OutputHead(P["tok_emb"], G["tok_emb"], transposed=True)
        else:
            self.head = OutputHead(P["lm_head"], G["lm_head"])
        # Activation buffers are reused from step to step (see layers.Buffers): each layer keeps
        # its own forward caches; backward temporaries are shared by all layers of one role.
        scratch: dict = {}

        def bind(layer, role: str) -> None:
            layer.fwd = Buffers({})
            if hasattr(layer, "tmp"):
                layer.tmp = Buffers(scratch, prefix=role + ".")

        bind(self.embedding, "embedding")
        for block in self.blocks:
            bind(block, "block")
            bind(block.attn_norm, "attn_norm")
            bind(block.attn, "attn")
            bind(block.ffn_norm, "ffn_norm")
            bind(block.ffn, "ffn")
        bind(self.final_norm, "final_norm")
        bind(self.head, "head")

    # -- forward / backward ---------------------------------------------------------------------

    def _check_ids(self, ids, what: str = "ids") -> np.ndarray:
        ids = np.asarray(ids)
        if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
            raise LMError(f"{what} must be a 2-D integer array [batch, time], got {ids.dtype} {ids.shape}")
        if ids.size == 0:
            raise LMError(f"{what} must hold at least one token, got shape {ids.shape}")
        if ids.shape[1] > self.config.max_seq_len:
            raise LMError(
                f"sequence length {ids.shape[1]} exceeds the model's max_seq_len {self.config.max_seq_len}"
            )
        if ids.size and (ids.min() < 0 or ids.max() >= self.config.vocab_size):
            raise LMError(f"{what} must lie in [0, {self.config.vocab_size}); the tokenizer and model disagree")
        return ids

    def _trunk(self, ids: np.ndarray) -> tuple[np.ndarray, list]:
        """Everything before the output projection: the final norm's output (B, T, C) and caches."""
        caches: list = []
        x, c = self.embedding.forward(ids)  # (B, T, C)
        caches.append(c)
        for block in self.blocks:
            x, c = block.forward(x)  # (B, T, C)
            caches.append(c)
        x, c = self.final_norm.forward(x)
        caches.append(c)
        return x, caches

    def _forward(self, ids: np.ndarray) -> tuple[np.ndarray, list]:
        x, caches = self._trunk(ids)
        logits, c = self.head.forward(x)  # (B, T, V)
        caches.append(c)
        return logits, caches

    def _trunk_backward(self, dx: np.ndarray, caches: list) -> None:
        """From d(final norm output) (B, T, C) down to the embedding; `caches` from `_trunk`."""
        dx = self.final_norm.backward(dx, caches[-1])
        for block, c in zip(reversed(self.blocks), reversed(caches[1:-1])):
            dx = block.backward(dx, c)
        self.embedding.backward(dx, caches[0])

    def forward(self, ids) -> np.ndarray:
        """Logits `[B, T, V]` for int token ids `[B, T]` (a new array, the caller's to keep)."""
        logits, _ = self._forward(self._check_ids(ids))
        return logits.copy()  # the model's logits buffer is reused by the next call

    def loss(self, ids, targets, ignore_index: int | None = IGNORE_INDEX) -> float:
        """Mean cross-entropy of the next-token targets, forward only."""
        ids = self._check_ids(ids)
        targets = self._check_targets(targets, ids, ignore_index)
        x, _ = self._trunk(ids)
        loss, _ = self.head.loss(x, targets, ignore_index)  # a few rows of logits at a time
        return loss

    def _check_targets(self, targets, ids: np.ndarray, ignore_index) -> np.ndarray:
        targets = np.asarray(targets)
        if targets.shape != ids.shape or not np.issubdtype(targets.dtype, np.integer):
            raise LMError(f"targets must be integers shaped like ids {ids.shape}, got {targets.dtype} {targets.shape}")
        return targets

    def zero_grads(self) -> None:
        self.flat_grads.fill(0.0)

    def loss_and_grads(
        self, ids, targets, *, accumulate: bool = False, loss_scale: float = 1.0,
        ignore_index: int | None = IGNORE_INDEX,
    ) -> tuple[float, dict[str, np.ndarray]]:
        """Mean cross-entropy over all positions and its gradient for every parameter.

        Returns `(loss, model.grads)`: the gradient dict is the model's own buffers (the same
        arrays on every call; copy them to keep them). With `accumulate=True` the gradients are
        added to what the buffers hold, which with `loss_scale=1/K` sums K micro-batches into
        the gradient of their mean loss.
        """
        ids = self._check_ids(ids)
        targets = self._check_targets(targets, ids, ignore_index)
        if not accumulate:
            self.zero_grads()
        x, caches = self._trunk(ids)  # (B, T, C)
        # Projection, loss and their backward in one pass over chunks of rows: the (B, T, V)
        # logits and their gradient never exist whole (OutputHead.loss).
        loss, dx = self.head.loss(x, targets, ignore_index, dloss=loss_scale)
        self._trunk_backward(dx, caches)
        return loss, self.grads

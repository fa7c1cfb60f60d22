"""The key/value cache for incremental decoding: one preallocated buffer, filled in place.

Every layer's keys and values for positions `0 .. length-1` live in two float32 arrays allocated
once for the whole context (`max_len` positions), so decoding a token writes one slot per layer
and never concatenates or reallocates. Keys are stored after RoPE, at their absolute positions, so
an attention step reads them as they are. With grouped-query attention only the key/value heads
are cached (`n_heads` here is the model's `n_kv_heads`), a factor n_heads/n_kv_heads smaller.

Each head's keys are stored position-major, (S, D), as its values are: the step's scores read
the first n rows as one contiguous run (a transposed (D, S) layout reads n of every S floats per
row instead, and measured slower). A token at position n reads the cache of n positions beside
all the weights; on a processor cache shared with other processes that pushes part of the
weights out to main memory too, which is why the 512th token costs more than the 16th (figures
in docs/model.md, "Generation" and "Measurements behind the code"; `benchmarks/generate.py`).

Letters: L layers, B batch, H key/value heads, S cache capacity (max_len), D head_dim.
"""

from __future__ import annotations

import numpy as np

from lm.errors import LMError


class ContextFullError(LMError):
    """More positions were fed than the cache (the model's context length) can hold."""


class KVCache:
    """Keys and values of every layer for the positions decoded so far.

    `keys[l]` and `values[l]` are `(B, H, S, D)` views into one buffer each; only the first
    `length` positions along S are meaningful. `reset()` empties the cache without freeing it.
    """

    def __init__(
        self,
        n_layers: int,
        n_heads: int,
        head_dim: int,
        max_len: int,
        batch: int = 1,
        dtype: np.dtype | type = np.float32,
    ) -> None:
        if min(n_layers, n_heads, head_dim, max_len, batch) < 1:
            raise LMError("a KV cache needs at least one layer, head, dimension, position and row")
        self.max_len = max_len
        self.batch = batch
        self.keys = np.zeros((n_layers, batch, n_heads, max_len, head_dim), dtype=dtype)  # (L, B, H, S, D)
        self.values = np.zeros_like(self.keys)  # (L, B, H, S, D)
        self.length = 0

    @property
    def free(self) -> int:
        """How many more positions fit before the context is full."""
        return self.max_len - self.length

    def reserve(self, n: int) -> int:
        """Claim the next `n` positions and return the first of them (the absolute position)."""
        if n > self.free:
            raise ContextFullError(
                f"the context holds {self.max_len} tokens; {self.length} are used and {n} more "
                "do not fit (generation slides the window; shorten the input otherwise)"
            )
        start = self.length
        self.length += n
        return start

    def reset(self) -> None:
        """Forget every position; the buffers are kept and overwritten by the next writes."""
        self.length = 0

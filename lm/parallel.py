"""Data-parallel training steps on one machine: the batch split across worker threads.

`DataParallel(model, workers)` computes `model.loss_and_grads` (and `model.loss`) by cutting the
batch into `workers` shards of whole sequences, running each shard's forward and backward on
its own thread, and summing the shards' gradients into `model.grads`. Each worker is a
`model.replica()`: the same parameter arrays, its own gradient and activation buffers. NumPy
releases the GIL inside matrix products and element-wise loops, so the shards really run side
by side, with BLAS held to one thread per worker (`lm.blas.limit`) for the duration.

Why not leave the parallelism to BLAS: its threads split each matrix product, but everything
between the products (softmax, RoPE, SwiGLU, RMSNorm, the loss) runs on one core, and the 64
small products of an attention call each pay a thread hand-off; two workers on one BLAS thread
each step faster than one worker on two (docs/model.md, "Measurements behind the code").

The result is the full batch's loss and gradient: each shard's mean loss is weighted by its
share of the counted (not ignored) targets. Only the order of floating-point additions differs
from `model.loss_and_grads` on the whole batch, so float32 results agree to rounding, and a
given worker count gives bit-identical results run after run.
"""

from __future__ import annotations

import contextvars
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from lm import blas
from lm.errors import LMError
from lm.loss import IGNORE_INDEX


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the system has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


MAX_DEFAULT_WORKERS = 8  # each worker beyond the first holds a gradient buffer as big as the model


def default_workers() -> int:
    """One worker per available CPU (at most 8) when BLAS can be held to one thread each, else one."""
    return min(available_cpus(), MAX_DEFAULT_WORKERS) if blas.available() else 1


class DataParallel:
    """`DataParallel(model, workers=None)`: `loss_and_grads` and `loss` over worker threads.

    `workers` is the number of CPU threads a step may use (None: `default_workers()`): that many
    shards on one BLAS thread each, or, for a batch of a single sequence, the model itself on
    `workers` BLAS threads. A batch of fewer sequences than workers uses one worker per
    sequence. One worker is exactly `model.loss_and_grads` on one BLAS thread. Where BLAS's
    thread count cannot be set (`lm.blas.available()` is False) the workers share whatever
    threads BLAS starts, which is why the default is then one worker. `close()` (or a `with`
    block) stops the threads; they are also stopped when the interpreter exits.
    """

    def __init__(self, model, workers: int | None = None) -> None:
        workers = default_workers() if workers is None else workers
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise LMError(f"workers must be a positive integer, got {workers!r}")
        self.model = model
        self.workers = workers
        self._replicas = [model]
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> "DataParallel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def loss_and_grads(
        self, ids, targets, *, accumulate: bool = False, loss_scale: float = 1.0,
        ignore_index: int | None = IGNORE_INDEX,
    ) -> tuple[float, dict[str, np.ndarray]]:
        """As `Transformer.loss_and_grads`, the batch shared among the workers."""
        model = self.model
        ids, targets, shards, weights = self._split(ids, targets, ignore_index)
        if len(shards) == 1:
            with blas.limit(self.workers):
                return model.loss_and_grads(ids, targets, accumulate=accumulate, loss_scale=loss_scale,
                                            ignore_index=ignore_index)

        def work(i: int) -> float:
            lo, hi = shards[i]
            loss, _ = self._replicas[i].loss_and_grads(
                ids[lo:hi], targets[lo:hi],
                accumulate=accumulate if i == 0 else False,  # worker 0 writes into model.grads
                loss_scale=loss_scale * weights[i], ignore_index=ignore_index,
            )
            return loss * weights[i]

        loss = sum(self._run(work, len(shards)))
        for replica in self._replicas[1 : len(shards)]:
            model.flat_grads += replica.flat_grads
        return float(loss), model.grads

    def loss(self, ids, targets, ignore_index: int | None = IGNORE_INDEX) -> float:
        """As `Transformer.loss` (forward only), the batch shared among the workers."""
        ids, targets, shards, weights = self._split(ids, targets, ignore_index)
        if len(shards) == 1:
            with blas.limit(self.workers):
                return self.model.loss(ids, targets, ignore_index=ignore_index)

        def work(i: int) -> float:
            lo, hi = shards[i]
            return self._replicas[i].loss(ids[lo:hi], targets[lo:hi], ignore_index=ignore_index) * weights[i]

        return float(sum(self._run(work, len(shards))))

    # -- internals ------------------------------------------------------------------------------

    def _split(self, ids, targets, ignore_index):
        """The checked batch, its shards' [lo, hi) sequence ranges and their weights."""
        ids = self.model._check_ids(ids)
        targets = self.model._check_targets(targets, ids, ignore_index)
        shards = self._shards(ids.shape[0])
        return ids, targets, shards, self._weights(targets, shards, ignore_index)

    def _shards(self, batch: int) -> list[tuple[int, int]]:
        """[lo, hi) sequence ranges, as equal as whole sequences allow."""
        k = min(self.workers, batch)
        cuts = [batch * i // k for i in range(k + 1)]
        return list(zip(cuts[:-1], cuts[1:]))

    @staticmethod
    def _weights(targets: np.ndarray, shards, ignore_index) -> list[float]:
        """Each shard's share of the counted targets: its mean loss's weight in the batch mean."""
        if ignore_index is None:
            counts = [(hi - lo) * targets[0].size for lo, hi in shards]
        else:
            counts = [int(np.count_nonzero(targets[lo:hi] != ignore_index)) for lo, hi in shards]
        total = sum(counts)
        if total == 0:  # nothing counted anywhere: the loss is 0 and every gradient zero
            return [0.0] * len(shards)
        return [c / total for c in counts]

    def _run(self, work, n: int) -> list[float]:
        """`work(i)` for i < n: 1..n-1 on the pool, 0 on this thread; BLAS on one thread each."""
        while len(self._replicas) < n:
            self._replicas.append(self.model.replica())
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.workers - 1, thread_name_prefix="lm-worker")
        with blas.limit(1):
            # Each task runs in a copy of this thread's context, so NumPy's errstate applies there too.
            futures = [self._pool.submit(contextvars.copy_context().run, work, i) for i in range(1, n)]
            try:
                first = work(0)
            finally:
                # Wait for every worker before leaving, even on an error: they write model.grads.
                for f in futures:
                    f.exception()
        return [first, *(f.result() for f in futures)]

"""Data-parallel training across processes on MPI: `mpiexec -n N tiss train --distributed mpi`.

Every rank (one process each) holds the whole model and optimiser. At each step every rank draws
the same global batch from the same seeded sampler, keeps its contiguous share of the sequences
(`share`), and computes that share's loss and gradients on its own `--threads` workers
(`lm.parallel.DataParallel`), scaled by the share's fraction of the batch's counted targets. The
ranks then sum their gradients with one `MPI.Allreduce` over the model's flat float32 gradient
buffer (and one small float64 one for the losses and the stop flag): the sum is the global batch's
mean gradient, and every rank takes the same clipped AdamW step from it. Neither the batch, the
schedule nor the sampler depends on the number of ranks, so any count trains the same model up to
the order of the float32 additions.

Only rank 0 writes: progress, metrics and checkpoints. What writes the run directory (tokenizer,
token files, a resume's repairs) runs on rank 0 while the others wait without spinning
(`root_first`); every rank then memory-maps the same token files and reads the checkpoint itself, so
the run directory must be on a filesystem every rank sees. The page cache keeps one copy of the
token files per machine however many ranks it runs; broadcasting them would put a private copy of
the corpus in every rank instead.

Failures. A rank that dies is the launcher's to handle: MPICH's mpiexec, Open MPI's mpirun and
`srun --kill-on-bad-exit=1` end the whole job. A rank that fails on its own (an error only it saw:
a full disk on rank 0, memory on one host) prints the error with its rank and calls `MPI_Abort`,
which ends every rank within a second: the others may already be waiting in a collective operation
that would otherwise never complete (a process that merely exits leaves them waiting). Errors every
rank learns together (bad options, a diverging loss, a failed save, Ctrl-C) stop all ranks together
and cleanly: rank 0 raises the error as a single process would, the others exit quietly with the
same status (`RankExit`), so a message is printed once.

`SOLO` is the group of a single process without MPI: `lm.train` makes the same calls on it.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
import zlib
from contextlib import contextmanager
from typing import Any, Callable

import numpy as np

from lm.console import say
from lm.errors import LMError
from lm.loss import IGNORE_INDEX
from lm.parallel import MAX_DEFAULT_WORKERS, available_cpus, default_workers

INSTALL_HINT = "pip install 'quantatissu[mpi]'"
# Set by the launchers for the processes they start (MPICH/Intel MPI, PMIx, Open MPI, MPICH's
# hydra): a single rank with one of these was started as `mpiexec -n 1` on purpose.
LAUNCHER_ENV = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")
SIZE_ENV = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")  # how many processes such a launcher started
POLL_SECONDS = 0.02  # how often a rank waiting for rank 0 looks whether it is done
ABORT_GRACE = 0.5  # seconds a rank that aborts the job leaves the launcher to forward its last line


class DistributedError(LMError):
    """Distributed training that cannot start or continue (no MPI, a rank that failed, ...)."""


class RankExit(SystemExit):
    """Ends a rank other than 0 quietly when the run stops for a reason rank 0 reports."""


def connect(kind: str) -> "MPIGroup":
    """The group of processes for `--distributed kind` (only "mpi"), with what to do when none."""
    if kind != "mpi":
        raise DistributedError(f"--distributed {kind!r} is not a backend; the only one is 'mpi'")
    try:
        from mpi4py import MPI
    except ImportError:
        raise DistributedError(
            f"--distributed mpi needs mpi4py and an MPI library: {INSTALL_HINT}"
        ) from None
    except (RuntimeError, OSError) as exc:  # mpi4py is there but found no MPI library to load
        raise DistributedError(
            f"--distributed mpi: mpi4py could not start MPI ({exc}); {INSTALL_HINT} brings MPICH"
        ) from None
    comm = MPI.COMM_WORLD
    started = next((os.environ[name] for name in SIZE_ENV if os.environ.get(name, "").isdigit()), None)
    if started is not None and int(started) != comm.Get_size():
        # Each process came up as a world of its own and would train (and write) alone.
        library = MPI.Get_library_version().splitlines()[0].strip()
        raise DistributedError(
            f"the launcher started {started} processes but MPI sees {comm.Get_size()}: that mpiexec "
            f"belongs to another MPI library than the one mpi4py loaded ({library}). Use the mpiexec "
            f"installed beside this Python ({INSTALL_HINT}), or an mpi4py built for that MPI"
        )
    if comm.Get_size() == 1 and not any(name in os.environ for name in LAUNCHER_ENV):
        raise DistributedError(
            "--distributed mpi found a single process: start one per rank with an MPI launcher, "
            "`mpiexec -n N tiss train --distributed mpi ...` (or `srun` under Slurm), or drop "
            "--distributed to train in this process"
        )
    return MPIGroup(comm, MPI)


def _describe(exc: BaseException) -> tuple[int, str]:
    """(exit status, one-line message) of an error, for the other ranks to act on."""
    if isinstance(exc, KeyboardInterrupt):
        return 130, "interrupted"
    if isinstance(exc, SystemExit):
        code = exc.code if isinstance(exc.code, int) else 1
        return code, f"exited with status {code}"
    if isinstance(exc, LMError):
        return getattr(exc, "exit_code", 2), str(exc)
    if isinstance(exc, MemoryError):
        return 2, f"out of memory ({exc}); lower --batch-size, --seq-len or the model's size"
    return 1, f"internal error {type(exc).__name__}: {exc}"


def _mark(exc: BaseException) -> BaseException:
    """Flag an error every rank raises together: `guard` lets it end the rank normally."""
    exc._lm_all_ranks = True  # noqa: SLF001 - an attribute on our own exception instance
    return exc


def _crc(array: np.ndarray) -> int:
    return zlib.crc32(memoryview(np.ascontiguousarray(array)).cast("B"))


class Solo:
    """One process, no MPI: what `lm.train` steps with when not distributed."""

    rank, size, is_root = 0, 1, True
    reduce_seconds = 0.0
    reduce_bytes = 0
    reduce_calls = 0

    def default_threads(self) -> int:
        return default_workers()

    def describe(self, threads: int) -> str:
        return f"{threads} worker thread{'s' if threads > 1 else ''}"

    @contextmanager
    def guard(self):
        yield

    def everyone(self, fn: Callable[[], Any]) -> Any:
        return fn()

    def root_first(self, fn: Callable[[], Any]) -> Any:
        return fn()

    def share(self, targets: np.ndarray, ignore_index: int | None = IGNORE_INDEX) -> tuple[int, int, float]:
        return 0, len(targets), 1.0

    def reduce(self, flat_grads: np.ndarray, partials: list[float], stop: bool) -> tuple[list[float], bool]:
        return partials, stop

    def reduce_values(self, values: list[float]) -> list[float]:
        return values

    def align(self, model, opt, state: dict) -> tuple[dict, list[int]]:
        return state, []

    def agree_root(self, failure: BaseException | None) -> None:
        if failure is not None:
            raise failure

    def stop_all(self, exc: BaseException) -> None:
        raise exc


SOLO = Solo()


class MPIGroup(Solo):
    """The ranks of `MPI.COMM_WORLD`; see the module docstring for what each call does."""

    def __init__(self, comm, mpi) -> None:
        self.comm, self.MPI = comm, mpi
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.is_root = self.rank == 0
        self.reduce_seconds, self.reduce_bytes, self.reduce_calls = 0.0, 0, 0
        # Ranks on this machine (sharing its memory): a collective call, so made here, where every
        # rank is, rather than where some rank may need it.
        local = comm.Split_type(mpi.COMM_TYPE_SHARED)
        self.local_size = local.Get_size()
        local.Free()

    # -- threads --------------------------------------------------------------------------------

    def default_threads(self) -> int:
        """This rank's share of the machine's CPUs (at most 8), or its own CPUs if it is bound."""
        if default_workers() == 1:
            return 1  # BLAS threads cannot be held to one per worker here
        cpus = available_cpus()
        if cpus >= (os.cpu_count() or cpus):  # not bound to a subset: share the machine's CPUs
            cpus = cpus // self.local_size
        return max(1, min(cpus, MAX_DEFAULT_WORKERS))

    def describe(self, threads: int) -> str:
        return (f"{self.size} rank{'s' if self.size > 1 else ''} x {threads} worker "
                f"thread{'s' if threads > 1 else ''}")

    # -- agreement --------------------------------------------------------------------------------

    @contextmanager
    def guard(self):
        """Around a rank's whole run: an error only this rank saw aborts the job (see above)."""
        try:
            yield
        except RankExit:
            raise
        except BaseException as exc:
            if getattr(exc, "_lm_all_ranks", False) or self.size == 1:
                raise
            code, message = _describe(exc)
            if not isinstance(exc, (LMError, KeyboardInterrupt, SystemExit)):
                traceback.print_exc()
            say(sys.stderr, f"rank {self.rank} of {self.size}: {message}; stopping every rank", "error")
            # The launcher tears the job down as soon as it hears of the abort and may drop what
            # this rank wrote but it has not forwarded yet: give it a moment to pass the line on.
            time.sleep(ABORT_GRACE)
            self.comm.Abort(code)

    def wait_idle(self) -> bool:
        """A barrier that sleeps instead of spinning (MPI's blocking calls poll a core flat out).

        Returns whether Ctrl-C arrived meanwhile: the wait goes on regardless, since the other
        ranks can only be left together.
        """
        request = self.comm.Ibarrier()
        interrupted = False
        while True:
            try:
                while not request.Test():
                    time.sleep(POLL_SECONDS)
                return interrupted
            except KeyboardInterrupt:
                interrupted = True

    def _settle(self, outcomes: list, failure: BaseException | None) -> None:
        """Raise on every rank if any rank failed: rank 0 the error, the others `RankExit`."""
        failed = [(r, o) for r, o in enumerate(outcomes) if o is not None]
        if not failed:
            return
        first, (code, message) = failed[0]
        if not self.is_root:
            if failure is not None and not isinstance(failure, (LMError, KeyboardInterrupt)):
                traceback.print_exception(failure)  # a bug here: rank 0 only names it
            raise RankExit(code)
        if failure is not None:
            raise _mark(failure)
        if (code, message) == _describe(KeyboardInterrupt()):
            raise _mark(KeyboardInterrupt())
        error = DistributedError(f"rank {first} of {self.size}: {message}")
        error.exit_code = code
        raise _mark(error)

    def everyone(self, fn: Callable[[], Any]) -> Any:
        """Run `fn()` on every rank; if it failed anywhere, every rank stops (rank 0 says why).

        An outcome that is not a failure (a run found complete) must be returned, not raised.
        """
        result, failure = None, None
        try:
            result = fn()
        except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt too: the others must know
            failure = exc
        if self.wait_idle() and failure is None:
            failure = KeyboardInterrupt()
        outcomes = self.comm.allgather(None if failure is None else _describe(failure))
        self._settle(outcomes, failure)
        return result

    def root_first(self, fn: Callable[[], Any]) -> Any:
        """Run `fn()` on rank 0 while the others wait idle; its failure stops every rank."""
        return self.everyone(fn if self.is_root else lambda: None)

    def agree_root(self, failure: BaseException | None) -> None:
        """After something only rank 0 did (a save): its failure, if any, stops every rank."""
        outcome = self.comm.bcast(None if failure is None else _describe(failure), root=0)
        self._settle([outcome], failure)

    def stop_all(self, exc: BaseException) -> None:
        """Stop for a reason every rank reached at the same point (a diverged loss, Ctrl-C)."""
        if not self.is_root:
            raise RankExit(_describe(exc)[0])
        raise _mark(exc)

    # -- steps ------------------------------------------------------------------------------------

    def share(self, targets: np.ndarray, ignore_index: int | None = IGNORE_INDEX) -> tuple[int, int, float]:
        """This rank's rows [lo, hi) of a batch and its weight in the batch's mean loss.

        The rows are cut as evenly as whole sequences allow; the weight is the rows' share of the
        batch's counted (not ignored) targets, so the ranks' weighted mean losses add up to the
        batch's mean loss.
        """
        batch = len(targets)
        lo, hi = batch * self.rank // self.size, batch * (self.rank + 1) // self.size
        if ignore_index is None:
            own, total = (hi - lo) * targets[0].size, targets.size
        else:
            own = int(np.count_nonzero(targets[lo:hi] != ignore_index))
            total = int(np.count_nonzero(targets != ignore_index))
        return lo, hi, (own / total if total else 0.0)

    def reduce(self, flat_grads: np.ndarray, partials: list[float], stop: bool) -> tuple[list[float], bool]:
        """Sum the gradient buffer, the per-micro-batch weighted losses and the stop flags."""
        small = np.array([*partials, 1.0 if stop else 0.0], dtype=np.float64)
        t0 = time.perf_counter()
        self.comm.Allreduce(self.MPI.IN_PLACE, flat_grads, op=self.MPI.SUM)
        self.comm.Allreduce(self.MPI.IN_PLACE, small, op=self.MPI.SUM)
        self.reduce_seconds += time.perf_counter() - t0
        self.reduce_bytes += flat_grads.nbytes + small.nbytes
        self.reduce_calls += 1
        return [float(v) for v in small[:-1]], bool(small[-1] > 0)

    def reduce_values(self, values: list[float]) -> list[float]:
        buf = np.array(values, dtype=np.float64)
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        return [float(v) for v in buf]

    def align(self, model, opt, state: dict) -> tuple[dict, list[int]]:
        """Make every rank's weights, optimiser and trainer `state` rank 0's.

        Compares checksums; only ranks that differ cost a broadcast. At the start this makes the
        run independent of how each rank built its model; at each save it catches ranks drifting
        apart (an MPI library whose sums differ in the last bit between ranks). Returns rank 0's
        state and the ranks that differed.
        """
        mine = (model.n_params, _crc(model.flat_params), _crc(opt.m), _crc(opt.v), opt.t,
                json.dumps(state, sort_keys=True))
        everyone = self.comm.allgather(mine)
        sizes = {r: d[0] for r, d in enumerate(everyone)}
        odd = [r for r, n in sizes.items() if n != sizes[0]]
        if odd:
            self.stop_all(DistributedError(
                f"rank {odd[0]} built a model of {sizes[odd[0]]:,} parameters, rank 0 one of "
                f"{sizes[0]:,}: every rank must read the same run directory and options"
            ))
        differ = [r for r, d in enumerate(everyone) if d != everyone[0]]
        if not differ:
            return state, []
        for buf in (model.flat_params, opt.m, opt.v):
            self.comm.Bcast(buf, root=0)
        opt.t, state = self.comm.bcast((opt.t, state), root=0)
        return state, differ

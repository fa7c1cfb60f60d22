"""Data-parallel training on MPI ranks against threads: 1 rank x 2 threads vs 2 ranks x 1 thread.

Configuration: benchmarks/train.py's shape (vocab 2048, d_model 256, 4 layers, 4 heads, ffn 688,
sequence 128, batch 16). A step is what `tiss train` does: every rank draws the whole batch, steps on
its share (`lm.distributed`), the gradients are summed with `MPI.Allreduce` over the flat float32
buffer, then clipping and AdamW on every rank.

Sides. "threads": one process stepping as `tiss train --threads 2` does (no MPI). "ranks":
`mpiexec -n 2` processes stepping as `mpiexec -n 2 tiss train --distributed mpi --threads 1` does.

Method (as benchmarks/train.py). Each side lives in its own process(es) and runs one step each time
the parent asks; the parent alternates the two sides step by step (swapping who goes first), so load
from other processes on a shared machine hits both alike. A side that is not stepping sleeps (its
ranks wait on a polled non-blocking barrier, not a spinning MPI call), then its ranks meet at a
blocking barrier right before the timed step. After WARMUP untimed steps, STEPS timed pairs.

Figures: tokens/s over the median and the best step; `speed_ratio_ranks_over_threads`, the median
over pairs of threads_step / ranks_step (>= 0.9 is the target); for the ranks side the time rank 0
spent in the step's Allreduce calls (including any wait for the other rank to finish its share),
the bytes each rank contributes per step, and `allreduce_only_s`, the same Allreduce timed alone
with both ranks ready (the transfer cost without the wait).

Cost model (`cost_model` in the output; docs/scale-out.md explains it). N ranks, each one machine
like this one stepping on a fixed local batch, sum G gradient bytes with a ring allreduce over links
of bandwidth W and per-message latency A: t_comm = 2(N-1)/N * G/W + 2(N-1) * A, not overlapped with
the step's compute t_step, so efficiency = t_step / (t_step + t_comm). t_step for the default shape
is this run's best "threads" step; for SmolLM2-135M it is its FLOPs per step (6 per parameter per
token, plus attention's 12 * layers * seq_len * width per token, the causal square computed whole
as the NumPy model does) at the FLOP rate this run measured at the default shape.

Run: `python benchmarks/distributed.py [--steps N]` (needs `pip install 'quantatissu[mpi]'`);
`--cost-model-step SECONDS` prints only the cost model for a step time measured elsewhere.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time

from step_child import StepChild

VOCAB, D, LAYERS, HEADS, FFN, SEQ, BATCH = 2048, 256, 4, 4, 688, 128, 16
WARMUP, STEPS = 2, 12
# SmolLM2-135M: 30 layers, width 576, 9 query / 3 key-value heads, SwiGLU 1536, vocab 49152, tied
# embeddings: 134,515,008 parameters. Its local batch in the model: 16 sequences of 512 tokens.
SMOL_PARAMS, SMOL_LAYERS, SMOL_WIDTH, SMOL_SEQ, SMOL_BATCH = 134_515_008, 30, 576, 512, 16
RANKS = (4, 16, 64)
LINKS_GBIT = (1, 10, 100)  # Ethernet 1 and 10 Gb/s, InfiniBand-class 100 Gb/s
LATENCY_S = 50e-6  # per message over TCP; InfiniBand is nearer 2 us, which changes nothing here


def flops_per_token(matmul_params: int, layers: int, seq: int, width: int) -> float:
    """Forward + backward: 6 per matrix parameter, plus the attention scores and mixing."""
    return 6.0 * matmul_params + 12.0 * layers * seq * width


def cost_model(step_s: float) -> dict:
    """Predicted efficiency at RANKS ranks over LINKS_GBIT for both models (see the docstring)."""
    # Matrix parameters of the default shape: all but the embedding lookup and the norm weights.
    default_matmul = LAYERS * (4 * D * D + 3 * D * FFN) + D * VOCAB
    rate = flops_per_token(default_matmul, LAYERS, SEQ, D) * BATCH * SEQ / step_s
    default_params = VOCAB * D * 2 + LAYERS * (4 * D * D + 3 * D * FFN + 2 * D) + D
    # SmolLM2's tied embedding is a lookup in and a matrix product out: count it once.
    smol_step = flops_per_token(SMOL_PARAMS, SMOL_LAYERS, SMOL_SEQ, SMOL_WIDTH) * SMOL_BATCH * SMOL_SEQ / rate
    models = {
        "default": {"params": default_params, "local_batch_tokens": BATCH * SEQ, "step_s": step_s},
        "smollm2_135m": {"params": SMOL_PARAMS, "local_batch_tokens": SMOL_BATCH * SMOL_SEQ, "step_s": smol_step},
    }
    for m in models.values():
        grad_bytes = 4 * m["params"]
        m["grad_bytes"] = grad_bytes
        m["efficiency"] = {}
        for gbit in LINKS_GBIT:
            row = {}
            for n in RANKS:
                comm = 2 * (n - 1) / n * grad_bytes / (gbit * 1e9 / 8) + 2 * (n - 1) * LATENCY_S
                row[str(n)] = {"allreduce_s": round(comm, 4), "efficiency": round(m["step_s"] / (m["step_s"] + comm), 3)}
            m["efficiency"][f"{gbit}Gbit"] = row
    return {"flop_rate_per_rank": rate, "latency_s": LATENCY_S, "models": models}


def _mpiexec() -> str:
    for candidate in (os.path.join(os.path.dirname(sys.executable), "mpiexec"), shutil.which("mpiexec")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise SystemExit("mpiexec not found: pip install 'quantatissu[mpi]'")


def serve(use_mpi: bool, threads: int) -> None:
    """Child (every rank): build the model, then one step per "step" line rank 0 reads on stdin."""
    import numpy as np

    from lm.config import ModelConfig
    from lm.distributed import SOLO, connect
    from lm.model import Transformer
    from lm.optim import AdamW, clip_grad_norm
    from lm.parallel import DataParallel

    group = connect("mpi") if use_mpi else SOLO
    cfg = ModelConfig(vocab_size=VOCAB, d_model=D, n_layers=LAYERS, n_heads=HEADS, ffn_hidden=FFN, max_seq_len=SEQ)
    model = Transformer(cfg, seed=0)
    opt = AdamW(model.params, lr=1e-3)
    rng = np.random.default_rng(0)
    workers = DataParallel(model, threads)

    def command() -> str:
        line = sys.stdin.readline().strip() if group.is_root else ""
        if not use_mpi:
            return line
        group.wait_idle()  # sleep, not spin, while the other side steps
        return group.comm.bcast(line, root=0)

    def step() -> float:
        ids = rng.integers(0, VOCAB, size=(BATCH, SEQ + 1))  # the whole batch, on every rank
        x, y = ids[:, :-1], ids[:, 1:]
        lo, hi, weight = group.share(y)
        part, grads = workers.loss_and_grads(x[lo:hi], y[lo:hi], loss_scale=weight)
        partials, _ = group.reduce(model.flat_grads, [part * weight], False)
        clip_grad_norm(grads, 1.0)
        opt.step(grads)
        return partials[0]

    while command() == "step":
        if use_mpi:
            group.comm.Barrier()  # both ranks awake and ready: the step starts together
        before = group.reduce_seconds
        t = time.perf_counter()
        step()
        seconds = time.perf_counter() - t
        if group.is_root:
            print(json.dumps({"seconds": seconds, "reduce_seconds": group.reduce_seconds - before}), flush=True)
    summary = {"params": model.n_params, "ranks": group.size, "threads_per_rank": threads}
    if use_mpi:
        from mpi4py import MPI

        alone = []
        for _ in range(10):
            group.comm.Barrier()
            t = time.perf_counter()
            group.comm.Allreduce(MPI.IN_PLACE, model.flat_grads, op=MPI.SUM)
            alone.append(time.perf_counter() - t)
        summary.update(allreduce_only_s_median=statistics.median(alone), allreduce_only_s_min=min(alone),
                       allreduce_bytes_per_step=group.reduce_bytes // max(1, group.reduce_calls),
                       allreduce_calls_per_step=2, mpi_library=MPI.Get_library_version().splitlines()[0].strip())
    if group.is_root:
        print(json.dumps(summary), flush=True)
    workers.close()


def _side(name: str, cmd: list[str], threads: int) -> StepChild:
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    return StepChild(name, cmd, env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mpi", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=STEPS, help=f"timed steps per side ({STEPS})")
    parser.add_argument("--cost-model-step", type=float, metavar="SECONDS",
                        help="only print the cost model for this measured default-shape step time")
    args = parser.parse_args()
    if args.serve:
        return serve(args.mpi, args.threads)
    if args.cost_model_step:
        return print(json.dumps(cost_model(args.cost_model_step), indent=2))
    me = [sys.executable, os.path.abspath(__file__), "--serve"]
    load_at_start = os.getloadavg()
    sides = {
        "threads": _side("1 rank x 2 threads", [*me, "--threads", "2"], 2),
        "ranks": _side("2 ranks x 1 thread", [_mpiexec(), "-n", "2", *me, "--mpi", "--threads", "1"], 1),
    }
    order = list(sides)
    records: dict[str, list[dict]] = {name: [] for name in sides}
    try:
        for i in range(WARMUP + args.steps):
            for name in order if i % 2 == 0 else order[::-1]:
                record = sides[name].step()
                if i >= WARMUP:
                    records[name].append(record)
        summaries = {name: side.finish() for name, side in sides.items()}
    finally:
        for side in sides.values():
            if side.proc.poll() is None:
                side.proc.kill()

    def figures(name: str) -> dict:
        t = [r["seconds"] for r in records[name]]
        out = {"tokens_per_s_median": BATCH * SEQ / statistics.median(t), "tokens_per_s_best": BATCH * SEQ / min(t),
               "step_s_median": statistics.median(t), "step_s_min": min(t), **summaries[name]}
        if name == "ranks":
            reduce = [r["reduce_seconds"] for r in records[name]]
            out.update(allreduce_in_step_s_median=statistics.median(reduce),
                       allreduce_share_of_step=statistics.median(r / s for r, s in zip(reduce, t)))
        return out

    ratios = [a["seconds"] / b["seconds"] for a, b in zip(records["threads"], records["ranks"])]
    threads, ranks = figures("threads"), figures("ranks")
    print(json.dumps({
        "benchmark": "distributed",
        "config": {"vocab": VOCAB, "d_model": D, "n_layers": LAYERS, "n_heads": HEADS, "ffn_hidden": FFN,
                   "seq_len": SEQ, "batch": BATCH, "warmup_steps": WARMUP, "timed_steps": args.steps},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "loadavg_at_start": load_at_start, "loadavg_at_end": os.getloadavg()},
        "threads_1rank_x2": threads,
        "ranks_2x1thread": ranks,
        "speed_ratio_ranks_over_threads": statistics.median(ratios),
        "speed_ratio_of_best_steps": threads["step_s_min"] / ranks["step_s_min"],
        "target_ratio": 0.9,
        "cost_model": cost_model(threads["step_s_min"]),
    }, indent=2))


if __name__ == "__main__":
    main()

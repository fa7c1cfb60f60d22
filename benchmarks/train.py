"""Training speed and peak memory of the NumPy model, beside PyTorch eager on CPU.

Configuration: vocab 2048, d_model 256, 4 layers, 4 heads, ffn 688, sequence 128, batch 16.
One training step is forward, backward, global-norm clipping and an AdamW update.

Method. Each side lives in its own subprocess (neither inherits the other's allocations or
thread pools) and runs one step each time the parent asks; the parent alternates the two step by
step (swapping who goes first each time), so a burst of load from other processes on a shared
machine hits both sides alike. After WARMUP untimed steps, STEPS timed pairs are taken.
`speed_ratio` is the median over pairs of torch_step_time / numpy_step_time (>1: NumPy faster);
tokens/s are batch·seq over each side's median and minimum step time.

Memory: `peak_rss_mb` is the process's peak resident set (ru_maxrss), `train_peak_mb` that peak
minus the resident set just before the model is built (after imports), i.e. what training itself
costs: the fair comparison, since importing torch alone costs hundreds of MB.

The PyTorch peer is the same architecture written the usual way: nn.Linear without bias,
torch.nn.RMSNorm, rotate-half RoPE, F.scaled_dot_product_attention(is_causal=True), SwiGLU,
F.cross_entropy, clip_grad_norm_, torch.optim.AdamW (its default implementation), float32, on
`--threads` intra-op threads (default all CPUs). The NumPy side steps as `tiss train --threads`
does: the batch split across that many data-parallel worker threads (`lm.parallel`), each with
one BLAS thread.

Run: `python benchmarks/train.py [--steps N] [--threads T]` (torch optional: without it only
NumPy's figures are printed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time

from step_child import StepChild

VOCAB, D, LAYERS, HEADS, FFN, SEQ, BATCH = 2048, 256, 4, 4, 688, 128, 16
WARMUP, STEPS = 2, 12


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def numpy_stepper():
    import numpy as np

    from lm.config import ModelConfig
    from lm.model import Transformer
    from lm import blas
    from lm.optim import AdamW, clip_grad_norm
    from lm.parallel import DataParallel

    cfg = ModelConfig(vocab_size=VOCAB, d_model=D, n_layers=LAYERS, n_heads=HEADS, ffn_hidden=FFN, max_seq_len=SEQ)
    model = Transformer(cfg, seed=0)
    opt = AdamW(model.params, lr=1e-3)
    rng = np.random.default_rng(0)
    # As `tiss train --threads T` steps: T data-parallel workers, one BLAS thread each.
    workers = DataParallel(model, workers=int(os.environ["BENCH_THREADS"]))

    def step() -> float:
        ids = rng.integers(0, VOCAB, size=(BATCH, SEQ + 1))
        loss, grads = workers.loss_and_grads(ids[:, :-1], ids[:, 1:])
        clip_grad_norm(grads, 1.0)
        opt.step(grads)
        return loss

    return step, {"params": model.n_params, "workers": workers.workers, "blas_thread_control": blas.available()}


def torch_stepper():
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.manual_seed(0)
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1)))
    hd = D // HEADS
    freqs = 10000.0 ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = torch.arange(SEQ, dtype=torch.float64)[:, None] * freqs[None]
    cos = torch.cat([ang.cos(), ang.cos()], -1).float()
    sin = torch.cat([ang.sin(), ang.sin()], -1).float()

    def rope(x):
        x1, x2 = x[..., : hd // 2], x[..., hd // 2 :]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn_norm, self.ffn_norm = nn.RMSNorm(D, eps=1e-5), nn.RMSNorm(D, eps=1e-5)
            self.wq, self.wk, self.wv, self.wo = (nn.Linear(D, D, bias=False) for _ in range(4))
            self.w1, self.w3 = nn.Linear(D, FFN, bias=False), nn.Linear(D, FFN, bias=False)
            self.w2 = nn.Linear(FFN, D, bias=False)

        def forward(self, x):
            B, T, _ = x.shape
            h = self.attn_norm(x)
            q, k, v = (w(h).view(B, T, HEADS, hd).transpose(1, 2) for w in (self.wq, self.wk, self.wv))
            y = F.scaled_dot_product_attention(rope(q), rope(k), v, is_causal=True)
            x = x + self.wo(y.transpose(1, 2).reshape(B, T, D))
            h = self.ffn_norm(x)
            return x + self.w2(F.silu(self.w1(h)) * self.w3(h))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok_emb = nn.Embedding(VOCAB, D)
            self.layers = nn.ModuleList(Block() for _ in range(LAYERS))
            self.norm = nn.RMSNorm(D, eps=1e-5)
            self.lm_head = nn.Linear(D, VOCAB, bias=False)
            for p in self.parameters():
                if p.dim() >= 2:
                    nn.init.normal_(p, 0.0, 0.02)

        def forward(self, ids, targets):
            x = self.tok_emb(ids)
            for layer in self.layers:
                x = layer(x)
            logits = self.lm_head(self.norm(x))
            return F.cross_entropy(logits.view(-1, VOCAB), targets.reshape(-1))

    model = Model()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    g = torch.Generator().manual_seed(0)

    def step() -> float:
        ids = torch.randint(0, VOCAB, (BATCH, SEQ + 1), generator=g)
        opt.zero_grad(set_to_none=True)
        loss = model(ids[:, :-1], ids[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    return step, {"params": sum(p.numel() for p in model.parameters()), "torch": torch.__version__,
                  "threads": torch.get_num_threads()}


def serve(side: str) -> None:
    """Child: build the model, then run one step per "step" line on stdin, reply its seconds."""
    baseline = _rss_mb()
    step, info = (numpy_stepper if side == "numpy" else torch_stepper)()
    first_loss = None
    for line in sys.stdin:
        if line.strip() != "step":
            break
        t = time.perf_counter()
        loss = step()
        elapsed = time.perf_counter() - t
        first_loss = loss if first_loss is None else first_loss
        print(json.dumps({"seconds": elapsed}), flush=True)
    peak = _peak_mb()
    print(json.dumps({"peak_rss_mb": peak, "train_peak_mb": peak - baseline, "first_loss": first_loss, **info}),
          flush=True)


def _child(side: str, threads: int) -> StepChild:
    env = dict(os.environ, BENCH_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return StepChild(side, [sys.executable, __file__, "--serve", side], env)


def _torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", choices=["numpy", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=STEPS, help=f"timed steps per side ({STEPS})")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="BLAS / intra-op threads for both sides (default: all CPUs)")
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)
    sides = ["numpy", "torch"] if _torch_available() else ["numpy"]
    load_at_start = os.getloadavg()[0]  # other work on the machine skews multi-thread steps most
    children = {side: _child(side, args.threads) for side in sides}
    times: dict[str, list[float]] = {side: [] for side in sides}
    try:
        for i in range(WARMUP + args.steps):
            for side in sides if i % 2 == 0 else sides[::-1]:
                seconds = children[side].step()["seconds"]
                if i >= WARMUP:
                    times[side].append(seconds)
        summaries = {side: children[side].finish() for side in sides}
    finally:
        for child in children.values():
            if child.proc.poll() is None:
                child.proc.kill()

    def figures(side: str) -> dict:
        t = times[side]
        return {
            "tokens_per_s_median": BATCH * SEQ / statistics.median(t),
            "tokens_per_s_best": BATCH * SEQ / min(t),
            "step_s_median": statistics.median(t),
            "step_s_min": min(t),
            **summaries[side],
        }

    ours = figures("numpy")
    peer = figures("torch") if "torch" in sides else None
    pair_ratios = [tt / tn for tn, tt in zip(times["numpy"], times.get("torch", []))]
    result = {
        "benchmark": "train",
        "config": {"vocab": VOCAB, "d_model": D, "n_layers": LAYERS, "n_heads": HEADS, "ffn_hidden": FFN,
                   "seq_len": SEQ, "batch": BATCH, "warmup_steps": WARMUP, "timed_steps": args.steps,
                   "threads": args.threads},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "loadavg_1min_at_start": load_at_start, "loadavg_1min_at_end": os.getloadavg()[0]},
        "numpy": ours,
        "torch": peer,
        "speed_ratio_numpy_over_torch": statistics.median(pair_ratios) if peer else None,
        "speed_ratio_of_best_steps": peer["step_s_min"] / ours["step_s_min"] if peer else None,
        "train_memory_ratio_numpy_over_torch": ours["train_peak_mb"] / peer["train_peak_mb"] if peer else None,
        "rss_ratio_numpy_over_torch": ours["peak_rss_mb"] / peer["peak_rss_mb"] if peer else None,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

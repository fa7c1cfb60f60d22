"""Training speed and peak memory of the NumPy model, beside PyTorch eager on CPU.

Configuration: vocab 2048, d_model 256, 4 layers, 4 heads, ffn 688, sequence 128, batch 16.
One training step is forward, backward, global-norm clipping and an AdamW update. Each side runs
in its own fresh subprocess (so neither inherits the other's allocations or thread pools), takes
WARMUP untimed steps, then STEPS timed ones; tokens/s is batch·seq / median step time (the
median sees through other processes on a shared machine). The two sides alternate ROUNDS times
and each figure is the best round, and every ratio compares figures of this same run.

Memory: `peak_rss_mb` is the process's peak resident set (ru_maxrss), `train_peak_mb` that peak
minus the resident set just before the model is built (after imports), i.e. what training itself
costs: the fair comparison, since importing torch alone costs hundreds of MB.

The PyTorch peer is the same architecture written the usual way: nn.Linear without bias,
torch.nn.RMSNorm, rotate-half RoPE, F.scaled_dot_product_attention(is_causal=True), SwiGLU,
F.cross_entropy, clip_grad_norm_, torch.optim.AdamW (its default implementation), float32, and
the same thread count as NumPy's BLAS (`--threads`, default all CPUs).

Run: `python benchmarks/train.py` (torch optional: without it only NumPy's figures are printed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

VOCAB, D, LAYERS, HEADS, FFN, SEQ, BATCH = 2048, 256, 4, 4, 688, 128, 16
WARMUP, STEPS, ROUNDS = 2, 6, 2


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _report(step_times: list[float], baseline: float, extra: dict) -> None:
    median = statistics.median(step_times)
    peak = _peak_mb()
    print(json.dumps({
        "tokens_per_s": BATCH * SEQ / median,
        "step_s_median": median,
        "step_s_min": min(step_times),
        "peak_rss_mb": peak,
        "train_peak_mb": peak - baseline,
        **extra,
    }))


def run_numpy() -> None:
    import numpy as np

    from lm.config import ModelConfig
    from lm.model import Transformer
    from lm.optim import AdamW, clip_grad_norm

    baseline = _rss_mb()
    cfg = ModelConfig(vocab_size=VOCAB, d_model=D, n_layers=LAYERS, n_heads=HEADS, ffn_hidden=FFN, max_seq_len=SEQ)
    model = Transformer(cfg, seed=0)
    opt = AdamW(model.params, lr=1e-3)
    rng = np.random.default_rng(0)
    times, losses = [], []
    for i in range(WARMUP + STEPS):
        ids = rng.integers(0, VOCAB, size=(BATCH, SEQ + 1))
        t = time.perf_counter()
        loss, grads = model.loss_and_grads(ids[:, :-1], ids[:, 1:])
        clip_grad_norm(grads, 1.0)
        opt.step(grads)
        if i >= WARMUP:
            times.append(time.perf_counter() - t)
        losses.append(loss)
    _report(times, baseline, {"first_loss": losses[0], "params": model.n_params})


def run_torch() -> None:
    import math

    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    baseline = _rss_mb()
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
    times, losses = [], []
    for i in range(WARMUP + STEPS):
        ids = torch.randint(0, VOCAB, (BATCH, SEQ + 1), generator=g)
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model(ids[:, :-1], ids[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if i >= WARMUP:
            times.append(time.perf_counter() - t)
        losses.append(loss.item())
    _report(times, baseline, {"first_loss": losses[0], "params": sum(p.numel() for p in model.parameters()),
                              "torch": torch.__version__, "threads": torch.get_num_threads()})


def _child(side: str, threads: int) -> dict:
    env = dict(os.environ, BENCH_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    proc = subprocess.run([sys.executable, __file__, "--side", side], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{side} benchmark failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", choices=["numpy", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="BLAS / intra-op threads for both sides (default: all CPUs)")
    args = parser.parse_args()
    if args.side == "numpy":
        return run_numpy()
    if args.side == "torch":
        return run_torch()
    has_torch = _torch_available()
    rounds: dict[str, list[dict]] = {"numpy": [], "torch": []}
    for _ in range(args.rounds):
        for side in ("numpy", "torch") if has_torch else ("numpy",):
            rounds[side].append(_child(side, args.threads))

    def best(side: str) -> dict | None:
        if not rounds[side]:
            return None
        top = max(rounds[side], key=lambda r: r["tokens_per_s"])
        return {**top, "tokens_per_s_rounds": [round(r["tokens_per_s"], 1) for r in rounds[side]],
                "train_peak_mb": min(r["train_peak_mb"] for r in rounds[side]),
                "peak_rss_mb": min(r["peak_rss_mb"] for r in rounds[side])}

    ours, peer = best("numpy"), best("torch")
    result = {
        "benchmark": "train",
        "config": {"vocab": VOCAB, "d_model": D, "n_layers": LAYERS, "n_heads": HEADS, "ffn_hidden": FFN,
                   "seq_len": SEQ, "batch": BATCH, "warmup_steps": WARMUP, "timed_steps": STEPS,
                   "rounds": args.rounds, "threads": args.threads},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "loadavg_1min": os.getloadavg()[0]},
        "numpy": ours,
        "torch": peer,
        "speed_ratio_numpy_over_torch": ours["tokens_per_s"] / peer["tokens_per_s"] if peer else None,
        "train_memory_ratio_numpy_over_torch": ours["train_peak_mb"] / peer["train_peak_mb"] if peer else None,
        "rss_ratio_numpy_over_torch": ours["peak_rss_mb"] / peer["peak_rss_mb"] if peer else None,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

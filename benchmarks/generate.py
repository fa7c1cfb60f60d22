"""Decoding speed of the NumPy model with and without the KV cache, beside PyTorch eager.

Configuration of the training benchmark: vocab 2048, d_model 256, 4 layers, 4 heads, ffn 688;
batch 1, a 16-token prompt, greedy decoding of 128 and 512 new tokens. Prints one JSON object:

- numpy_cached_tok_s / numpy_uncached_tok_s: decode tokens/s after the prompt (prefill excluded),
  with the cache (`InferenceModel.step`) and without it (`Transformer.forward` over the whole
  sequence for every token, which is what `generate(use_kv_cache=False)` does);
- torch_cached_tok_s: the same architecture in PyTorch eager (inference_mode, preallocated KV
  cache filled in place, fused qkv and w1|w3 like ours, scaled_dot_product_attention), with the
  same weights; torch_max_abs_logit_diff checks that both compute the same function;
- per_token_us: the decode time of the 16th and the 512th generated token and their ratio, taken
  from the runs and in alternating blocks (see `per_token_cost`); token_512_vs_16_cost is the
  blocks ratio (issue 7's flatness target: at most 1.5), torch_per_token_us the same for PyTorch,
  the reference for what a growing cache's memory traffic costs on this machine;
- machine.load_average_1min_before/after: how busy the (shared) machine was; every figure moves
  with it;
- cache_probe: why the per-token cost grows with the context on this machine.
  `gemv_gb_s` is the read bandwidth of a float32 matrix-vector product over matrices of 4 to
  256 MiB (one thread): where it falls off is the processor cache this process can use; the
  model's weights alone are `weights_mb_read_per_token`. `flatness_by_layers` repeats the
  alternating-blocks measurement on the same model cut to 1 and 2 layers, whose weights and
  512-position cache fit in that cache: the same step code, only a smaller working set.

Run: `python benchmarks/generate.py [--threads N]` (torch optional; without it the torch fields
are null). Both libraries get the same number of threads (default 1: batch-one decoding is a
chain of small calls, and on a shared machine a second BLAS thread mostly waits for a busy core).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import time

# BLAS reads its thread count when NumPy is first imported, so parse it before that import.
_args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
_args.add_argument("--threads", type=int, default=1, help="BLAS / torch threads for both sides (1)")
ARGS = _args.parse_args(sys.argv[1:] if __name__ == "__main__" else [])
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)

import numpy as np  # noqa: E402

from lm.config import ModelConfig  # noqa: E402
from lm.inference import InferenceModel  # noqa: E402
from lm.model import Transformer  # noqa: E402

CONFIG = ModelConfig(vocab_size=2048, d_model=256, n_layers=4, n_heads=4, ffn_hidden=688, max_seq_len=1024)
PROMPT_LEN = 16
LENGTHS = (128, 512)
REPEATS = 5


def numpy_cached(infer: InferenceModel, prompt: np.ndarray, n_new: int) -> tuple[float, list[float], list[int]]:
    """Seconds for n_new greedy tokens after the prompt, per-token times, and the tokens."""
    cache = infer.new_cache()
    logits = infer.forward(prompt[None], cache)[0, -1]
    token = int(np.argmax(logits))
    out, times = [token], []
    start = time.perf_counter()
    for _ in range(n_new - 1):
        t = time.perf_counter()
        token = int(np.argmax(infer.step(token, cache)))
        times.append(time.perf_counter() - t)
        out.append(token)
    return time.perf_counter() - start, times, out


def alternating_blocks(step_at) -> dict:
    """Steady-state decode time of the 16th and the 512th generated token, in alternating blocks.

    `step_at(which)` decodes generated token `which` (16 or 512) once on a cache that holds the
    real context before it. The two positions take turns in blocks of 15 steps (the first 5 of a
    block discarded, so the processor caches hold what a run at that position leaves in them),
    40 blocks each. `added_us` is what the 496 more cached positions cost; `ratio_512_vs_16` is
    the median over the 40 pairs of adjacent blocks of their medians' ratio: a burst of load
    from other processes lands on both halves of a pair, so it cancels from the ratio, where it
    would not from one median over all samples.
    """
    samples: dict[int, list[list[float]]] = {16: [], 512: []}
    for _ in range(40):
        for which in samples:
            block = []
            for i in range(15):
                start = time.perf_counter()
                step_at(which)
                if i >= 5:
                    block.append(time.perf_counter() - start)
            samples[which].append(block)
    t16, t512 = (float(np.median(samples[w])) for w in (16, 512))
    pairs = [np.median(b) / np.median(a) for a, b in zip(samples[16], samples[512])]
    return {"token_16_us": round(t16 * 1e6, 1), "token_512_us": round(t512 * 1e6, 1),
            "added_us": round((t512 - t16) * 1e6, 1), "ratio_512_vs_16": round(float(np.median(pairs)), 3),
            "ratio_512_vs_16_pairs_iqr": [round(float(q), 3) for q in np.percentile(pairs, [25, 75])]}


def per_token_cost(infer: InferenceModel, prompt: np.ndarray, times_all: list[list[float]]) -> dict:
    """Decode time of the 16th and the 512th generated token, two ways.

    `in_run`: from the 512-token runs themselves (per position, the fastest of the repetitions;
    median over the 14 tokens around each): what a run sees, but a burst of load from other
    processes distorts it easily. `blocks`: `alternating_blocks` on a cache holding the real
    512-token context.
    """
    t = np.min(np.array(times_all), axis=0)  # times[i] is the (i + 2)-th token: the first is the prefill's
    in_run = (float(np.median(t[8:22])), float(np.median(t[-14:])))

    cache = infer.new_cache()
    infer.forward(prompt[None], cache)
    _, _, tokens = numpy_cached(infer, prompt, 512)
    for token in tokens[:-1]:
        infer.step(token, cache)

    def step_at(which: int) -> None:
        # generated token k (k >= 2) comes from feeding token k - 1 at position PROMPT_LEN + k - 2
        cache.length = PROMPT_LEN + which - 2
        infer.step(tokens[which - 2], cache)

    return {
        "in_run": {"token_16_us": round(in_run[0] * 1e6, 1), "token_512_us": round(in_run[1] * 1e6, 1),
                   "ratio_512_vs_16": round(in_run[1] / in_run[0], 3)},
        "blocks": alternating_blocks(step_at),
    }


def torch_per_token_cost(torch, forward, Cache, prompt: np.ndarray, tokens: list[int]) -> dict:
    """`alternating_blocks` for the PyTorch model: the same positions, the same tokens.

    Its ratio is the reference for what the memory traffic of a growing cache costs on this
    machine, whatever computes the step.
    """
    with torch.inference_mode():
        cache = Cache()
        forward(torch.from_numpy(prompt)[None], cache)
        for token in tokens[:-1]:
            forward(torch.tensor([[token]]), cache)

        def step_at(which: int) -> None:
            cache.n = PROMPT_LEN + which - 2
            forward(torch.tensor([[tokens[which - 2]]]), cache)

        return alternating_blocks(step_at)


def cache_probe(model: Transformer, prompt: np.ndarray) -> dict:
    """Read bandwidth by working-set size, and flatness of shallower cuts of the same model."""
    gemv = {}
    for mb in (4, 8, 12, 16, 24, 32, 256):
        a = np.ones((mb * 2**20 // 1024, 256), dtype=np.float32)  # rows of 1 KB
        x = np.ones(256, dtype=np.float32)
        for _ in range(3):
            a @ x
        reps = max(3, 400 // mb)
        start = time.perf_counter()
        for _ in range(reps):
            a @ x
        gemv[f"{mb}MiB"] = round(mb * 2**20 / ((time.perf_counter() - start) / reps) / 1e9, 1)
        del a
    by_layers = {}
    for n_layers in (1, 2):
        shallow = Transformer(dataclasses.replace(CONFIG, n_layers=n_layers), seed=0)
        for name, p in shallow.params.items():
            p[...] = model.params[name]  # the first n_layers blocks of the benchmark's model
        cut = InferenceModel(shallow)
        cache = cut.new_cache()
        cut.forward(prompt[None], cache)
        _, _, tokens = numpy_cached(cut, prompt, 512)
        for token in tokens[:-1]:
            cut.step(token, cache)

        def step_at(which: int, cut=cut, cache=cache, tokens=tokens) -> None:
            cache.length = PROMPT_LEN + which - 2
            cut.step(tokens[which - 2], cache)

        by_layers[f"{n_layers}_layers"] = {"weights_mb": _weights_mb(shallow.config),
                                          "kv_mb_at_512": _kv_mb(shallow.config), **alternating_blocks(step_at)}
    return {"gemv_gb_s": gemv, "weights_mb_read_per_token": _weights_mb(CONFIG), "kv_mb_read_at_512": _kv_mb(CONFIG),
            "flatness_by_layers": by_layers}


def _weights_mb(cfg: ModelConfig) -> float:
    """MB of float32 weights one decode step reads: every block's matrices and the output head."""
    C, F = cfg.d_model, cfg.ffn_hidden
    return round(4 * (cfg.n_layers * (4 * C * C + 3 * C * F) + C * cfg.vocab_size) / 1e6, 2)


def _kv_mb(cfg: ModelConfig) -> float:
    """MB of cached keys and values the 512th generated token reads (all layers)."""
    return round(4 * 2 * cfg.n_layers * (PROMPT_LEN + 511) * cfg.d_model / 1e6, 2)  # it attends to 527 positions


def numpy_uncached(model: Transformer, prompt: np.ndarray, n_new: int) -> tuple[float, list[int]]:
    ids = list(prompt)
    token = int(np.argmax(model.forward(np.array([ids]))[0, -1]))
    out = [token]
    start = time.perf_counter()
    for _ in range(n_new - 1):
        ids.append(token)
        token = int(np.argmax(model.forward(np.array([ids]))[0, -1]))
        out.append(token)
    return time.perf_counter() - start, out


def build_torch(model: Transformer):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(ARGS.threads)
    cfg = model.config
    H, D, C = cfg.n_heads, cfg.head_dim, cfg.d_model
    P = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in model.params.items()}
    layers = []
    for i in range(cfg.n_layers):
        p = f"layers.{i}."
        layers.append(
            (
                P[p + "attn_norm"],
                torch.cat([P[p + "wq"], P[p + "wk"], P[p + "wv"]], 1).contiguous(),
                P[p + "wo"],
                P[p + "ffn_norm"],
                torch.cat([P[p + "w1"], P[p + "w3"]], 1).contiguous(),
                P[p + "w2"],
            )
        )
    half = D // 2
    inv = cfg.rope_theta ** (-torch.arange(half, dtype=torch.float64) * 2 / D)
    ang = torch.arange(cfg.max_seq_len, dtype=torch.float64)[:, None] * inv[None]
    cos = torch.cat([ang.cos(), ang.cos()], 1).float()
    sin = torch.cat([ang.sin(), ang.sin()], 1).float()
    emb, norm, head = P["tok_emb"], P["norm"], P["lm_head"]

    def rms(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + cfg.norm_eps) * w

    def rot(x):
        return torch.cat([-x[..., half:], x[..., :half]], -1)

    class Cache:
        def __init__(self):
            self.k = torch.zeros(cfg.n_layers, 1, H, cfg.max_seq_len, D)
            self.v = torch.zeros(cfg.n_layers, 1, H, cfg.max_seq_len, D)
            self.n = 0

    def forward(ids, cache):  # ids (1, T) -> logits (1, T, V)
        T = ids.shape[1]
        s, e = cache.n, cache.n + T
        c, sn = cos[s:e], sin[s:e]
        x = emb[ids]
        for li, (an, wqkv, wo, fn, w13, w2) in enumerate(layers):
            q, k, v = (rms(x, an) @ wqkv).view(1, T, 3, H, D).permute(2, 0, 3, 1, 4)
            q = q * c + rot(q) * sn
            k = k * c + rot(k) * sn
            cache.k[li, :, :, s:e] = k
            cache.v[li, :, :, s:e] = v
            att = F.scaled_dot_product_attention(
                q, cache.k[li, :, :, :e], cache.v[li, :, :, :e], is_causal=(T > 1 and s == 0)
            )
            x = x + att.transpose(1, 2).reshape(1, T, C) @ wo
            g, u = (rms(x, fn) @ w13).chunk(2, -1)
            x = x + (F.silu(g) * u) @ w2
        cache.n = e
        return rms(x, norm) @ head

    return torch, forward, Cache


def torch_cached(torch, forward, Cache, prompt: np.ndarray, n_new: int) -> tuple[float, list[int], np.ndarray]:
    with torch.inference_mode():
        cache = Cache()
        logits = forward(torch.from_numpy(prompt)[None], cache)
        first = logits[0].numpy().copy()
        token = int(logits[0, -1].argmax())
        out = [token]
        start = time.perf_counter()
        for _ in range(n_new - 1):
            token = int(forward(torch.tensor([[token]]), cache)[0, -1].argmax())
            out.append(token)
        return time.perf_counter() - start, out, first


def main() -> None:
    model = Transformer(CONFIG, seed=0)
    # Trained-looking weights: spread enough that greedy decoding is not a chain of near-ties.
    rng = np.random.default_rng(1)
    for p in model.params.values():
        if p.ndim == 2:
            p[...] = rng.normal(0.0, 1.0 / math.sqrt(p.shape[0]), size=p.shape)
    infer = InferenceModel(model)
    prompt = rng.integers(0, CONFIG.vocab_size, size=PROMPT_LEN)

    load_before = round(os.getloadavg()[0], 2)
    result: dict = {
        "config": {**CONFIG.to_dict(), "batch": 1, "prompt_tokens": PROMPT_LEN},
        "machine": {"cpus": os.cpu_count(), "threads": ARGS.threads, "python": platform.python_version(),
                    "numpy": np.__version__,
                    "load_average_1min_before": load_before},
    }
    try:
        torch, forward, Cache = build_torch(model)
    except ImportError:
        torch = None
        result["torch"] = None
    else:
        result["torch"] = {"version": torch.__version__, "threads": torch.get_num_threads()}
        torch_cached(torch, forward, Cache, prompt, 32)  # warm-up
    numpy_cached(infer, prompt, 32)  # warm-up: page in weights, fill BLAS buffers

    for n in LENGTHS:
        # NumPy and torch repetitions alternate, so a burst of load from other processes on a
        # shared machine hits both sides alike; the best of each is kept.
        best_np, best_torch, times_all = math.inf, math.inf, []
        for _ in range(REPEATS):
            secs, times, tokens = numpy_cached(infer, prompt, n)
            best_np = min(best_np, secs)
            times_all.append(times)
            if torch is not None:
                secs, torch_tokens, first = torch_cached(torch, forward, Cache, prompt, n)
                best_torch = min(best_torch, secs)
        result[f"numpy_cached_tok_s_{n}"] = round((n - 1) / best_np, 1)
        if torch is not None:
            result[f"torch_cached_tok_s_{n}"] = round((n - 1) / best_torch, 1)
            result[f"ratio_numpy_vs_torch_cached_{n}"] = round(best_torch / best_np, 2)
            result[f"greedy_tokens_equal_numpy_vs_torch_{n}"] = torch_tokens == tokens
        if n == 512:
            result["per_token_us"] = per_token_cost(infer, prompt, times_all)
            result["token_512_vs_16_cost"] = result["per_token_us"]["blocks"]["ratio_512_vs_16"]
            if torch is not None:
                result["torch_per_token_us"] = torch_per_token_cost(torch, forward, Cache, prompt, tokens)
        secs, plain = numpy_uncached(model, prompt, n)
        result[f"numpy_uncached_tok_s_{n}"] = round((n - 1) / secs, 1)
        result[f"cache_speedup_{n}"] = round(result[f"numpy_cached_tok_s_{n}"] / result[f"numpy_uncached_tok_s_{n}"], 2)
        result[f"greedy_tokens_equal_with_and_without_cache_{n}"] = plain == tokens
    if torch is not None:
        ref = model.forward(prompt[None])[0]
        result["torch_max_abs_logit_diff"] = float(np.abs(first - ref).max())
    result["cache_probe"] = cache_probe(model, prompt)
    result["machine"]["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

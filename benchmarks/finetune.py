"""Fine-tuning SmolLM2-135M: tokens/s and peak memory of `tiss train --init`, beside PyTorch eager.

One step is what `tiss train` does per step: forward, backward (loss over all B·T targets),
global-norm clipping at 1.0 and an AdamW update (betas 0.9/0.95, weight decay 0.1), float32.
Batch 4 x 256 tokens of the repository's `corpus/` text, encoded by the model's own tokenizer;
both sides train on the very same batches (drawn once by the parent and handed to both).

Method. Each side is its own subprocess (neither inherits the other's allocations or threads),
builds the model from the same GGUF file, then runs one step each time the parent asks; the
parent alternates the sides step by step, swapping who goes first, so a burst of load from other
processes hits both alike. The first WARMUP steps are untimed. tokens/s is B·T over each side's
median step time; `speed_ratio` is the median over pairs of torch_time / numpy_time (>1: NumPy
faster). Both sides also report their step-1 loss (the same weights on the same batch: they
should agree to float32 rounding).

Memory: `peak_rss_mb` is each process's peak resident set (ru_maxrss), everything included
(the interpreter, torch's or NumPy's libraries, the model as loaded, gradients, AdamW moments,
activations). `tiss_train_peak_mb` is the peak of a real `lm.train.train(init=...)` run of 2
steps in a further subprocess, which adds tokenizing the corpus and writing the checkpoint with
its optimizer state.

Sides: NumPy steps as `tiss train --threads T` does (the batch split across T data-parallel
worker threads, one BLAS thread each: `lm.parallel`); PyTorch is transformers'
`LlamaForCausalLM.from_pretrained(dir, gguf_file=...)` (dequantized to float32), training mode
(dropout 0), `torch.set_num_threads(T)`, F.cross_entropy on the logits, clip_grad_norm_ and
torch.optim.AdamW.

Run: `python benchmarks/finetune.py [--model FILE.gguf] [--steps N] [--threads T]
[--torch-python PYTHON]`; the PyTorch side needs torch, transformers and gguf in PYTHON (default this
interpreter; without them only NumPy's figures are printed). Prints one JSON object.
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
import tempfile
import time
from pathlib import Path

from step_child import StepChild

ROOT = Path(__file__).resolve().parents[1]
# SmolLM2 as the tests find it (TISS_SMOLLM2_GGUF), else as `tiss models pull smollm2` keeps it.
DEFAULT_MODEL = os.environ.get("TISS_SMOLLM2_GGUF") or "smollm2"
BATCH, SEQ, LR, WD, CLIP, WARMUP = 4, 256, 1e-5, 0.1, 1.0, 1


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def make_batches(model_path: str, steps: int, out: Path) -> None:
    """B x (T+1) windows of the corpus encoded by the model's tokenizer, one per step, into out."""
    import numpy as np

    from lm.checkpoint import load
    from lm.data import list_text_files, read_texts

    _, tok = load(model_path)
    ids: list[int] = []
    for text in read_texts(list_text_files(ROOT / "corpus")):
        ids += tok.encode(text) + [tok.eot_id]
    tokens = np.asarray(ids, dtype=np.int64)
    rng = np.random.default_rng(0)
    starts = rng.integers(0, len(tokens) - SEQ - 1, size=(steps, BATCH))
    windows = tokens[starts[..., None] + np.arange(SEQ + 1)]  # (steps, B, T+1)
    np.save(out, windows)


def numpy_stepper(model_path: str, threads: int):
    import numpy as np

    from lm.checkpoint import load
    from lm.optim import AdamW, clip_grad_norm
    from lm.parallel import DataParallel

    model, _ = load(model_path)
    workers = DataParallel(model, threads)
    opt = AdamW(model.params, lr=LR, weight_decay=WD)

    def step(window: np.ndarray) -> float:
        loss, grads = workers.loss_and_grads(window[:, :-1], window[:, 1:])
        clip_grad_norm(grads, CLIP)
        opt.step(grads, lr=LR)
        return loss

    return step


def torch_stepper(model_path: str, threads: int):
    import torch
    import torch.nn.functional as F
    from transformers import LlamaForCausalLM

    torch.set_num_threads(threads)
    path = Path(model_path)
    model = LlamaForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, torch_dtype=torch.float32)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.95), eps=1e-8, weight_decay=WD)

    def step(window) -> float:
        w = torch.from_numpy(window)
        logits = model(input_ids=w[:, :-1]).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        return float(loss)

    return step


def serve(side: str, model_path: str, threads: int, batches: str) -> None:
    """Child: build the side's model, then one step per "step" line on stdin; reply its seconds."""
    import numpy as np

    windows = np.load(batches)
    t0 = time.perf_counter()
    step = (numpy_stepper if side == "numpy" else torch_stepper)(model_path, threads)
    print(json.dumps({"load_s": round(time.perf_counter() - t0, 2), "rss_after_load_mb": round(_peak_mb())}), flush=True)
    i = 0
    for line in sys.stdin:
        if line.strip() != "step":
            break
        t0 = time.perf_counter()
        loss = step(windows[i])
        print(json.dumps({"s": time.perf_counter() - t0, "loss": loss}), flush=True)
        i += 1
    print(json.dumps({"peak_rss_mb": round(_peak_mb())}), flush=True)


def real_run(model_path: str, threads: int) -> None:
    """Child: a real 2-step `train(init=...)` (tokenizing, checkpoint with optimizer state); its peak."""
    from lm.train import train

    with tempfile.TemporaryDirectory() as tmp:
        train(ROOT / "corpus", Path(tmp) / "run", init=model_path, steps=2, batch_size=BATCH, seq_len=SEQ,
              lr=LR, eval_every=1000, threads=threads, stream=open(os.devnull, "w"))
    print(json.dumps({"peak_rss_mb": round(_peak_mb())}), flush=True)


def _start(side: str, model: str, threads: int, batches: Path, python: str) -> tuple[StepChild, dict]:
    """The side's process, and what it says once its model is loaded (before the next starts)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)} if side == "torch" else dict(os.environ)
    child = StepChild(side, [python, __file__, "--serve", side, "--model", model, "--threads",
                             str(threads), "--batches", str(batches)], env)
    return child, child.read()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--steps", type=int, default=4, help="steps per side, the first WARMUP untimed")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--torch-python", default=sys.executable, help="the interpreter for the PyTorch side")
    ap.add_argument("--serve", choices=["numpy", "torch"], help=argparse.SUPPRESS)
    ap.add_argument("--real-run", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--batches", help=argparse.SUPPRESS)
    args = ap.parse_args()
    from lm.models import ModelStoreError, resolve_model

    try:
        args.model = resolve_model(args.model)
    except ModelStoreError as exc:
        raise SystemExit(f"finetune.py: {exc}") from None
    if args.serve:
        return serve(args.serve, args.model, args.threads, args.batches)
    if args.real_run:
        return real_run(args.model, args.threads)
    probe = subprocess.run([args.torch_python, "-c", "import torch, transformers, gguf"], capture_output=True)
    sides = ["numpy", "torch"] if probe.returncode == 0 else ["numpy"]
    python = {"numpy": sys.executable, "torch": args.torch_python}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        batches = Path(tmp) / "batches.npy"
        make_batches(args.model, args.steps, batches)
        runners, loaded = {}, {}
        for s in sides:  # one at a time: each side loads its model alone
            runners[s], loaded[s] = _start(s, args.model, args.threads, batches, python[s])
        times: dict[str, list[float]] = {s: [] for s in sides}
        losses: dict[str, list[float]] = {s: [] for s in sides}
        for i in range(args.steps):
            order = sides if i % 2 == 0 else sides[::-1]
            for s in order:
                r = runners[s].step()
                losses[s].append(r["loss"])
                if i >= WARMUP:
                    times[s].append(r["s"])
        peaks = {s: runners[s].finish("quit")["peak_rss_mb"] for s in sides}
    real = subprocess.run([sys.executable, __file__, "--real-run", "--model", args.model, "--threads",
                           str(args.threads)], capture_output=True, text=True)
    tokens = BATCH * SEQ
    result: dict = {
        "benchmark": "finetune", "model": Path(args.model).name, "batch": BATCH, "seq_len": SEQ,
        "threads": args.threads, "steps": args.steps, "warmup": WARMUP,
        "python": platform.python_version(), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
    }
    for s in sides:
        result[s] = {
            "tokens_per_s": round(tokens / statistics.median(times[s]), 1),
            "step_s": [round(t, 2) for t in times[s]],
            "loss_step1": round(losses[s][0], 5),
            "load_s": loaded[s]["load_s"],
            "peak_rss_after_load_mb": loaded[s]["rss_after_load_mb"],
            "peak_rss_mb": peaks[s],
        }
    if "torch" not in sides:
        result["torch"] = f"skipped: {args.torch_python} cannot import torch, transformers and gguf"
    else:
        pairs = [t / n for t, n in zip(times["torch"], times["numpy"])]
        result["speed_ratio"] = round(statistics.median(pairs), 3)
        result["memory_ratio"] = round(peaks["numpy"] / peaks["torch"], 3)
    result["tiss_train_peak_mb"] = json.loads(real.stdout.strip().splitlines()[-1])["peak_rss_mb"] if real.returncode == 0 else f"failed: {real.stderr.strip()[-300:]}"
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

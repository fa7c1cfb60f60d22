"""A real pretrained model on the NumPy engine beside transformers (and llama.cpp): speed and memory.

    TISS_SMOLLM2_GGUF=/path/SmolLM2-135M-Instruct.Q4_1.gguf python benchmarks/pretrained.py
    python benchmarks/pretrained.py --gguf FILE [--llama-python /path/venv-llama/bin/python]

On one GGUF file (SmolLM2-135M-Instruct is what the figures in docs/model.md are for), each side
in its own process (so each peak memory is its own), 2 threads each (`--threads`), float32
weights on the NumPy and transformers sides. Prints one JSON object:

- prefill_tok_s: tokens/s of one forward over a 512-token prompt into an empty KV cache (best of
  `--repeats`); decode_tok_s: tokens/s of 128 one-token steps after it, batch 1, greedy, with
  the cache (best of `--repeats`);
- peak_rss_mb: the process's peak resident memory (VmHWM, MiB) after loading and running, and
  load_peak_rss_mb after loading only; load_s; numpy.weights_mb and load_peak_over_weights: the
  float32 weights and the loading peak over them (numpy_hf_load: the same for `lm.load` of a
  Hugging Face directory of the model, with `--hf DIR` or $TISS_SMOLLM2_HF);
- numpy: `lm.load` + `lm.inference.InferenceModel`; transformers: `from_pretrained(dir,
  gguf_file=..., dtype=float32)`, eager attention, `torch.inference_mode`, a `DynamicCache`
  decode loop; llama_cpp: llama-cpp-python on the same file with its own quantized kernels,
  reported only (run with `--llama-python`, default `$TISS_LLAMA_CPP_PYTHON` as the opt-in
  tests use it; null without either);
- ratios: numpy over transformers for decode and prefill, peak memory numpy over transformers;
  greedy_tokens_equal: whether the first 32 decoded tokens agree between NumPy and transformers;
- bandwidth: bytes of float32 weights one decode step reads, the machine's measured read
  bandwidth (the faster orientation of a float32 matrix-vector product over 256 MiB, best of
  10, with the same threads), the decode rate that bandwidth allows, and the NumPy decode rate
  as a fraction of it;
- machine: CPUs, threads, load average before and after (every figure moves with it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

PROMPT_TOKENS = 512
NEW_TOKENS = 128
CHECK_TOKENS = 32


def _peak_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def _prompt(vocab: int) -> list[int]:
    import numpy as np

    return np.random.default_rng(0).integers(3, vocab, size=PROMPT_TOKENS).tolist()


def side_numpy(path: str, repeats: int) -> dict:
    import numpy as np

    import lm
    from lm.inference import InferenceModel

    t = time.perf_counter()
    model, _ = lm.load(path)
    load_s = time.perf_counter() - t
    load_peak = _peak_mb()
    weights_mb = model.flat_params.nbytes / 2**20
    infer = InferenceModel(model)
    ids = np.array([_prompt(model.config.vocab_size)])
    cache = infer.new_cache(max_len=PROMPT_TOKENS + NEW_TOKENS + 1)
    best_prefill, best_decode, tokens = float("inf"), float("inf"), []
    for _ in range(repeats):
        cache.reset()
        t = time.perf_counter()
        logits = infer.forward(ids, cache, last=True)[0, -1]
        best_prefill = min(best_prefill, time.perf_counter() - t)
        token, out = int(np.argmax(logits)), []
        t = time.perf_counter()
        for _ in range(NEW_TOKENS):
            out.append(token)
            token = int(np.argmax(infer.step(token, cache)))
        best_decode = min(best_decode, time.perf_counter() - t)
        tokens = out
    return {"load_s": round(load_s, 2), "load_peak_rss_mb": load_peak, "weights_mb": round(weights_mb, 1),
            "load_peak_over_weights": round(load_peak / weights_mb, 2),
            "prefill_tok_s": round(PROMPT_TOKENS / best_prefill, 1), "decode_tok_s": round(NEW_TOKENS / best_decode, 2),
            "peak_rss_mb": _peak_mb(), "tokens": tokens[:CHECK_TOKENS], "numpy": np.__version__}


def side_transformers(path: str, repeats: int, threads: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, DynamicCache
    import transformers

    torch.set_num_threads(threads)
    p = Path(path)
    t = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(str(p.parent), gguf_file=p.name, dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    load_s = time.perf_counter() - t
    load_peak = _peak_mb()
    ids = torch.tensor([_prompt(model.config.vocab_size)])
    best_prefill, best_decode, tokens = float("inf"), float("inf"), []
    with torch.inference_mode():
        for _ in range(repeats):
            cache = DynamicCache()
            t = time.perf_counter()
            logits = model(ids, past_key_values=cache, use_cache=True, logits_to_keep=1).logits[0, -1]
            best_prefill = min(best_prefill, time.perf_counter() - t)
            token, out = int(logits.argmax()), []
            t = time.perf_counter()
            for _ in range(NEW_TOKENS):
                out.append(token)
                step = model(torch.tensor([[token]]), past_key_values=cache, use_cache=True)
                token = int(step.logits[0, -1].argmax())
            best_decode = min(best_decode, time.perf_counter() - t)
            tokens = out
    return {"load_s": round(load_s, 2), "load_peak_rss_mb": load_peak,
            "prefill_tok_s": round(PROMPT_TOKENS / best_prefill, 1), "decode_tok_s": round(NEW_TOKENS / best_decode, 2),
            "peak_rss_mb": _peak_mb(), "tokens": tokens[:CHECK_TOKENS],
            "torch": torch.__version__, "transformers": transformers.__version__}


def side_llama_cpp(path: str, repeats: int, threads: int) -> dict:
    import llama_cpp

    t = time.perf_counter()
    llm = llama_cpp.Llama(model_path=path, n_ctx=2 * (PROMPT_TOKENS + NEW_TOKENS), n_threads=threads,
                          n_threads_batch=threads, n_batch=PROMPT_TOKENS, verbose=False)
    load_s = time.perf_counter() - t
    load_peak = _peak_mb()
    ids = _prompt(llm.n_vocab())
    import numpy as np

    def last_logits():  # llama-cpp-python keeps only the last position's logits here
        return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))

    best_prefill, best_decode = float("inf"), float("inf")
    for _ in range(repeats):
        llm.reset()
        t = time.perf_counter()
        llm.eval(ids)
        best_prefill = min(best_prefill, time.perf_counter() - t)
        token = int(last_logits().argmax())
        t = time.perf_counter()
        for _ in range(NEW_TOKENS):
            llm.eval([token])
            token = int(last_logits().argmax())
        best_decode = min(best_decode, time.perf_counter() - t)
    return {"load_s": round(load_s, 2), "load_peak_rss_mb": load_peak,
            "prefill_tok_s": round(PROMPT_TOKENS / best_prefill, 1), "decode_tok_s": round(NEW_TOKENS / best_decode, 2),
            "peak_rss_mb": _peak_mb(), "llama_cpp_python": llama_cpp.__version__,
            "note": "llama.cpp computes on the file's quantized weights, not float32"}


def side_hf_load(directory: str) -> dict:
    """`lm.load` of a Hugging Face directory of the same model: time and peak memory."""
    import lm

    t = time.perf_counter()
    model, _ = lm.load(directory)
    load_s = time.perf_counter() - t
    weights_mb = model.flat_params.nbytes / 2**20
    peak = _peak_mb()
    return {"load_s": round(load_s, 2), "load_peak_rss_mb": peak, "weights_mb": round(weights_mb, 1),
            "load_peak_over_weights": round(peak / weights_mb, 2)}


def side_bandwidth(path: str) -> dict:
    """Bytes a decode step reads and the read bandwidth a matrix-vector product gets."""
    import numpy as np

    import lm

    model, _ = lm.load(path)
    cfg = model.config
    weights = sum(p.nbytes for name, p in model.params.items() if p.ndim == 2 and name != "tok_emb")
    if cfg.tie_embeddings:
        weights += model.params["tok_emb"].nbytes  # the output head reads all of it
    del model
    # Both orientations of a matrix-vector product over 256 MiB (BLAS reads a row-major matrix
    # faster one way than the other); the faster is the bandwidth a decode step could get.
    a = np.ones((256 * 2**20 // (4 * 1024), 1024), dtype=np.float32)
    products = (lambda x=np.ones(1024, dtype=np.float32): a @ x,
                lambda x=np.ones((1, a.shape[0]), dtype=np.float32): x @ a)
    best = float("inf")
    for product in products:
        product()
        for _ in range(10):
            t = time.perf_counter()
            product()
            best = min(best, time.perf_counter() - t)
    gb_s = a.nbytes / best / 1e9
    return {"weights_mb_read_per_token": round(weights / 1e6, 1), "read_gb_s": round(gb_s, 2),
            "decode_tok_s_limit": round(gb_s * 1e9 / weights, 2)}


def _run_side(python: str, side: str, args, env_extra: dict | None = None) -> dict | None:
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(args.threads)
    env.update(env_extra or {})
    cmd = [python, str(Path(__file__).resolve()), "--side", side, "--gguf", args.gguf,
           "--threads", str(args.threads), "--repeats", str(args.repeats)] + (["--hf", args.hf] if args.hf else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": tail}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", default=os.environ.get("TISS_SMOLLM2_GGUF"),
                    help="the GGUF file (default: $TISS_SMOLLM2_GGUF)")
    ap.add_argument("--threads", type=int, default=2, help="threads for every side (2)")
    ap.add_argument("--repeats", type=int, default=3, help="best of N for each figure (3)")
    ap.add_argument("--llama-python", default=None, help="a Python with llama-cpp-python installed")
    ap.add_argument("--hf", default=os.environ.get("TISS_SMOLLM2_HF"),
                    help="a Hugging Face directory of the same model, to measure its loading too "
                    "(default: $TISS_SMOLLM2_HF; skipped if unset)")
    ap.add_argument("--side", choices=["numpy", "transformers", "llama_cpp", "bandwidth", "hf_load"],
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not args.gguf or not Path(args.gguf).is_file():
        sys.exit("benchmarks/pretrained.py: give the GGUF file with --gguf FILE or TISS_SMOLLM2_GGUF")
    if args.side:
        fn = {"numpy": lambda: side_numpy(args.gguf, args.repeats),
              "transformers": lambda: side_transformers(args.gguf, args.repeats, args.threads),
              "llama_cpp": lambda: side_llama_cpp(args.gguf, args.repeats, args.threads),
              "bandwidth": lambda: side_bandwidth(args.gguf),
              "hf_load": lambda: side_hf_load(args.hf)}[args.side]
        print(json.dumps(fn()))
        return

    repo = str(Path(__file__).resolve().parents[1])
    llama_python = args.llama_python or os.environ.get("TISS_LLAMA_CPP_PYTHON")
    result: dict = {"model": Path(args.gguf).name, "prompt_tokens": PROMPT_TOKENS, "new_tokens": NEW_TOKENS,
                    "machine": {"cpus": os.cpu_count(), "threads": args.threads, "python": platform.python_version(),
                                "load_average_1min_before": round(os.getloadavg()[0], 2)}}
    pythonpath = {"PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result["numpy"] = _run_side(sys.executable, "numpy", args, pythonpath)
    result["transformers"] = _run_side(sys.executable, "transformers", args)
    result["llama_cpp"] = _run_side(llama_python, "llama_cpp", args) if llama_python else None
    result["bandwidth"] = _run_side(sys.executable, "bandwidth", args, pythonpath)
    result["numpy_hf_load"] = _run_side(sys.executable, "hf_load", args, pythonpath) if args.hf else None
    np_side, tf_side = result["numpy"], result["transformers"]
    if "error" not in np_side and "error" not in tf_side:
        result["ratios"] = {
            "decode_numpy_over_transformers": round(np_side["decode_tok_s"] / tf_side["decode_tok_s"], 2),
            "prefill_numpy_over_transformers": round(np_side["prefill_tok_s"] / tf_side["prefill_tok_s"], 2),
            "peak_rss_numpy_over_transformers": round(np_side["peak_rss_mb"] / tf_side["peak_rss_mb"], 2),
        }
        result["greedy_tokens_equal"] = np_side.pop("tokens") == tf_side.pop("tokens")
    bw = result["bandwidth"]
    if "error" not in bw and "error" not in np_side:
        bw["numpy_decode_fraction_of_limit"] = round(np_side["decode_tok_s"] / bw["decode_tok_s_limit"], 2)
    result["machine"]["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

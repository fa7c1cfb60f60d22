"""Benchmark `lm.BPETokenizer` against Hugging Face `tokenizers` byte-level BPE, same run.

Training text: the standard library's top-level modules (`<stdlib>/*.py`, about 4.7 MB on
CPython 3.11). Held-out text: the `.py` files one level down (`<stdlib>/<package>/*.py`, test
packages and site-packages left out), which training never saw. Both tokenizers learn a
vocabulary of the same size (bytes + merges + `<|endoftext|>`) with the same GPT-2 style split
(HF: `ByteLevel(add_prefix_space=False)`, whose regex is the one `lm.pretokenize` mirrors).

Figures (one JSON object on stdout):
- training seconds, best of `--repeat` runs each;
- encoding MB/s on the held-out text: ours with a tokenizer freshly loaded from its file (empty
  chunk cache: the honest first-use figure) and again warm; HF's `encode_batch` (which uses all
  cores) likewise, first and second call, and HF's `encode` one text at a time (one thread);
- bytes per token on the held-out text;
- the ratios the targets are stated in, and whether each target holds.

With a pretrained GGUF file (`--gguf`, default SmolLM2-135M-Instruct where it is installed; a
49152-token vocabulary), the `pretrained` section times encoding with its vocabulary on both
sides, one thread each: ours from the GGUF file (`lm.tokenizer_import`), and HF `tokenizers`
built from the same vocabulary and merges with SmolLM2's own tokenizer.json pre-tokenizer
(Digits, then ByteLevel). Two texts: the same held-out code, and seeded random words, where
nearly every chunk is new (the worst case for a chunk cache). Ours: `encode_batch` (one thread;
it merges a batch's new chunks together) and `encode` one text at a time; HF: `encode` one text
at a time (one thread), which the ratios compare, and `encode_batch` / `encode_batch_fast` (no
offsets), which spread over every core unless `--hf-threads 1` (RAYON_NUM_THREADS, set before
tokenizers starts its pool; it then applies to the training section too). Cold is the first
pass of a freshly loaded tokenizer, warm the second (both sides cache). The ids of the two are
compared too (`ids_equal`).

Run: `python benchmarks/tokenizer.py [--vocab-size 4096] [--repeat 2] [--gguf FILE|none]
[--hf-threads N]`.
Not part of the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from lm import BPETokenizer

EXCLUDED = {"test", "tests", "idle_test", "site-packages", "__pycache__"}
# SmolLM2 as the tests find it (TISS_SMOLLM2_GGUF), else as `tiss models pull smollm2` keeps it.
SMOLLM2 = os.environ.get("TISS_SMOLLM2_GGUF") or "smollm2"


def read_texts(paths: list[Path]) -> list[str]:
    texts = []
    for path in paths:
        try:
            texts.append(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue  # the same files are skipped for both tokenizers
    return texts


def stdlib_texts() -> tuple[list[str], list[str]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    train = sorted(root.glob("*.py"))
    held = sorted(p for p in root.glob("*/*.py") if p.parent.name not in EXCLUDED)
    return read_texts(train), read_texts(held)


def best_of(repeat: int, fn):
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def bench_ours(train: list[str], held: list[str], vocab_size: int, repeat: int, held_bytes: int) -> dict:
    seconds, tok = best_of(repeat, lambda: BPETokenizer().train(train, vocab_size))
    with tempfile.TemporaryDirectory() as tmp:
        fresh = BPETokenizer.load(tok.save(Path(tmp) / "tokenizer.json"))
    cold, ids = timed(lambda: fresh.encode_batch(held))
    warm, _ = timed(lambda: fresh.encode_batch(held))
    if any(fresh.decode(x) != t for x, t in zip(ids, held)):
        raise SystemExit("round-trip failed on the held-out text")
    return {
        "vocab_size": tok.vocab_size,
        "train_seconds": round(seconds, 3),
        "encode_mb_per_s_cold": round(held_bytes / 1e6 / cold, 2),
        "encode_mb_per_s_warm": round(held_bytes / 1e6 / warm, 2),
        "bytes_per_token": round(held_bytes / sum(map(len, ids)), 4),
    }


def bench_hf(train: list[str], held: list[str], vocab_size: int, repeat: int, held_bytes: int) -> dict | None:
    try:
        import tokenizers
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    except ImportError:
        return None

    def train_hf():
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(train, trainer=trainer)
        return tok

    seconds, tok = best_of(repeat, train_hf)
    cold, encodings = timed(lambda: tok.encode_batch(held))
    warm, _ = timed(lambda: tok.encode_batch(held))
    # One text at a time runs on one thread: the like-for-like figure on a busy machine.
    sequential, _ = timed(lambda: [tok.encode(t) for t in held])
    return {
        "version": tokenizers.__version__,
        "vocab_size": tok.get_vocab_size(),
        "train_seconds": round(seconds, 3),
        "encode_batch_mb_per_s_cold": round(held_bytes / 1e6 / cold, 2),
        "encode_batch_mb_per_s_warm": round(held_bytes / 1e6 / warm, 2),
        "encode_one_thread_mb_per_s_warm": round(held_bytes / 1e6 / sequential, 2),
        "bytes_per_token": round(held_bytes / sum(len(e.ids) for e in encodings), 4),
    }


def random_words(n_texts: int = 1000, words_per_text: int = 200, seed: int = 0) -> list[str]:
    """Texts of seeded random "words" (Latin, accented, CJK and Hangul letters): almost every
    chunk is new, so a chunk cache cannot help; the worst case for `lm`'s encoder."""
    import random

    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyzéèàü東京日本語한국어"
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(1, 12))) for _ in range(200_000)]
    return [" ".join(rng.choice(words) for _ in range(words_per_text)) for _ in range(n_texts)]


def bench_pretrained(path: Path, held: list[str], held_bytes: int) -> dict:
    import gguf

    from lm.tokenizer import BPETokenizer, byte_level_encode
    from lm.tokenizer_import import tokenizer_from_gguf

    reader_seconds, reader = timed(lambda: gguf.GGUFReader(path))
    load_seconds, ours = timed(lambda: tokenizer_from_gguf(reader, str(path)))
    del reader
    saved = ours.to_dict()
    report: dict = {
        "file": path.name,
        "vocab_size": ours.vocab_size,
        "merges": len(ours.merges),
        "pretokenizer_steps": list(ours.pretokenizer or ()),
        "gguf_reader_seconds": round(reader_seconds, 3),  # gguf's parse of the whole file
        "tokenizer_from_gguf_seconds": round(load_seconds, 3),
    }
    hf = None
    try:
        import tokenizers
        from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

        specials = set(ours.special_tokens.values())
        vocab: dict[str, int] = {}
        for i, raw in enumerate(ours.vocab):
            vocab.setdefault(raw.decode("utf-8") if i in specials else byte_level_encode(raw), i)
        merges = [(byte_level_encode(ours.vocab[a]), byte_level_encode(ours.vocab[b])) for a, b in ours.merges]
        hf = Tokenizer(models.BPE(vocab=vocab, merges=merges))
        hf.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
        )
        hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ours.special_tokens])
        report["hf_tokenizers_version"] = tokenizers.__version__
        report["hf_batch_threads"] = os.environ.get("RAYON_NUM_THREADS", "all cores")
    except ImportError:
        pass
    rand = random_words()
    for name, texts in (("heldout_code", held), ("random_words", rand)):
        size = held_bytes if texts is held else sum(len(t.encode("utf-8")) for t in texts)
        mb = size / 1e6
        fresh = BPETokenizer.from_dict(saved)  # empty cache
        cold, ids = timed(lambda: fresh.encode_batch(texts))
        warm, _ = timed(lambda: fresh.encode_batch(texts))
        single = BPETokenizer.from_dict(saved)
        one_cold, _ = timed(lambda: [single.encode(t) for t in texts])
        part: dict = {
            "mb": round(mb, 3),
            "ours": {
                "encode_batch_mb_per_s_cold": round(mb / cold, 3),
                "encode_batch_mb_per_s_warm": round(mb / warm, 3),
                "encode_one_text_at_a_time_mb_per_s_cold": round(mb / one_cold, 3),
                "bytes_per_token": round(size / sum(map(len, ids)), 4),
            },
        }
        if hf is not None:
            hf_cold, hf_ids = timed(lambda: [hf.encode(t, add_special_tokens=False).ids for t in texts])
            hf_warm, _ = timed(lambda: [hf.encode(t, add_special_tokens=False).ids for t in texts])
            batch, _ = timed(lambda: hf.encode_batch(texts, add_special_tokens=False))
            fast = getattr(hf, "encode_batch_fast", None)  # no offsets; tokenizers >= 0.20
            fast_s = timed(lambda: fast(texts, add_special_tokens=False))[0] if fast is not None else None
            part["hf_tokenizers"] = {
                "encode_one_thread_mb_per_s_cold": round(mb / hf_cold, 3),
                "encode_one_thread_mb_per_s_warm": round(mb / hf_warm, 3),
                "encode_batch_mb_per_s": round(mb / batch, 3),
                "encode_batch_fast_mb_per_s": None if fast_s is None else round(mb / fast_s, 3),
            }
            part["ids_equal"] = hf_ids == ids
            part["ratios"] = {
                "batch_cold_ours_over_hf_encode_cold": round(hf_cold / cold, 3),
                "batch_warm_ours_over_hf_encode_warm": round(hf_warm / warm, 3),
                "one_at_a_time_cold_ours_over_hf_encode_cold": round(hf_cold / one_cold, 3),
            }
        report[name] = part
    if hf is not None:
        code = report["heldout_code"]["ratios"]
        report["targets_met"] = {
            "encode_at_least_1x_hf_one_thread": min(code.values()) >= 1.0,
        }
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=2, help="training runs per tokenizer (best kept)")
    parser.add_argument("--gguf", default=SMOLLM2,
                        help="a pretrained GGUF file whose vocabulary to time, or 'none'")
    parser.add_argument("--hf-threads", type=int, help="threads for HF tokenizers' batch calls")
    args = parser.parse_args()
    if args.hf_threads:
        os.environ["RAYON_NUM_THREADS"] = str(args.hf_threads)

    train, held = stdlib_texts()
    train_bytes = sum(len(t.encode("utf-8")) for t in train)
    held_bytes = sum(len(t.encode("utf-8")) for t in held)
    ours = bench_ours(train, held, args.vocab_size, args.repeat, held_bytes)
    hf = bench_hf(train, held, args.vocab_size, args.repeat, held_bytes)
    report: dict = {
        "benchmark": "tokenizer",
        "python": platform.python_version(),
        "train_files": len(train),
        "train_mb": round(train_bytes / 1e6, 3),
        "heldout_files": len(held),
        "heldout_mb": round(held_bytes / 1e6, 3),
        "ours": ours,
        "hf_tokenizers": hf,
    }
    if hf is not None:
        ratios = {
            "train_time_ours_over_hf": round(ours["train_seconds"] / hf["train_seconds"], 3),
            "encode_cold_ours_over_hf": round(
                ours["encode_mb_per_s_cold"] / hf["encode_batch_mb_per_s_cold"], 3
            ),
            "encode_warm_ours_over_hf": round(
                ours["encode_mb_per_s_warm"] / hf["encode_batch_mb_per_s_warm"], 3
            ),
            "bytes_per_token_ours_over_hf": round(ours["bytes_per_token"] / hf["bytes_per_token"], 4),
        }
        report["ratios"] = ratios
        report["targets_met"] = {
            "train_time_at_most_2x_hf": ratios["train_time_ours_over_hf"] <= 2.0,
            "encode_at_least_1x_hf": ratios["encode_cold_ours_over_hf"] >= 1.0,
            "bytes_per_token_within_1pct_of_hf": abs(ratios["bytes_per_token_ours_over_hf"] - 1) <= 0.01,
        }
    if args.gguf != "none":
        from lm.models import ModelStoreError, resolve_model

        try:
            gguf_path = Path(resolve_model(args.gguf))
        except ModelStoreError as exc:  # not pulled: the pretrained part is left out, as below
            report["pretrained"] = f"skipped: {exc}"
        else:
            if gguf_path.is_file():
                report["pretrained"] = bench_pretrained(gguf_path, held, held_bytes)
    report["loadavg"] = _loadavg()
    json.dump(report, sys.stdout, indent=1)
    print()
    return 0


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


if __name__ == "__main__":
    raise SystemExit(main())

"""Export a model to the ecosystem: a Hugging Face model directory or a llama.cpp GGUF file.

`export_hf(model, tokenizer, path, dtype="float32")` writes a directory that transformers loads
as `LlamaForCausalLM` (no custom code): `config.json`, `model.safetensors` (HF tensor names,
`[out, in]` layout; float32, float16 or bfloat16), `generation_config.json`, `tokenizer.json`,
`tokenizer_config.json` (and the chat template, when the model has one).
`export_gguf(model, tokenizer, path, dtype="float32")` writes a `llama`-architecture GGUF file
with `gguf`'s own writer (F32, F16 or Q8_0 matrices; norms stay F32, and a matrix whose rows do
not split into Q8_0's 32-value blocks is written F16, as llama.cpp's converter does). The tensor
names and the query/key row order are the ones `lm.pretrained` reads, so export then `lm.load`
gives the same parameters (bit for bit in float32).

The tokenizer is written so that the peer encodes exactly as `BPETokenizer.encode` does, or the
export is refused with the reason:

- A tokenizer trained here splits text with `lm.pretokenize.PATTERN`, a Python `re` pattern
  whose `\\w`, `\\d` and `\\s` are Python's sets: letters are the L, Nl and No categories ("²",
  "½" and "Ⅻ" are letters), digits are Nd, and whitespace is White_Space plus U+001C..U+001F.
  For `tokenizer.json` the same pattern is written with those sets spelled out as code-point
  ranges (`own_split_regex`), which HF's Oniguruma reads exactly as Python does whatever its
  Unicode version. llama.cpp cannot be given a pattern, only the name of a split it knows
  (`tokenizer.ggml.pre`), and none of those is this one: the closest, "gpt-2", takes No/Nl
  characters as numbers and U+001C..U+001F as punctuation. `export_gguf` therefore refuses a
  tokenizer trained here unless `pretokenizer="gpt-2"` is passed, accepting that difference.
- An imported tokenizer keeps its own split: a GGUF one's `tokenizer.ggml.pre` name, an HF one's
  pre-tokenizer steps (written as `Split` steps). Two rules differ between the peers and
  follow the target format: a byte that has no token (HF drops it before merging, llama.cpp
  keeps its neighbours apart) and overlapping added tokens (leftmost-longest in HF, longest
  first in llama.cpp). `tokenizer_notes` says when a vocabulary is affected, and the CLI prints
  it; for the vocabularies without such bytes or overlaps the encodings are the same (SmolLM2's
  has such bytes: 0x04, 0x06, ... have no token).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from lm.atomic import current_umask, fsync_directory
from lm.bpe_train import N_BYTES
from lm.errors import LMError
from lm.layers import pair_order
from lm.pretokenize import LLAMA3_SPLIT, LLAMA3_SPLIT_CPP, PATTERN, PRETOKENIZERS
from lm.pretrained import LLAMA_EXTRA, _gguf_names, _hf_names
from lm.tokenizer import BPETokenizer, byte_level_encode

FORMATS = ("hf", "gguf")
DTYPES = {"hf": ("float32", "float16", "bfloat16"), "gguf": ("float32", "float16", "q8_0")}


class ExportError(LMError):
    """An export that cannot be done as asked; the message says what to do instead."""


# -- the split of a tokenizer trained here, in HF's notation -----------------------------------


def _ranges(members: list[int]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for c in members:
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return [(a, b) for a, b in out]


def _class_body(ranges: list[tuple[int, int]]) -> str:
    """Ranges as a character-class body both Oniguruma and Python `re` read the same way:
    `\\uHHHH` escapes in the BMP (neither engine gives them another meaning), the characters
    themselves above it (Oniguruma has no escape for them that Python shares; no character
    beyond the BMP is special in a class)."""
    def one(c: int) -> str:
        return f"\\u{c:04X}" if c <= 0xFFFF else chr(c)

    return "".join(one(a) if a == b else f"{one(a)}-{one(b)}" for a, b in ranges)


@lru_cache(maxsize=1)
def own_split_regex() -> str:
    """`lm.pretokenize.PATTERN` with Python's `\\w`, `\\d` and `\\s` spelled out as ranges.

    The sets are read from the running Python's `re` itself (every code point tried), so the
    regex is exactly what `re.compile(PATTERN)` does on this Python.
    """
    word, digit, space = re.compile(r"\w"), re.compile(r"\d"), re.compile(r"\s")
    letters, digits, spaces, words = [], [], [], []
    for c in range(0x110000):
        if 0xD800 <= c <= 0xDFFF:
            continue  # surrogates are in none of the sets, and UTF-8 text cannot hold them
        ch = chr(c)
        if space.match(ch):
            spaces.append(c)
        if word.match(ch):
            words.append(c)
            if digit.match(ch):
                digits.append(c)
            elif ch != "_":
                letters.append(c)
    letter_cls, digit_cls = _class_body(_ranges(letters)), _class_body(_ranges(digits))
    space_cls = _class_body(_ranges(spaces))
    # [^\s\w]|_ : neither whitespace nor a word character, or the underscore.
    other_cls = _class_body(_ranges(sorted(set(spaces) | set(words))))
    return (
        r"'(?:[sdmt]|ll|ve|re)"
        f"| ?[{letter_cls}]+"
        f"| ?[{digit_cls}]+"
        f"| ?(?:[^{other_cls}]|_)+"
        f"|[{space_cls}]+(?![^{space_cls}])"
        f"|[{space_cls}]+"
    )


# -- tokenizer.json -------------------------------------------------------------------------


def _extra_ids(tok: BPETokenizer) -> set[int]:
    return set(tok.special_tokens.values()) | set(tok.added_tokens.values())


def _token_bytes(tok: BPETokenizer) -> list[bytes]:
    return [tok.token_bytes(i) for i in range(tok.vocab_size)]


def hf_tokenizer_json(tok: BPETokenizer) -> dict[str, Any]:
    """The `tokenizer.json` content that makes HF `tokenizers` encode as `tok` does."""
    if tok.vocab is None:
        if tok.pattern != PATTERN:
            raise ExportError(
                "this tokenizer splits text with a custom pattern, which cannot be written for HF "
                "exactly; train it with the default split (lm.pretokenize.PATTERN)"
            )
        steps = [own_split_regex()]
        every = _token_bytes(tok)
        seen: dict[bytes, int] = {}
        for i, raw in enumerate(every[: N_BYTES + len(tok.merges)]):
            if raw in seen:
                raise ExportError(
                    f"tokens {seen[raw]} and {i} stand for the same bytes {raw!r}; HF's BPE has one id "
                    "per token text, so this vocabulary cannot be written for it exactly"
                )
            seen[raw] = i
    else:
        steps = list(tok.pretokenizer or ())
        every = list(tok.vocab)
    extra = _extra_ids(tok)
    vocab: dict[str, int] = {}
    # The first id of each text wins, as in BPETokenizer._mergeable_ids: ordinary tokens first.
    for i in [i for i in range(len(every)) if i not in extra] + sorted(extra):
        if every[i]:
            vocab.setdefault(byte_level_encode(every[i]), i)
    text_of = {i: byte_level_encode(raw) for i, raw in enumerate(every)}
    # "left right": byte-level token texts never hold a space (it is "Ġ"), and every tokenizers
    # release reads this form.
    merges = [f"{text_of[a]} {text_of[b]}" for a, b in tok.merges]
    added = []
    for text, i in sorted({**tok.special_tokens, **tok.added_tokens}.items(), key=lambda kv: kv[1]):
        special = text in tok.special_tokens
        lstrip, rstrip, normalized = tok.token_options.get(text, (False, False, False))
        added.append({"id": i, "content": text, "single_word": False, "lstrip": lstrip,
                      "rstrip": rstrip, "normalized": normalized, "special": special})
    pre = [{"type": "Split", "pattern": {"Regex": s}, "behavior": "Isolated", "invert": False} for s in steps]
    pre.append({"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False})
    post: dict[str, Any] | None = None
    if tok.add_bos and tok.bos_id is not None:
        bos = tok.decode_bytes([tok.bos_id]).decode("utf-8", "replace")
        post = {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {bos: {"id": bos, "ids": [tok.bos_id], "tokens": [bos]}},
        }
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None if tok.normalizer is None else {"type": tok.normalizer},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": pre},
        "post_processor": post,
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
            "ignore_merges": bool(tok.ignore_merges), "vocab": vocab, "merges": merges,
        },
    }


def _token_text(tok: BPETokenizer, token_id: int | None) -> str | None:
    if token_id is None:
        return None
    return tok.decode_bytes([token_id]).decode("utf-8", "replace")


def _eos(tok: BPETokenizer) -> int | None:
    if tok.eos_id is not None:
        return tok.eos_id
    return tok.special_tokens.get("<|endoftext|>")


def hf_tokenizer_config(tok: BPETokenizer, max_len: int) -> dict[str, Any]:
    """`tokenizer_config.json`: the special tokens by role, BOS policy and chat template."""
    data: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": max_len,
        "clean_up_tokenization_spaces": False,
        "add_bos_token": bool(tok.add_bos),
        "add_eos_token": False,
        "bos_token": _token_text(tok, tok.bos_id),
        "eos_token": _token_text(tok, _eos(tok)),
        "pad_token": _token_text(tok, tok.pad_id),
    }
    if tok.chat_template is not None:
        data["chat_template"] = tok.chat_template
    return data


def tokenizer_notes(tok: BPETokenizer, fmt: str) -> list[str]:
    """Inputs on which the exported tokenizer encodes differently from `tok` (empty: none)."""
    notes = []
    if tok.vocab is None:
        return notes
    target = "skip" if fmt == "hf" else "block"
    if tok.missing_bytes != target:
        have = {raw for raw in tok.vocab if len(raw) == 1}
        lacking = [b for b in range(N_BYTES) if bytes([b]) not in have and (b < 0xC0 or 0xC2 <= b <= 0xF4)]
        if lacking:
            rule = ("HF's rule: such a byte is dropped before merging" if fmt == "hf" else
                    "llama.cpp's rule: such a byte keeps its neighbours apart")
            notes.append(
                f"the vocabulary has no token for byte(s) {', '.join(hex(b) for b in lacking[:6])}"
                f"{' ...' if len(lacking) > 6 else ''}; text containing them is encoded by {rule}, "
                "which may differ from this tokenizer's ids"
            )
    mode = "leftmost_longest" if fmt == "hf" else "longest_first"
    if tok.special_match != mode:
        texts = sorted({**tok.special_tokens, **tok.added_tokens})
        for a in texts:
            clash = next((b for b in texts if b != a and (b in a or any(
                a.endswith(b[:k]) for k in range(1, len(b))))), None)
            if clash is not None:
                notes.append(f"added tokens {a!r} and {clash!r} overlap; text where both could match is "
                             f"cut as {'HF' if fmt == 'hf' else 'llama.cpp'} does")
                break
    return notes


# -- writing, atomically --------------------------------------------------------------------


def _check_target(path: Path, force: bool, is_dir: bool) -> None:
    if path.exists() or path.is_symlink():
        if is_dir and not path.is_dir():
            raise ExportError(f"{path} exists and is not a directory; choose another --out")
        if not is_dir and path.is_dir():
            raise ExportError(f"{path} is a directory; give a file name such as {path / 'model.gguf'}")
        if not force and (not is_dir or any(path.iterdir())):
            raise ExportError(f"{path} already exists{' and is not empty' if is_dir else ''}; "
                              "pass --force to replace it, or choose another --out")
    parent = path.parent
    if not parent.is_dir():
        raise ExportError(f"{parent} does not exist; create it first or choose another --out")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ExportError(f"cannot write to {parent} (permission denied); choose another --out")


def _os_error(target: Path, exc: OSError) -> ExportError:
    return ExportError(f"cannot write {target}: {exc.strerror or exc}; nothing was replaced")


def _replace_dir(target: Path, write) -> None:
    """Build the directory in a temporary beside `target` and rename it into place."""
    parent = target.parent
    old = parent / f".{target.name}.old-{os.getpid()}"
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=parent))
    except OSError as exc:
        raise _os_error(target, exc) from None
    try:
        write(tmp)
        umask = current_umask()
        os.chmod(tmp, 0o777 & ~umask)
        for f in tmp.iterdir():
            os.chmod(f, 0o666 & ~umask)
            with open(f, "rb") as handle:
                os.fsync(handle.fileno())
        fsync_directory(tmp)
        if target.exists():
            os.rename(target, old)
        os.rename(tmp, target)
        fsync_directory(parent)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not target.exists():
            os.rename(old, target)
        raise _os_error(target, exc) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _replace_file(target: Path, write) -> None:
    """Write the file under a temporary name beside `target`, fsync it, rename it into place."""
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise _os_error(target, exc) from None
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        fsync_directory(target.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _os_error(target, exc) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _check_dtype(fmt: str, dtype: str) -> None:
    if dtype not in DTYPES[fmt]:
        other = [f for f in FORMATS if dtype in DTYPES[f]]
        hint = f" ({dtype} is for --format {other[0]})" if other else ""
        raise ExportError(f"--format {fmt} cannot hold {dtype}{hint}; supported: {', '.join(DTYPES[fmt])}")


# -- Hugging Face -------------------------------------------------------------------------------


def _bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns, rounded to nearest even (as torch rounds)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return ((u + (((u >> 16) & 1) + 0x7FFF)) >> 16).astype(np.uint16)


def _write_bf16_safetensors(file: Path, tensors: dict[str, np.ndarray]) -> None:
    # safetensors' NumPy API cannot take bfloat16 (NumPy has no such type), so the file is laid
    # out here: an 8-byte header length, the JSON header, then each tensor's bytes in order.
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, t in tensors.items():
        header[name] = {"dtype": "BF16", "shape": list(t.shape), "data_offsets": [offset, offset + 2 * t.size]}
        offset += 2 * t.size
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the format aligns the data to 8 bytes
    with open(file, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for t in tensors.values():
            f.write(_bf16_bits(t).tobytes())


def hf_config(model, tok: BPETokenizer, dtype: str = "float32") -> dict[str, Any]:
    """`config.json` for transformers' LlamaForCausalLM."""
    c = model.config
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": c.vocab_size,
        "hidden_size": c.d_model,
        "intermediate_size": c.ffn_hidden,
        "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.n_kv_heads,
        "head_dim": c.head_dim,
        "max_position_embeddings": c.max_seq_len,
        "rms_norm_eps": c.norm_eps,
        "rope_theta": c.rope_theta,
        "rope_scaling": None,
        "tie_word_embeddings": c.tie_embeddings,
        "hidden_act": "silu",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "initializer_range": 0.02,
        "pretraining_tp": 1,
        "use_cache": True,
        "bos_token_id": tok.bos_id,
        "eos_token_id": _eos(tok),
        "pad_token_id": tok.pad_id,
        "torch_dtype": dtype,
    }


def export_hf(model, tokenizer: BPETokenizer, path, dtype: str = "float32", force: bool = False) -> Path:
    """Write `model` and `tokenizer` as a Hugging Face Llama directory at `path` (see the module
    docstring). An existing non-empty `path` is replaced only with `force`. Returns the path."""
    _check_dtype("hf", dtype)
    target = Path(path)
    _check_target(target, force, is_dir=True)
    _check_vocab(model, tokenizer)
    tok_json = hf_tokenizer_json(tokenizer)
    eos = [i for i in (_eos(tokenizer), tokenizer.end_of_turn_id) if i is not None]
    generation = {"_from_model_config": False, "bos_token_id": tokenizer.bos_id,
                  "eos_token_id": eos[0] if len(eos) == 1 else (eos or None), "pad_token_id": tokenizer.pad_id}
    def write(tmp: Path) -> None:
        from safetensors.numpy import save_file

        # One copy of the weights in the file's dtype and layout (bfloat16: float32 until written).
        store = np.float16 if dtype == "float16" else np.float32
        tensors = {}
        for hf_name, (pname, transpose) in _hf_names(model.config).items():
            p = model.params[pname]
            tensors[hf_name] = np.ascontiguousarray(p.T if transpose else p, dtype=store)
        if dtype == "bfloat16":
            _write_bf16_safetensors(tmp / "model.safetensors", tensors)
        else:
            save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        del tensors
        files = {
            "config.json": hf_config(model, tokenizer, dtype),
            "generation_config.json": generation,
            "tokenizer.json": tok_json,
            "tokenizer_config.json": hf_tokenizer_config(tokenizer, model.config.max_seq_len),
        }
        for name, data in files.items():
            (tmp / name).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        if tokenizer.chat_template is not None:  # where transformers 5 keeps it
            (tmp / "chat_template.jinja").write_text(tokenizer.chat_template, encoding="utf-8")

    _replace_dir(target, write)
    return target


def _check_vocab(model, tok: BPETokenizer) -> None:
    if tok.vocab_size > model.config.vocab_size:
        raise ExportError(f"the tokenizer has {tok.vocab_size} tokens but the model only "
                          f"{model.config.vocab_size}; they do not belong together")


# -- GGUF ----------------------------------------------------------------------------------------


def gguf_pre_name(tok: BPETokenizer, pretokenizer: str | None = None) -> str:
    """The `tokenizer.ggml.pre` whose split llama.cpp applies exactly as `tok` splits."""
    if tok.vocab is None:
        if pretokenizer == "gpt-2":
            return "gpt-2"
        raise ExportError(
            "llama.cpp has no pre-tokenizer exactly like this project's own split: the closest, "
            "'gpt-2', takes characters such as '²', '½', 'Ⅻ' (Unicode No/Nl) as numbers and U+001C..U+001F "
            "as punctuation, where this tokenizer takes them as letters and whitespace; pass "
            "--gguf-pre gpt-2 to accept that difference, or export --format hf, which is exact"
        )
    if tok.normalizer is not None:
        raise ExportError(f"llama.cpp's gpt2 tokenizer has no {tok.normalizer} normalizer; export --format hf")
    if any(any(o[:2]) for o in tok.token_options.values()):
        raise ExportError("added tokens that strip spaces beside them (lstrip/rstrip) cannot be written "
                          "to GGUF; export --format hf")
    steps = tuple(LLAMA3_SPLIT_CPP if s == LLAMA3_SPLIT else s for s in tok.pretokenizer or ())
    if not steps:
        raise ExportError("this tokenizer has no pre-tokenizer split; llama.cpp needs one; export --format hf")
    names = [n for n, (s, ignore, _) in PRETOKENIZERS.items() if s == steps and ignore == tok.ignore_merges]
    if pretokenizer is not None:
        if pretokenizer not in names:
            raise ExportError(f"--gguf-pre {pretokenizer} is not this tokenizer's split; "
                              f"matching names: {', '.join(names) or 'none'}")
        return pretokenizer
    if not names:
        raise ExportError("llama.cpp knows no pre-tokenizer that splits text as this tokenizer does "
                          f"(steps {list(steps)}); export --format hf")
    # Names that share a split tokenize alike; the file states add_bos itself, so the name's
    # BOS default does not matter. The model family's canonical name reads best.
    canonical = ("gpt-2", "llama-bpe", "smollm", "qwen2", "dbrx")
    return min(names, key=lambda n: (canonical.index(n) if n in canonical else len(canonical), n))


def export_gguf(model, tokenizer: BPETokenizer, path, dtype: str = "float32", force: bool = False,
                pretokenizer: str | None = None) -> Path:
    """Write `model` and `tokenizer` as a llama-architecture GGUF file at `path` (see the module
    docstring). `pretokenizer`: a `tokenizer.ggml.pre` name to use (see `gguf_pre_name`)."""
    _check_dtype("gguf", dtype)
    try:
        import gguf
    except ImportError:
        raise ExportError(f"writing GGUF files needs the gguf package: {LLAMA_EXTRA}") from None
    target = Path(path)
    _check_target(target, force, is_dir=False)
    _check_vocab(model, tokenizer)
    pre = gguf_pre_name(tokenizer, pretokenizer)
    c = model.config
    every = _token_bytes(tokenizer)
    every += [b""] * (c.vocab_size - len(every))
    extra = _extra_ids(tokenizer)
    specials = set(tokenizer.special_tokens.values())
    tokens, types = [], []
    T = gguf.TokenType
    for i, raw in enumerate(every):
        if i in extra:
            tokens.append(raw.decode("utf-8", "replace"))
            types.append(T.CONTROL if i in specials else T.USER_DEFINED)
        elif raw:
            tokens.append(byte_level_encode(raw))
            types.append(T.NORMAL)
        else:  # a hole in the vocabulary, or embedding rows past the tokenizer
            tokens.append(f"[PAD{i}]")
            types.append(T.UNUSED)
    text_of = {}
    for i in [i for i in range(len(every)) if i not in extra] + sorted(extra):
        text_of.setdefault(i, tokens[i])
    merges = [f"{text_of[a]} {text_of[b]}" for a, b in tokenizer.merges]
    qtype = {"float32": gguf.GGMLQuantizationType.F32, "float16": gguf.GGMLQuantizationType.F16,
             "q8_0": gguf.GGMLQuantizationType.Q8_0}[dtype]
    ftype = {"float32": gguf.LlamaFileType.ALL_F32, "float16": gguf.LlamaFileType.MOSTLY_F16,
             "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[dtype]
    H, KV, D = c.n_heads, c.n_kv_heads, c.head_dim
    rows = {"q": pair_order(H, D), "k": pair_order(KV, D)}

    def write(tmp: Path) -> None:
        w = gguf.GGUFWriter(str(tmp), "llama")
        w.add_name("quantatissu export")
        w.add_context_length(c.max_seq_len)
        w.add_embedding_length(c.d_model)
        w.add_block_count(c.n_layers)
        w.add_feed_forward_length(c.ffn_hidden)
        w.add_head_count(H)
        w.add_head_count_kv(KV)
        w.add_key_length(D)
        w.add_value_length(D)
        w.add_rope_dimension_count(D)
        w.add_rope_freq_base(c.rope_theta)
        w.add_layer_norm_rms_eps(c.norm_eps)
        w.add_vocab_size(c.vocab_size)
        w.add_file_type(ftype)
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(pre)
        w.add_token_list(tokens)
        w.add_token_types(types)
        w.add_token_merges(merges)
        eos = _eos(tokenizer)
        bos = tokenizer.bos_id if tokenizer.bos_id is not None else eos
        if bos is not None:
            w.add_bos_token_id(bos)
        if eos is not None:
            w.add_eos_token_id(eos)
        if tokenizer.end_of_turn_id is not None:
            w.add_eot_token_id(tokenizer.end_of_turn_id)
        if tokenizer.pad_id is not None:
            w.add_pad_token_id(tokenizer.pad_id)
        w.add_add_bos_token(bool(tokenizer.add_bos))
        if tokenizer.chat_template is not None:
            w.add_chat_template(tokenizer.chat_template)
        for gname, (pname, kind) in _gguf_names(c).items():
            p = model.params[pname]
            data = np.ascontiguousarray(p if kind == "row" else p.T, dtype=np.float32)
            if kind in rows:
                data = np.ascontiguousarray(data[rows[kind]])  # llama.cpp's adjacent-pair order
            _add_tensor(w, gguf, gname, data, qtype)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()

    _replace_file(target, write)
    return target


def _add_tensor(w, gguf, name: str, data: np.ndarray, qtype) -> None:
    F32, F16 = gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16
    if data.ndim == 1 or qtype == F32:
        w.add_tensor(name, data)  # norms stay F32 in every file type, as llama.cpp's converter keeps them
        return
    if qtype == F16:
        w.add_tensor(name, data.astype(np.float16))
        return
    try:
        packed = gguf.quants.quantize(data, qtype)
    except gguf.quants.QuantError:  # rows not a whole number of 32-value blocks
        w.add_tensor(name, data.astype(np.float16))
        return
    w.add_tensor(name, packed, raw_shape=packed.shape, raw_dtype=qtype)


# -- the command ---------------------------------------------------------------------------------


def export_command(checkpoint: str, fmt: str, out: str, dtype: str | None = None, force: bool = False,
                   gguf_pre: str | None = None, log=None) -> int:
    """What `tiss export` does: load CHECKPOINT (anything `lm.load` takes, or a pulled model's
    name), write it in `fmt` to `out`, print what was written (and any tokenizer notes)."""
    import sys

    from lm.checkpoint import load
    from lm.models import resolve_model

    log = log if log is not None else sys.stderr
    dtype = dtype or "float32"
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; supported: {', '.join(FORMATS)}")
    _check_dtype(fmt, dtype)
    if gguf_pre is not None and fmt != "gguf":
        raise ExportError("--gguf-pre applies to --format gguf only")
    _check_target(Path(out), force, is_dir=fmt == "hf")  # before a load that may take seconds
    model, tok = load(resolve_model(checkpoint))
    if fmt == "hf":
        written = export_hf(model, tok, out, dtype=dtype, force=force)
    else:
        written = export_gguf(model, tok, out, dtype=dtype, force=force, pretokenizer=gguf_pre)
    for note in tokenizer_notes(tok, fmt):
        print(f"tiss: note: {note}", file=log)
    print(f"exported {checkpoint} ({model.n_params:,} parameters) as {fmt} {dtype}: {written}", file=log)
    return 0

"""Reading the tokenizer of a pretrained model: GGUF metadata and Hugging Face files.

Both give a `BPETokenizer` with the model's own ids, merges, pre-tokenizer split, added and
special tokens, BOS/EOS ids and chat template, whose `encode` gives the ids of the file's own
reference implementation: llama.cpp's tokenizer for a GGUF file, HF `tokenizers` for a
`tokenizer.json`. The two can differ on the same model (a GGUF file names its split by
`tokenizer.ggml.pre` and llama.cpp applies its rules for that name; transformers' GGUF conversion
does not always rebuild the same split), which is why each source keeps its own rules.

Only byte-level BPE is read. Anything else — a SentencePiece (`llama`) or other vocabulary, a
Unigram or WordPiece model, a pre-tokenizer or normalizer this package cannot reproduce
exactly — is a `TokenizerError` naming what was found and what is supported, never a tokenizer
that would encode differently from the reference.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lm.pretokenize import (
    DIGIT_SPLIT,
    GPT2_SPLIT,
    PRETOKENIZERS,
    PatternError,
    Splitter,
)
from lm.tokenizer import (
    NORMALIZERS,
    BPETokenizer,
    TokenizerError,
    byte_level_decode,
)

if TYPE_CHECKING:  # gguf is an optional dependency
    import gguf

# GGUF token types (llama.cpp's llama_token_type).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# Token texts llama.cpp treats as control tokens whatever type the file gives them (it ends
# generation at them), and the ones it always treats as user-defined (llama-vocab.cpp).
_FORCED_CONTROL = frozenset({
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<｜end▁of▁sentence｜>", "[e~[",
})
_FORCED_USER_DEFINED = frozenset({"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"})

SUPPORTED_GGUF = "GGUF vocabularies of model 'gpt2' (byte-level BPE)"
SUPPORTED_HF = "byte-level BPE tokenizer.json files (model BPE with a ByteLevel pre-tokenizer)"


# ----------------------------------------------------------------------------------------- GGUF

def tokenizer_from_gguf(reader: gguf.GGUFReader, source: str | None = None) -> BPETokenizer:
    """The tokenizer in a GGUF file's `tokenizer.ggml.*` metadata (and its chat template).

    `reader` is an open `gguf.GGUFReader`; `source` names the file in error messages.
    """
    where = source or str(getattr(getattr(reader, "data", None), "filename", None) or "the GGUF file")

    def bad(why: str) -> TokenizerError:
        return TokenizerError(f"{where}: {why}")

    model = _gguf_value(reader, "tokenizer.ggml.model")
    if model is None:
        raise bad("the file has no tokenizer (no tokenizer.ggml.model); only files with their "
                  "vocabulary can be loaded")
    if model != "gpt2":
        kind = {"llama": "a SentencePiece vocabulary ('llama')", "bert": "a WordPiece vocabulary ('bert')",
                "t5": "a Unigram vocabulary ('t5')"}.get(model, f"tokenizer model {model!r}")
        raise bad(f"{kind} is not supported; supported: {SUPPORTED_GGUF}")
    pre = _gguf_value(reader, "tokenizer.ggml.pre")
    if pre not in PRETOKENIZERS:
        known = ", ".join(sorted(PRETOKENIZERS))
        found = "no tokenizer.ggml.pre" if pre is None else f"tokenizer.ggml.pre {pre!r}"
        raise bad(f"{found} is not a pre-tokenizer this package reproduces exactly; supported: {known}")
    steps, ignore_merges, add_bos = PRETOKENIZERS[pre]

    texts = _gguf_value(reader, "tokenizer.ggml.tokens")
    merges_text = _gguf_value(reader, "tokenizer.ggml.merges")
    if not isinstance(texts, list) or not texts:
        raise bad("tokenizer.ggml.tokens is missing or empty; the file is incomplete")
    if not isinstance(merges_text, list):
        raise bad("tokenizer.ggml.merges is missing; a gpt2 vocabulary needs its merges")
    types = _gguf_value(reader, "tokenizer.ggml.token_type")
    if types is None:
        types = [NORMAL] * len(texts)
    if len(types) < len(texts):
        raise bad(f"tokenizer.ggml.token_type has {len(types)} entries for {len(texts)} tokens")

    tok = BPETokenizer()
    vocab: list[bytes] = []
    specials: dict[str, int] = {}
    added: dict[str, int] = {}
    id_of_text: dict[str, int] = {}
    for i, text in enumerate(texts):
        kind = types[i]
        if text in _FORCED_USER_DEFINED:
            kind = USER_DEFINED
        elif text in _FORCED_CONTROL and kind in (NORMAL, USER_DEFINED):
            kind = CONTROL
        id_of_text.setdefault(text, i)
        if kind in (CONTROL, UNKNOWN, USER_DEFINED) and text:
            (added if kind == USER_DEFINED else specials).setdefault(text, i)
            vocab.append(text.encode("utf-8"))
        else:
            raw = byte_level_decode(text)
            vocab.append(raw if raw is not None else text.encode("utf-8"))
    merges = []
    for rank, line in enumerate(merges_text):
        left, sep, right = line.partition(" ")
        a, b = id_of_text.get(left), id_of_text.get(right)
        if not sep or a is None or b is None:
            raise bad(f"merge {rank} {line!r} does not name two tokens of the vocabulary")
        merges.append((a, b))

    tok.vocab = vocab
    tok.merges = merges
    tok.special_tokens = specials
    tok.added_tokens = added
    tok.pretokenizer = steps
    tok.special_match = "longest_first"
    tok.missing_bytes = "block"
    tok.ignore_merges = ignore_merges
    tok.bos_id = _gguf_id(reader, "tokenizer.ggml.bos_token_id", len(vocab))
    tok.eos_id = _gguf_id(reader, "tokenizer.ggml.eos_token_id", len(vocab))
    tok.end_of_turn_id = _gguf_id(reader, "tokenizer.ggml.eot_token_id", len(vocab))
    tok.pad_id = _gguf_id(reader, "tokenizer.ggml.padding_token_id", len(vocab))
    flag = _gguf_value(reader, "tokenizer.ggml.add_bos_token")
    tok.add_bos = bool(add_bos if flag is None else flag)
    template = _gguf_value(reader, "tokenizer.chat_template")
    tok.chat_template = template if isinstance(template, str) else None
    try:
        tok._build()
    except TokenizerError as exc:
        raise bad(str(exc)) from None
    return tok


def _gguf_value(reader: Any, key: str) -> Any:
    """A metadata value: str, int/float/bool, or a list of them; None if absent.

    Read from the field's parts, which every gguf release since 0.10 lays out the same way.
    """
    field = reader.fields.get(key)
    if field is None:
        return None
    import gguf

    types = list(field.types)
    if not types:
        return None
    if types[0] == gguf.GGUFValueType.ARRAY:
        if types[-1] == gguf.GGUFValueType.STRING:
            return [bytes(field.parts[i]).decode("utf-8", errors="replace") for i in field.data]
        return [field.parts[i].tolist()[0] for i in field.data]
    if types[0] == gguf.GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")
    return field.parts[field.data[0]].tolist()[0]


def _gguf_id(reader: Any, key: str, n: int) -> int | None:
    value = _gguf_value(reader, key)
    # llama.cpp ignores an id outside the vocabulary (with a warning), so do we.
    return int(value) if isinstance(value, int) and 0 <= value < n else None


# ----------------------------------------------------------------------------------------- HF

def tokenizer_from_hf(directory: Path | str) -> BPETokenizer:
    """The tokenizer of a Hugging Face model directory.

    Reads `tokenizer.json` (model, added tokens, normalizer, pre-tokenizer, post-processor),
    `tokenizer_config.json` (BOS/EOS/PAD tokens, `add_bos_token`, `chat_template`) and
    `chat_template.jinja` (where transformers 5 keeps the template).
    """
    directory = Path(directory)
    path = directory / "tokenizer.json"
    data = _read_json(path, required=True)
    config = _read_json(directory / "tokenizer_config.json", required=False) or {}

    def bad(why: str) -> TokenizerError:
        return TokenizerError(f"{path}: {why}")

    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise bad("not a tokenizer.json file (no \"model\" object)")
    model = data["model"]
    kind = model.get("type", "BPE" if "merges" in model else None)
    if kind != "BPE":
        raise bad(f"model type {kind!r} is not supported; supported: {SUPPORTED_HF}")
    if model.get("byte_fallback"):
        raise bad("a BPE with byte_fallback (SentencePiece-style, '<0x..>' byte tokens) is not "
                  f"supported; supported: {SUPPORTED_HF}")
    for option in ("continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(option):
            raise bad(f"BPE option {option}={model[option]!r} is not supported; supported: {SUPPORTED_HF}")
    if model.get("dropout") not in (None, 0, 0.0):
        raise bad(f"BPE dropout {model['dropout']!r} is not supported (encoding would be random)")

    steps = _hf_pretokenizer(data.get("pre_tokenizer"), bad)
    normalizer = _hf_normalizer(data.get("normalizer"), bad)

    vocab_map = model.get("vocab")
    if not isinstance(vocab_map, dict):
        raise bad("the BPE model has no vocab object")
    added_list = data.get("added_tokens") or []
    size = 1 + max([*vocab_map.values(), *(t.get("id", -1) for t in added_list)], default=-1)
    vocab: list[bytes] = [b""] * size
    for text, i in vocab_map.items():
        raw = byte_level_decode(text)
        vocab[i] = raw if raw is not None else text.encode("utf-8")

    specials: dict[str, int] = {}
    added: dict[str, int] = {}
    options: dict[str, tuple[bool, bool, bool]] = {}
    for entry in added_list:
        content, i = entry.get("content"), entry.get("id")
        if not isinstance(content, str) or not content or not isinstance(i, int):
            raise bad(f"added token {entry!r} has no content or id")
        if entry.get("single_word"):
            raise bad(f"added token {content!r} has single_word=true, which is not supported")
        vocab[i] = content.encode("utf-8")
        (specials if entry.get("special") else added)[content] = i
        options[content] = (bool(entry.get("lstrip")), bool(entry.get("rstrip")),
                            bool(entry.get("normalized", not entry.get("special"))))

    merges = []
    id_of = {text: i for text, i in vocab_map.items()}
    for rank, entry in enumerate(model.get("merges") or []):
        if isinstance(entry, str):
            left, sep, right = entry.partition(" ")
        elif isinstance(entry, list) and len(entry) == 2:
            left, sep, right = entry[0], " ", entry[1]
        else:
            raise bad(f"merge {rank} is {entry!r}; expected \"left right\" or [left, right]")
        a, b = id_of.get(left), id_of.get(right)
        if not sep or a is None or b is None:
            raise bad(f"merge {rank} {entry!r} does not name two tokens of the vocabulary")
        merges.append((a, b))

    unk = model.get("unk_token")
    if unk is not None:
        have = {raw for raw in vocab if len(raw) == 1}
        lacking = [b for b in range(256) if bytes([b]) not in have and (b < 0xC0 or 0xC2 <= b <= 0xF4)]
        if lacking:
            # HF would encode such a byte as the unknown token (fusing runs with fuse_unk).
            raise bad(f"the vocabulary has no token for byte(s) {[hex(b) for b in lacking[:4]]} and "
                      f"maps them to unk_token {unk!r}, which is not supported")

    tok = BPETokenizer()
    tok.vocab = vocab
    tok.merges = merges
    tok.special_tokens = specials
    tok.added_tokens = added
    tok.token_options = {t: o for t, o in options.items() if any(o)}
    tok.pretokenizer = steps
    tok.special_match = "leftmost_longest"
    tok.ignore_merges = bool(model.get("ignore_merges", False))
    tok.normalizer = normalizer

    every = {**{t: i for t, i in vocab_map.items()}, **specials, **added}

    def token_of(name: str) -> int | None:
        value = config.get(name)
        if isinstance(value, dict):
            value = value.get("content")
        return every.get(value) if isinstance(value, str) else None

    tok.bos_id = token_of("bos_token")
    tok.eos_id = token_of("eos_token")
    tok.pad_id = token_of("pad_token")
    post_bos = _hf_post_bos(data.get("post_processor"), every)
    if post_bos is not None:
        tok.bos_id = tok.bos_id if tok.bos_id is not None else post_bos
    add_bos = config.get("add_bos_token")
    tok.add_bos = bool(add_bos) if isinstance(add_bos, bool) else post_bos is not None
    tok.chat_template = _hf_chat_template(directory, config)
    try:
        tok._build()
    except TokenizerError as exc:
        raise bad(str(exc)) from None
    return tok


def _read_json(path: Path, required: bool) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise TokenizerError(f"{path} does not exist; a Hugging Face model directory needs its "
                                 "tokenizer.json") from None
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenizerError(f"cannot read {path}: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TokenizerError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})") from None


def _hf_pretokenizer(spec: Any, bad) -> tuple[str, ...]:
    """tokenizer.json's pre_tokenizer as `Splitter` steps; ByteLevel must come last."""
    if not isinstance(spec, dict):
        raise bad(f"pre_tokenizer {spec!r} is not supported; supported: {SUPPORTED_HF}")
    parts = spec.get("pretokenizers") if spec.get("type") == "Sequence" else [spec]
    if not isinstance(parts, list) or not parts:
        raise bad("pre_tokenizer Sequence is empty")
    steps: list[str] = []
    for n, part in enumerate(parts):
        kind = part.get("type") if isinstance(part, dict) else None
        last = n == len(parts) - 1
        if kind == "ByteLevel":
            if not last:
                raise bad("a ByteLevel pre-tokenizer before other steps is not supported")
            if part.get("add_prefix_space"):
                raise bad("ByteLevel add_prefix_space=true is not supported")
            if part.get("use_regex", True):
                steps.append(GPT2_SPLIT)
        elif kind == "Split":
            pattern = part.get("pattern") or {}
            if part.get("behavior") != "Isolated" or part.get("invert"):
                raise bad(f"Split behavior {part.get('behavior')!r} (invert={part.get('invert')}) "
                          "is not supported; supported: Isolated")
            if "Regex" in pattern:
                steps.append(pattern["Regex"])
            elif "String" in pattern:
                steps.append(re.escape(pattern["String"]))
            else:
                raise bad(f"Split pattern {pattern!r} is not supported")
        elif kind == "Digits":
            steps.append(DIGIT_SPLIT if part.get("individual_digits") else DIGIT_SPLIT + "+")
        else:
            raise bad(f"pre-tokenizer {kind!r} is not supported; supported: ByteLevel, Split "
                      "(Isolated), Digits, in a Sequence ending with ByteLevel")
        if last and kind != "ByteLevel":
            raise bad("the pre-tokenizer has no ByteLevel step; only byte-level BPE is supported")
    try:
        Splitter(steps)
    except PatternError as exc:
        raise bad(f"pre-tokenizer cannot be reproduced exactly: {exc}") from None
    return tuple(steps)


def _hf_normalizer(spec: Any, bad) -> str | None:
    if spec is None:
        return None
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind == "Sequence" and not spec.get("normalizers"):
        return None
    if kind == "Sequence" and len(spec["normalizers"]) == 1:
        return _hf_normalizer(spec["normalizers"][0], bad)
    if kind in NORMALIZERS:
        return kind
    raise bad(f"normalizer {kind!r} is not supported; supported: none, {', '.join(NORMALIZERS)}")


def _hf_post_bos(spec: Any, every: dict[str, int]) -> int | None:
    """The id a TemplateProcessing post-processor puts first (Llama 3's BOS), or None."""
    if not isinstance(spec, dict):
        return None
    if spec.get("type") == "Sequence":
        for part in spec.get("processors") or []:
            found = _hf_post_bos(part, every)
            if found is not None:
                return found
        return None
    if spec.get("type") != "TemplateProcessing":
        return None
    single = spec.get("single") or []
    first = single[0] if single else None
    if isinstance(first, dict) and "SpecialToken" in first:
        return every.get(first["SpecialToken"].get("id"))
    return None


def _hf_chat_template(directory: Path, config: dict) -> str | None:
    jinja = directory / "chat_template.jinja"
    if jinja.is_file():
        try:
            return jinja.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TokenizerError(f"cannot read {jinja}: {exc}") from None
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: [{"name": ..., "template": ...}]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) else None

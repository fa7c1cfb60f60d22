"""Pretrained Llama-family checkpoints: GGUF files and Hugging Face model directories.

`load_gguf(path)` and `load_hf(directory)` return `(Transformer, BPETokenizer)` like
`lm.load`, which calls them for a `.gguf` file or a directory whose `config.json` names a
transformers architecture. What they accept:

- GGUF (llama.cpp's format), architecture `llama`, tensors F32, F16, BF16, Q8_0, Q4_0, Q4_1,
  Q5_0, Q5_1, Q2_K-Q6_K: the file is parsed by the `gguf` package's `GGUFReader` and every
  tensor dequantized to float32 by `gguf.quants.dequantize` (llama.cpp's own Python reader; the
  formats are not re-implemented here). llama.cpp's converter reorders the rows of attn_q and
  attn_k so that each head's rotated pairs (j, j + D/2) sit side by side (its RoPE rotates
  adjacent pairs); the loader puts them back in Hugging Face's rotate-half order, as
  transformers' own GGUF loader does. The config comes from the `llama.*` metadata and the
  tokenizer from `tokenizer.ggml.*` (`lm.tokenizer_import`).
- Hugging Face: `config.json` of `LlamaForCausalLM` or `MistralForCausalLM` (transformers 4.x
  with `rope_theta` at the top, or 5.x with `rope_parameters`), `model.safetensors` or shards
  listed in `model.safetensors.index.json` (F32, F16 or BF16), `tokenizer.json` with
  `tokenizer_config.json` / `chat_template.jinja`, and `generation_config.json` for EOS ids.
  A Mistral sliding window is honoured by capping the context at the window, inside which
  windowed attention and full attention are the same.

Anything else (another architecture, RoPE scaling, biases, a truncated file, a tensor type not
listed) is a `CheckpointError` saying what was found and what is supported.

Memory: the model's parameter buffer is allocated once and each tensor is read, dequantized and
written into its place (transposed to the `[in, out]` layout) a few megabytes at a time, from
the file with `pread` rather than through a memory map, so the file's pages are not counted
against the process either. Peak memory is the float32 weights plus a few MB of chunks, the
tokenizer and the interpreter (figures in docs/model.md).
"""

from __future__ import annotations

import gc
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lm.checkpoint import CheckpointError
from lm.config import ConfigError, ModelConfig
from lm.errors import LMError
from lm.layers import pair_order
from lm.model import Transformer, param_shapes

LLAMA_EXTRA = "pip install 'quantatissu[llama]'"
CHUNK_BYTES = 2**20  # float32 bytes dequantized at a time: small enough to transpose in cache
SUPPORTED_GGUF_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
                        "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")
HF_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM")
SUPPORTED_HF = "LlamaForCausalLM or MistralForCausalLM with safetensors weights (F32, F16, BF16)"


def is_gguf(path: Path) -> bool:
    """Whether `path` is a file that starts with the GGUF magic."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"GGUF"
    except OSError:
        return False


def is_hf_directory(path: Path) -> bool:
    """Whether `path` is a directory whose config.json is a transformers model config."""
    try:
        data = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and ("architectures" in data or "model_type" in data)


# -- GGUF ------------------------------------------------------------------------------------


def load_gguf(path, dtype=np.float32):
    """A GGUF file of the `llama` architecture as `(Transformer, BPETokenizer)`."""
    path = Path(path)
    try:
        import gguf
    except ImportError:
        raise CheckpointError(f"{path}: reading GGUF files needs the gguf package: {LLAMA_EXTRA}") from None
    try:
        reader = gguf.GGUFReader(path, "r")
    except Exception as exc:  # the reader raises ValueError, struct and numpy errors on bad files
        raise CheckpointError(
            f"{path}: not a readable GGUF file ({type(exc).__name__}: {exc}); the file is truncated or "
            "corrupt, download it again"
        ) from None
    config = _gguf_config(reader, path)
    from lm.tokenizer_import import tokenizer_from_gguf

    try:
        tokenizer = tokenizer_from_gguf(reader, str(path))
    except LMError as exc:
        raise CheckpointError(str(exc)) from None
    # What the tensors need from the reader, kept small: the reader itself holds a memory map
    # and Python objects for every metadata entry (docs/model.md has the size for SmolLM2), which
    # are dropped before the weights are allocated.
    names = {
        t.name: _GGUFTensor(t.name, t.tensor_type, tuple(int(n) for n in reversed(t.shape)),
                            int(t.data_offset), int(t.n_bytes))
        for t in reader.tensors
    }
    del reader
    gc.collect()
    size = os.path.getsize(path)
    _check_layer_count(config, names, "blk.", path)
    expected = _gguf_names(config)
    unknown = sorted(set(names) - set(expected))
    if unknown:
        raise CheckpointError(
            f"{path}: tensor {unknown[0]!r} is not part of the plain Llama architecture this loader "
            "supports (no biases, no RoPE frequency factors, no extra layers)"
        )
    missing = sorted(n for n in expected if n not in names and n != "output.weight")
    if missing:
        raise CheckpointError(f"{path}: tensor {missing[0]!r} is missing; the file is incomplete")
    stored = {pname: names[g].shape if kind == "row" else names[g].shape[::-1]
              for g, (pname, kind) in expected.items() if g in names}
    _check_shapes(config, stored, path)
    model = _new_model(config, dtype, path)
    H, KV, D = config.n_heads, config.n_kv_heads, config.head_dim
    q_rows, k_rows = pair_order(H, D), pair_order(KV, D)  # GGUF row r holds HF row order[r]
    with open(path, "rb") as f:
        for gname, (pname, kind) in expected.items():
            if gname not in names:
                continue  # output.weight of a model with tied embeddings
            rows = {"q": q_rows, "k": k_rows}.get(kind)
            _read_gguf_tensor(f, names[gname], model.params[pname], kind != "row", rows, D, path, size, gguf)
    _check_finite(model, path)
    return model, tokenizer


@dataclass(frozen=True)
class _GGUFTensor:
    name: str
    tensor_type: Any  # gguf.GGMLQuantizationType
    shape: tuple[int, ...]  # (rows, columns) as stored, row-major
    data_offset: int  # absolute, in the file
    n_bytes: int


def _gguf_config(reader, path: Path) -> ModelConfig:
    def value(key: str, default: Any = None) -> Any:
        field = reader.fields.get(key)
        if field is None:
            return default
        try:
            return field.contents()
        except Exception:
            raise CheckpointError(f"{path}: metadata {key} is unreadable; the file is corrupt") from None

    arch = value("general.architecture")
    if arch != "llama":
        raise CheckpointError(
            f"{path}: architecture {arch!r} is not supported; supported: 'llama' (Llama, SmolLM, Mistral "
            "without sliding window and other models of the same math)"
        )
    scaling = value("llama.rope.scaling.type")
    if scaling not in (None, "none"):
        raise CheckpointError(f"{path}: RoPE scaling {scaling!r} is not implemented; supported: none")
    if value("llama.expert_count", 0):
        raise CheckpointError(f"{path}: a mixture-of-experts model is not supported; supported: dense Llama")

    def need(key: str) -> int:
        v = value(key)
        if not isinstance(v, int):
            raise CheckpointError(f"{path}: metadata {key} is missing; the file is not a complete llama GGUF")
        return v

    d_model, n_heads = need("llama.embedding_length"), need("llama.attention.head_count")
    n_kv = value("llama.attention.head_count_kv", n_heads)
    head_dim = value("llama.attention.key_length", None) or (d_model // n_heads if n_heads else 0)
    if value("llama.attention.value_length", head_dim) != head_dim:
        raise CheckpointError(f"{path}: keys and values of different sizes are not supported")
    if value("llama.rope.dimension_count", head_dim) != head_dim:
        raise CheckpointError(f"{path}: RoPE on part of each head is not supported; supported: the whole head")
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    vocab = value("llama.vocab_size") or (len(tokens.data) if tokens is not None else None)
    embd = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
    if embd is not None:
        vocab = int(embd.shape[1])  # GGUF shapes are listed innermost first: (C, V)
    try:
        return ModelConfig(
            vocab_size=int(vocab or 0), d_model=d_model, n_layers=need("llama.block_count"), n_heads=n_heads,
            n_kv_heads=int(n_kv), head_dim=int(head_dim), ffn_hidden=need("llama.feed_forward_length"),
            max_seq_len=need("llama.context_length"),
            rope_theta=_f32_decimal(value("llama.rope.freq_base", 10000.0)),
            norm_eps=_f32_decimal(value("llama.attention.layer_norm_rms_epsilon", 1e-5)),
            tie_embeddings=not any(t.name == "output.weight" for t in reader.tensors),
        )
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def _f32_decimal(value) -> float:
    """A GGUF float32 as the shortest decimal that rounds to it (1e-05, not 9.99999974e-06): the
    value its writer meant, so a config survives export to GGUF and back unchanged."""
    return float(str(np.float32(value)))


def _gguf_names(config: ModelConfig) -> dict[str, tuple[str, str]]:
    """GGUF tensor name -> (parameter name, how it maps): "row" copies as it is, "t" transposes
    to [in, out], "q"/"k" transpose and undo llama.cpp's row reordering."""
    names = {"token_embd.weight": ("tok_emb", "row"), "output_norm.weight": ("norm", "row")}
    if not config.tie_embeddings:
        names["output.weight"] = ("lm_head", "t")
    for i in range(config.n_layers):
        b, p = f"blk.{i}.", f"layers.{i}."
        names.update({
            b + "attn_norm.weight": (p + "attn_norm", "row"), b + "ffn_norm.weight": (p + "ffn_norm", "row"),
            b + "attn_q.weight": (p + "wq", "q"), b + "attn_k.weight": (p + "wk", "k"),
            b + "attn_v.weight": (p + "wv", "t"), b + "attn_output.weight": (p + "wo", "t"),
            b + "ffn_gate.weight": (p + "w1", "t"), b + "ffn_up.weight": (p + "w3", "t"),
            b + "ffn_down.weight": (p + "w2", "t"),
        })
    return names


def _read_gguf_tensor(f, t: _GGUFTensor, dest: np.ndarray, transpose: bool, rows: np.ndarray | None,
                      head_dim: int, path: Path, size: int, gguf) -> None:
    """Dequantize GGUF tensor `t` into `dest` a chunk of rows at a time (transposed if asked)."""
    qtype = t.tensor_type
    if qtype.name not in SUPPORTED_GGUF_TYPES:
        raise CheckpointError(
            f"{path}: tensor {t.name} has type {qtype.name}; supported: {', '.join(SUPPORTED_GGUF_TYPES)}"
        )
    shape = t.shape
    want = dest.T.shape if transpose else dest.shape
    if shape != tuple(want) and not (dest.ndim == 1 and shape == (1,) + dest.shape):
        raise CheckpointError(
            f"{path}: tensor {t.name} has shape {shape}, but the metadata makes it {tuple(want)}"
        )
    n_rows, n_cols = (shape[0], shape[1]) if len(shape) == 2 else (1, shape[-1])
    row_bytes = t.n_bytes // n_rows
    if t.data_offset + t.n_bytes > size:
        raise CheckpointError(f"{path}: the file ends inside tensor {t.name}; it is truncated, download it again")
    step = max(1, CHUNK_BYTES // (4 * n_cols))
    if rows is not None:
        # Whole heads per chunk: llama.cpp reorders rows within a head, so a chunk's rows then
        # land on the same range of columns, in another order.
        step = max(head_dim, step // head_dim * head_dim)
    buf = np.empty(min(step, n_rows) * row_bytes, dtype=np.uint8)
    out2 = dest.reshape(1, -1) if dest.ndim == 1 else dest
    for r0 in range(0, n_rows, step):
        r1 = min(n_rows, r0 + step)
        raw = buf[: (r1 - r0) * row_bytes]
        got = os.preadv(f.fileno(), [raw], t.data_offset + r0 * row_bytes)
        if got != raw.size:
            raise CheckpointError(f"{path}: the file ends inside tensor {t.name}; it is truncated, download it again")
        values = gguf.quants.dequantize(raw.reshape(r1 - r0, row_bytes), qtype).reshape(r1 - r0, n_cols)
        if not transpose:
            out2[r0:r1] = values
        elif rows is None:
            out2[:, r0:r1] = values.T
        else:
            out2[:, r0:r1] = values[np.argsort(rows[r0:r1])].T


# -- Hugging Face ------------------------------------------------------------------------------


def load_hf(directory, dtype=np.float32):
    """A Hugging Face model directory (Llama or Mistral) as `(Transformer, BPETokenizer)`."""
    directory = Path(directory)
    data = _read_json(directory / "config.json")
    config = _hf_config(data, directory / "config.json")
    from lm.tokenizer_import import tokenizer_from_hf

    try:
        tokenizer = tokenizer_from_hf(directory)
    except LMError as exc:
        raise CheckpointError(str(exc)) from None
    _apply_generation_config(tokenizer, directory)
    files = _safetensors_files(directory)
    headers = {file: _safetensors_header(file) for file in files}
    where = {name: file for file, header in headers.items() for name in header if name != "__metadata__"}
    _check_layer_count(config, where, "model.layers.", directory)
    expected = _hf_names(config)
    if config.tie_embeddings:
        where.pop("lm_head.weight", None)  # some tied checkpoints store the copy too
    for name in list(where):
        if name.endswith("rotary_emb.inv_freq"):  # a buffer older transformers saved; recomputed
            del where[name]
    unknown = sorted(set(where) - set(expected))
    if unknown:
        raise CheckpointError(
            f"{where[unknown[0]]}: tensor {unknown[0]!r} is not part of the plain Llama architecture this "
            "loader supports (no biases, no extra layers)"
        )
    missing = sorted(set(expected) - set(where))
    if missing:
        raise CheckpointError(f"{directory}: tensor {missing[0]!r} is missing from the safetensors files")
    stored = {pname: headers[where[name]][name]["_shape"][:: -1 if transpose else 1]
              for name, (pname, transpose) in expected.items()}
    _check_shapes(config, stored, directory)
    model = _new_model(config, dtype, directory)
    for name, (pname, transpose) in expected.items():
        file = where[name]
        _read_safetensor(file, headers[file], name, model.params[pname], transpose)
    _check_finite(model, directory)
    return model, tokenizer


def _read_json(file: Path) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{file} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{file} is unreadable or corrupt: {exc}") from None


def _hf_config(data: Any, file: Path) -> ModelConfig:
    if not isinstance(data, dict):
        raise CheckpointError(f"{file}: expected a JSON object")
    archs = data.get("architectures")
    if not archs:  # a config without `architectures` still names its model type
        archs = [{"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM"}.get(data.get("model_type"),
                                                                                    data.get("model_type"))]
    arch = archs[0] if isinstance(archs, list) and archs else archs
    if arch not in HF_ARCHITECTURES:
        raise CheckpointError(f"{file}: architecture {arch!r} is not supported; supported: {SUPPORTED_HF}")

    def unsupported(what: str, supported: str) -> CheckpointError:
        return CheckpointError(f"{file}: {what} is not implemented; supported: {supported}")

    # transformers 5 keeps theta and the scaling kind in rope_parameters, 4.x has rope_theta and
    # rope_scaling at the top.
    rope = data.get("rope_parameters") or {}
    scaling = data.get("rope_scaling") or {}
    if not isinstance(rope, dict) or not isinstance(scaling, dict):
        raise CheckpointError(f"{file}: rope_parameters / rope_scaling must be JSON objects")
    theta = rope.get("rope_theta", data.get("rope_theta", 10000.0))
    for kind in (rope.get("rope_type"), scaling.get("rope_type") or scaling.get("type")):
        if kind not in (None, "default"):
            raise unsupported(f"RoPE scaling {kind!r}", "plain RoPE (rope_type 'default')")
    if data.get("partial_rotary_factor", 1.0) != 1.0:
        raise unsupported("partial rotary embedding", "RoPE on the whole head")
    if data.get("hidden_act", "silu") != "silu":
        raise unsupported(f"activation {data.get('hidden_act')!r}", "silu (SwiGLU)")
    for flag in ("attention_bias", "mlp_bias"):
        if data.get(flag):
            raise unsupported(f"{flag}", "no biases")
    try:
        n_heads = int(data["num_attention_heads"])
        d_model = int(data["hidden_size"])
        context = int(data.get("max_position_embeddings", 2048))
        window = data.get("sliding_window")
        if isinstance(window, int) and 0 < window < context:
            context = window  # within the window, windowed and full attention are the same
        return ModelConfig(
            vocab_size=int(data["vocab_size"]), d_model=d_model, n_layers=int(data["num_hidden_layers"]),
            n_heads=n_heads, n_kv_heads=int(data.get("num_key_value_heads") or n_heads),
            head_dim=int(data.get("head_dim") or d_model // n_heads), ffn_hidden=int(data["intermediate_size"]),
            max_seq_len=context, rope_theta=float(theta), norm_eps=float(data.get("rms_norm_eps", 1e-6)),
            tie_embeddings=bool(data.get("tie_word_embeddings", False)),
        )
    except KeyError as exc:
        raise CheckpointError(f"{file}: missing {exc.args[0]!r}; not a complete {arch} config") from None
    except (TypeError, ValueError, ConfigError) as exc:
        raise CheckpointError(f"{file}: {exc}") from None


def _apply_generation_config(tokenizer, directory: Path) -> None:
    """EOS ids from generation_config.json: the first is EOS unless the tokenizer has one; a
    second becomes the end-of-turn id unless the tokenizer has one (Llama 3 lists both)."""
    file = directory / "generation_config.json"
    if not file.is_file():
        return
    data = _read_json(file)
    eos = data.get("eos_token_id") if isinstance(data, dict) else None
    ids = [eos] if isinstance(eos, int) else [i for i in eos if isinstance(i, int)] if isinstance(eos, list) else []
    ids = [i for i in ids if 0 <= i < tokenizer.vocab_size]
    if not ids:
        return
    if tokenizer.eos_id is None:
        tokenizer.eos_id = ids[0]
    for i in ids:
        if i != tokenizer.eos_id and tokenizer.end_of_turn_id is None:
            tokenizer.end_of_turn_id = i


def _hf_names(config: ModelConfig) -> dict[str, tuple[str, bool]]:
    """HF tensor name -> (parameter name, transpose to [in, out])."""
    names = {"model.embed_tokens.weight": ("tok_emb", False), "model.norm.weight": ("norm", False)}
    if not config.tie_embeddings:
        names["lm_head.weight"] = ("lm_head", True)
    for i in range(config.n_layers):
        h, p = f"model.layers.{i}.", f"layers.{i}."
        names.update({
            h + "input_layernorm.weight": (p + "attn_norm", False),
            h + "post_attention_layernorm.weight": (p + "ffn_norm", False),
            h + "self_attn.q_proj.weight": (p + "wq", True), h + "self_attn.k_proj.weight": (p + "wk", True),
            h + "self_attn.v_proj.weight": (p + "wv", True), h + "self_attn.o_proj.weight": (p + "wo", True),
            h + "mlp.gate_proj.weight": (p + "w1", True), h + "mlp.up_proj.weight": (p + "w3", True),
            h + "mlp.down_proj.weight": (p + "w2", True),
        })
    return names


def _safetensors_files(directory: Path) -> list[Path]:
    single = directory / "model.safetensors"
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        data = _read_json(index)
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{index}: no weight_map; the index is corrupt")
        files = []
        for name in dict.fromkeys(weight_map.values()):
            file = directory / str(name)
            if not file.is_file():
                raise CheckpointError(f"{index} lists {name}, which is missing; download the model again")
            files.append(file)
        return files
    if single.is_file():
        return [single]
    if any(directory.glob("*.bin")) or any(directory.glob("*.pth")):
        raise CheckpointError(f"{directory}: only PyTorch pickle weights (.bin/.pth); supported: {SUPPORTED_HF}")
    raise CheckpointError(f"{directory}: no model.safetensors or model.safetensors.index.json")


# safetensors dtypes this loader reads. NumPy has no bfloat16, so the safetensors package cannot
# hand BF16 tensors to NumPy; the file's layout (a JSON header giving each tensor's dtype, shape
# and byte range) is read here and rows converted as they are read.
_ST_DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2")}


def _safetensors_header(file: Path) -> dict[str, Any]:
    size = file.stat().st_size
    try:
        with open(file, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 2 <= n <= min(size - 8, 100 * 2**20):
                raise ValueError("bad header length")
            header = json.loads(f.read(n).decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{file}: not a safetensors file or truncated ({exc}); download it again") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{file}: not a safetensors file (its header is not a JSON object)")
    base = 8 + n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, end = (int(v) for v in info["data_offsets"])
            shape = tuple(int(d) for d in info["shape"])
            dt = info["dtype"]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{file}: entry {name!r} of its header is malformed") from None
        if base + end > size:
            raise CheckpointError(f"{file}: the file ends inside tensor {name}; it is truncated, download it again")
        info["_begin"], info["_shape"] = base + begin, shape
        if dt in _ST_DTYPES and end - begin != int(np.prod(shape, dtype=np.int64)) * _ST_DTYPES[dt].itemsize:
            raise CheckpointError(f"{file}: tensor {name} has {end - begin} bytes for shape {shape}; the file is corrupt")
    return header


def _read_safetensor(file: Path, header: dict, name: str, dest: np.ndarray, transpose: bool) -> None:
    info = header[name]
    dt = info["dtype"]
    if dt not in _ST_DTYPES:
        raise CheckpointError(f"{file}: tensor {name} has dtype {dt}; supported: {', '.join(_ST_DTYPES)}")
    shape = info["_shape"]
    want = dest.T.shape if transpose else dest.shape
    if shape != tuple(want):
        raise CheckpointError(f"{file}: tensor {name} has shape {shape}, but config.json makes it {tuple(want)}")
    n_rows = shape[0] if len(shape) == 2 else 1
    n_cols = shape[-1]
    src_dt = _ST_DTYPES[dt]
    step = max(1, CHUNK_BYTES // (4 * n_cols))
    buf = np.empty(min(step, n_rows) * n_cols, dtype=src_dt)
    out2 = dest.reshape(1, -1) if dest.ndim == 1 else dest
    convert: Callable[[np.ndarray], np.ndarray]
    if dt == "BF16":
        def convert(raw):  # bfloat16 is the top half of a float32
            return (raw.astype(np.uint32) << 16).view(np.float32)
    else:
        def convert(raw):
            return raw
    with open(file, "rb") as f:
        for r0 in range(0, n_rows, step):
            r1 = min(n_rows, r0 + step)
            raw = buf[: (r1 - r0) * n_cols]
            if os.preadv(f.fileno(), [raw], info["_begin"] + r0 * n_cols * src_dt.itemsize) != raw.nbytes:
                raise CheckpointError(f"{file}: the file ends inside tensor {name}; it is truncated")
            values = convert(raw).reshape(r1 - r0, n_cols)
            if transpose:
                out2[:, r0:r1] = values.T
            else:
                out2[r0:r1] = values


# -- shared ------------------------------------------------------------------------------------


# RoPE tables are built for every position of the context; beyond this a config is taken for
# corrupt rather than allocated.
MAX_CONTEXT = 1 << 20


def _check_layer_count(config: ModelConfig, names, prefix: str, where: Path) -> None:
    """The config's layer count against the layers the file's tensor names number."""
    found = {name[len(prefix):].split(".", 1)[0] for name in names if name.startswith(prefix)}
    if config.n_layers != len(found):
        raise CheckpointError(
            f"{where}: the config has {config.n_layers} layers but the weights {len(found)}; "
            "the config and the weights do not belong together"
        )


def _check_shapes(config: ModelConfig, stored: dict[str, tuple[int, ...]], where: Path) -> None:
    """The tensors' shapes in the file (in [in, out] order) against what the config makes them,
    before anything is allocated: a config with absurd sizes fails here, not in the allocator."""
    for name, shape in param_shapes(config).items():
        got = stored.get(name)
        if got is not None and tuple(got) != tuple(shape) and not (len(shape) == 1 and tuple(got) == (1,) + shape):
            raise CheckpointError(
                f"{where}: tensor for {name} has shape {tuple(got)}, but the config makes it {tuple(shape)}; "
                "the config and the weights do not belong together"
            )
    if config.max_seq_len > MAX_CONTEXT:
        raise CheckpointError(
            f"{where}: a context of {config.max_seq_len} positions; supported: up to {MAX_CONTEXT}"
        )


def _new_model(config: ModelConfig, dtype, where: Path) -> Transformer:
    try:
        return Transformer(config, dtype=dtype, init=False)
    except MemoryError:
        raise CheckpointError(
            f"{where}: the model needs {4 * _n_params(config) / 2**30:.1f} GiB of float32 weights, more "
            "memory than this machine has"
        ) from None


def _n_params(config: ModelConfig) -> int:
    C, F, V = config.d_model, config.ffn_hidden, config.vocab_size
    QD, KD = config.n_heads * config.head_dim, config.n_kv_heads * config.head_dim
    per_layer = 2 * C + C * QD + 2 * C * KD + QD * C + 3 * C * F
    return V * C * (1 if config.tie_embeddings else 2) + config.n_layers * per_layer + C


def _check_finite(model: Transformer, where: Path) -> None:
    for name, p in model.params.items():
        if not np.isfinite(p).all():
            raise CheckpointError(f"{where}: {name} contains NaN or infinite values; the file is corrupt")

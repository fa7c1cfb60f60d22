"""Pretrained Llama-family checkpoints through `lm.load`: GGUF files and Hugging Face directories.

Against `fixtures/pretrained/` (made by transformers, see `make_pretrained_fixtures.py`): logits,
greedy tokens through the KV cache, `lm.generate` and `tiss generate`. GGUF files with every
supported tensor type are written here by `gguf`'s writer and the loaded weights compared with
`gguf.quants.dequantize` on the same bytes. Then every unsupported input is a one-line error.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import lm
from lm.checkpoint import CheckpointError
from lm.generate import generate
from lm.inference import InferenceModel
from runtime import cli

gguf = pytest.importorskip("gguf")

FIX = Path(__file__).resolve().parent / "fixtures" / "pretrained"
REF = json.loads((FIX / "reference.json").read_text(encoding="utf-8"))
LOGITS = np.load(FIX / "reference_logits.npz")
IDS = REF["input_ids"]
# (path, what it is): every fixture has transformers' logits and greedy tokens in REF.
FIXTURES = ["hf_llama_tied", "hf_mistral_untied", "llama_tied.f32.gguf", "mistral_untied.q8_0.gguf"]


def rel_err(got, want) -> float:
    return float(np.abs(np.asarray(got, np.float64) - want).max() / np.abs(want).max())


@pytest.fixture(scope="module", params=FIXTURES)
def loaded(request):
    model, tok = lm.load(FIX / request.param)
    return request.param, model, tok


def test_logits_equal_transformers(loaded):
    # Float weights and the Q8_0 file alike: transformers' reference for the GGUF files is
    # computed on the weights it dequantized from the same file, so the bound is float32 rounding.
    name, model, _ = loaded
    got = model.forward(np.array([IDS]))[0]
    assert rel_err(got, LOGITS[name]) <= 1e-4


def test_greedy_tokens_through_the_kv_cache_equal_transformers(loaded):
    name, model, _ = loaded
    infer = InferenceModel(model)
    cache = infer.new_cache()
    logits = infer.forward(np.array([IDS]), cache)[0]
    assert rel_err(logits, LOGITS[name]) <= 1e-4
    tokens = [int(np.argmax(logits[-1]))]
    while len(tokens) < len(REF[name]["greedy"]):
        tokens.append(int(np.argmax(infer.step(tokens[-1], cache))))
    assert tokens == REF[name]["greedy"]


def test_generate_and_the_tokenizer_agree(loaded):
    name, model, tok = loaded
    assert tok.encode(REF["prompt"]) == IDS
    result = generate(model, tok, REF["prompt"], len(REF[name]["greedy"]), temperature=0)
    assert list(result.token_ids) == REF[name]["greedy"]


@pytest.mark.parametrize("name", ["hf_llama_tied", "mistral_untied.q8_0.gguf"])
def test_tiss_generate_with_a_pretrained_checkpoint(name, capsys):
    _, tok = lm.load(FIX / name)
    greedy = REF[name]["greedy"]
    code = cli.main(["generate", "--checkpoint", str(FIX / name), "--prompt", REF["prompt"],
                     "--max-new-tokens", str(len(greedy)), "--temperature", "0"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out == tok.decode(greedy) + "\n"


def test_quantized_file_is_close_to_its_float_source():
    # Q8_0 against the bfloat16 model it was quantized from: the quantization error, not ours.
    # The fixture's random weights are large (greedy must not be a coin toss), which amplifies
    # Q8_0's rounding of each weight (up to 1/254 of its block's largest): measured 5.3e-2.
    model, _ = lm.load(FIX / "mistral_untied.q8_0.gguf")
    got = model.forward(np.array([IDS]))[0]
    assert rel_err(got, LOGITS["hf_mistral_untied"]) <= 1e-1


def test_config_and_tokenizer_metadata():
    llama, tok = lm.load(FIX / "hf_llama_tied")  # transformers 5 config form (rope_parameters)
    c = llama.config
    assert (c.n_heads, c.n_kv_heads, c.head_dim, c.rope_theta, c.tie_embeddings) == (4, 2, 8, 500000.0, True)
    assert "lm_head" not in llama.params
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    assert (tok.eos_id, tok.end_of_turn_id) == (0, 2)  # generation_config.json lists [2, 0]
    mistral, _ = lm.load(FIX / "hf_mistral_untied")  # transformers 4.x form, bfloat16 shards
    assert (mistral.config.rope_theta, mistral.config.norm_eps, mistral.config.tie_embeddings) == (10000.0, 1e-6, False)
    g, gtok = lm.load(FIX / "llama_tied.f32.gguf")
    assert g.config.norm_eps == pytest.approx(c.norm_eps, rel=1e-6)  # GGUF stores it as float32
    assert g.config == dataclasses.replace(c, norm_eps=g.config.norm_eps)
    assert gtok.eos_id == 2 and gtok.chat_template
    for name in g.params:
        np.testing.assert_array_equal(g.params[name], llama.params[name])  # same weights, both formats


# -- every tensor type, written by gguf's writer here ----------------------------------------

QUANTIZABLE = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"]
K_QUANTS = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]  # gguf-py cannot quantize these: raw bytes
SMALL = dict(C=256, H=4, KV=2, F=256, V=320)  # every row a whole number of 256-value blocks


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """The inverse of llama.cpp's converter's q/k row reordering, written out for the test."""
    D = w.shape[0] // n_head
    return w.reshape(n_head, D // 2, 2, w.shape[1]).swapaxes(1, 2).reshape(w.shape)


def _random_blocks(qtype, rows: int, cols: int, rng) -> np.ndarray:
    """Random raw bytes for `rows` rows of a K-quant, redrawn where a float16 scale came out
    NaN or infinite (the format has no such weights)."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(rows, cols // block * size), dtype=np.uint8)
    for _ in range(100):
        with np.errstate(invalid="ignore", over="ignore"):  # the NaN scales being weeded out
            bad = ~np.isfinite(gguf.quants.dequantize(raw, qtype)).all(axis=1)
        if not bad.any():
            return raw
        raw[bad] = rng.integers(0, 256, size=(int(bad.sum()), raw.shape[1]), dtype=np.uint8)
    raise AssertionError("could not draw finite blocks")


def _write_gguf(path: Path, type_name: str, seed: int = 0, arch: str = "llama", extra: dict | None = None):
    """A one-layer llama GGUF whose matrices are all `type_name`; returns the expected float32
    weights in Hugging Face layout: gguf's own dequantization of the bytes written."""
    rng = np.random.default_rng(seed)
    C, H, KV, F, V = (SMALL[k] for k in ("C", "H", "KV", "F", "V"))
    D = C // H
    qtype = getattr(gguf.GGMLQuantizationType, type_name)
    src = gguf.GGUFReader(FIX / "llama_tied.f32.gguf")
    w = gguf.GGUFWriter(str(path), arch=arch)
    w.add_block_count(1)
    w.add_context_length(32)
    w.add_embedding_length(C)
    w.add_feed_forward_length(F)
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    for key, value in (extra or {}).items():
        getattr(w, key)(value)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list([bytes(p) for p in (src.fields["tokenizer.ggml.tokens"].parts[i]
                                          for i in src.fields["tokenizer.ggml.tokens"].data)])
    w.add_token_types([int(t) for t in src.fields["tokenizer.ggml.token_type"].contents()])
    w.add_token_merges(src.fields["tokenizer.ggml.merges"].contents())
    w.add_eos_token_id(2)
    shapes = {"token_embd.weight": (V, C), "output.weight": (V, C), "blk.0.attn_q.weight": (H * D, C),
              "blk.0.attn_k.weight": (KV * D, C), "blk.0.attn_v.weight": (KV * D, C),
              "blk.0.attn_output.weight": (C, H * D), "blk.0.ffn_gate.weight": (F, C),
              "blk.0.ffn_up.weight": (F, C), "blk.0.ffn_down.weight": (C, F)}
    expected = {}
    for name, shape in shapes.items():
        if type_name in K_QUANTS or type_name not in QUANTIZABLE:
            raw = _random_blocks(qtype, *shape, rng)
        else:
            raw = gguf.quants.quantize(rng.normal(0, 0.5, size=shape).astype(np.float32), qtype)
        w.add_tensor(name, raw, raw_dtype=qtype)
        values = gguf.quants.dequantize(raw, qtype).reshape(shape).astype(np.float32)
        if name.endswith("attn_q.weight"):
            values = _unpermute(values, H)
        elif name.endswith("attn_k.weight"):
            values = _unpermute(values, KV)
        expected[name] = values
    for name in ("blk.0.attn_norm.weight", "blk.0.ffn_norm.weight", "output_norm.weight"):
        expected[name] = (1 + 0.1 * rng.normal(size=C)).astype(np.float32)
        w.add_tensor(name, expected[name])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return expected


PARAM_OF = {"token_embd.weight": ("tok_emb", False), "output.weight": ("lm_head", True),
            "blk.0.attn_q.weight": ("layers.0.wq", True), "blk.0.attn_k.weight": ("layers.0.wk", True),
            "blk.0.attn_v.weight": ("layers.0.wv", True), "blk.0.attn_output.weight": ("layers.0.wo", True),
            "blk.0.ffn_gate.weight": ("layers.0.w1", True), "blk.0.ffn_up.weight": ("layers.0.w3", True),
            "blk.0.ffn_down.weight": ("layers.0.w2", True), "blk.0.attn_norm.weight": ("layers.0.attn_norm", False),
            "blk.0.ffn_norm.weight": ("layers.0.ffn_norm", False), "output_norm.weight": ("norm", False)}


@pytest.mark.parametrize("type_name", QUANTIZABLE + K_QUANTS)
def test_every_tensor_type_dequantizes_as_gguf_does(type_name, tmp_path):
    path = tmp_path / f"m.{type_name}.gguf"
    expected = _write_gguf(path, type_name, seed=len(type_name))
    model, _ = lm.load(path)
    for gname, (pname, transpose) in PARAM_OF.items():
        want = expected[gname].T if transpose else expected[gname]
        np.testing.assert_array_equal(model.params[pname], want, err_msg=f"{type_name} {gname}")


def test_the_q_k_reordering_is_undone():
    # An independent check of the row order: decoding with the loaded model equals the full
    # forward only if q and k rows are in the order RoPE expects, which the logits test above
    # also shows; here the GGUF and the HF copies of one model hold identical parameters.
    hf, _ = lm.load(FIX / "hf_llama_tied")
    g, _ = lm.load(FIX / "llama_tied.f32.gguf")
    np.testing.assert_array_equal(g.params["layers.1.wq"], hf.params["layers.1.wq"])
    np.testing.assert_array_equal(g.params["layers.1.wk"], hf.params["layers.1.wk"])


# -- what is refused ----------------------------------------------------------------------------


def _one_line(exc) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_truncated_gguf(tmp_path):
    data = (FIX / "llama_tied.f32.gguf").read_bytes()
    for cut in (len(data) - 1000, 100):
        bad = tmp_path / f"cut{cut}.gguf"
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointError) as exc:
            lm.load(bad)
        assert "truncated" in _one_line(exc)


def test_other_architectures_and_rope_scaling_in_gguf(tmp_path):
    _write_gguf(tmp_path / "qwen.gguf", "F32", arch="qwen2")
    with pytest.raises(CheckpointError) as exc:
        lm.load(tmp_path / "qwen.gguf")
    assert "architecture 'qwen2' is not supported; supported: 'llama'" in _one_line(exc)
    _write_gguf(tmp_path / "yarn.gguf", "F32", extra={"add_rope_scaling_type": gguf.RopeScalingType.YARN})
    with pytest.raises(CheckpointError) as exc:
        lm.load(tmp_path / "yarn.gguf")
    assert "RoPE scaling 'yarn' is not implemented" in _one_line(exc)


def test_unsupported_tensor_type_in_gguf(tmp_path):
    _write_gguf(tmp_path / "iq4.gguf", "IQ4_NL")  # an i-quant: gguf reads it, the loader refuses it
    with pytest.raises(CheckpointError) as exc:
        lm.load(tmp_path / "iq4.gguf")
    assert "has type IQ4_NL; supported: F32, F16, BF16, Q8_0" in _one_line(exc)


def _hf_copy(tmp_path, edit=None, name="hf_llama_tied") -> Path:
    d = tmp_path / name
    shutil.copytree(FIX / name, d)
    if edit is not None:
        config = json.loads((d / "config.json").read_text())
        edit(config)
        (d / "config.json").write_text(json.dumps(config))
    return d


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(architectures=["Qwen2ForCausalLM"], model_type="qwen2"), "architecture 'Qwen2ForCausalLM' is not supported"),
    (lambda c: c.update(rope_parameters={"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0}), "RoPE scaling 'llama3'"),
    (lambda c: c.update(rope_scaling={"type": "linear", "factor": 2.0}), "RoPE scaling 'linear'"),
    (lambda c: c.update(attention_bias=True), "attention_bias is not implemented"),
    (lambda c: c.update(hidden_act="gelu"), "activation 'gelu'"),
    (lambda c: c.pop("num_hidden_layers"), "missing 'num_hidden_layers'"),
    # sizes that do not match the weights fail before anything is allocated for them
    (lambda c: c.update(num_hidden_layers=10**12), "the config has 1000000000000 layers but the weights 2"),
    (lambda c: c.update(hidden_size=10**9), "but the config makes it"),
    (lambda c: c.update(max_position_embeddings=10**12), "supported: up to 1048576"),
])
def test_unsupported_hf_configs(tmp_path, edit, message):
    with pytest.raises(CheckpointError) as exc:
        lm.load(_hf_copy(tmp_path, edit))
    assert message in _one_line(exc)


def test_a_config_without_architectures_goes_by_model_type(tmp_path):
    model, _ = lm.load(_hf_copy(tmp_path, lambda c: c.pop("architectures")))
    assert model.config.n_kv_heads == 2


def test_mistral_sliding_window_caps_the_context(tmp_path):
    d = _hf_copy(tmp_path, lambda c: c.update(sliding_window=16), name="hf_mistral_untied")
    model, _ = lm.load(d)
    assert model.config.max_seq_len == 16


def test_truncated_or_missing_safetensors(tmp_path):
    d = _hf_copy(tmp_path)
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as exc:
        lm.load(d)
    assert "truncated" in _one_line(exc)
    d = _hf_copy(tmp_path, name="hf_mistral_untied")
    (d / "model-00002-of-00004.safetensors").unlink()
    with pytest.raises(CheckpointError) as exc:
        lm.load(d)
    assert "model-00002-of-00004.safetensors, which is missing" in _one_line(exc)


def test_missing_gguf_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "gguf", None)  # `import gguf` now raises ImportError
    with pytest.raises(CheckpointError) as exc:
        lm.load(FIX / "llama_tied.f32.gguf")
    assert "pip install 'quantatissu[llama]'" in _one_line(exc)


def test_cli_error_is_one_line_without_traceback(tmp_path, capsys):
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 10)
    code = cli.main(["generate", "--checkpoint", str(bad), "--prompt", "hi"])
    out, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err and "truncated or corrupt" in err
    assert len(err.strip().splitlines()) == 1


# -- the live peer, when it is installed (never in CI) ------------------------------------------


def _transformers():
    torch = pytest.importorskip("torch")
    try:
        from transformers import AutoModelForCausalLM
    except Exception:  # not installed, or installed and broken: this check is extra
        pytest.skip("transformers is not importable")
    return torch, AutoModelForCausalLM


@pytest.mark.parametrize("name", FIXTURES)
def test_committed_references_equal_live_transformers(name):
    torch, Auto = _transformers()
    kw = dict(dtype=torch.float32, attn_implementation="eager")
    path = FIX / name
    peer = Auto.from_pretrained(str(FIX), gguf_file=name, **kw) if name.endswith(".gguf") else Auto.from_pretrained(str(path), **kw)
    with torch.no_grad():
        live = peer(torch.tensor([IDS])).logits[0].numpy()
    assert rel_err(live, LOGITS[name]) <= 1e-5
    model, _ = lm.load(path)
    assert rel_err(model.forward(np.array([IDS]))[0], live) <= 1e-4


def test_smollm2_logits_equal_transformers():
    # Opt-in: the real model (TISS_SMOLLM2_GGUF names its GGUF file), loaded by both from the file.
    import os

    gguf_file = os.environ.get("TISS_SMOLLM2_GGUF")
    if not gguf_file or not Path(gguf_file).is_file():
        pytest.skip("set TISS_SMOLLM2_GGUF to the SmolLM2 GGUF file")
    torch, Auto = _transformers()
    path = Path(gguf_file)
    model, tok = lm.load(path)
    ids = tok.encode("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
                     allowed_special="all")
    infer = InferenceModel(model)
    ours = infer.forward(np.array([ids]), infer.new_cache(max_len=64))[0]
    peer = Auto.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32, attn_implementation="eager")
    with torch.no_grad():
        live = peer(torch.tensor([ids])).logits[0].numpy()
    assert rel_err(ours, live) <= 1e-4
    assert np.array_equal(ours.argmax(-1), live.argmax(-1))

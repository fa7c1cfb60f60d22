"""Tiny instruct models for the chat tests: a ChatML template, special tokens, and weights whose
answer is known in advance, so every CLI path can be tested without a real model.

The weights make the next token depend on the current token only: every block's output
projections (`o_proj`, `down_proj`) are zero, so the residual stream at a position is the
current token's embedding; each scripted token has an embedding along a dimension of its own,
and the output head maps that dimension to the token that must follow. Every other token
embeds along dimension 0, which leads to the answer's first token. So after any prompt ending in
"<|im_start|>assistant\\n" the model says `answer` and then its end token (or, with
`loop=True`, says the answer again and again, for tests that must interrupt it).

The model is written as a Hugging Face `LlamaForCausalLM` directory (config.json,
model.safetensors, tokenizer.json, tokenizer_config.json with the chat template): what
`lm.load` reads for a downloaded model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lm.tokenizer import BPETokenizer, byte_level_encode

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] "
    "+ '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
TEXTS = [
    "What is the capital of France? The capital of France is Paris. " * 4,
    "You are terse. Answer in one word. What is 2 + 2? It is 4. " * 4,
    "user assistant system hello there, how are you today? " * 4,
]
LOGIT = 10.0  # times sqrt(d_model) after RMSNorm: the scripted token wins by a mile


def write_tokenizer(directory: Path, *, template: str | None = CHATML, eos: str = "<|endoftext|>") -> None:
    """tokenizer.json (byte-level BPE trained on TEXTS, special tokens first) and
    tokenizer_config.json (eos token, chat template) in `directory`."""
    trained = BPETokenizer().train(TEXTS, 256 + 60)
    n_special = len(SPECIALS)
    n_plain = 256 + len(trained.merges)  # bytes and merges; the trained special tokens are not used
    vocab = {byte_level_encode(trained.token_bytes(i)): i + n_special for i in range(n_plain)}
    merges = [
        f"{byte_level_encode(trained.token_bytes(a))} {byte_level_encode(trained.token_bytes(b))}"
        for a, b in trained.merges
    ]
    data = {
        "version": "1.0",
        "added_tokens": [
            {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for i, t in enumerate(SPECIALS)
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "vocab": vocab, "merges": merges},
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    config = {"bos_token": None, "eos_token": eos, "pad_token": None, "add_bos_token": False,
              "tokenizer_class": "GPT2Tokenizer"}
    if template is not None:
        config["chat_template"] = template
    (directory / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")


def load_tokenizer(directory: Path):
    from lm.tokenizer_import import tokenizer_from_hf

    return tokenizer_from_hf(directory)


def scripted_head(tok, answer: str, end: str, loop: bool, d_model: int) -> tuple[np.ndarray, np.ndarray]:
    """Embedding (V, d) and output head (V, d), in HF layout, that make the model say `answer`."""
    ids = tok.encode(answer)
    if len(set(ids)) != len(ids):
        raise ValueError(f"the answer {answer!r} repeats a token ({ids}); pick another")
    if len(ids) + 1 >= d_model:
        raise ValueError("the answer has more tokens than the model has dimensions")
    last_of_prompt = tok.encode("<|im_start|>assistant\n", allowed_special="all")[-1]
    if last_of_prompt in ids:
        raise ValueError("the answer must not contain the prompt's last token")
    vocab = tok.vocab_size
    emb = np.zeros((vocab, d_model), dtype=np.float32)
    head = np.zeros((vocab, d_model), dtype=np.float32)
    emb[:, 0] = 1.0  # every unscripted token: dimension 0, which says the first answer token
    head[ids[0], 0] = LOGIT
    following = ids[1:] + [ids[0] if loop else tok.token_id(end)]
    for k, (token, after) in enumerate(zip(ids, following), start=1):
        emb[token] = 0.0
        emb[token, k] = 1.0
        head[after, k] = LOGIT
    return emb, head


def write_chat_model(
    directory: Path,
    *,
    answer: str = "The capital of France is Paris.",
    end: str = "<|im_end|>",
    loop: bool = False,
    template: str | None = CHATML,
    ctx: int = 256,
) -> Path:
    """A Hugging Face Llama directory whose model answers `answer` then `end` (see above)."""
    from safetensors.numpy import save_file

    write_tokenizer(directory, template=template)
    tok = load_tokenizer(directory)
    d, heads, kv_heads, layers, ffn = 32, 4, 2, 2, 48
    head_dim = d // heads
    emb, head = scripted_head(tok, answer, end, loop, d)
    rng = np.random.default_rng(0)
    tensors = {"model.embed_tokens.weight": emb, "lm_head.weight": head, "model.norm.weight": np.ones(d, np.float32)}
    for i in range(layers):
        p = f"model.layers.{i}."
        tensors.update({
            p + "input_layernorm.weight": np.ones(d, np.float32),
            p + "post_attention_layernorm.weight": np.ones(d, np.float32),
            p + "self_attn.q_proj.weight": rng.normal(0, 0.2, (heads * head_dim, d)).astype(np.float32),
            p + "self_attn.k_proj.weight": rng.normal(0, 0.2, (kv_heads * head_dim, d)).astype(np.float32),
            p + "self_attn.v_proj.weight": rng.normal(0, 0.2, (kv_heads * head_dim, d)).astype(np.float32),
            p + "self_attn.o_proj.weight": np.zeros((d, heads * head_dim), np.float32),
            p + "mlp.gate_proj.weight": rng.normal(0, 0.2, (ffn, d)).astype(np.float32),
            p + "mlp.up_proj.weight": rng.normal(0, 0.2, (ffn, d)).astype(np.float32),
            p + "mlp.down_proj.weight": np.zeros((d, ffn), np.float32),
        })
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": tok.vocab_size,
        "hidden_size": d, "intermediate_size": ffn, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kv_heads, "max_position_embeddings": ctx,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False, "hidden_act": "silu",
        "attention_bias": False, "mlp_bias": False, "torch_dtype": "float32",
        "bos_token_id": None, "eos_token_id": tok.token_id("<|endoftext|>"),
    }
    (directory / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    (directory / "generation_config.json").write_text(
        json.dumps({"eos_token_id": [tok.token_id("<|endoftext|>"), tok.token_id("<|im_end|>")]}), encoding="utf-8")
    return directory


def in_memory_model(directory: Path):
    """The model `write_chat_model` wrote, as a project `Transformer` (without the HF loader)."""
    from safetensors.numpy import load_file

    from lm.config import ModelConfig
    from lm.model import Transformer

    config = json.loads((directory / "config.json").read_text())
    t = load_file(str(directory / "model.safetensors"))
    cfg = ModelConfig(
        vocab_size=config["vocab_size"], d_model=config["hidden_size"], n_layers=config["num_hidden_layers"],
        n_heads=config["num_attention_heads"], ffn_hidden=config["intermediate_size"],
        max_seq_len=config["max_position_embeddings"],
    )
    model = Transformer(cfg)
    model.params["tok_emb"][...] = t["model.embed_tokens.weight"]
    model.params["lm_head"][...] = t["lm_head.weight"].T
    model.params["norm"][...] = t["model.norm.weight"]
    for i in range(cfg.n_layers):
        p, q = f"layers.{i}.", f"model.layers.{i}."
        model.params[p + "attn_norm"][...] = t[q + "input_layernorm.weight"]
        model.params[p + "ffn_norm"][...] = t[q + "post_attention_layernorm.weight"]
        for name in ("wq", "wk", "wv"):
            model.params[p + name][...] = 0.0  # no GQA here; attention adds nothing anyway
        model.params[p + "wo"][...] = 0.0
        model.params[p + "w1"][...] = t[q + "mlp.gate_proj.weight"].T
        model.params[p + "w3"][...] = t[q + "mlp.up_proj.weight"].T
        model.params[p + "w2"][...] = 0.0
    return model, load_tokenizer(directory)


def write_chat_checkpoint(directory: Path, **options) -> Path:
    """The same model as a project checkpoint (`lm.save`): its tokenizer file keeps the template."""
    import tempfile

    import lm

    with tempfile.TemporaryDirectory() as hf:
        model, tok = in_memory_model(write_chat_model(Path(hf) / "m", **options))
    return lm.save(directory, model, tok)


def make_wheel(path: Path, members: dict[str, bytes]) -> Path:
    """A wheel at `path` holding `members` and a RECORD with their hashes (as pip saves one)."""
    import base64
    import hashlib
    import zipfile

    def digest(data: bytes) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    info = path.name.split("-")[0] + "-" + path.name.split("-")[1] + ".dist-info"
    record = "".join(f"{n},sha256={digest(d)},{len(d)}\n" for n, d in members.items()) + f"{info}/RECORD,,\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
        z.writestr(f"{info}/RECORD", record)
    return path


def random_chat_model(directory: Path, seed: int = 0):
    """A chat model (template, special tokens) with random weights: its answers depend on the
    whole context, unlike the scripted one's."""
    model, tok = in_memory_model(write_chat_model(directory))
    rng = np.random.default_rng(seed)
    for p in model.params.values():
        if p.ndim == 2:
            p[...] = rng.normal(0.0, 0.8 / np.sqrt(p.shape[0]), size=p.shape)
    return model, tok


def write_chat_gguf(path: Path, **options) -> Path:
    """The scripted chat model as a GGUF file (arch llama, F32), with its vocabulary, merges,
    special tokens and chat template in the `tokenizer.*` metadata, as llama.cpp writes them."""
    import tempfile

    import gguf
    from safetensors.numpy import load_file

    with tempfile.TemporaryDirectory() as hf:
        directory = write_chat_model(Path(hf) / "m", **options)
        config = json.loads((directory / "config.json").read_text())
        t = load_file(str(directory / "model.safetensors"))
        tok = load_tokenizer(directory)
        merges = json.loads((directory / "tokenizer.json").read_text())["model"]["merges"]
        template = json.loads((directory / "tokenizer_config.json").read_text()).get("chat_template")
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_block_count(config["num_hidden_layers"])
    w.add_context_length(config["max_position_embeddings"])
    w.add_embedding_length(config["hidden_size"])
    w.add_feed_forward_length(config["intermediate_size"])
    w.add_head_count(config["num_attention_heads"])
    w.add_head_count_kv(config["num_key_value_heads"])
    w.add_layer_norm_rms_eps(config["rms_norm_eps"])
    w.add_rope_freq_base(config["rope_theta"])
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    special = set(tok.special_tokens.values())
    w.add_token_list([byte_level_encode(tok.token_bytes(i)) if i not in special else tok.token_bytes(i).decode()
                      for i in range(tok.vocab_size)])
    w.add_token_types([3 if i in special else 1 for i in range(tok.vocab_size)])  # 3: control
    w.add_token_merges(merges)
    w.add_eos_token_id(tok.token_id("<|endoftext|>"))
    w.add_add_bos_token(False)
    if template is not None:
        w.add_chat_template(template)
    names = {"model.embed_tokens.weight": "token_embd.weight", "lm_head.weight": "output.weight",
             "model.norm.weight": "output_norm.weight"}
    parts = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
             "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down"}
    for name, value in t.items():
        if name not in names:  # model.layers.I.PART.weight
            _, _, i, *part, _ = name.split(".")
            names[name] = f"blk.{i}.{parts['.'.join(part)]}.weight"
        # q and k rows stay in the Hugging Face order: the blocks' outputs are zero, so the
        # attention they feed does not change what this model says.
        w.add_tensor(names[name], np.ascontiguousarray(value, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path

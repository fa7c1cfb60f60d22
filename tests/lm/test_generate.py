"""Generation: the KV-cached forward against `Transformer.forward`, greedy decoding with and
without the cache (through a full context and the sliding window), seeds, stop sequences,
end-of-text, repetition penalty, and streaming that never splits a UTF-8 character."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lm.config import ModelConfig
from lm.errors import LMError
from lm.generate import _StopFilter, generate, stream
from lm.inference import InferenceModel
from lm.model import Transformer


class ByteTokenizer:
    """One token per UTF-8 byte plus end-of-text: characters span several tokens."""

    eot_id = 256
    vocab_size = 257

    def encode(self, text):
        return list(text.encode("utf-8"))

    def decode_bytes(self, ids):
        return bytes(i for i in ids if i < 256)

    def decode(self, ids):
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


def make_model(ctx=32, seed=0, tie=False, n_layers=2, vocab=257):
    cfg = ModelConfig(
        vocab_size=vocab, d_model=32, n_layers=n_layers, n_heads=4, ffn_hidden=48, max_seq_len=ctx,
        tie_embeddings=tie,
    )
    model = Transformer(cfg, seed=seed)
    # The 0.02 initialisation makes near-uniform logits whose argmax is a coin toss of rounding;
    # larger weights give a model with real preferences, so token identity is a meaningful check.
    rng = np.random.default_rng(seed + 100)
    for name, p in model.params.items():
        if p.ndim == 2:
            p[...] = rng.normal(0.0, 0.6 / np.sqrt(p.shape[0]), size=p.shape)
        else:
            p[...] = 1.0 + 0.1 * rng.normal(size=p.shape)
    return model


def assert_close(got, want, tol=2e-4):
    diff = float(np.abs(np.asarray(got, np.float64) - want).max())
    scale = float(np.abs(want).max())
    assert diff <= tol * max(1.0, scale), f"max abs diff {diff:.3g} (logit scale {scale:.3g})"


# -- the cached forward equals the full forward ------------------------------------------------

@pytest.mark.parametrize("tie", [False, True])
@pytest.mark.parametrize("prompt_len", [1, 2, 7, 31, 32])
def test_prefill_then_steps_equal_full_forward(prompt_len, tie):
    model = make_model(ctx=32, tie=tie)
    ids = np.random.default_rng(prompt_len).integers(0, 257, size=(1, 32))
    want = model.forward(ids)[0]  # (T, V)
    infer = InferenceModel(model)
    cache = infer.new_cache()
    got = [infer.forward(ids[:, :prompt_len], cache)[0]]
    got += [infer.step(int(t), cache)[None].copy() for t in ids[0, prompt_len:]]
    assert cache.length == 32  # the whole context is filled
    assert_close(np.concatenate(got), want)


def test_batched_chunks_equal_full_forward():
    model = make_model(ctx=24, n_layers=3)
    ids = np.random.default_rng(1).integers(0, 257, size=(3, 24))
    infer = InferenceModel(model)
    cache = infer.new_cache(batch=3)
    got = np.concatenate([infer.forward(ids[:, a:b], cache) for a, b in [(0, 5), (5, 6), (6, 17), (17, 24)]], 1)
    assert_close(got, model.forward(ids))


def test_float64_model_matches_tightly():
    model = make_model(ctx=16)
    m64 = SimpleNamespace(config=model.config, params={k: v.astype(np.float64) for k, v in model.params.items()})
    ids = np.random.default_rng(2).integers(0, 257, size=(1, 16))
    infer = InferenceModel(m64)
    cache = infer.new_cache()
    got = np.stack([infer.step(int(t), cache).copy() for t in ids[0]])
    assert_close(got, model.forward(ids)[0].astype(np.float64), tol=2e-4)
    cache.reset()
    assert_close(infer.forward(ids, InferenceModel(m64).new_cache())[0], got, tol=1e-10)


def test_inference_model_reads_the_model_weights_in_place():
    # A pretrained model is hundreds of MB: decoding must not hold a second copy. Only each
    # layer's fused wq|wk|wv (norm folded, q/k columns paired) is prepared, all in one block.
    model = make_model(ctx=16, n_layers=3, tie=True)
    infer = InferenceModel(model)
    P = model.params
    assert np.shares_memory(infer.tok_emb, P["tok_emb"]) and np.shares_memory(infer.lm_head, P["tok_emb"])
    for i, (wqkv, wo, ffn_norm, w13, w2) in enumerate(infer.layers):
        p = f"layers.{i}."
        assert wo is P[p + "wo"] and w2 is P[p + "w2"] and ffn_norm is P[p + "ffn_norm"]
        assert np.shares_memory(w13[0], P[p + "w1"]) and np.shares_memory(w13[1], P[p + "w3"])
        assert np.array_equal(w13[0], P[p + "w1"]) and np.array_equal(w13[1], P[p + "w3"])
        assert np.shares_memory(wqkv, infer._qkv_block) and not np.shares_memory(wqkv, model.flat_params)
    C, E = 32, 3 * 32
    assert infer._qkv_block.flags.c_contiguous and infer._qkv_block.size == 3 * C * E


def test_a_new_inference_model_sees_changed_weights():
    model = make_model(ctx=16)
    ids = np.random.default_rng(3).integers(0, 257, size=(1, 6))
    for p in model.params.values():  # training changes the model
        p *= 0.5
    want = model.forward(ids)[0, -1]
    infer = InferenceModel(model)
    cache = infer.new_cache()
    infer.forward(ids[:, :5], cache)
    assert_close(infer.step(int(ids[0, 5]), cache), want)


def test_cache_overflow_is_a_clear_error():
    infer = InferenceModel(make_model(ctx=8))
    cache = infer.new_cache()
    infer.forward(np.zeros((1, 8), dtype=np.int64), cache)
    with pytest.raises(LMError, match="context holds 8 tokens"):
        infer.step(1, cache)


# -- greedy decoding with and without the cache --------------------------------------------------

@pytest.mark.parametrize("prompt", ["a", "hello, wor", "x" * 31, "y" * 40])
def test_greedy_tokens_identical_with_and_without_cache(prompt):
    model = make_model(ctx=32, seed=4)
    tok = ByteTokenizer()
    # 40 new tokens after prompts up to 40 long: every case fills the 32-token context and slides.
    kw = dict(max_new_tokens=40, temperature=0)
    cached = generate(model, tok, prompt, **kw)
    plain = generate(model, tok, prompt, use_kv_cache=False, **kw)
    assert cached.token_ids == plain.token_ids
    assert cached.text == plain.text
    assert cached.completion_tokens == 40 or cached.finish_reason == "eos"
    assert cached.window_slides >= 1 and "sliding window" in cached.note
    assert cached.prompt_tokens == len(prompt.encode())


def test_sampled_tokens_identical_with_and_without_cache_for_one_seed():
    model = make_model(ctx=32, seed=5)
    kw = dict(max_new_tokens=20, temperature=0.8, top_k=20, seed=11)
    a = generate(model, ByteTokenizer(), "abc", **kw)
    b = generate(model, ByteTokenizer(), "abc", use_kv_cache=False, **kw)
    assert a.token_ids == b.token_ids


def test_no_slide_when_context_suffices():
    result = generate(make_model(ctx=32), ByteTokenizer(), "hi", max_new_tokens=10, temperature=0)
    assert result.window_slides == 0 and result.note is None


def test_seed_reproducibility():
    model = make_model(seed=6)
    tok = ByteTokenizer()
    runs = [generate(model, tok, "ab", max_new_tokens=24, temperature=1.0, seed=s).token_ids for s in (1, 1, 2)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


# -- the text pipeline on a scripted model -------------------------------------------------------

class ScriptedModel:
    """`forward` puts all probability on the next token of a script; uncached decoding only."""

    def __init__(self, script, prompt_len, ctx=512, vocab=257):
        self.script = list(script)
        self.prompt_len = prompt_len
        self.config = SimpleNamespace(vocab_size=vocab, max_seq_len=ctx)
        self.calls = 0

    def forward(self, ids):
        i = self.calls  # uncached decoding calls forward once per sampled token
        self.calls += 1
        logits = np.zeros((1, ids.shape[1], self.config.vocab_size), dtype=np.float32)
        logits[0, -1, self.script[min(i, len(self.script) - 1)]] = 10.0
        return logits


def scripted_stream(text_or_ids, prompt="p", **kw):
    ids = list(text_or_ids.encode("utf-8")) if isinstance(text_or_ids, str) else list(text_or_ids)
    model = ScriptedModel(ids, prompt_len=len(prompt.encode()))
    kw.setdefault("max_new_tokens", len(ids))
    s = stream(model, ByteTokenizer(), prompt, temperature=0, use_kv_cache=False, **kw)
    return list(s), s.result


def test_streaming_never_splits_a_character():
    text = "héllo wörld 😀 日本語 e\u0301 👩‍👩‍👧"
    pieces, result = scripted_stream(text)
    assert "".join(pieces) == text == result.text
    assert all("\ufffd" not in p for p in pieces)
    # a piece comes out as soon as its character is complete: one piece per character here
    assert pieces == list(text)
    assert result.finish_reason == "length" and result.completion_tokens == len(text.encode())


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=30))
def test_streamed_pieces_rejoin_to_any_text(text):
    pieces, result = scripted_stream(text)
    assert "".join(pieces) == text == result.text
    for piece in pieces:
        piece.encode("utf-8")  # a split character would leave a lone surrogate or U+FFFD
        assert "\ufffd" not in piece


def test_invalid_bytes_become_replacement_characters_not_errors():
    pieces, result = scripted_stream([0x61, 0xFF, 0xE6, 0x97, 0x62])  # a, bad byte, truncated CJK, b
    assert result.text == "a\ufffd\ufffdb"


def test_end_of_text_ends_generation_and_is_not_text():
    ids = list("done".encode()) + [ByteTokenizer.eot_id] + list("never".encode())
    pieces, result = scripted_stream(ids, max_new_tokens=50)
    assert result.text == "done" and result.finish_reason == "eos"
    assert result.completion_tokens == 5  # four letters and the end-of-text token


def test_stop_sequence_ends_text_before_it():
    pieces, result = scripted_stream("answer: 42\nEND of it", max_new_tokens=100, stop=["\nEND"])
    assert result.text == "answer: 42" and result.finish_reason == "stop"
    assert "".join(pieces) == "answer: 42"
    assert result.completion_tokens == len("answer: 42\nEND".encode())


def test_earliest_of_several_stops_wins_and_multibyte_stops_work():
    _, result = scripted_stream("aaa→bbb|ccc", max_new_tokens=100, stop=["|", "→"])
    assert result.text == "aaa" and result.finish_reason == "stop"


def test_stop_prefix_that_does_not_complete_is_emitted():
    pieces, result = scripted_stream("a<st<stop>b", stop=["<stop>"])
    assert result.text == "a<st"
    pieces, result = scripted_stream("a<st", stop=["<stop>"])
    assert result.text == "a<st" and result.finish_reason == "length"


@settings(max_examples=80, deadline=None)
@given(
    text=st.text(alphabet="ab<>x", max_size=30),
    stops=st.lists(st.text(alphabet="ab<>", min_size=1, max_size=4), min_size=1, max_size=3),
    cuts=st.lists(st.integers(0, 30), max_size=8),
)
def test_stop_filter_over_any_split_equals_cutting_the_whole_text(text, stops, cuts):
    bounds = sorted({0, len(text), *[c for c in cuts if c <= len(text)]})
    f = _StopFilter(stops)
    out, stopped = "", False
    for a, b in zip(bounds, bounds[1:]):
        piece, stopped = f.feed(text[a:b])
        out += piece
        if stopped:
            break
    if not stopped:
        out += f.flush()
    # Oracle: feed one character at a time; the first stop string to complete ends the text
    # just before that stop string (the earliest-starting one if several complete at once).
    want, ended = text, False
    for end in range(1, len(text) + 1):
        done = [end - len(s) for s in stops if text[:end].endswith(s)]
        if done:
            want, ended = text[: min(done)], True
            break
    assert out == want
    assert stopped == ended


def test_the_stop_that_completes_first_wins_however_the_text_is_split():
    for pieces in (["><<"], ["><", "<"], [">", "<", "<"]):
        f = _StopFilter(["<", "><<"])
        out = ""
        for piece in pieces:
            emitted, stopped = f.feed(piece)
            out += emitted
            if stopped:
                break
        assert (out, stopped) == (">", True), pieces


def test_repetition_penalty_hand_worked():
    # Fixed logits 5,4,3,2,1 for tokens 0..4; penalty 2 halves a seen positive logit, once.
    class Fixed(ScriptedModel):
        def forward(self, ids):
            logits = np.full((1, ids.shape[1], 257), -50.0, dtype=np.float32)
            logits[0, -1, :5] = [5, 4, 3, 2, 1]
            return logits

    s = stream(Fixed([], 1), ByteTokenizer(), "p", 5, temperature=0, repetition_penalty=2.0, use_kv_cache=False)
    list(s)
    assert s.result.token_ids == (0, 1, 2, 0, 0)
    s = stream(Fixed([], 1), ByteTokenizer(), "p", 3, temperature=0, use_kv_cache=False)
    list(s)
    assert s.result.token_ids == (0, 0, 0)


def test_empty_prompt_starts_from_end_of_text():
    model = make_model()
    result = generate(model, ByteTokenizer(), "", max_new_tokens=5, temperature=0)
    assert result.prompt_tokens == 0 and result.completion_tokens >= 1


def test_zero_new_tokens():
    result = generate(make_model(), ByteTokenizer(), "abc", max_new_tokens=0)
    assert result.text == "" and result.completion_tokens == 0 and result.finish_reason == "length"


@pytest.mark.parametrize(
    "kw, fragment",
    [
        (dict(max_new_tokens=-1), "max_new_tokens"),
        (dict(stop=[""]), "stop"),
        (dict(repetition_penalty=0), "repetition_penalty"),
        (dict(temperature=-0.5), "temperature"),
        (dict(top_p=2), "top_p"),
    ],
)
def test_bad_settings_fail_before_any_work(kw, fragment):
    with pytest.raises(LMError, match=fragment):
        stream(make_model(), ByteTokenizer(), "x", **kw)


def test_a_stream_is_single_use():
    s = stream(make_model(), ByteTokenizer(), "x", 2)
    list(s)
    with pytest.raises(LMError, match="once"):
        list(s)


def test_prompt_longer_than_the_context_is_cut_and_said_so():
    model, tok = make_model(ctx=32), ByteTokenizer()
    result = generate(model, tok, "z" * 45, max_new_tokens=1, temperature=0)
    assert result.prompt_tokens == 45 and result.completion_tokens == 1
    assert result.window_slides == 1 and "cut to its last 32" in result.note
    assert "sliding window" not in result.note
    # a second token no longer fits beside the full context, so the window slides too
    result = generate(model, tok, "z" * 45, max_new_tokens=2, temperature=0)
    assert result.window_slides == 2 and "sliding window" in result.note and "(1 time)" in result.note


def test_ids_the_tokenizer_cannot_decode_are_never_sampled():
    class Favours(ScriptedModel):
        def forward(self, ids):
            logits = np.zeros((1, ids.shape[1], 300), dtype=np.float32)
            logits[0, -1, 280] = 9.0  # beyond the 257 ids of the byte tokenizer
            logits[0, -1, ord("a")] = 5.0
            return logits

    s = stream(Favours([], 1, vocab=300), ByteTokenizer(), "p", 3, temperature=0, use_kv_cache=False)
    assert "".join(s) == "aaa"

"""Tokenizers of pretrained models against their reference implementations.

Committed fixtures (`tests/lm/fixtures/make_tokenizer_fixtures.py` made them): byte-level BPEs
trained by HF `tokenizers` with their `encode` ids, and GGUF vocabularies with llama.cpp's ids,
on a varied text set. Those tests always run. Where a peer is installed, hypothesis also draws
new texts and compares live (tokenizers is in the dev extra; llama-cpp-python usually is not).
The real SmolLM2 vocabulary is checked against llama.cpp only when TISS_SMOLLM2_GGUF
names the file.
"""

from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lm.pretokenize import (
    DIGIT_SPLIT,
    GPT2_SPLIT,
    LLAMA3_SPLIT,
    PatternError,
    Splitter,
    translate,
)
from lm.tokenizer import BPETokenizer, TokenizerError, byte_level_alphabet, byte_level_decode

gguf = pytest.importorskip("gguf")

from lm.tokenizer_import import tokenizer_from_gguf, tokenizer_from_hf  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "tokenizers"
TEXTS: list[str] = json.loads((FIXTURES / "texts.json").read_text(encoding="utf-8"))
HF_ENCODINGS = json.loads((FIXTURES / "hf_encodings.json").read_text(encoding="utf-8"))
GGUF_ENCODINGS = json.loads((FIXTURES / "gguf_encodings.json").read_text(encoding="utf-8"))
HF_NAMES = ["gpt2", "digits", "llama3", "nfc"]
GGUF_NAMES = ["gpt-2", "llama-bpe", "smollm", "qwen2", "smollm2_subset"]
SMOLLM2 = os.environ.get("TISS_SMOLLM2_GGUF")


def hf_tok(name: str) -> BPETokenizer:
    return _cached(("hf", name), lambda: tokenizer_from_hf(FIXTURES / f"hf_{name}"))


def gguf_tok(name: str) -> BPETokenizer:
    return _cached(("gguf", name), lambda: tokenizer_from_gguf(gguf.GGUFReader(FIXTURES / f"gguf_{name}.gguf")))


_CACHE: dict = {}


def _cached(key, make):
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


# ----------------------------------------------------------------------------- committed fixtures

@pytest.mark.parametrize("name", HF_NAMES)
def test_hf_tokenizer_json_encodes_as_hf_tokenizers(name):
    tok = hf_tok(name)
    mismatched = [t for t, ids in zip(TEXTS, HF_ENCODINGS[name]) if tok.encode(t, "all") != ids]
    assert not mismatched, f"{len(mismatched)} texts differ, first: {mismatched[0][:80]!r}"


@pytest.mark.parametrize("name", GGUF_NAMES)
def test_gguf_vocabulary_encodes_as_llama_cpp(name):
    tok = gguf_tok(name)
    mismatched = [t for t, ids in zip(TEXTS, GGUF_ENCODINGS[name]) if tok.encode(t, "all") != ids]
    assert not mismatched, f"{len(mismatched)} texts differ, first: {mismatched[0][:80]!r}"


def test_fixture_texts_cover_what_matters():
    joined = "".join(TEXTS)
    for needle in ("<|im_start|>", "東京", "👨‍👩‍👧‍👦", "q.  5", "\r\n", "\u3000", "\x04", "def ", "'S"):
        assert needle in joined
    assert len(joined) > 10_000


def test_smollm_split_keeps_whitespace_before_a_digit_whole():
    # llama.cpp and SmolLM2's own tokenizer.json: digits split first, so "  " stays one piece.
    # (transformers' GGUF conversion drops the digit split and gives ' ', ' ', '5'.)
    tok = gguf_tok("smollm2_subset")
    assert [tok.decode([i]) for i in tok.encode("q.  5")] == ["q", ".", "  ", "5"]
    assert Splitter([DIGIT_SPLIT, GPT2_SPLIT])("q.  5") == ["q", ".", "  ", "5"]
    assert Splitter([GPT2_SPLIT])("q.  5") == ["q", ".", " ", " 5"]


@pytest.mark.parametrize("kind, name", [("hf", n) for n in HF_NAMES] + [("gguf", n) for n in GGUF_NAMES])
def test_decode_inverts_encode(kind, name):
    tok = hf_tok(name) if kind == "hf" else gguf_tok(name)
    # SmolLM2 has no token for some bytes (0x04, 0xF1, ...); both peers drop them.
    missing = {b for b in range(256) if bytes([b]) not in set(tok.vocab)}
    assert bool(missing) == (name == "smollm2_subset")
    for text in TEXTS:
        ids = tok.encode(text, "all")
        if kind == "hf" and name == "nfc":
            text = unicodedata.normalize("NFC", text)
        assert tok.decode_bytes(ids) == bytes(b for b in text.encode("utf-8") if b not in missing)


@pytest.mark.parametrize("kind, name", [("hf", "llama3"), ("hf", "gpt2"), ("gguf", "smollm2_subset"), ("gguf", "llama-bpe")])
def test_save_load_keeps_everything(kind, name, tmp_path):
    tok = hf_tok(name) if kind == "hf" else gguf_tok(name)
    path = tok.save(tmp_path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == "quantatissu-bpe" and data["version"] == 2
    again = BPETokenizer.load(path)
    assert again.to_dict() == tok.to_dict()
    for field in ("bos_id", "eos_id", "end_of_turn_id", "pad_id", "add_bos", "chat_template",
                  "special_tokens", "added_tokens", "pretokenizer", "special_match", "ignore_merges"):
        assert getattr(again, field) == getattr(tok, field), field
    assert [again.encode(t, "all") for t in TEXTS] == [tok.encode(t, "all") for t in TEXTS]


def test_metadata_of_smollm2_subset():
    tok = gguf_tok("smollm2_subset")
    assert tok.special_tokens["<|im_start|>"] == tok.bos_id
    assert tok.decode([tok.eos_id]) == "<|im_end|>"
    assert tok.chat_template is not None and "<|im_start|>" in tok.chat_template
    assert tok.add_bos is False and tok.eot_id == tok.special_tokens["<|endoftext|>"]
    assert tok.eos_id in tok.stop_ids


def test_hf_metadata_and_bos():
    tok = hf_tok("gpt2")
    assert tok.decode([tok.bos_id]) == "<|endoftext|>" and tok.decode([tok.eos_id]) == "<|im_end|>"
    assert tok.chat_template is not None and tok.add_bos is False
    llama3 = hf_tok("llama3")
    assert llama3.add_bos and llama3.decode([llama3.bos_id]) == "<|begin_of_text|>"
    assert llama3.encode("Hi", add_bos=True)[0] == llama3.bos_id
    assert llama3.ignore_merges


def test_special_tokens_are_text_unless_allowed_but_added_tokens_always_match():
    tok = hf_tok("gpt2")
    plain = tok.encode("<|im_start|><tool_call>")
    assert tok.special_tokens["<|im_start|>"] not in plain
    assert tok.added_tokens["<tool_call>"] in plain
    assert tok.encode("<|im_start|>", "all") == [tok.special_tokens["<|im_start|>"]]
    assert tok.encode("<|im_start|>", {"<|im_start|>"}) == [tok.special_tokens["<|im_start|>"]]
    with pytest.raises(TokenizerError, match="special token"):
        tok.encode("x<|im_end|>", "none_raise")


def test_llama_cpp_cuts_the_longest_special_token_first():
    from lm.tokenizer import _Partition

    tokens = {"xy": 1, "yzw": 2}
    assert _Partition(tokens, {}, longest_first=True)("xyzw") == ["x", 2]
    assert _Partition(tokens, {}, longest_first=False)("xyzw") == [1, "zw"]


def test_lstrip_rstrip_added_tokens_take_neighbouring_whitespace():
    from lm.tokenizer import _Partition

    cut = _Partition({"<m>": 7}, {"<m>": (True, True, False)}, longest_first=False)
    assert cut("a  <m>\t b") == ["a", 7, "b"]


def test_byte_level_alphabet_is_a_bijection_onto_printables():
    alphabet = byte_level_alphabet()
    assert len(set(alphabet)) == 256 and all(c.isprintable() and not c.isspace() for c in alphabet)
    assert byte_level_decode("".join(alphabet)) == bytes(range(256))
    assert byte_level_decode("a b") is None  # a real space is not a byte-level character


# ----------------------------------------------------------------------------- the split's classes

def test_unicode_classes_are_the_general_categories():
    import re

    letters = re.compile(translate(r"\p{L}"))
    numbers = re.compile(translate(r"\p{N}"))
    space = re.compile(translate(r"\s"))
    for cp in range(0, 0x110000, 7):
        c = chr(cp)
        cat = unicodedata.category(c)
        assert bool(letters.match(c)) == cat.startswith("L"), hex(cp)
        assert bool(numbers.match(c)) == cat.startswith("N"), hex(cp)
    assert [c for c in map(chr, range(0x3001)) if space.match(c)] == list(
        "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
        "\u200a\u2028\u2029\u202f\u205f\u3000"
    )
    # Python's own classes differ: \s takes U+001C..U+001F, [^\W\d_] takes "²" (No)
    assert not space.match("\x1c") and not letters.match("²") and numbers.match("²")


def test_patterns_that_cannot_be_reproduced_are_refused():
    for pattern in (r"\w+", r"\p{Han}", r"[\S]", r"\d", r"\b"):
        with pytest.raises(PatternError):
            translate(pattern)


def test_llama3_split():
    split = Splitter([LLAMA3_SPLIT])
    assert split("I'M  fine\n\n  x 1234 ²³!!\r\n") == [
        "I", "'M", " ", " fine", "\n\n", " ", " x", " ", "123", "4", " ", "²³", "!!\r\n"]


# ----------------------------------------------------------------------------- unsupported files

def _write_gguf(path: Path, model: str = "gpt2", pre: str | None = "gpt-2") -> Path:
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_tokenizer_model(model)
    if pre is not None:
        w.add_tokenizer_pre(pre)
    alphabet = list(byte_level_alphabet())
    w.add_token_list([*alphabet, "ab"])
    w.add_token_types([1] * 257)
    w.add_token_merges(["a b"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_gguf_errors_name_what_was_found_and_what_is_supported(tmp_path):
    with pytest.raises(TokenizerError, match=r"SentencePiece vocabulary \('llama'\) is not supported; supported: GGUF"):
        tokenizer_from_gguf(gguf.GGUFReader(_write_gguf(tmp_path / "a.gguf", model="llama")))
    with pytest.raises(TokenizerError, match=r"tokenizer.ggml.pre 'deepseek-coder' is not a pre-tokenizer .* supported: .*smollm"):
        tokenizer_from_gguf(gguf.GGUFReader(_write_gguf(tmp_path / "b.gguf", pre="deepseek-coder")))
    with pytest.raises(TokenizerError, match="no tokenizer.ggml.pre"):
        tokenizer_from_gguf(gguf.GGUFReader(_write_gguf(tmp_path / "c.gguf", pre=None)))
    tok = tokenizer_from_gguf(gguf.GGUFReader(_write_gguf(tmp_path / "d.gguf")))
    assert tok.encode("hé") == [ord("h"), *"hé".encode()[1:]]  # token i is byte i here
    assert tok.encode("xab") == [ord("x"), 256]


def _hf_dir(tmp_path: Path, **changes) -> Path:
    data = json.loads((FIXTURES / "hf_gpt2" / "tokenizer.json").read_text(encoding="utf-8"))
    for key, value in changes.items():
        if key.startswith("model_"):
            data["model"][key[6:]] = value
        else:
            data[key] = value
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    (folder / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"model_type": "Unigram"}, "model type 'Unigram' is not supported; supported: byte-level BPE"),
        ({"model_type": "WordPiece"}, "model type 'WordPiece' is not supported"),
        ({"model_byte_fallback": True}, "byte_fallback"),
        ({"pre_tokenizer": {"type": "Metaspace", "replacement": "▁"}}, "pre-tokenizer 'Metaspace' is not supported"),
        ({"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True}}, "add_prefix_space=true"),
        ({"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": r"\w+"}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "use_regex": False}]}}, r"cannot be reproduced exactly: .*\\w"),
        ({"pre_tokenizer": {"type": "Split", "pattern": {"String": " "}, "behavior": "Removed",
                            "invert": False}}, "Split behavior 'Removed'"),
        ({"normalizer": {"type": "Lowercase"}}, "normalizer 'Lowercase' is not supported"),
    ],
)
def test_hf_errors_name_what_was_found(tmp_path, changes, message):
    with pytest.raises(TokenizerError, match=message) as info:
        tokenizer_from_hf(_hf_dir(tmp_path, **changes))
    assert "\n" not in str(info.value)


def test_hf_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(TokenizerError, match="tokenizer.json does not exist"):
        tokenizer_from_hf(tmp_path)


def test_chat_template_jinja_file_wins(tmp_path):
    folder = _hf_dir(tmp_path)
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": "old"}), encoding="utf-8")
    assert tokenizer_from_hf(folder).chat_template == "old"
    (folder / "chat_template.jinja").write_text("new {{ messages }}", encoding="utf-8")
    assert tokenizer_from_hf(folder).chat_template == "new {{ messages }}"


def test_old_version_1_files_still_load_and_save_as_version_1(tmp_path):
    tok = BPETokenizer().train(["hello hello world"], vocab_size=270)
    data = json.loads(tok.save(tmp_path).read_text(encoding="utf-8"))
    assert data["version"] == 1 and "vocab" not in data
    tok.chat_template = "{{ messages }}"
    data = json.loads(tok.save(tmp_path).read_text(encoding="utf-8"))
    assert data["version"] == 2 and data["chat_template"] == "{{ messages }}"
    assert BPETokenizer.load(tmp_path).chat_template == "{{ messages }}"


# ----------------------------------------------------------------------------- hypothesis

def _assigned(c: str) -> bool:
    # Characters Python's Unicode database (14.0 on 3.11) leaves unassigned may be assigned in
    # the peer's newer one; surrogates have no UTF-8.
    return unicodedata.category(c) not in ("Cn", "Cs")


TRICKY = st.sampled_from(list("ab AZ 019\n\t\r!.,'sSlLdDmMtT<|>_é東😀\u3000\u00a0\u0301²½")
                         + ["<|im_end|>", "<|im_start|>", "<tool_call>", "'s", "  ", "\r\n"])
TEXT = st.lists(st.one_of(TRICKY, st.characters().filter(_assigned)), max_size=40).map("".join)
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(TEXT)
def test_round_trip_hypothesis(text):
    for name in ("llama3", "digits"):
        tok = hf_tok(name)
        assert tok.decode(tok.encode(text, "all")) == text
    tok = gguf_tok("smollm")
    assert tok.decode(tok.encode(text, "all")) == text


@SETTINGS
@given(TEXT)
def test_against_live_hf_tokenizers(text):
    tokenizers = pytest.importorskip("tokenizers")
    for name in HF_NAMES:
        peer = _cached(("peer", name), lambda: tokenizers.Tokenizer.from_file(str(FIXTURES / f"hf_{name}" / "tokenizer.json")))
        assert hf_tok(name).encode(text, "all") == peer.encode(text, add_special_tokens=False).ids, name


@SETTINGS
@given(TEXT)
def test_against_live_llama_cpp(text):
    llama_cpp = pytest.importorskip("llama_cpp")
    for name in GGUF_NAMES:
        peer = _cached(("llama", name), lambda: llama_cpp.Llama(
            model_path=str(FIXTURES / f"gguf_{name}.gguf"), vocab_only=True, verbose=False))
        expected = peer.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        assert gguf_tok(name).encode(text, "all") == expected, name


@pytest.mark.skipif(not SMOLLM2, reason="set TISS_SMOLLM2_GGUF to the SmolLM2 GGUF file")
def test_full_smollm2_vocabulary_against_llama_cpp():
    llama_cpp = pytest.importorskip("llama_cpp")
    tok = tokenizer_from_gguf(gguf.GGUFReader(SMOLLM2))
    peer = llama_cpp.Llama(model_path=SMOLLM2, vocab_only=True, verbose=False)
    assert tok.vocab_size == 49152
    for text in TEXTS:
        assert tok.encode(text, "all") == peer.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    @SETTINGS
    @given(TEXT)
    def check(text):
        assert tok.encode(text, "all") == peer.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    check()


@SETTINGS
@given(st.lists(st.one_of(TRICKY, st.characters(min_codepoint=0x10000).filter(_assigned),
                          st.characters()), max_size=30).map("".join))
def test_astral_stand_ins_split_exactly_as_the_full_classes(text):
    import re

    from lm.pretokenize import LLAMA3_SPLIT_CPP, QWEN2_SPLIT, QWEN2_SPLIT_CPP

    for steps in ([GPT2_SPLIT], [LLAMA3_SPLIT], [LLAMA3_SPLIT_CPP], [QWEN2_SPLIT], [QWEN2_SPLIT_CPP],
                  [DIGIT_SPLIT, GPT2_SPLIT], [DIGIT_SPLIT + "+", r"\p{P}+", GPT2_SPLIT]):
        fast = Splitter(steps)
        exact = Splitter([])
        exact._bmp, exact._findall = False, None
        exact._compiled = [re.compile(translate(s)) for s in steps]
        assert fast(text) == exact(text), steps


def test_merges_that_reuse_a_later_token_are_applied_one_pair_at_a_time(tmp_path):
    # "abc" is made by rank 2, yet rank 1 merges it with "ab": merging every "ab c" at once
    # would give abc+abc; the references take the lowest rank first, pair by pair.
    data = {
        "version": "1.0", "added_tokens": [], "normalizer": None, "post_processor": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": False,
                  "vocab": {**{c: i for i, c in enumerate(byte_level_alphabet())},
                            "ab": 256, "abc": 257, "abcab": 258},
                  "merges": ["a b", "abc ab", "ab c"]},
    }
    (tmp_path / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    tok = tokenizer_from_hf(tmp_path)
    assert tok._heap_only
    assert tok.encode("abcabc") == [258, ord("c")]
    tokenizers = pytest.importorskip("tokenizers")
    peer = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert peer.encode("abcabc").ids == [258, ord("c")]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["vocab"].__setitem__(3, "a b"), "vocab entry 3 is not a byte-level token string"),
        (lambda d: d["merges"].append([0, 10**6]), "merges"),
        (lambda d: d.__setitem__("special_match", "first"), "special_match"),
        (lambda d: d.__setitem__("eos_id", 10**6), "eos_id"),
        (lambda d: d.__setitem__("pretokenizer", [r"\w+"]), "unsupported pre-tokenizer"),
    ],
)
def test_corrupt_version_2_files_are_clear_errors(tmp_path, change, message):
    data = gguf_tok("smollm").to_dict()
    change(data)
    (tmp_path / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(TokenizerError, match=message) as info:
        BPETokenizer.load(tmp_path)
    assert "\n" not in str(info.value)


def test_training_replaces_a_pretrained_vocabulary():
    tok = tokenizer_from_hf(FIXTURES / "hf_gpt2")
    tok.train(["hello hello world"], vocab_size=270)
    assert tok.vocab is None and tok.chat_template is None and tok.vocab_size == 256 + len(tok.merges) + 1
    assert tok.decode(tok.encode("hello")) == "hello"


def test_missing_byte_tokens_mapped_to_unk_are_refused(tmp_path):
    data = json.loads((FIXTURES / "hf_gpt2" / "tokenizer.json").read_text(encoding="utf-8"))
    alphabet = byte_level_alphabet()
    merged = "".join(m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"])
    byte = next(b for b in range(1, 32) if alphabet[b] not in merged)
    del data["model"]["vocab"][alphabet[byte]]
    (tmp_path / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    tok = tokenizer_from_hf(tmp_path)  # without unk_token HF drops the byte, as lm does
    texts = [chr(byte) * (i % 3) + f" w{i} " + chr(byte) for i in range(700)]  # many misses: batched
    ids = tok.encode_batch(texts)
    assert tok._tables is not None and [tok.encode(t) for t in texts] == ids
    assert all(tok.decode(i) == t.replace(chr(byte), "") for i, t in zip(ids, texts))
    tokenizers = pytest.importorskip("tokenizers")
    peer = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert [e.ids for e in peer.encode_batch(texts)] == ids
    data["model"]["unk_token"] = "<|endoftext|>"
    (tmp_path / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(TokenizerError, match=rf"no token for byte\(s\) \['{hex(byte)}'\] .* unk_token"):
        tokenizer_from_hf(tmp_path)


@SETTINGS
@given(st.lists(TEXT, min_size=1, max_size=40))
def test_batched_merging_equals_merging_one_chunk_at_a_time(texts):
    from lm.tokenizer import _bpe_batch, _bpe_short, _merge_tables

    for tok in (hf_tok("llama3"), gguf_tok("smollm2_subset"), gguf_tok("gpt-2")):
        chunks = [piece for t in texts for piece in tok._split(t)]
        starts = [c.encode("utf-8").decode("latin-1").translate(tok._byte_table) for c in chunks]
        tables = _merge_tables(tok._merged_of, tok._result_of)
        expected = [_bpe_short(s, tok._merged_of, tok._pair_of, tok._result_of) for s in starts]
        assert _bpe_batch(starts, tables) == expected


def test_long_texts_take_the_batched_path_and_encode_the_same(monkeypatch):
    import lm.tokenizer

    text = " ".join(TEXTS)
    for tok in (gguf_tok("smollm2_subset"), hf_tok("digits")):
        fresh = BPETokenizer.from_dict(tok.to_dict())
        batched = fresh.encode(text, "all")
        assert fresh._tables is not None  # the batch ran
        again = BPETokenizer.from_dict(tok.to_dict())
        assert again.encode_batch(TEXTS, "all") == [tok.encode(t, "all") for t in TEXTS]
        assert again._tables is not None
        with monkeypatch.context() as m:
            m.setattr(lm.tokenizer, "BATCH_MISSES", 10**9)
            slow = BPETokenizer.from_dict(tok.to_dict())
            assert slow.encode(text, "all") == batched
            assert slow._tables is None


def test_batched_path_for_a_tokenizer_trained_here(monkeypatch):
    import lm.tokenizer

    tok = BPETokenizer().train(TEXTS[:60], vocab_size=600)
    fresh = BPETokenizer.from_dict(tok.to_dict())
    batched = fresh.encode_batch(TEXTS)
    assert fresh._tables is not None
    monkeypatch.setattr(lm.tokenizer, "BATCH_MISSES", 10**9)
    slow = BPETokenizer.from_dict(tok.to_dict())
    assert slow.encode_batch(TEXTS) == batched and slow._tables is None
    assert all(fresh.decode(ids) == t for ids, t in zip(batched, TEXTS))


def test_tokenizers_pickle():
    import pickle

    for tok in (hf_tok("llama3"), gguf_tok("smollm"), BPETokenizer().train(TEXTS[:20], vocab_size=300)):
        again = pickle.loads(pickle.dumps(tok))
        assert again.to_dict() == tok.to_dict()
        assert [again.encode(t, "all") for t in TEXTS[:60]] == [tok.encode(t, "all") for t in TEXTS[:60]]

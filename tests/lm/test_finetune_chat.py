"""`tiss train --init MODEL --chat-data FILE.jsonl`: conversations, loss on the assistant turns only.

The model is the committed tiny ChatML fixture (tests/lm/fixtures/pretrained/hf_llama_tied: its
tokenizer has <|im_start|>, <|im_end|> as special tokens and the ChatML template).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lm
from lm.chatdata import ChatDataError, encode_conversation
from lm.data import open_token_files, sample_batch
from lm.loss import IGNORE_INDEX
from lm.train import train
from runtime.cli import main

MODEL = Path(__file__).parent / "fixtures" / "pretrained" / "hf_llama_tied"
CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello friend"},
    {"role": "user", "content": "Bye"},
    {"role": "assistant", "content": "See you"},
]


@pytest.fixture(scope="module")
def tok():
    return lm.load(MODEL)[1]


def test_mask_is_exactly_the_assistant_turns(tok):
    # Built independently of the template engine: the ChatML text written out by hand, in
    # pieces that are (0) context and (1) what the assistant says, each encoded on its own.
    pieces = [
        ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n", 0),
        ("Hello friend<|im_end|>\n", 1),
        ("<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n", 0),
        ("See you<|im_end|>\n", 1),
    ]
    want_ids, want_mask = [], []
    for text, counted in pieces:
        ids = tok.encode(text, allowed_special="all")
        want_ids += ids
        want_mask += [counted] * len(ids)
    ids, mask = encode_conversation(tok, CHAT)
    assert ids == want_ids
    assert mask == want_mask
    # Which tokens count, read back: the two answers and the end-of-turn token closing each.
    assert tok.decode([i for i, m in zip(ids, mask) if m]) == "Hello friend<|im_end|>\nSee you<|im_end|>\n"
    im_end = tok.token_id("<|im_end|>")
    assert [m for i, m in zip(ids, mask) if i == im_end] == [0, 0, 1, 0, 1]  # system, user, assistant, user, assistant


def test_template_that_rewrites_earlier_turns_is_refused(tok, tmp_path):
    # Drops the content of every assistant turn but the last (as templates that strip old
    # reasoning do): the prefix rendering is no longer a prefix of the whole.
    template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
        "{% if m['role'] == 'assistant' and not loop.last %}...{% else %}{{ m['content'] }}{% endif %}"
        "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    saved = tok.chat_template
    tok.chat_template = template
    try:
        with pytest.raises(ChatDataError, match=r"data.jsonl:3: the chat template renders the turns before assistant message 2"):
            encode_conversation(tok, CHAT, "data.jsonl:3")
    finally:
        tok.chat_template = saved


def test_masked_windows_ignore_every_uncounted_target():
    tokens = np.arange(20, dtype=np.uint16)
    mask = (np.arange(20) % 3 == 0).astype(np.uint8)
    x, y = sample_batch(tokens, 5, 6, np.random.default_rng(1), mask)
    for row_x, row_y in zip(x, y):
        for pos, target in zip(row_x, row_y):
            true_next = pos + 1
            assert target == (true_next if mask[true_next] else IGNORE_INDEX)


def _write(path: Path, conversations) -> Path:
    path.write_text("".join((c if isinstance(c, str) else json.dumps({"messages": c})) + "\n" for c in conversations),
                    encoding="utf-8")
    return path


def _conversations(n: int) -> list:
    out = []
    for i in range(n):
        out.append([{"role": "user", "content": f"What is {i} plus {i}?"},
                    {"role": "assistant", "content": f"It is {2 * i}. The quick brown fox agrees."}])
    return out


def test_chat_training_end_to_end_and_resume(tmp_path, capsys):
    data_file = _write(tmp_path / "chats.jsonl", _conversations(20))
    run = tmp_path / "run"
    args = ["train", "--init", str(MODEL), "--chat-data", str(data_file), "--out", str(run), "--steps", "3",
            "--batch-size", "2", "--seq-len", "32", "--eval-every", "3", "--threads", "1", "--lr", "1e-3"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "18 training / 2 validation conversations" in err and "validation loss" in err
    data = open_token_files(run / "data")
    model, tok = lm.load(MODEL)
    # The token files are exactly the conversations' encodings, separated; the masks their spans.
    ids, masks = [], []
    for k, chat in enumerate(_conversations(20)):
        if k not in (9, 19):  # every tenth conversation is held out
            i, m = encode_conversation(tok, chat)
            ids += i + [tok.eot_id]
            masks += m + [0]
    assert data.train.tolist() == ids and data.train_mask.tolist() == masks
    # Step 1's loss is the initial model's loss over the assistant targets of the first batch.
    x, y = sample_batch(data.train, 2, 32, np.random.default_rng(0), data.train_mask)
    first = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert first["loss"] == pytest.approx(model.loss(x, y), abs=2e-6)
    assert (y == IGNORE_INDEX).any() and (y != IGNORE_INDEX).any()
    assert main(["train", "--resume", str(run), "--steps", "5", "--threads", "1"]) == 0
    assert "resuming" in capsys.readouterr().err
    assert lm.load(run)[1].chat_template == tok.chat_template


@pytest.mark.parametrize("line, message", [
    ("{not json", "chats.jsonl:2:2: not JSON"),
    ('{"msgs": []}', 'chats.jsonl:2: expected an object with a "messages" list'),
    ('{"messages": []}', 'chats.jsonl:2: "messages" must be a non-empty list'),
    ('{"messages": [{"role": "robot", "content": "x"}]}', "chats.jsonl:2: message 0 has role 'robot'"),
    ('{"messages": [{"role": "user", "content": 3}]}', 'chats.jsonl:2: message 0 must be an object with string "role"'),
    ('{"messages": [{"role": "user", "content": "hi"}]}', "chats.jsonl:2: the conversation has no assistant message"),
])
def test_bad_lines_are_errors_with_file_and_line(tmp_path, capsys, line, message):
    data_file = _write(tmp_path / "chats.jsonl", [_conversations(1)[0], line])
    code = main(["train", "--init", str(MODEL), "--chat-data", str(data_file), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_chat_data_needs_an_init_model_with_a_template(tmp_path, capsys, make_tiny_checkpoint):
    data_file = _write(tmp_path / "chats.jsonl", _conversations(3))
    assert main(["train", "--chat-data", str(data_file), "--out", str(tmp_path / "r")]) == 2
    assert "--chat-data needs --init MODEL" in capsys.readouterr().err
    plain = make_tiny_checkpoint(tmp_path / "plain", ["some text to train on " * 20], 300, ctx=32)
    assert main(["train", "--init", str(plain), "--chat-data", str(data_file), "--out", str(tmp_path / "r")]) == 2
    assert "needs a model with a chat template" in capsys.readouterr().err
    assert main(["train", "--init", str(MODEL), "--chat-data", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "r")]) == 2
    assert "none.jsonl does not exist" in capsys.readouterr().err
    with pytest.raises(Exception, match="either --corpus PATH or --chat-data"):
        train(tmp_path, tmp_path / "r", init=str(MODEL), chat_data=data_file)


_words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ,.?!\n'0123456789ÄéΩ", min_size=0, max_size=30)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["user", "assistant"]), st.text("abcxyz", min_size=1, max_size=3), _words),
                min_size=1, max_size=6), st.booleans())
def test_counted_tokens_are_the_assistant_texts_and_their_turn_ends(tok, turns, system):
    messages = ([{"role": "system", "content": "Be brief."}] if system else [])
    messages += [{"role": role, "content": head + rest} for role, head, rest in turns]
    messages.append({"role": "assistant", "content": "Done."})
    ids, mask = encode_conversation(tok, messages)
    assert ids == tok.encode(lm.render_chat(tok.chat_template, messages, add_generation_prompt=False),
                             allowed_special="all")
    answers = "".join(m["content"] + "<|im_end|>\n" for m in messages if m["role"] == "assistant")
    assert tok.decode([i for i, m in zip(ids, mask) if m]) == answers

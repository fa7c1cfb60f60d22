"""Conversations for fine-tuning an instruct model (`tiss train --init MODEL --chat-data FILE.jsonl`).

The file holds one conversation per line: `{"messages": [{"role": ..., "content": ...}, ...]}`
with roles system, user, assistant (or tool), and at least one assistant message. Each
conversation is rendered with the model's own chat template (`lm.chat`) and encoded with its
tokenizer; the loss counts only the tokens of the assistant turns.

Where an assistant turn lies is found exactly, not by searching for marker text: for the assistant
message k, the conversation up to it is rendered with `add_generation_prompt=True` (the prompt a
model answering would see) and the conversation through it without; the assistant's tokens are
the difference between the two encodings (its text, and whatever the template closes the turn
with, such as `<|im_end|>`, which teaches the model to stop). This holds only when the first
encoding is a prefix of the second, and the second a prefix of the whole conversation's; a
template that renders earlier turns differently once later ones exist (one that drops the
reasoning of old turns, say) breaks that, and the line is refused with its number.

The conversations are packed into one token stream, each followed by the tokenizer's
document separator, with a parallel 0/1 mask that says which tokens are targets (`lm.data`
stores both and turns unmasked targets into the loss's ignore index).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lm.errors import LMError

ROLES = ("system", "user", "assistant", "tool")
VAL_FRACTION = 0.1


class ChatDataError(LMError):
    """A conversations file that is missing, malformed, or that the chat template cannot split."""


def read_conversations(path) -> list[tuple[int, list[dict]]]:
    """`(line number, messages)` for every non-blank line of the JSONL file at `path`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ChatDataError(f"--chat-data {path} does not exist; pass a .jsonl file of conversations") from None
    except IsADirectoryError:
        raise ChatDataError(f"--chat-data {path} is a directory; pass a .jsonl file of conversations") from None
    except UnicodeDecodeError as exc:
        raise ChatDataError(f"{path}: not UTF-8 (byte offset {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise ChatDataError(f"cannot read --chat-data {path}: {exc.strerror or exc}") from None
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            out.append((number, _messages(line, f"{path}:{number}")))
    if not out:
        raise ChatDataError(
            f"{path} holds no conversations; write one JSON object per line: "
            '{"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}'
        )
    return out


def _messages(line: str, where: str) -> list[dict]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ChatDataError(f"{where}:{exc.colno}: not JSON ({exc.msg}); each line is one "
                            '{"messages": [...]} object') from None
    if not isinstance(record, dict) or "messages" not in record:
        raise ChatDataError(f'{where}: expected an object with a "messages" list, got {_short(record)}')
    messages = record["messages"]
    if not isinstance(messages, list) or not messages:
        raise ChatDataError(f'{where}: "messages" must be a non-empty list of {{"role", "content"}} objects')
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise ChatDataError(f'{where}: message {i} must be an object with string "role" and "content", '
                                f"got {_short(m)}")
        if m["role"] not in ROLES:
            raise ChatDataError(f"{where}: message {i} has role {m['role']!r}; use one of {', '.join(ROLES)}")
    if not any(m["role"] == "assistant" for m in messages):
        raise ChatDataError(f"{where}: the conversation has no assistant message, so nothing to learn from")
    return messages


def _short(value) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def encode_conversation(tokenizer, messages: list[dict], where: str = "conversation") -> tuple[list[int], list[int]]:
    """Token ids of the rendered conversation and a same-length 0/1 mask: 1 marks the tokens of
    assistant turns (the targets the loss counts)."""
    from lm.chat import ChatTemplateError, apply_chat_template

    def encode(chat: list[dict], generation_prompt: bool) -> list[int]:
        try:
            text = apply_chat_template(tokenizer, chat, add_generation_prompt=generation_prompt)
        except ChatTemplateError as exc:
            raise ChatDataError(f"{where}: {exc}") from None
        return tokenizer.encode(text, allowed_special="all")

    ids = encode(messages, False)
    mask = [0] * len(ids)
    for k, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = encode(messages[:k], True)
        through = encode(messages[: k + 1], False)
        if through[: len(prompt)] != prompt or ids[: len(through)] != through:
            raise ChatDataError(
                f"{where}: the chat template renders the turns before assistant message {k} differently "
                "once it is answered (or its tokens merge across the turn boundary), so its tokens "
                "cannot be told apart exactly; this template cannot be used with --chat-data"
            )
        if len(through) == len(prompt):
            raise ChatDataError(f"{where}: assistant message {k} renders to no tokens; give it some content")
        for i in range(len(prompt), len(through)):
            mask[i] = 1
    return ids, mask


def encode_file(path, tokenizer) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], dict]:
    """The training and validation streams `(ids, mask)` of a conversations file, and a summary.

    About a tenth of the conversations (every tenth one, at least one when there are two or
    more) is held out for validation; each conversation is followed by the document separator,
    which is not a target.
    """
    if tokenizer.chat_template is None:
        raise ChatDataError(
            "--chat-data needs a model with a chat template (an instruct model); "
            "the model given to --init has none"
        )
    conversations = read_conversations(path)
    eot = tokenizer.eot_id
    n = len(conversations)
    n_val = 0 if n < 2 else max(1, round(n * VAL_FRACTION))
    val_every = n / n_val if n_val else 0
    val_picks = {int(i * val_every) + int(val_every) - 1 for i in range(n_val)} if n_val else set()
    splits: dict[str, tuple[list[int], list[int]]] = {"train": ([], []), "val": ([], [])}
    counts = {"train": 0, "val": 0}
    for index, (number, messages) in enumerate(conversations):
        ids, mask = encode_conversation(tokenizer, messages, f"{path}:{number}")
        split = "val" if index in val_picks else "train"
        splits[split][0].extend(ids + [eot])
        splits[split][1].extend(mask + [0])
        counts[split] += 1
    dtype = np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.uint32
    out = tuple((np.asarray(i, dtype=dtype), np.asarray(m, dtype=np.uint8)) for i, m in (splits["train"], splits["val"]))
    info = {"conversations": counts, "target_tokens": {s: int(sum(splits[s][1])) for s in splits}}
    return out[0], out[1], info

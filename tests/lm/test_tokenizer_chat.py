"""Chat templates: rendering equals transformers' `apply_chat_template`, untrusted templates are
contained, and the end-of-turn token is found.

`fixtures/tokenizers/chat_templates.json` holds transformers' output (made by
`fixtures/make_tokenizer_fixtures.py`); where transformers is installed it is also asked live.
"""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import pytest

pytest.importorskip("jinja2")

from lm.chat import (  # noqa: E402
    ChatTemplateError,
    apply_chat_template,
    chat_stop_ids,
    end_of_turn_id,
    end_of_turn_token,
    render_chat,
)

FIXTURES = Path(__file__).parent / "fixtures" / "tokenizers"
CASES = json.loads((FIXTURES / "chat_templates.json").read_text(encoding="utf-8"))


def _id(case):
    return f"{case['template_name']}-{case['conversation']}-{'gen' if case['add_generation_prompt'] else 'nogen'}"


def test_fixtures_cover_chatml_and_llama3_with_and_without_system():
    seen = {(c["template_name"], c["conversation"]) for c in CASES}
    for name in ("smollm2_chatml", "llama3_style"):
        assert {(name, "system"), (name, "no_system")} <= seen


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_render_equals_transformers(case):
    rendered = render_chat(case["template"], case["messages"], case["add_generation_prompt"],
                           bos_token=case["bos_token"], eos_token=case["eos_token"])
    assert rendered == case["rendered"]


@pytest.mark.parametrize("case", CASES[:4], ids=_id)
def test_render_equals_live_transformers(case):
    try:
        from transformers import PreTrainedTokenizerFast
    except ImportError as exc:  # not installed (as in CI), or an install that cannot import
        pytest.skip(f"transformers cannot be imported: {exc}")
    from tokenizers import Tokenizer, models

    hf = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE()),
                                 bos_token=case["bos_token"], eos_token=case["eos_token"])
    hf.chat_template = case["template"]
    messages = case["messages"] + [{"role": "user", "content": "ünïcode \"quotes\" <b>tags</b>"}]
    expected = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert render_chat(case["template"], messages, True, bos_token=case["bos_token"],
                       eos_token=case["eos_token"]) == expected


@pytest.mark.parametrize(
    "template",
    [
        "{{ messages.__class__ }}",
        "{{ ''.__class__.__mro__ }}",
        "{{ messages | attr('__class__') }}",
        "{{ messages['__class__'] }}",
        "{% for m in messages %}{{ m.__class__.__init__.__globals__ }}{% endfor %}",
    ],
)
def test_templates_reaching_for_python_internals_are_refused(template):
    with pytest.raises(ChatTemplateError, match="refused") as info:
        render_chat(template, [{"role": "user", "content": "x"}])
    assert "\n" not in str(info.value)


def test_the_sandbox_still_guards_what_the_static_check_cannot_see():
    # An attribute name built at run time gets past the check of the template's text; the
    # sandbox refuses it when it renders.
    template = "{% set n = '_' ~ '_class_' ~ '_' %}{{ messages | attr(n) }}"
    with pytest.raises(ChatTemplateError, match="refused: it tried to reach Python internals"):
        render_chat(template, [{"role": "user", "content": "x"}])
    with pytest.raises(ChatTemplateError, match="unsafe"):
        render_chat("{% set x = messages.append(1) %}", [{"role": "user", "content": "x"}])


def test_messages_reach_the_template_as_plain_data():
    class Sneaky(str):
        def evil(self):
            raise AssertionError("called")

    out = render_chat("{{ messages[0].content }}|{{ messages[0].extra }}",
                      [{"role": "user", "content": Sneaky("hi"), "extra": object()}])
    assert out == "hi|<object>"


def test_raise_exception_and_broken_templates_are_chat_template_errors():
    with pytest.raises(ChatTemplateError, match="Conversation roles must alternate"):
        render_chat("{{ raise_exception('Conversation roles must alternate') }}", [])
    with pytest.raises(ChatTemplateError, match="line 1"):
        render_chat("{% for %}", [])
    with pytest.raises(ChatTemplateError, match="list of"):
        render_chat("{{ messages }}", "hello")


def test_missing_jinja2_names_the_extra(monkeypatch):
    import lm.chat as chat

    real_import = builtins.__import__

    def no_jinja(name, *args, **kwargs):
        if name.split(".")[0] == "jinja2":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_jinja)
    chat._compile.cache_clear()
    chat._environment.cache_clear()
    try:
        with pytest.raises(ChatTemplateError, match=r"pip install 'quantatissu\[llama\]'"):
            render_chat("{{ messages }}", [])
    finally:
        monkeypatch.undo()
        chat._compile.cache_clear()
        chat._environment.cache_clear()


def test_end_of_turn_tokens():
    by_name = {c["template_name"]: c for c in CASES}
    specials = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|begin_of_text|>",
                "<s>", "</s>"]
    chatml = by_name["smollm2_chatml"]
    assert end_of_turn_token(chatml["template"], specials) == "<|im_end|>"
    llama3 = by_name["llama3_style"]
    assert end_of_turn_token(llama3["template"], specials, bos_token="<|begin_of_text|>") == "<|eot_id|>"
    helpers = by_name["helpers"]
    assert end_of_turn_token(helpers["template"], specials, bos_token="<s>", eos_token="</s>") == "</s>"
    assert end_of_turn_token("{% for m in messages %}{{ m.content }}\n{% endfor %}", specials) is None


def test_tokenizer_helpers_on_a_gguf_vocabulary():
    gguf = pytest.importorskip("gguf")
    from lm.tokenizer_import import tokenizer_from_gguf

    tok = tokenizer_from_gguf(gguf.GGUFReader(FIXTURES / "gguf_smollm2_subset.gguf"))
    prompt = apply_chat_template(tok, [{"role": "user", "content": "Hi"}])
    assert prompt.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    ids = tok.encode(prompt, "all")
    assert ids.count(tok.special_tokens["<|im_start|>"]) == 3 and tok.decode(ids) == prompt
    im_end = tok.special_tokens["<|im_end|>"]
    assert end_of_turn_id(tok) == im_end and im_end in chat_stop_ids(tok)
    tok.chat_template = None
    with pytest.raises(ChatTemplateError, match="no chat template"):
        apply_chat_template(tok, [])

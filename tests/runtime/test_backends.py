"""Generation settings from directives, the echo backend, and backend selection."""

from __future__ import annotations

import doctest
import sys

import pytest
from hypothesis import given, settings, strategies as st

import runtime.backends.base
import runtime.backends.echo
import runtime.backends.http
from runtime.backends import (
    BackendError,
    BackendNotConfigured,
    EchoBackend,
    GenerationSettings,
    HttpBackend,
    ModelBackend,
    SettingsError,
    estimate_tokens,
    is_backend_spec,
    require_backend,
    resolve_backend,
)


@pytest.mark.parametrize("module", [runtime.backends.base, runtime.backends.echo, runtime.backends.http])
def test_docstring_examples_hold(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


# -- settings ---------------------------------------------------------------------------

def test_settings_from_directives_convert_and_ignore_others():
    s = GenerationSettings.from_directives({
        "persona": "terse", "temperature": 1, "top_k": 40.0, "top_p": 0.5, "min_p": 0,
        "max_tokens": 12, "seed": 3, "stop": "END", "timeout": "1m", "shell": "bash",
        "output": "json",
    })
    assert s == GenerationSettings(persona="terse", temperature=1.0, top_k=40, top_p=0.5,
                                   min_p=0.0, max_tokens=12, seed=3, stop=("END",), timeout=60.0)
    assert GenerationSettings.from_directives({}) == GenerationSettings()


@pytest.mark.parametrize("directives, text", [
    ({"temperature": "hot"}, "@temperature must be a number, got 'hot'"),
    ({"temperature": -0.1}, "@temperature must be a number at least 0"),
    ({"temperature": True}, "@temperature must be a number, got True"),
    ({"top_p": 1.5}, "@top_p must be a number between 0 and 1"),
    ({"max_tokens": 0}, "@max_tokens must be a whole number of at least 1"),
    ({"max_tokens": 2.5}, "@max_tokens must be a whole number, got 2.5"),
    ({"seed": "7"}, "@seed must be a whole number"),
    ({"stop": ["a", 3]}, "@stop must be a non-empty string or a list of them"),
    ({"stop": ""}, "@stop must be a non-empty string"),
    ({"persona": 3}, "@persona must be a string"),
    ({"timeout": "soon"}, "@timeout must be a duration like 30"),
    ({"timeout": 0}, "@timeout must be a positive duration"),
])
def test_bad_directive_values_are_script_errors(directives, text):
    with pytest.raises(SettingsError) as info:
        GenerationSettings.from_directives(directives)
    assert text in str(info.value)
    assert info.value.exit_code == 2 and isinstance(info.value, BackendError)


# -- echo -------------------------------------------------------------------------------

def test_echo_returns_the_final_prompt_with_persona():
    completion = EchoBackend().generate("Summarise the log", GenerationSettings(persona="You are terse."))
    assert completion.text == "You are terse.\n\nSummarise the log"
    assert completion.finish_reason == "stop" and completion.model == "echo"
    assert completion.prompt_tokens == estimate_tokens("You are terse.\n\nSummarise the log")
    assert completion.completion_tokens == completion.prompt_tokens


def test_echo_honours_stop_sequences_and_max_tokens():
    echo = EchoBackend()
    assert echo.generate("one two. three END four", GenerationSettings(stop=("END", "."))).text == "one two"
    cut = echo.generate("x" * 100, GenerationSettings(max_tokens=5))
    assert cut.text == "x" * 20 and cut.finish_reason == "length" and cut.completion_tokens == 5


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=200), st.integers(min_value=1, max_value=30))
def test_echo_never_exceeds_max_tokens_and_is_a_prefix(prompt, max_tokens):
    completion = EchoBackend().generate(prompt, GenerationSettings(max_tokens=max_tokens))
    assert completion.completion_tokens <= max_tokens
    assert prompt.startswith(completion.text)


def test_backends_satisfy_the_protocol():
    assert isinstance(EchoBackend(), ModelBackend)
    assert isinstance(HttpBackend("http://localhost:9/v1"), ModelBackend)


@settings(max_examples=100, deadline=None)
@given(st.text())
def test_token_estimate_is_bytes_over_four_rounded_up(text):
    n = len(text.encode("utf-8"))
    assert estimate_tokens(text) * 4 >= n > (estimate_tokens(text) - 1) * 4


# -- selection ---------------------------------------------------------------------------

def test_nothing_configured_resolves_to_none_and_require_says_how():
    assert resolve_backend(None, env={}, default_local=False) is None
    assert resolve_backend("  ", env={}, default_local=False) is None
    with pytest.raises(BackendNotConfigured) as info:
        require_backend(None)
    message = str(info.value)
    assert "--model echo" in message and "--model http://" in message and "TISS_MODEL" in message


def test_nothing_configured_is_the_default_local_model_loaded_lazily():
    from runtime.backends.local import LocalBackend
    from runtime.backends.select import default_model_installed

    assert default_model_installed(), "lm/default_model/ ships with the package"
    backend = resolve_backend(None, env={})
    assert isinstance(backend, LocalBackend) and backend.path is None
    assert backend._loaded is None  # nothing read until a PROMPT_AGENT needs it


def test_flag_wins_over_environment():
    env = {"TISS_MODEL": "http://example.invalid/v1"}
    assert isinstance(resolve_backend("echo", env=env), EchoBackend)
    from_env = resolve_backend(None, "m", env=env)
    assert isinstance(from_env, HttpBackend) and from_env.base_url == "http://example.invalid/v1"
    assert from_env.model_name == "m"


def test_unknown_scheme_and_missing_path_are_clear_errors(tmp_path):
    with pytest.raises(BackendError, match="only http:// and https://"):
        resolve_backend("ftp://host/model", env={})
    with pytest.raises(BackendError, match="neither `echo`, an http\\(s\\):// URL, nor a checkpoint"):
        resolve_backend(str(tmp_path / "absent"), env={})


def test_checkpoint_path_uses_the_local_backend_or_says_it_is_unavailable(tmp_path, monkeypatch):
    try:
        import runtime.backends.local  # noqa: F401  (written in the generation issue)
    except ModuleNotFoundError:
        with pytest.raises(BackendError, match="local checkpoints are not available"):
            resolve_backend(str(tmp_path), env={})
    # With a stand-in local module the path goes to LocalBackend(path).
    made = []

    class FakeLocal:
        name = "local"

        def __init__(self, path):
            made.append(path)

    fake = type(sys)("runtime.backends.local")
    fake.LocalBackend = FakeLocal
    monkeypatch.setitem(sys.modules, "runtime.backends.local", fake)
    assert isinstance(resolve_backend(str(tmp_path), env={}), FakeLocal)
    assert made == [tmp_path]


def test_is_backend_spec():
    assert is_backend_spec("echo") and is_backend_spec("https://api.example.com/v1")
    assert not is_backend_spec("gpt-4o-mini") and not is_backend_spec("./ckpt")


def test_http_url_must_have_a_host_and_no_credentials():
    with pytest.raises(BackendError, match="not a model server URL"):
        HttpBackend("http:///v1")
    with pytest.raises(BackendError, match="put the API key in the TISS_API_KEY") as info:
        HttpBackend("https://me:s3cret@api.example.com/v1")
    assert "s3cret" not in str(info.value)

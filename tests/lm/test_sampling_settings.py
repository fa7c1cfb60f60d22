"""`lm.generate.SamplingSettings`: the one definition of the sampling settings, and its users."""

import dataclasses

import pytest

from lm.errors import LMError
from lm.generate import GenerationError, SamplingSettings, generate, stream
from lm.sampling import SamplingError

from test_generate import ByteTokenizer, make_model

FIELDS = [f.name for f in dataclasses.fields(SamplingSettings)]


def test_the_fields_and_their_defaults():
    assert FIELDS == ["max_new_tokens", "temperature", "top_k", "top_p", "min_p", "repetition_penalty",
                      "stop", "seed"]
    assert SamplingSettings() == SamplingSettings(128, 1.0, None, None, None, 1.0, (), None)


@pytest.mark.parametrize(
    "kw, error, message",
    [
        (dict(max_new_tokens=-1), GenerationError, "max_new_tokens must be a whole number >= 0, got -1"),
        (dict(max_new_tokens=True), GenerationError, "max_new_tokens must be a whole number >= 0, got True"),
        (dict(max_new_tokens=None), GenerationError, "max_new_tokens must be a whole number >= 0, got None"),
        (dict(temperature=-0.5), SamplingError, "temperature must be a number >= 0 (0 means greedy), got -0.5"),
        (dict(temperature=float("nan")), SamplingError, "temperature must be a number >= 0"),
        (dict(top_k=0), SamplingError, "top_k must be a whole number >= 1, got 0"),
        (dict(top_p=0), SamplingError, "top_p must be in (0, 1], got 0"),
        (dict(min_p=1.5), SamplingError, "min_p must be in [0, 1], got 1.5"),
        (dict(repetition_penalty=0), GenerationError, "repetition_penalty must be > 0 (1 means none), got 0"),
        (dict(stop=[""]), GenerationError, "stop sequences must be non-empty strings, got ''"),
        (dict(stop=["a", 3]), GenerationError, "stop sequences must be non-empty strings, got 3"),
        (dict(seed=-1), GenerationError, "seed must be a whole number >= 0, got -1"),
        (dict(seed=1.5), GenerationError, "seed must be a whole number >= 0, got 1.5"),
    ],
)
def test_a_bad_setting_is_named_when_the_settings_are_made(kw, error, message):
    with pytest.raises(error) as info:
        SamplingSettings(**kw)
    assert str(info.value).startswith(message)
    assert isinstance(info.value, LMError)  # the CLI prints it as a one-line error, exit 2


def test_stop_is_always_a_tuple():
    assert SamplingSettings(stop="END").stop == ("END",)
    assert SamplingSettings(stop=None).stop == ()
    assert SamplingSettings(stop=["a", "b"]).stop == ("a", "b")
    hash(SamplingSettings(stop=["a"]))  # frozen and hashable, lists included


def test_from_options_takes_the_fields_and_ignores_the_rest():
    options = {"temperature": 0.0, "top_k": 5, "stop": [], "checkpoint": "x", "stats": True}
    assert SamplingSettings.from_options(options) == SamplingSettings(temperature=0.0, top_k=5)
    base = SamplingSettings(max_new_tokens=7, seed=3)
    assert SamplingSettings.from_options({"seed": 4}, base) == SamplingSettings(max_new_tokens=7, seed=4)
    with pytest.raises(SamplingError, match="top_p"):
        SamplingSettings.from_options({"top_p": 2.0}, base)  # replacing validates again


def test_stream_takes_the_settings_whole_or_as_keywords():
    model, tok = make_model(), ByteTokenizer()
    settings = SamplingSettings(max_new_tokens=12, temperature=0.9, top_k=20, seed=5)
    whole = generate(model, tok, "ab", settings=settings)
    by_keyword = generate(model, tok, "ab", 12, temperature=0.9, top_k=20, seed=5)
    assert whole.token_ids == by_keyword.token_ids and whole.completion_tokens == 12
    # Keywords, then a positional max_new_tokens, go on top of the settings given whole.
    s = stream(model, tok, "ab", 3, settings=settings, seed=6)
    assert s.settings == dataclasses.replace(settings, max_new_tokens=3, seed=6)
    assert stream(model, tok, "ab").settings == SamplingSettings()


def test_an_unknown_keyword_is_a_type_error_naming_the_settings():
    with pytest.raises(TypeError, match="'temprature'.*temperature"):
        stream(make_model(), ByteTokenizer(), "ab", temprature=0.5)


def test_tiss_generate_has_a_flag_for_every_field_and_passes_them_all():
    # The CLI declares its flags (argparse stays the CLI's), named like the fields, so that
    # cmd_generate hands them over in one piece; a field without a flag fails here.
    from runtime.cli import create_parser

    args = create_parser().parse_args(["generate", "--prompt", "x"])
    assert set(FIELDS) <= set(vars(args))
    settings = SamplingSettings.from_options(vars(args))
    assert settings == SamplingSettings(temperature=0.8)  # the CLI's own default temperature
    args = create_parser().parse_args(
        ["generate", "--prompt", "x", "--max-new-tokens", "9", "--temperature", "0.5", "--top-k", "3",
         "--top-p", "0.9", "--min-p", "0.1", "--repetition-penalty", "1.3", "--stop", "a", "--stop", "b",
         "--seed", "2"])
    assert SamplingSettings.from_options(vars(args)) == SamplingSettings(9, 0.5, 3, 0.9, 0.1, 1.3, ("a", "b"), 2)


def test_the_local_backend_builds_the_same_settings():
    from runtime.backends.base import GenerationSettings
    from runtime.backends.local import _sampling

    assert _sampling(GenerationSettings()) == SamplingSettings(max_new_tokens=256, temperature=0.8)
    got = _sampling(GenerationSettings.from_directives(
        {"temperature": 0.3, "top_k": 0, "top_p": 0, "min_p": 0, "max_tokens": 5, "seed": 1, "stop": "x"}))
    assert got == SamplingSettings(max_new_tokens=5, temperature=0.0, stop=("x",), seed=1)

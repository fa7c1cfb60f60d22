"""Any input at all gives a Program or a positioned TissSyntaxError, never another exception;
and any Program it gives formats back to itself and checks without an exception."""

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tisslang import TissSyntaxError, check, format, parse

EXAMPLES = [p.read_text(encoding="utf-8")
            for p in sorted((Path(__file__).parents[2] / "examples").glob("*.tiss"))]
# Pieces of syntax that make mutations interesting: openers, closers, keywords, quotes.
FRAGMENTS = ["{", "}", "[", "]", "(", ")", '"', "'", "\\", "<<EOF", "<<'R'", "EOF", "\n", ";",
             "#", "{{", "}}", " ELSE ", " CATCH ", "IF ", "NOT ", " AND ", "==", "=", "@x ",
             "STEP ", "RUN ", "ASSERT ", "TASK ", "SETUP ", ",", ":", "-", ".", "\t", "\r", "\ufeff",
             "{{ RUN }}", "{{ x.y }}", "\\{", "\\u00e9"]


def parses_or_raises_positioned(source):
    try:
        program = parse(source, "fuzz.tiss")
    except TissSyntaxError as error:
        lines = source.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        assert 1 <= error.line <= len(lines) + 1, error
        assert error.column >= 1, error
        assert error.render().startswith(f"fuzz.tiss:{error.line}:{error.column}: error: ")
        return
    # Whatever parses, the other tools take too: tiss fmt round-trips it, tiss check runs.
    text = format(program)
    assert parse(text, "formatted.tiss") == program, text
    check(program)


@st.composite
def mutated_examples(draw):
    text = draw(st.sampled_from(EXAMPLES))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "replace", "duplicate"]))
        if action == "insert":
            text = text[:pos] + draw(st.sampled_from(FRAGMENTS)) + text[pos:]
        elif action == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 20)):]
        elif action == "replace":
            text = text[:pos] + draw(st.sampled_from(FRAGMENTS)) + text[pos + 1:]
        else:
            end = min(len(text), pos + draw(st.integers(1, 40)))
            text = text[:end] + text[pos:end] + text[end:]
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_examples())
def test_mutated_examples(source):
    parses_or_raises_positioned(source)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_random_text(source):
    parses_or_raises_positioned(source)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS + ["a", "1", "x.y", "true", "LOG ", "VAR "]),
                max_size=30).map("".join))
def test_random_token_soup(source):
    parses_or_raises_positioned(source)

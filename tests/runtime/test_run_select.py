"""`tiss run -k`'s expressions (runtime/selection.py) against Python's own evaluation of the same
`and` / `or` / `not` / parentheses, whose precedence pytest's `-k` shares."""

from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.selection import compile_pattern

WORDS = ["alpha", "beta", "gamma", "delta"]


def expressions():
    leaves = st.sampled_from(WORDS)
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.builds(lambda e: f"not {e}", inner),
            st.builds(lambda a, b: f"{a} and {b}", inner, inner),
            st.builds(lambda a, b: f"{a} or {b}", inner, inner),
            st.builds(lambda e: f"({e})", inner),
        ),
        max_leaves=8,
    )


@settings(max_examples=300, deadline=None)
@given(expressions(), st.lists(st.sampled_from(WORDS), max_size=4), st.booleans())
def test_k_evaluates_as_python_evaluates_the_same_expression(pattern, present, upper):
    description = " ".join(present) + " step"
    if upper:
        description = description.upper()  # matching ignores case
    # Python's reading of the same text, each word replaced by whether the description holds it.
    python = " ".join(
        str(word.strip("()") in present).join(part for part in word.split(word.strip("()")))
        if word.strip("()") in WORDS else word
        for word in pattern.split()
    )
    assert compile_pattern(pattern)(description) == eval(python)  # noqa: S307 (built from WORDS only)

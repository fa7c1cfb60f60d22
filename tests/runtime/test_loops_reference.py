"""FOR FILES and `@output "json"` against independent references: Python's `glob` module on a
tree without symlinks, and the `json` module on answers that wrap JSON in prose and fences."""

from __future__ import annotations

import glob
import json

import pytest
from hypothesis import given, settings, strategies as st

from runtime.answers import InvalidAnswer, parse_answer
from runtime.workspace import Workspace

PATTERNS = ["*", "*.py", "src/*", "**", "**/*.py", "src/**", "src/**/*.py", "*/*.py", ".hid/*",
            "**/.e.py", "src/[ab].py", "s?c/*", "**/sub", "src/sub/*", "nothing/*", "src/*.txt"]


@pytest.fixture
def tree(tmp_path):
    for name in ("a.py", "b.txt", "src/b.py", "src/a.py", "src/c.txt", "src/sub/c.py",
                 ".hid/d.py", "src/.e.py", "src/sub/.f/g.py"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
    return tmp_path


@pytest.mark.parametrize("pattern", PATTERNS)
def test_workspace_glob_matches_pythons_glob_where_no_symlink_is_involved(tree, pattern):
    want = sorted(path.rstrip("/") for path in glob.glob(pattern, root_dir=tree, recursive=True))
    assert Workspace(tree).glob(pattern) == want


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
containers = st.one_of(st.lists(json_values, max_size=3),
                       st.dictionaries(st.text(max_size=5), json_values, max_size=3))
prose = st.text(st.characters(blacklist_characters="{["), max_size=30)


@settings(max_examples=100, deadline=None)
@given(value=containers, before=prose, after=st.text(max_size=30), fenced=st.booleans(),
       indent=st.none() | st.integers(0, 2))
def test_the_first_json_container_in_an_answer_is_its_value(value, before, after, fenced, indent):
    body = json.dumps(value, indent=indent)
    text = before + ("```json\n" + body + "\n```\n" if fenced else body) + after
    assert parse_answer(text) == value


def test_brackets_that_are_not_json_are_skipped_and_no_json_fails():
    assert parse_answer('Use [the list] or {this}: {"ok": [1, 2]} and [3]') == {"ok": [1, 2]}
    with pytest.raises(InvalidAnswer, match="holds no JSON object or array"):
        parse_answer('"just a string" 42 true')

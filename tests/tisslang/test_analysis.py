"""tisslang.analysis: tolerant parsing, variable sites, node_at and the built-in docs."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

import tisslang
from tisslang import ast, checker
from tisslang.analysis import BUILTIN_DOCS, node_at, parse_tolerant, reparse, variable_sites

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.tiss"))
TEXTS = [p.read_text(encoding="utf-8") for p in EXAMPLES]


def test_a_valid_script_parses_whole():
    outcome = parse_tolerant('STEP "a" {\n    RUN "x"\n}\n')
    assert outcome.error is None and outcome.partial is None
    assert outcome.best == tisslang.parse('STEP "a" {\n    RUN "x"\n}\n')


def test_what_parsed_before_a_syntax_error_is_kept():
    source = 'VAR a = 1\nSTEP "one" {\n    RUN "x"\n    ASSERT ==\n}\nSTEP "two" { RUN "y" }\n'
    outcome = parse_tolerant(source)
    assert outcome.program is None
    assert (outcome.error.line, outcome.error.column) == (4, 12)
    assert outcome.partial_lines == 3
    assert outcome.partial == tisslang.parse('VAR a = 1\nSTEP "one" {\n    RUN "x"\n}\n')


def test_an_unclosed_heredoc_keeps_the_lines_above_it():
    outcome = parse_tolerant('RUN "a"\nWRITE "f" <<EOF\nbody\n')
    assert outcome.error.message.startswith("heredoc <<EOF is never closed")
    assert outcome.partial == tisslang.parse('RUN "a"\n')


def test_nothing_parsed_gives_no_partial_tree():
    outcome = parse_tolerant("RUNN x\n")
    assert outcome.error is not None and outcome.best is None


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(TEXTS), st.integers(0, 10_000), st.text(max_size=8))
def test_any_cut_and_splice_of_an_example_never_raises(text, cut, junk):
    cut %= len(text) + 1
    source = text[:cut] + junk + text[cut:]
    outcome = parse_tolerant(source)
    assert (outcome.program is None) == (outcome.error is not None)
    if outcome.partial is not None:
        assert all(stmt.line <= outcome.partial_lines for stmt in outcome.partial.body)


def _site_texts(source: str):
    program = tisslang.parse(source)
    lines = source.split("\n")
    for site in variable_sites(program, lines):
        assert site.line == site.end_line
        yield site, lines[site.line - 1][site.column - 1:site.end_column - 1]


def test_every_variable_site_spans_exactly_its_name():
    for text in TEXTS + ['VAR  x = 1\nREAD "f" AS y\nPROMPT_AGENT "p" INTO z\n'
                         'LOG "{{x}} {{ y }} \\{ {{   z }}"\nWRITE "o" <<E\n  {{ x }}\n  E\n']:
        for site, written in _site_texts(text):
            assert written == site.name


def test_definitions_and_references_are_told_apart():
    sites = list(_site_texts('VAR x = 1\nASSERT x == 1\nREAD "f" AS x\n'))
    assert [(s.definition, s.line, s.column) for s, _ in sites] == [
        (True, 1, 5), (False, 2, 8), (True, 3, 13)]


def test_node_at_finds_the_innermost_node():
    program = tisslang.parse('ASSERT LAST_RUN.EXIT_CODE == 0\n')
    assert isinstance(node_at(program, 1, 8), ast.Ref)
    assert isinstance(node_at(program, 1, 1), ast.Assert)
    assert node_at(program, 1, 3) is None


def test_builtin_docs_describe_exactly_the_checkers_builtins():
    assert set(BUILTIN_DOCS) == set(checker.BUILTINS)
    for name, fields in checker.BUILTINS.items():
        what, docs = BUILTIN_DOCS[name]
        assert what and set(docs) == set(fields), name
        assert all(docs.values())


def test_node_at_agrees_with_a_walk_of_every_node():
    for text in TEXTS:
        program = tisslang.parse(text)
        innermost: dict[tuple[int, int], ast.Node] = {}
        for node in tisslang.walk(program):
            if node is program:
                continue
            key = (node.line, node.column)
            other = innermost.get(key)
            if other is None or (node.end_line, node.end_column) <= (other.end_line, other.end_column):
                innermost[key] = node
        for (line, column), node in innermost.items():
            assert node_at(program, line, column) is node, (line, column)


# --- reparse: typing within lines ------------------------------------------------------------

NESTED = '''\
#TISS! a=b
TASK "t" {
    @model "echo"  # a comment
    VAR n = [1, {k: "v"}]
    STEP "outer" {
        IF n CONTAINS 1 THEN {
            RUN "echo {{ n }}"   # trailing
        } ELSE IF false {
            LOG "x"
        }
        # between
        ELSE {
            TRY {
                WRITE "f" <<EOF
                body {{ n }} IF {
                EOF
            } CATCH {
                LOG "{{ LAST_ERROR.MESSAGE }}"
            }
        }
        CHOOSE {
            OPTION "a" { RUN "a" }
            STEP "b" {
                RUN "b"; RUN "c"
            }
        }
    }
}
'''
PIECES = ["", " ", "x", "1", '"', "'", "{", "}", "<<EOF", "EOF", "#", "RUN", "STEP", "ELSE",
          "{{ n }}", "\\", "[", "]", "TASK", "SETUP", ";", "==", "OPTION", "=", "\t"]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(TEXTS + [NESTED]), st.data())
def test_reparse_gives_exactly_what_a_full_parse_gives(text, data):
    lines = text.split("\n")
    new_lines = list(lines)
    for _ in range(data.draw(st.integers(1, 2))):
        i = data.draw(st.integers(0, len(lines) - 1))
        line = new_lines[i]
        a = data.draw(st.integers(0, len(line)))
        b = data.draw(st.integers(a, min(len(line), a + 4)))
        new_lines[i] = line[:a] + data.draw(st.sampled_from(PIECES)) + line[b:]
    old = tisslang.parse(text)
    new_text = "\n".join(new_lines)
    fast = reparse(old, lines, new_lines)
    try:
        full = tisslang.parse(new_text)
    except tisslang.TissSyntaxError:
        assert fast is None
        return
    if fast is not None:
        assert fast.to_json() == full.to_json()  # every field, position and comment
        assert tisslang.format(fast) == tisslang.format(full)  # layout (ELSE / CATCH lines) too


def test_reparse_of_a_string_edit_in_a_nested_step():
    lines = NESTED.split("\n")
    new = list(lines)
    new[6] = new[6].replace("echo", "printf")
    fast = reparse(tisslang.parse(NESTED), lines, new)
    assert fast is not None and fast.to_json() == tisslang.parse("\n".join(new)).to_json()


def test_reparse_declines_what_it_cannot_do_exactly():
    lines = NESTED.split("\n")
    program = tisslang.parse(NESTED)
    added = lines[:6] + ['        RUN "new"'] + lines[6:]
    assert reparse(program, lines, added) is None  # a line more
    header = ["#TISS! a=c"] + lines[1:]
    assert reparse(program, lines, header) is None  # the header line
    shared = list(lines)
    shared[23] = shared[23].replace('"c"', '"d"')  # RUN "b"; RUN "c": no statement owns it alone
    fast = reparse(program, lines, shared)  # ... so the STEP around them is parsed again
    assert fast is not None and fast.to_json() == tisslang.parse("\n".join(shared)).to_json()

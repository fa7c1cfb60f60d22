"""format(): canonical source that parses back to the same tree, keeps comments, is idempotent."""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tisslang import ast, format, parse
from tisslang.formatter import FormatError

from tiss_strategies import programs

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.tiss"))

SCRIPTS = [
    'RUN "a"; RUN "b"',
    'STEP "quick" { RUN "make" }',
    'IF a THEN { LOG "x" }\nELSE IF b { } ELSE { LOG "z" }',
    'TRY { ASSERT false }\nCATCH { LOG "{{ LAST_ERROR.MESSAGE }}" }',
    "CHOOSE { STEP 'a' { } ; OPTION \"b\" { RUN 'x' } }",
    "SET_BUDGET TOKEN_COUNT = 5",
    'SETUP { } ; TEARDOWN "t" { }',
    "ASSERT NOT (a OR b) AND (c == 1) == true OR NOT NOT d",
    "ASSERT (a AND b) AND c",
    'VAR o = {"a b": [1, -2.5, 1e+30, true], c: {}, "RUN": x.y}',
    'LOG "tab\\t quote\\" brace\\{ {{ x }} \\u0007"',
    "ASSERT x MATCHES '^\\d{3}$'",
    'WRITE "f" <<EOF\n    indented\n\n  {{ name }}\nEOF\n',
    "WRITE \"f\" <<'RAW'\n  {{ not interpolated }}\n  RAW\n",
    'STEP "s" {\n        WRITE "f" <<EOF\n        a\n          b\n        EOF\n}\n',
    "@model 'echo'\n@flag\nTASK \"t\"",
    "#TISS! A=1 B=two\nRUN \"x\"",
    # Keywords are references inside {{ }} (only code positions reserve them).
    'LOG "{{ TASK }} {{ RUN }} {{ STEP.DESCRIPTION }}"\nWRITE "f" <<EOF\n{{ IF }}\nEOF\n',
]


def round_trip(source):
    program = parse(source)
    text = format(program)
    again = parse(text)
    assert again == program, text
    assert format(again) == text, "format is not idempotent"
    return text


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_round_trip_and_are_already_formatted(path):
    source = path.read_text(encoding="utf-8")
    assert round_trip(source) == source


@pytest.mark.parametrize("source", SCRIPTS)
def test_scripts_round_trip(source):
    round_trip(source)


def test_canonical_layout_keeps_comments_and_one_blank_line():
    source = (
        "#TISS! Language=Shell\n"
        "# leading comment\n"
        "\n\n\n"
        'STEP "a" { RUN "x" }   # after the step\n'
        "# before b\n"
        'STEP "b" {\n'
        "  LOG 'y'\n"
        "\n"
        "  # at the end of b\n"
        "}\n"
        "IF c { } # if line\n"
        "ELSE { RUN 'z' }\n"
        "# trailing\n"
    )
    assert format(parse(source)) == (
        "#TISS! Language=Shell\n"
        "# leading comment\n"
        "\n"
        'STEP "a" {  # after the step\n'
        '    RUN "x"\n'
        "}\n"
        "# before b\n"
        'STEP "b" {\n'
        '    LOG "y"\n'
        "\n"
        "    # at the end of b\n"
        "}\n"
        "IF c {  # if line\n"
        "} ELSE {\n"
        '    RUN "z"\n'
        "}\n"
        "# trailing\n"
    )
    round_trip(source)


def test_comments_on_else_and_catch_lines_stay_there():
    source = (
        "IF a {\n"
        '    RUN "x"\n'
        "} ELSE {  # why else\n"
        "    # inside the ELSE block\n"
        '    RUN "y"\n'
        "}\n"
        "TRY {\n"
        '    RUN "q"\n'
        "} CATCH {  # why catch\n"
        "    # inside the CATCH block\n"
        '    RUN "r"\n'
        "}\n"
    )
    assert round_trip(source) == source
    # ELSE on the line after the `}` comes back on the closing line with its comment.
    moved = source.replace("} ELSE {", "}\nELSE {")
    assert round_trip(moved) == source


def test_an_empty_header_line_is_kept():
    assert round_trip('#TISS!\nRUN "x"\n') == '#TISS!\nRUN "x"\n'


@pytest.mark.parametrize("comment", ["#TISS! Language=Markdown", "#TISS! not-key-value"])
def test_a_comment_that_reads_like_a_header_stays_a_comment(comment):
    # Found by the fuzz test: below a blank first line this is a comment, not the header; the
    # formatter used to drop the blank line and so turn it into a header (or a header error).
    source = f'\n{comment}\nRUN "x"\n'
    program = parse(source)
    assert program.header == {} and [c.text for c in program.comments] == [comment[1:]]
    text = format(program)
    assert text == f'\n{comment}\nRUN "x"\n'
    assert parse(text) == program and format(parse(text)) == text


def test_hand_built_trees_format_without_positions():
    program = ast.Program({}, (ast.Step(ast.String.of("s"), (ast.Run(ast.String(("echo ", ast.Ref(("x",))))),)),))
    assert format(program) == 'STEP "s" {\n    RUN "echo {{ x }}"\n}\n'


@pytest.mark.parametrize("node, message", [
    (ast.Write(ast.String.of("f"), ast.String.of("no newline"), "EOF", False), "ends with a newline"),
    (ast.Write(ast.String.of("f"), ast.String.of("EOF\n"), "EOF", False), "delimiter line"),
    (ast.Var("RUN", ast.Number(1)), "cannot be a name"),
    (ast.Var("x", ast.Number(float("nan"))), "no TissLang spelling"),
    (ast.Assert(ast.And((ast.Ref(("a",)),))), "two or more operands"),
])
def test_trees_without_a_spelling_raise_format_error(node, message):
    with pytest.raises(FormatError, match=message):
        format(ast.Program({}, (node,)))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_generated_programs_round_trip(program):
    text = format(program)
    parsed = parse(text)
    assert parsed == program, text
    assert format(parsed) == text


def test_every_tiss_block_in_the_reference_parses_and_round_trips():
    doc = (Path(__file__).parents[2] / "docs" / "tisslang.md").read_text(encoding="utf-8")
    blocks = doc.split("```tiss\n")[1:]
    assert len(blocks) >= 8
    for block in blocks:
        round_trip(block.split("```", 1)[0])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(), st.lists(st.tuples(st.integers(0, 10**6), st.booleans(), st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), max_size=8)),
    max_size=6))
def test_comments_anywhere_survive_formatting(program, comments):
    """Comments added on their own lines or at line ends come back, all of them, in order."""
    lines = format(program).split("\n")
    body_lines = set()  # heredoc bodies: a '#' there is text, not a comment
    for node in ast_walk(parse("\n".join(lines))):
        if isinstance(node, ast.Write) and node.delimiter is not None:
            body_lines.update(range(node.line + 1, node.end_line + 1))
    first = 2 if lines[0].startswith("#TISS!") else 1
    for position, at_end, text in comments:
        index = first - 1 + position % max(1, len(lines) - first)
        lineno = index + 1
        if at_end and lineno not in body_lines and lines[index].strip():
            lines[index] += "  #" + text
        elif lineno not in body_lines and (lineno - 1) not in body_lines or lineno == first:
            lines.insert(index, "#" + text)
            body_lines = {n + 1 if n >= lineno else n for n in body_lines}
    source = "\n".join(lines)
    parsed = parse(source)
    text = format(parsed)
    again = parse(text)
    assert again == parsed, text
    assert format(again) == text


def ast_walk(node):
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(ast.iter_child_nodes(current))

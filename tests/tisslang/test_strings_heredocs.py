"""Strings (escapes, quoting, interpolation decided at parse time) and heredoc bodies."""

import pytest
from hypothesis import given, strategies as st

from tisslang import parse
from tisslang.ast import Ref, String, Write
from tisslang.strings import decode_double, merge_parts, quote


def string_of(literal):
    return parse(f"LOG {literal}").body[0].message


def R(name):
    return Ref(tuple(name.split(".")))


@pytest.mark.parametrize("literal, parts", [
    (r'"plain"', ("plain",)),
    (r'""', ()),
    (r'"a\\b\"c\nd\te\rf"', ('a\\b"c\nd\te\rf',)),
    (r'"\u00e9\u4e2d"', ("é中",)),
    (r'"\uD83D\uDE00"', ("\U0001F600",)),
    (r'"\{{ x }}"', ("{{ x }}",)),  # an escaped brace never starts an interpolation
    (r'"\{{{ x }}"', ("{", R("x"))),
    (r'"{{x}}"', (R("x"),)),
    (r'"a {{ LAST_RUN.STDOUT }} b"', ("a ", R("LAST_RUN.STDOUT"), " b")),
    (r'"{{ a }}{{ b }}"', (R("a"), R("b"))),
    (r'"{{ not a ref! }}"', ("{{ not a ref! }}",)),  # not an interpolation: literal text
    (r'"{ single }"', ("{ single }",)),
    (r"'raw \d+ {{ x }} C:\path'", ("raw \\d+ {{ x }} C:\\path",)),
    (r"'it\'s \\ here'", ("it's \\ here",)),
    (r"''", ()),
])
def test_string_literals(literal, parts):
    assert string_of(literal).parts == parts


def test_interpolation_positions_count_escapes_in_the_source():
    message = string_of(r'"\t\u00e9 {{ name }}"')
    ref = message.parts[1]
    # LOG "..." : the quote is at column 5, the braces at 5 + 1 + len(r"\t\u00e9 ") = 15
    assert (ref.line, ref.column, ref.end_column) == (1, 15, 25)


def test_quote_round_trips_tricky_text():
    for parts in [("a\\b",), ('"q"',), ("{{ x }}",), ("\x00\x07\u2028",), ("'\\",),
                  ("tab\there", R("x"), "}}"), ("emoji \U0001F600 中文",)]:
        text = quote(parts)
        decoded = decode_double(text, 1, 1) if text.startswith('"') else string_of(text).parts
        assert tuple(decoded) == parts, text


def test_regex_text_is_written_in_single_quotes():
    assert quote(("^\\d+$",)) == "'^\\d+$'"
    assert quote(("it's \\d",)) == '"it\'s \\\\d"'


def write(source):
    (stmt,) = parse(source).body
    assert isinstance(stmt, Write)
    return stmt


def test_heredoc_body_is_exact_with_blank_lines_kept():
    stmt = write('WRITE "f.py" <<PY\nline 1\n\n   indented\n\nPY\n')
    assert stmt.content == String.of("line 1\n\n   indented\n\n")
    assert (stmt.delimiter, stmt.raw) == ("PY", False)


def test_closing_indentation_is_removed_from_every_line():
    stmt = write('STEP "s" {\n    WRITE "f" <<EOF\n      a\n    b\n\n    EOF\n}\n'.replace(
        'STEP "s" {\n', "").replace("}\n", ""))
    assert stmt.content == String.of("  a\nb\n\n")


def test_heredoc_inside_a_step_with_keywords_braces_and_hashes_as_text():
    source = (
        'STEP "s" {\n'
        '    WRITE "x.sh" <<SH\n'
        '    IF { } ELSE # not a comment\n'
        '    }\n'
        '    STEP "no" {\n'
        '    SH\n'
        '    RUN "sh x.sh"\n'
        '}\n'
    )
    program = parse(source)
    step = program.body[0]
    assert step.body[0].content == String.of('IF { } ELSE # not a comment\n}\nSTEP "no" {\n')
    assert step.body[1].line == 7
    assert program.comments == ()


def test_interpolated_heredoc_has_refs_with_positions_and_raw_has_none():
    stmt = write('WRITE "f" <<EOF\n  name: {{ user.name }}\nEOF\n')
    ref = stmt.content.parts[1]
    assert stmt.content.parts == ("  name: ", R("user.name"), "\n")
    assert (ref.line, ref.column, ref.end_column) == (2, 9, 24)
    raw = write("WRITE \"f\" <<'EOF'\n  name: {{ user.name }}\nEOF\n")
    assert raw.raw and raw.content == String.of("  name: {{ user.name }}\n")


def test_empty_heredoc_and_delimiter_with_surrounding_whitespace():
    assert write('WRITE "f" <<EOF\nEOF\n').content == String(())
    assert write('WRITE "f" <<EOF\n   body\n   EOF   \n').content == String.of("body\n")


def test_delimiter_only_matches_a_whole_line():
    stmt = write('WRITE "f" <<END\nEND of story\nEND\n')
    assert stmt.content == String.of("END of story\n")


def test_heredoc_opener_inside_a_string_is_text():
    (stmt,) = parse('RUN "cat <<EOF"\n').body
    assert stmt.command == String.of("cat <<EOF")


def test_heredoc_positions_span_to_the_closing_line():
    stmt = write('WRITE "f" <<EOF # why\n  a\n  EOF\n')
    assert (stmt.line, stmt.column, stmt.end_line, stmt.end_column) == (1, 1, 3, 6)


def test_blank_lines_shorter_than_the_indent_are_blank():
    stmt = write('WRITE "f" <<EOF\n    a\n  \n\n    b\n    EOF\n')
    assert stmt.content == String.of("a\n\n\nb\n")


_parts = st.lists(st.one_of(st.text(max_size=3), st.builds(Ref, st.just(("x",)))), max_size=12)


@given(_parts)
def test_merge_parts_joins_literal_runs_and_drops_empties(parts):
    merged = merge_parts(parts)
    # Same text and references in the same order ...
    flat = [p for p in parts if not (isinstance(p, str) and p == "")]
    assert "".join(p if isinstance(p, str) else "\0" for p in merged) == "".join(
        p if isinstance(p, str) else "\0" for p in flat
    )
    assert [p for p in merged if not isinstance(p, str)] == [p for p in parts if not isinstance(p, str)]
    # ... in canonical form: no empty literal, no two literals side by side.
    assert all(p != "" for p in merged)
    assert not any(isinstance(a, str) and isinstance(b, str) for a, b in zip(merged, merged[1:]))


def test_a_long_heredoc_parses_whole():
    # Joining literal runs once keeps this linear; it used to take quadratic time in the lines.
    body = ["line %d {{ x }} and text" % i for i in range(20000)]
    program = parse('VAR x = 1\nWRITE "big.txt" <<EOF\n' + "\n".join(body) + "\nEOF\n")
    content = program.body[1].content
    assert sum(isinstance(p, Ref) for p in content.parts) == len(body)

"""Syntax errors a user sees: exact text, exact position, the source line and a caret."""

import pickle

import pytest

from tisslang import TissError, TissSyntaxError, parse, parse_file
from tisslang.errors import TissFileError


def error_of(source):
    with pytest.raises(TissSyntaxError) as info:
        parse(source, "t.tiss")
    return info.value


CASES = [
    # an unclosed block points at the { that opened it
    ('STEP "a" {\n  RUN "x"\n', 1, 10,
     "this block is never closed: add a } to close it (the file ends at line 3)"),
    ('STEP "a" {\n  IF x {\n    RUN "y"\n}\n', 2, 8,
     "this block is never closed: add a } to close it (the file ends at line 5)"),
    ('VAR x = [1,\n2\n', 1, 9, "this list is never closed: add a ]"),
    # an unterminated heredoc points at its <<DELIM
    ('STEP "s" {\n  WRITE "f" <<EOF\n  abc\n}\n', 2, 13,
     "heredoc <<EOF is never closed: end it with a line holding only EOF"),
    # unknown keywords, with the closest one
    ('RUNN "x"\n', 1, 1, "unknown keyword 'RUNN'; did you mean 'RUN'?"),
    ('STEP "s" {\n  ASERT x\n}\n', 2, 3, "unknown keyword 'ASERT'; did you mean 'ASSERT'?"),
    ('run "x"\n', 1, 1, "unknown keyword 'run': keywords are uppercase, write 'RUN'"),
    ('x = 1\n', 1, 1, "unknown keyword 'x': a statement starts with a keyword such as RUN, "
                      "STEP, ASSERT or VAR (see docs/tisslang.md)"),
    ('ASSERT x CONTAINZ "a"\n', 1, 10, "unknown operator 'CONTAINZ'; did you mean 'CONTAINS'?"),
    # missing AS / INTO names
    ('READ "f"\n', 1, 9, 'READ needs AS and a variable name: READ "path" AS name'),
    ('READ "f" AS\n', 1, 12, 'missing variable name after AS: write READ "path" AS name'),
    ('PROMPT_AGENT "p" INTO\n', 1, 22,
     'missing variable name after INTO: write PROMPT_AGENT "prompt" INTO name'),
    ('READ "f" AS RUN\n', 1, 13,
     "'RUN' is a reserved keyword and cannot be a variable name; choose another name"),
    ('VAR a.b = 1\n', 1, 5,
     "a variable name after VAR is one identifier, not the dotted reference 'a.b'"),
    # bad escapes suggest single quotes
    ('RUN "grep \\d+ x"\n', 1, 11,
     "unknown escape \\d in a double-quoted string; the escapes are \\\\ \\\" \\n \\t \\r \\{ "
     "\\uXXXX -- for text with backslashes (a regex, a Windows path) use single quotes: "
     "'...\\d...'"),
    ('LOG "\\u12"\n', 1, 6, "bad escape \\u: it needs four hex digits, as in \\u00e9"),
    # an under-indented heredoc line
    ('WRITE "f" <<EOF\n    ok\n  short\n    EOF\n', 3, 1,
     "heredoc line is indented less than its closing delimiter: every non-blank body line "
     "must start with the closing line's indentation (4 space(s))"),
    ('WRITE "f" <<EOF trailing\nEOF\n', 1, 17,
     "nothing may follow <<EOF on its line: the heredoc body starts on the next line and ends "
     "at a line holding only EOF"),
    # a stray }
    ('RUN "x"\n}\n', 2, 1, "stray }: there is no open block here to close"),
    ('STEP "a" { }\n}\n', 2, 1, "stray }: there is no open block here to close"),
    # incomplete expressions
    ('ASSERT x ==\n', 1, 12, "incomplete expression: expected a value after '=='"),
    ('IF a AND {\n}\n', 1, 10, "incomplete expression: expected a value after 'AND'"),
    ('ASSERT\n', 1, 7, "incomplete expression: ASSERT needs a condition, as in "
                       "ASSERT LAST_RUN.EXIT_CODE == 0"),
    ('ASSERT NOT\n', 1, 11, "incomplete expression: expected a value after 'NOT'"),
    ('ASSERT FILE "x"\n', 1, 16, 'incomplete expression: write FILE "path" EXISTS'),
    ('ASSERT (a == 1\n', 1, 15, "unexpected end of line; expected ')'"),
    # other mistakes
    ('ELSE {\n}\n', 1, 1, "ELSE without an IF: ELSE goes right after the closing } of an IF block"),
    ('RUN "x"\n\n   CATCH {\n}\n', 3, 4,
     "CATCH without a TRY: CATCH goes right after the closing } of a TRY block"),
    ('RUN "a" RUN "b"\n', 1, 9, "unexpected 'RUN' after a complete statement: put one statement "
                                "per line, or separate them with ;"),
    ('VAR x == 1\n', 1, 7, "use a single '=' to set a value, not '=='"),
    ('ASSERT a = 1\n', 1, 10, "'=' sets a value (VAR name = value); compare with =="),
    ('STEP {\n}\n', 1, 6, 'STEP needs a quoted string here, as in STEP "what it does" { ... }'),
    ('IF x == 1\n', 1, 10, "expected { to open a block on this line"),
    ('VAR x =\n', 1, 8, "expected a value (a string, number, true/false, list, object or name), "
                        "found end of line"),
    ('RUN "abc\n', 1, 5, 'unterminated string: close it with " on the same line (for text over '
                         'several lines use a heredoc, WRITE "path" <<EOF)'),
    ("RUN 'abc\n", 1, 5, "unterminated string: close it with ' on the same line"),
    ('WRITE "f" << EOF\nEOF\n', 1, 11,
     "a heredoc opens with <<NAME or <<'NAME' (a letter or _ right after <<)"),
    ('ASSERT a ! b\n', 1, 10, "unexpected '!': did you mean != ?"),
    ('DELETE "x" RECURSIV\n', 1, 12, "unknown word 'RECURSIV'; did you mean 'RECURSIVE'?"),
    ('"just a string"\n', 1, 1, 'expected a statement (a keyword such as RUN, STEP, ASSERT or '
                                'VAR), found "just a string"'),
    ('VAR x = [1 2]\n', 1, 12, "unexpected '2' in a list: separate the items with ',' and close "
                              "the list with ']'"),
    ('@ model "x"\n', 1, 1, 'a directive is @ and its name with no space between, as in '
                            '@model "echo"'),
    ('IF x {\n} ELSE\n{\n}\n', 2, 7, "expected { to open a block on this line"),
    ('TASK "a"\nTASK "b"\n', 2, 1, "a second TASK: a script has one TASK (the first is at line 1);"
                                   " describe the extra work with STEP"),
    ('STEP "x" {\n  TASK "y"\n}\n', 2, 3,
     "TASK belongs at the top level of the script, not inside a block"),
    ('STEP "x" {\n  SETUP { }\n}\n', 2, 3, "SETUP belongs at the top level of the script (or "
                                           "directly inside the TASK block), not inside another "
                                           "block"),
    ('VAR o = {a: 1, a: 2}\n', 1, 16, "duplicate key 'a' in this object"),
    ('WRITE "f"\n', 1, 10, 'WRITE needs what to write after the path: a string (WRITE "path" '
                           '"text") or a heredoc (WRITE "path" <<EOF)'),
    ('VAR x = "a" + "b"\n', 1, 13, "unexpected '+': TissLang has no arithmetic; to join text, "
                                  'interpolate: "{{ a }}{{ b }}"'),
    ('ASSERT x IS EMPTY\n', 1, 10, "unknown operator 'IS': write IS_EMPTY or IS_NOT_EMPTY "
                                   "(one word)"),
    ('ASSERT x NOT_CONTAINS "a"\n', 1, 10, "unknown operator 'NOT_CONTAINS': write NOT CONTAINS "
                                           "(two words)"),
    ('VAR o = {a: 1, RUN: 2}\n', 1, 16, "'RUN' is a keyword; to use it as an object key put it in "
                                        'quotes: "RUN": value'),
    ('CHOOSE {\n    RUN "x"\n}\n', 2, 5, 'CHOOSE holds only options, each OPTION "what it tries" '
                                        "{ ... } (or STEP); put statements inside an option"),
    ('CHOOSE {\n    OPTIN "a" { }\n}\n', 2, 5, "unknown keyword 'OPTIN'; did you mean 'OPTION'?"),
    ('ASSERT a == b == c\n', 1, 15, "comparisons do not chain: join two with AND (a < b AND "
                                    "b < c), or put one in parentheses"),
    ('IF a CONTAINS "x" IS_EMPTY {\n}\n', 1, 19, "comparisons do not chain: join two with AND "
                                                "(a < b AND b < c), or put one in parentheses"),
    ('#TISS! Language\n', 1, 8, "header entry 'Language' is not key=value (as in "
                                "'#TISS! Language=Python')"),
]


@pytest.mark.parametrize("source, line, column, message", CASES)
def test_pinned_message_and_position(source, line, column, message):
    error = error_of(source)
    assert (error.line, error.column) == (line, column)
    assert error.message == message
    assert error.filename == "t.tiss"


def test_render_is_location_message_source_line_and_caret():
    error = error_of('STEP "s" {\n\tASSERT x ==\n}\n')
    assert str(error) == error.render() == (
        "t.tiss:2:13: error: incomplete expression: expected a value after '=='\n"
        "    \tASSERT x ==\n"
        "    \t           ^"
    )


def test_syntax_errors_are_tiss_errors_with_exit_code_2():
    error = error_of("}")
    assert isinstance(error, TissError) and error.exit_code == 2


def test_errors_survive_pickling():
    error = error_of("}")
    clone = pickle.loads(pickle.dumps(error))
    assert clone.render() == error.render()


def test_parse_file_reports_the_path_and_bad_utf8(tmp_path):
    path = tmp_path / "bad.tiss"
    path.write_bytes(b'RUN "ok"\nLOG "\xff"\n')
    with pytest.raises(TissSyntaxError) as info:
        parse_file(path)
    assert (info.value.filename, info.value.line, info.value.column) == (str(path), 2, 6)
    assert info.value.message == "the file is not valid UTF-8; save it as UTF-8"
    with pytest.raises(TissFileError, match="cannot read"):
        parse_file(tmp_path / "missing.tiss")


def test_read_source_gives_the_text_parse_file_parses(tmp_path):
    import tisslang

    path = tmp_path / "ok.tiss"
    path.write_bytes('LOG "caf\u00e9"\r\n'.encode("utf-8"))
    assert tisslang.read_source(path) == 'LOG "caf\u00e9"\r\n'
    assert tisslang.parse(tisslang.read_source(path)) == parse_file(path)
    (tmp_path / "bad.tiss").write_bytes(b"\xfe")
    with pytest.raises(TissSyntaxError, match="not valid UTF-8"):
        tisslang.read_source(tmp_path / "bad.tiss")

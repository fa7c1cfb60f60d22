"""The REPL's scanner (runtime/repl/scan.py), which also gives the LSP its semantic tokens: exact
tokens and end states for the cases its token pattern and its string and heredoc paths must get
right, properties any correct scan has (on generated text and every example prefix), and the
LSP's semantic-token encoding against a plain re-computation with ``Text``'s own conversions."""

from __future__ import annotations

import bisect
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from runtime.repl import scan as sc

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.tiss"))


def spans(text):
    return [(t.kind, t.start, t.end, t.text) for t in sc.scan(text).tokens]


def kinds(text):
    return [(t.kind, t.text) for t in sc.scan(text).tokens]


# -- exact tokens ---------------------------------------------------------------------------

def test_words_after_a_dot_are_fields_and_blanks_and_line_ends_are_not_tokens():
    assert spans("ASSERT x.IF . TASK\r\n\t\f\vLAST_RUN.TOKEN_COUNT.true  ") == [
        ("keyword", 0, 6, "ASSERT"), ("name", 7, 8, "x"), ("punctuation", 8, 9, "."),
        ("name", 9, 11, "IF"), ("punctuation", 12, 13, "."), ("keyword", 14, 18, "TASK"),
        ("builtin", 23, 31, "LAST_RUN"), ("punctuation", 31, 32, "."),
        ("builtin", 32, 43, "TOKEN_COUNT"), ("punctuation", 43, 44, "."), ("boolean", 44, 48, "true"),
    ]
    # A dot at the end of one line does not make the next line's first word a field.
    assert kinds("x.\nIF") == [("name", "x"), ("punctuation", "."), ("keyword", "IF")]


def test_numbers_operators_directives_and_stray_characters():
    assert kinds("-5 - 5 -x 1.5.e 2e 3E-2 \u0663 \u00b2") == [
        ("number", "-5"), ("error", "-"), ("number", "5"), ("error", "-"), ("name", "x"),
        ("number", "1.5"), ("punctuation", "."), ("name", "e"), ("number", "2"), ("name", "e"),
        ("number", "3E-2"), ("number", "\u0663"), ("error", "\u00b2"),
    ]
    assert kinds("a<<=b !== !x <<'Q <<") == [
        ("name", "a"), ("operator", "<"), ("operator", "<="), ("name", "b"), ("operator", "!="),
        ("operator", "="), ("error", "!"), ("name", "x"), ("operator", "<"), ("operator", "<"),
        ("string", "'"), ("string", "Q <<"),
    ]
    # A bare `@` ending its line is a directive being typed; elsewhere it is an error.
    assert kinds("@\n@ x @shell @1@") == [
        ("directive", "@"), ("error", "@"), ("name", "x"), ("directive", "@shell"), ("error", "@"),
        ("number", "1"), ("directive", "@"),
    ]
    assert kinds("é$;") == [("error", "é"), ("error", "$"), ("punctuation", ";")]


def test_header_only_at_the_very_start():
    assert kinds("#TISS! a # b\n#TISS! c") == [("header", "#TISS! a # b"), ("comment", "#TISS! c")]
    assert kinds(" #TISS! a") == [("comment", "#TISS! a")]


def test_strings_simple_and_careful():
    assert spans('RUN "a{b}" "" \'{{ r }}\'') == [
        ("keyword", 0, 3, "RUN"), ("string", 4, 5, '"'), ("string", 5, 9, "a{b}"), ("string", 9, 10, '"'),
        ("string", 11, 12, '"'), ("string", 12, 13, '"'),
        ("string", 14, 15, "'"), ("string", 15, 22, "{{ r }}"), ("string", 22, 23, "'"),
    ]
    assert kinds('LOG "a {{ b }} {c}"') == [
        ("keyword", "LOG"), ("string", '"'), ("string", "a "), ("interpolation", "{{ b }}"),
        ("string", " {c}"), ("string", '"'),
    ]
    # An escape ends an interpolation's search; a backslash ending the line is text.
    assert kinds('LOG "{{ a \\" }}" "x\\\nLOG \'a\\\\b\\q\\') == [
        ("keyword", "LOG"), ("string", '"'), ("interpolation", "{{ a "), ("escape", '\\"'),
        ("string", " }}"), ("string", '"'), ("string", '"'), ("string", "x\\"),
        ("keyword", "LOG"), ("string", "'"), ("string", "a"), ("escape", "\\\\"), ("string", "b\\q\\"),
    ]


def test_heredoc_bodies_start_on_the_next_line_even_a_blank_one():
    text = "WRITE \"a\" <<A <<'B'\n   \n{{ x }} y\n A\n\n{{ z }}\n  B  \nLOG \"done\" <<C"
    assert spans(text) == [
        ("keyword", 0, 5, "WRITE"), ("string", 6, 7, '"'), ("string", 7, 8, "a"), ("string", 8, 9, '"'),
        ("heredoc.mark", 10, 13, "<<A"), ("heredoc.mark", 14, 19, "<<'B'"),
        ("heredoc.body", 20, 23, "   "),
        ("interpolation", 24, 31, "{{ x }}"), ("heredoc.body", 31, 33, " y"),
        ("heredoc.end", 34, 36, " A"),
        ("heredoc.body", 38, 45, "{{ z }}"),
        ("heredoc.end", 46, 51, "  B  "),
        ("keyword", 52, 55, "LOG"), ("string", 56, 57, '"'), ("string", 57, 61, "done"),
        ("string", 61, 62, '"'), ("heredoc.mark", 63, 66, "<<C"),
    ]
    state = sc.scan(text).state
    assert state.open_heredoc == sc.Token("heredoc.mark", 63, 66, "<<C")
    assert not state.in_heredoc_body
    # In a string or a comment `<<A` opens nothing.
    assert kinds('LOG "<<A" # <<B\nA B') == [
        ("keyword", "LOG"), ("string", '"'), ("string", "<<A"), ("string", '"'),
        ("comment", "# <<B"), ("name", "A"), ("name", "B"),
    ]


@pytest.mark.parametrize("text, expected", [
    ('WRITE "a', dict(in_string=True, string_statement="WRITE", open_string=("string", 6, 7, '"'))),
    ('WRITE "a" "b', dict(in_string=True, string_statement=None, open_string=("string", 10, 11, '"'))),
    ('ASSERT FILE # c\n"x', dict(in_string=True, string_statement="FILE", open_string=("string", 16, 17, '"'))),
    ('IF x { WRITE \'p', dict(in_string=True, string_statement="WRITE", depth=1)),
    ('VAR x = [1,\n"a', dict(in_string=True, string_statement="VAR", depth=1)),
    ('RUN "a"\nWRITE "p', dict(in_string=True, string_statement="WRITE")),
    ('RUN "a" ; WRITE "p', dict(in_string=True, string_statement="WRITE")),
    ('RUN [\n"a"\nWRITE "p', dict(in_string=True, string_statement=None, depth=1)),
    ('LOG "a\nx', dict(in_string=False, open_string=None)),
    ('LOG "{{ a', dict(in_string=True, in_interpolation=True)),
    ('LOG "{{ a\\n', dict(in_string=True, in_interpolation=False)),
    ('LOG "{{ a\n', dict(in_interpolation=False)),
    ('LOG "{{ a }}" # c', dict(in_comment=True, in_interpolation=False,
                               last_significant=("string", 12, 13, '"'))),
    ("LOG 'x # c\n", dict(in_comment=False, in_string=False)),
    ("# c\nRUN x", dict(in_comment=False, last_significant=("name", 8, 9, "x"))),
    ("#TISS! x", dict(in_comment=True, last_significant=None)),
    ("WRITE \"a\" <<E\n{{ b", dict(in_heredoc_body=True, in_interpolation=True,
                                   open_heredoc=("heredoc.mark", 10, 13, "<<E"))),
    ("WRITE \"a\" <<E\n", dict(in_heredoc_body=True, open_heredoc=("heredoc.mark", 10, 13, "<<E"))),
    ("WRITE \"a\" <<E\nE", dict(in_heredoc_body=False, open_heredoc=None)),
    ("IF x { } # done", dict(awaiting="ELSE", depth=0)),
    ("TRY {\n}\n", dict(awaiting="CATCH")),
    ("IF x { } ELSE IF y { }", dict(awaiting="ELSE")),
    ("IF x { } ELSE { }", dict(awaiting=None)),
    ("IF x ( { ) }", dict(awaiting=None, depth=0)),  # the `{` opened inside brackets: no IF block
    ("IF x { WRITE \"a\" <<E\n}", dict(awaiting=None, depth=1)),
    ("} ] )", dict(depth=-3, awaiting=None)),
])
def test_end_states(text, expected):
    state = sc.scan(text).state
    for name, value in expected.items():
        got = getattr(state, name)
        if isinstance(got, sc.Token):
            got = (got.kind, got.start, got.end, got.text)
        assert got == value, (text, name)


def test_tokens_are_the_frozen_dataclass_they_always_were():
    token = sc.scan("RUN").tokens[0]
    assert token == sc.Token("keyword", 0, 3, "RUN") and hash(token) == hash(sc.Token("keyword", 0, 3, "RUN"))
    assert repr(token) == "Token(kind='keyword', start=0, end=3, text='RUN')"
    with pytest.raises(AttributeError):
        token.kind = "name"


# -- properties -----------------------------------------------------------------------------

FRAGMENTS = [
    "TASK", "STEP", "RUN", "IF", "ELSE", "TRY", "CATCH", "WRITE", "FILE", "LOG", "VAR", "x", "_a1",
    "LAST_RUN", "TOKEN_COUNT", "true", ".", '"', "'", '"a"', "'b'", "\\", '\\"', "{{", "}}", "{", "}",
    "[", "]", "(", ")", ",", ";", ":", "<<E", "<<'R'", "E", "R", " E ", "<", "<=", "==", "!", "=",
    "-", "-1", "2.5e3", "#", "# c", "#TISS!", "@", "@m", " ", "  ", "\t", "\r", "\n", "\n", "\n",
    "\r\n", "é", "😀", "\u2028", "$",
]
texts = st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join)


def check_tiling(text):
    tokens = sc.scan(text).tokens
    position = 0
    covered = set()
    for token in tokens:
        assert position <= token.start < token.end <= len(text), (text, token)
        assert token.text == text[token.start:token.end] and "\n" not in token.text
        position = token.end
        covered.update(range(token.start, token.end))
    # Only blanks and line ends are left out: everything else is some token's.
    assert all(i in covered or ch in " \t\r\f\v\n" for i, ch in enumerate(text)), text


@settings(max_examples=300, deadline=None)
@given(texts)
def test_tokens_tile_the_text_in_order(text):
    check_tiling(text)


@settings(max_examples=300, deadline=None)
@given(texts, texts)
def test_what_follows_a_line_end_does_not_change_the_tokens_before_it(a, b):
    # Unless a heredoc is open: then the next lines are its body.
    before = sc.scan(a)
    if before.state.open_heredoc is None:
        assert sc.scan(a + "\n" + b).tokens[:len(before.tokens)] == before.tokens


@settings(max_examples=300, deadline=None)
@given(texts)
def test_without_heredocs_every_line_scans_alone(text):
    if "<<" in text or "#TISS!" in text:
        return
    alone, offset = [], 0
    for line in text.split("\n"):
        alone += [(t.kind, t.start + offset, t.end + offset) for t in sc.scan(line).tokens]
        offset += len(line) + 1
    assert [(t.kind, t.start, t.end) for t in sc.scan(text).tokens] == alone


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_prefix_of_an_example(path):
    text = path.read_text(encoding="utf-8")
    whole = sc.scan(text).tokens
    for cut in range(len(text) + 1):
        prefix = text[:cut]
        check_tiling(prefix)
        if cut == len(text) or text[cut] == "\n":
            # A prefix ending a line: the whole text's tokens up to there, unless it ends in an
            # open heredoc (its delimiter is not there yet).
            result = sc.scan(prefix)
            if result.state.open_heredoc is None:
                assert result.tokens == [t for t in whole if t.end <= cut], (path.name, cut)


# -- the LSP's semantic tokens ------------------------------------------------------------------

def reference_semantic_tokens(analysis, features, tokens):
    """The encoding spelt out with ``Text.position`` and ``Text.to_client`` for every token."""
    text = analysis.text
    declarations = {(s.line - 1, s.column - 1) for s in analysis.sites if s.definition}
    data, previous_line, previous_start = [], 0, 0
    for token in tokens:
        kind = features._KIND_TYPES.get(token.kind)
        if kind is None or token.end <= token.start:
            continue
        line, column = text.position(token.start)
        modifiers = 0
        if token.kind == sc.NAME and token.start > 0 and text.normalised[token.start - 1] == ".":
            kind = "property"
        elif token.kind == sc.BUILTIN:
            modifiers = features._BUILTIN_MODIFIERS
        elif token.kind == sc.NAME and (line, column) in declarations:
            modifiers = features._DECLARATION
        _, start = text.to_client(line, column)
        _, stop = text.to_client(line, column + (token.end - token.start))
        delta = line - previous_line
        data += [delta, start - previous_start if delta == 0 else start, stop - start,
                 features.TOKEN_TYPES.index(kind), modifiers]
        previous_line, previous_start = line, start
    return data


def test_semantic_tokens_match_the_reference_in_every_encoding():
    pytest.importorskip("lsprotocol")
    from runtime.lsp import features
    from runtime.lsp.document import Analysis
    from runtime.lsp.text import Text, utf8_units, utf16_units

    sources = [path.read_text(encoding="utf-8") for path in EXAMPLES]
    sources += ["\ufeff" + sources[0], sources[1].replace("\n", "\r\n"),
                sources[2].replace("e", "😀e").replace("a", "é"), "VAR x = 1\n\n\n   \nLOG x", ""]
    checked = 0
    for source in sources:
        for units in (utf16_units, utf8_units, len):
            analysis = Analysis(Text(source, units), "x.tiss")
            assert list(features.semantic_tokens(analysis).data) == \
                reference_semantic_tokens(analysis, features, analysis.tokens)
            lines = len(analysis.text.lines)
            for first, last in ((0, lines - 1), (lines // 3, lines // 2), (lines - 1, lines + 3)):
                fresh = Analysis(Text(source, units), "x.tiss")
                assert list(features.semantic_tokens(fresh, (first, last)).data) == \
                    reference_semantic_tokens(fresh, features, fresh.tokens_between(first, last))
            checked += 1
    assert checked == len(sources) * 3


def test_semantic_tokens_on_tokens_out_of_order_still_find_their_lines():
    # The encoder walks line starts along with the tokens; one that goes back must be looked up.
    pytest.importorskip("lsprotocol")
    from runtime.lsp import features
    from runtime.lsp.document import Analysis
    from runtime.lsp.text import Text

    analysis = Analysis(Text("RUN x\nLOG y\n\nSTEP z"), "x.tiss")
    tokens = sc.scan(analysis.text.normalised).tokens
    shuffled = [tokens[4], tokens[0], tokens[5], tokens[2]]
    analysis.__dict__["tokens"] = shuffled
    assert list(features.semantic_tokens(analysis).data) == \
        reference_semantic_tokens(analysis, features, shuffled)
    starts = analysis.text.line_starts()
    assert [bisect.bisect_right(starts, t.start) - 1 for t in shuffled] == [3, 0, 3, 1]

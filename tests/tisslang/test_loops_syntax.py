"""RETRY, FOR, LENGTH and list indexes in the language: parse, format, check, errors, REPL."""

from __future__ import annotations

import pytest

import tisslang
from tisslang import ast, check, parse, statements
from tisslang.errors import TissSyntaxError

CANONICAL = '''VAR answer = {files: ["a.py", "b.py"]}
RETRY 3 DELAY "2s" {  # ask again
    FOR f IN FILES "src/**/*.py" {
        LOG "{{ f }} {{ ATTEMPT }} {{ answer.files.0 }}"
    }
    FOR line IN LINES answer.text {
        LOG "{{ line }}"
    }
    FOR item IN [1, 2] {
        FOR inner IN answer.files {
            ASSERT LENGTH answer.files.1 > 0 AND LENGTH (NOT item) == 1
        }
    }
}
RETRY 1 {
}
'''


def test_the_new_forms_parse_to_their_nodes_with_positions():
    program = parse(CANONICAL)
    retry = program.body[1]
    assert isinstance(retry, ast.Retry) and retry.attempts == 3 and retry.delay == ast.String(("2s",))
    assert (retry.line, retry.column, retry.end_line, retry.end_column) == (2, 1, 14, 2)
    files, lines, items = retry.body
    assert (files.variable, files.source, files.value) == ("f", "files", ast.String(("src/**/*.py",)))
    assert (lines.source, lines.value) == ("lines", ast.Ref(("answer", "text")))
    assert (items.source, items.value) == ("value", ast.ListValue((ast.Number(1), ast.Number(2))))
    log = files.body[0]
    assert log.message.parts[-1] == ast.Ref(("answer", "files", "0"))
    condition = items.body[0].body[0].condition
    length = condition.operands[0].left
    assert length == ast.Length(ast.Ref(("answer", "files", "1")))
    assert (length.line, length.column) == (11, 20)
    assert retry.to_dict()["type"] == "Retry" and files.to_dict()["source"] == "files"


def test_tiss_fmt_is_byte_stable_on_the_new_forms(tmp_path):
    assert tisslang.format(parse(CANONICAL)) == CANONICAL
    messy = ('RETRY 2 DELAY "1s"{\nFOR x IN[1,2]{\nLOG "{{x}}"}\n}\n'
             'FOR l IN LINES "a\\nb" { LOG "{{ l }}" }\nASSERT LENGTH   x.0==1\n')
    once = tisslang.format(parse(messy))
    assert once == ('RETRY 2 DELAY "1s" {\n    FOR x IN [1, 2] {\n        LOG "{{ x }}"\n    }\n}\n'
                    'FOR l IN LINES "a\\nb" {\n    LOG "{{ l }}"\n}\nASSERT LENGTH x.0 == 1\n')
    assert tisslang.format(parse(once)) == once
    from runtime import cli

    path = tmp_path / "s.tiss"
    path.write_text(CANONICAL)
    assert cli.main(["fmt", "--check", str(path)]) == 0


@pytest.mark.parametrize("source, where, words", [
    ("RETRY {\n}\n", (1, 7), "RETRY"),
    ('RETRY 3 DELAY {\n}\n', (1, 15), ""),
    ("FOR IN [1] {\n}\n", (1, 5), ""),
    ("FOR x [1] {\n}\n", (1, 7), ""),
    ("FOR x.y IN [1] {\n}\n", (1, 5), "one identifier"),
    ("FOR x IN FILES y {\n}\n", (1, 16), ""),
    ("ASSERT LENGTH\n", (1, 14), ""),
])
def test_malformed_loops_are_positioned_syntax_errors(source, where, words):
    with pytest.raises(TissSyntaxError) as info:
        parse(source, "t.tiss")
    assert (info.value.line, info.value.column) == where
    assert words in str(info.value)


def messages(source, **kw):
    return [(d.severity, d.line, d.column, d.message) for d in check(parse(source), **kw)]


def test_check_knows_loop_variables_and_attempt_only_inside_their_blocks():
    source = ('VAR xs = [1]\n'
              'FOR x IN xs {\n'
              '    LOG "{{ x }}"\n'
              '}\n'
              'LOG "{{ x }}"\n'
              'RETRY 2 {\n'
              '    LOG "{{ ATTEMPT }}"\n'
              '}\n'
              'LOG "{{ ATTEMPT }} {{ LAST_ERROR.REPORT }}"\n')
    found = messages(source)
    assert [(line, column) for _, line, column, _ in found] == [(5, 6), (9, 6)]
    assert "'x' is the loop variable of the FOR at line 2: it is defined only inside" in found[0][3]
    assert "ATTEMPT is set only inside a RETRY block" in found[1][3]
    # `FOR x IN x.items` reads the outer x; a loop variable set elsewhere too is defined there.
    (_, line, column, message), = messages('FOR x IN x.items {\n}\n')
    assert (line, column) == (1, 10) and "'x' is the loop variable of the FOR at line 1" in message
    assert messages('VAR x = [1]\nFOR x IN x {\n}\nLOG "{{ x }}"\n') == []
    # Two PARALLEL children may each loop with the same name: nothing to merge.
    assert messages('PARALLEL {\n    FOR i IN [1] {\n    }\n    FOR i IN [2] {\n    }\n}\n') == []


def test_check_flags_retry_0_bad_delays_and_loops_over_non_lists():
    found = messages('RETRY 0 {\n}\nRETRY 2.5 DELAY "soon" {\n}\nFOR c IN "abc" {\n}\n'
                     'FOR n IN LINES 3 {\n}\nFOR LAST_RUN IN [1] {\n}\n')
    assert [(line, column) for _, line, column, _ in found] == [(1, 1), (3, 1), (3, 17), (5, 10), (7, 16), (9, 1)]
    assert "RETRY 0 never runs its block as meant" in found[0][3]
    assert "RETRY 2.5" in found[1][3] and "DELAY 'soon' is not a duration" in found[2][3]
    assert "for the lines of a string write IN LINES" in found[3][3]
    assert "IN LINES needs a string" in found[4][3]
    assert "LAST_RUN is built in" in found[5][3]
    assert all(severity == "error" for severity, *_ in found)
    assert messages('RETRY 1 DELAY "{{ d }}" {\n}\n', known=["d"]) == []


def test_the_table_describes_the_new_statements():
    retry, loop = statements.BY_KEYWORD["RETRY"], statements.BY_KEYWORD["FOR"]
    assert retry.node is ast.Retry and retry.block_fields == ("body",)
    assert retry.scoped_builtins == ("ATTEMPT",) and retry.sets_builtins == ("LAST_ERROR",)
    assert loop.sets == loop.scoped_sets == ("variable",)
    for word in ("RETRY", "FOR", "DELAY", "IN", "FILES", "LINES", "LENGTH"):
        assert word in statements.KEYWORDS
    # The table's examples are valid source.
    for spec in (retry, loop):
        assert isinstance(parse(spec.example).body[0], spec.node)


def test_the_repl_highlights_and_completes_the_new_words():
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document

    from runtime.repl import scan as sc
    from runtime.repl.completer import TissCompleter

    kinds = [(t.kind, t.text) for t in sc.scan('RETRY 3 DELAY "1s" {').tokens]
    assert kinds[:3] == [("keyword", "RETRY"), ("number", "3"), ("keyword", "DELAY")]
    kinds = [(t.kind, t.text) for t in sc.scan("FOR f IN FILES x { ASSERT LENGTH ATTEMPT").tokens]
    assert ("keyword", "FOR") in kinds and ("keyword", "IN") in kinds and ("keyword", "FILES") in kinds
    assert ("keyword", "LENGTH") in kinds and ("builtin", "ATTEMPT") in kinds
    assert not sc.is_complete("RETRY 3 {\n") and sc.is_complete("RETRY 3 {\n}\n")

    def complete(text):
        return [c.text for c in TissCompleter().get_completions(Document(text), CompleteEvent(completion_requested=True))]

    assert "RETRY" in complete("RET") and "FOR" in complete("FO")
    assert "LENGTH" in complete("ASSERT LEN") and "LINES" in complete("FOR x IN LI")
    assert "REPORT" in complete("LOG LAST_ERROR.REP")

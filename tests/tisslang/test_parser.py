"""The parser: the exact tree for every construct, the variants older scripts use, positions."""

import subprocess
import sys

import pytest

from tisslang import TissSyntaxError, format, parse
from tisslang.ast import (
    And, Assert, Boolean, Choose, Compare, Contains, Delete, Directive, EstimateCost, FileExists,
    If, IsEmpty, ListValue, Log, Matches, Mkdir, Not, Number, ObjectValue, Option, Or, Parallel,
    Pause, PromptAgent, Read, Ref, RequestReview, Run, SetBudget, Setup, Step, String, Task,
    Teardown, Try, Var, Write,
)
from tisslang.grammar import build_parser


def S(text):
    return String.of(text)


def R(name):
    return Ref(tuple(name.split(".")))


def body(source):
    return parse(source).body


def one(source):
    (stmt,) = body(source)
    return stmt


def cond(text):
    return one("ASSERT " + text).condition


def test_grammar_builds_in_strict_mode():
    # strict=True turns any shift/reduce conflict or terminal collision into an error.
    try:
        import interegular  # noqa: F401 - Lark's strict terminal-collision check needs it
    except ImportError:
        # Lark checks the LALR tables for conflicts first, then refuses to build a strict
        # lexer without interegular: reaching that refusal means there are no conflicts.
        from lark.exceptions import LexError

        with pytest.raises(LexError, match="interegular must be installed"):
            build_parser(strict=True)
        return
    parser = build_parser(strict=True)
    tree = parser.parse('STEP "a" { RUN "b" }\n')
    assert tree.data == "start"


@pytest.mark.parametrize("source, expected", [
    ('RUN "make test"', Run(S("make test"))),
    ('LOG "hi"', Log(S("hi"))),
    ('READ "a.txt" AS text', Read(S("a.txt"), "text")),
    ('PROMPT_AGENT "why?"', PromptAgent(S("why?"), None)),
    ('PROMPT_AGENT "why?" INTO answer', PromptAgent(S("why?"), "answer")),
    ('VAR n = 42', Var("n", Number(42))),
    ('VAR n = -3', Var("n", Number(-3))),
    ('VAR x = 2.5', Var("x", Number(2.5))),
    ('VAR b = false', Var("b", Boolean(False))),
    ('VAR r = LAST_RUN.STDOUT', Var("r", R("LAST_RUN.STDOUT"))),
    ('VAR l = [1, "a", [true]]', Var("l", ListValue((Number(1), S("a"), ListValue((Boolean(True),)))))),
    ('VAR o = {a: 1, "b c": [], d: {}}',
     Var("o", ObjectValue((("a", Number(1)), ("b c", ListValue(())), ("d", ObjectValue(())))))),
    ('WRITE "f" "text"', Write(S("f"), S("text"), None, False)),
    ('ASSERT true', Assert(Boolean(True))),
    ('MKDIR "a/b"', Mkdir(S("a/b"))),
    ('DELETE "a"', Delete(S("a"), False)),
    ('DELETE "a" RECURSIVE', Delete(S("a"), True)),
    ('REQUEST_REVIEW "ok?"', RequestReview(S("ok?"))),
    ('PAUSE "wait"', Pause(S("wait"))),
    ('SET_BUDGET API_CALLS = 3', SetBudget("API_CALLS", Number(3))),
    ('SET_BUDGET EXECUTION_TIME = "5m"', SetBudget("EXECUTION_TIME", S("5m"))),
    ('SET_BUDGET TOKEN_COUNT = 10', SetBudget("TOKENS", Number(10))),
    ('@model "echo"', Directive("model", S("echo"))),
    ('@stop ["a", "b"]', Directive("stop", ListValue((S("a"), S("b"))))),
    ('@flag', Directive("flag", None)),
    ('TASK "t"', Task(S("t"), None)),
    ('TASK "t" { RUN "x" }', Task(S("t"), (Run(S("x")),))),
    ('SETUP { RUN "x" }', Setup(None, (Run(S("x")),))),
    ('SETUP "prep" { }', Setup(S("prep"), ())),
    ('TEARDOWN { }', Teardown(None, ())),
    ('TEARDOWN "clean" { DELETE "x" }', Teardown(S("clean"), (Delete(S("x")),))),
    ('STEP "s" { STEP "inner" { } }', Step(S("s"), (Step(S("inner"), ()),))),
    ('PARALLEL { RUN "a"; RUN "b" }', Parallel((Run(S("a")), Run(S("b"))))),
    ('ESTIMATE_COST { PROMPT_AGENT "p" }', EstimateCost((PromptAgent(S("p")),))),
    ('CHOOSE { OPTION "a" { }; STEP "b" { RUN "x" } }',
     Choose((Option(S("a"), ()), Option(S("b"), (Run(S("x")),))))),
    ('TRY { RUN "a" }', Try((Run(S("a")),), None)),
    ('TRY { } CATCH { LOG "e" }', Try((), (Log(S("e")),))),
])
def test_statement_trees(source, expected):
    assert one(source) == expected
    assert parse(format(parse(source))) == parse(source)  # and the script round-trips


def test_if_variants_give_one_tree():
    expected = If(R("a"), (Run(S("x")),), (Run(S("y")),))
    assert one('IF a { RUN "x" } ELSE { RUN "y" }') == expected
    assert one('IF a THEN { RUN "x" } ELSE { RUN "y" }') == expected
    assert one('IF a {\n  RUN "x"\n}\nELSE {\n  RUN "y"\n}\n') == expected
    assert one('IF a {\n  RUN "x"\n}\n\n# why\nELSE {\n  RUN "y"\n}\n') == expected
    assert one('IF a { RUN "x" }') == If(R("a"), (Run(S("x")),), ())


def test_else_if_chain_nests_in_orelse():
    tree = one('IF a { } ELSE IF b THEN { LOG "b" } ELSE { LOG "c" }')
    assert tree == If(R("a"), (), (If(R("b"), (Log(S("b")),), (Log(S("c")),)),))


def test_catch_on_the_next_line():
    assert one('TRY {\n}\nCATCH {\n}\n') == Try((), ())


@pytest.mark.parametrize("text, expected", [
    ("a == 1", Compare(R("a"), "==", Number(1))),
    ("a != 1", Compare(R("a"), "!=", Number(1))),
    ("a < 1", Compare(R("a"), "<", Number(1))),
    ("a <= 1", Compare(R("a"), "<=", Number(1))),
    ("a > 1", Compare(R("a"), ">", Number(1))),
    ("a >= 1", Compare(R("a"), ">=", Number(1))),  # the old regex parser read >= as >
    ('a CONTAINS "x"', Contains(R("a"), S("x"), False)),
    ('a NOT CONTAINS "x"', Contains(R("a"), S("x"), True)),
    ("a MATCHES '^\\d+$'", Matches(R("a"), S("^\\d+$"))),
    ("a IS_EMPTY", IsEmpty(R("a"), False)),
    ("a IS_NOT_EMPTY", IsEmpty(R("a"), True)),
    ('FILE "x.txt" EXISTS', FileExists(S("x.txt"))),
    ("NOT a", Not(R("a"))),
    ("NOT NOT a", Not(Not(R("a")))),
    ("a OR b AND c", Or((R("a"), And((R("b"), R("c")))))),
    ("a AND b OR c", Or((And((R("a"), R("b"))), R("c")))),
    ("a AND b AND c", And((R("a"), R("b"), R("c")))),
    ("(a OR b) AND c", And((Or((R("a"), R("b"))), R("c")))),
    ("NOT a == 1 AND b", And((Not(Compare(R("a"), "==", Number(1))), R("b")))),
    ('NOT a CONTAINS "x"', Not(Contains(R("a"), S("x")))),
    ("(a == 1) == true", Compare(Compare(R("a"), "==", Number(1)), "==", Boolean(True))),
    ("x == [1, 2]", Compare(R("x"), "==", ListValue((Number(1), Number(2))))),
])
def test_expression_trees_and_precedence(text, expected):
    assert cond(text) == expected


def test_task_and_step_refs_are_references_not_keywords():
    assert cond("TASK.DESCRIPTION IS_NOT_EMPTY") == IsEmpty(R("TASK.DESCRIPTION"), True)
    assert cond('STEP.DESCRIPTION == "x"') == Compare(R("STEP.DESCRIPTION"), "==", S("x"))


def test_semicolons_and_one_line_blocks():
    assert body('RUN "a"; RUN "b";;\n;RUN "c"') == (Run(S("a")), Run(S("b")), Run(S("c")))
    assert one('STEP "quick" { RUN "make" }') == Step(S("quick"), (Run(S("make")),))


def test_header_comments_and_empty_program():
    program = parse("#TISS! Language=Python Mode=fast\n# note\nRUN \"x\"  # trailing\n")
    assert program.header == {"Language": "Python", "Mode": "fast"}
    assert [c.text for c in program.comments] == [" note", " trailing"]
    assert [(c.line, c.column) for c in program.comments] == [(2, 1), (3, 10)]
    assert parse("").body == () and parse("").header == {}
    assert parse("\n\n# only a comment").body == ()


def test_hash_inside_strings_is_not_a_comment():
    program = parse('RUN "echo #1" # real\n')
    assert program.body == (Run(S("echo #1")),)
    assert [c.text for c in program.comments] == [" real"]


def test_bom_and_crlf_are_read_as_plain_newlines():
    assert body('\ufeffRUN "a"\r\nRUN "b"\rRUN "c"\r\n') == (Run(S("a")), Run(S("b")), Run(S("c")))


def test_positions_are_one_based_and_exact():
    program = parse('STEP "s" {\n    RUN "echo {{ x }}"\n    ASSERT a >= 10\n}\n')
    step = program.body[0]
    assert (step.line, step.column, step.end_line, step.end_column) == (1, 1, 4, 2)
    run, assertion = step.body
    assert (run.line, run.column, run.end_line, run.end_column) == (2, 5, 2, 23)
    ref = run.command.parts[1]
    assert ref == R("x") and (ref.line, ref.column, ref.end_column) == (2, 15, 22)
    compare = assertion.condition
    assert (compare.line, compare.column, compare.end_column) == (3, 12, 19)
    assert (compare.right.line, compare.right.column) == (3, 17)


def test_positions_are_out_of_equality():
    assert parse('RUN "a"').body == parse('\n\n    RUN "a"').body


def test_200_levels_of_nesting_give_a_positioned_error_never_a_recursion_error():
    from tisslang.parser import MAX_DEPTH

    deep_steps = "".join(f'STEP "s{i}" {{\n' for i in range(200)) + "}\n" * 200
    deep_not = "ASSERT " + "NOT " * 200 + "a"
    deep_list = "VAR x = " + "[" * 200 + "]" * 200
    deep_else = "IF a { }" + "".join(f" ELSE IF b{i} {{ }}" for i in range(200))
    for source, line, column in [(deep_steps, MAX_DEPTH + 1, 1), (deep_not, 1, 8 + 4 * (MAX_DEPTH - 1)),
                                 (deep_list, 1, 8 + MAX_DEPTH), (deep_else, 1, None)]:
        with pytest.raises(TissSyntaxError) as info:
            parse(source)
        assert info.value.message == (f"nesting is deeper than {MAX_DEPTH} levels; split this "
                                      "into separate steps or simpler conditions")
        assert info.value.line == line
        if column is not None:
            assert info.value.column == column
    # Parentheses make no nodes: any number of them is fine.
    assert cond("(" * 200 + "a" + ")" * 200) == R("a")


def test_nesting_up_to_the_limit_gives_a_tree():
    from tisslang.parser import MAX_DEPTH

    source = "".join(f'STEP "s{i}" {{\n' for i in range(MAX_DEPTH)) + "}\n" * MAX_DEPTH
    tree = parse(source).body[0]
    for _ in range(MAX_DEPTH - 1):
        tree = tree.body[0]
    assert tree == Step(S(f"s{MAX_DEPTH - 1}"), ())


def test_long_else_if_chains_and_flat_and_chains():
    chain = "IF a { }" + "".join(f" ELSE IF b{i} {{ }}" for i in range(90))
    assert isinstance(one(chain), If)
    assert len(cond(" AND ".join(f"v{i}" for i in range(2000))).operands) == 2000


def test_import_tisslang_loads_neither_numpy_nor_runtime_nor_lm():
    code = ("import sys, tisslang; tisslang.parse('RUN \"x\"'); "
            "bad = [m for m in ('numpy', 'runtime', 'lm') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_to_dict_and_to_json():
    program = parse('ASSERT x == "a{{ y }}"')
    data = program.to_dict()
    assert data["type"] == "Program"
    condition = data["body"][0]["condition"]
    assert condition["type"] == "Compare" and condition["op"] == "=="
    assert condition["right"]["parts"][0] == "a"
    assert condition["right"]["parts"][1]["type"] == "Ref"
    assert condition["line"] == 1 and condition["column"] == 8
    import json

    import tisslang

    assert json.loads(tisslang.to_json(program)) == data


def test_every_tool_handles_the_deepest_tree_the_parser_accepts():
    import json

    from tisslang import NodeVisitor, check
    from tisslang.parser import MAX_DEPTH

    levels = MAX_DEPTH - 6  # below the last STEP: ASSERT and five NOTs
    source = "".join('STEP "s" {\n' for _ in range(levels)) + "ASSERT " + "NOT " * 5 + "x\n"
    source += "}\n" * levels
    program = parse(source)
    assert parse(format(program)) == program
    assert json.loads(program.to_json())["type"] == "Program"
    assert len(check(program)) == 1  # x is undefined

    class Count(NodeVisitor):
        steps = 0

        def visit_Step(self, node):
            self.steps += 1
            self.generic_visit(node)

    counter = Count()
    counter.visit(program)
    assert counter.steps == levels


def test_the_grammar_cache_round_trips_and_survives_damage(tmp_path, monkeypatch):
    from tisslang import grammar
    from tisslang.parser import _Builder

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("TISS_NO_CACHE", raising=False)
    source = 'STEP "s" {\n    ASSERT a >= 1 AND "x{{ y }}" CONTAINS \'\\d\'\n}\n'
    fresh = grammar.load_parser(_Builder())  # builds and saves
    (cached_file,) = (tmp_path / "quantatissu").iterdir()
    cached = grammar.load_parser(_Builder())  # loads
    assert cached is not fresh
    assert cached.parse(source) == fresh.parse(source) == parse(source).body
    cached_file.write_bytes(b"not a pickle")
    assert grammar.load_parser(_Builder()).parse(source) == parse(source).body
    assert [p.name for p in (tmp_path / "quantatissu").iterdir()] == [cached_file.name]
    monkeypatch.setenv("TISS_NO_CACHE", "1")
    assert grammar._cache_path() is None


@pytest.mark.parametrize("width", [20, 96, 1000])
def test_dump_is_readable_python_that_rebuilds_the_tree(width):
    import tisslang.ast as tree_module
    from tisslang.ast import dump

    source = ('#TISS! A=1\n# note\nSTEP "s" {\n    IF a == 1 AND NOT b { VAR o = {k: [1, "x{{ y }}"]} }'
              ' ELSE { WRITE "f" <<EOF\n    body\n    EOF\n    }\n}\n')
    program = parse(source)
    text = dump(program, width=width)
    assert eval(text, vars(tree_module)) == program  # noqa: S307 - our own output, a test
    if width == 96:
        assert "    body=(\n        Step(  # 3:1\n" in text


def test_parse_pauses_the_garbage_collector_and_leaves_it_as_it_found_it():
    import gc
    import threading

    from tisslang.parser import _parser

    front = _parser().parser
    lexer = front.lexer
    seen = []

    class Spy:  # the parser's lexer, noting whether the collector runs while tokens are read
        def lex(self, state, parser_state):
            for token in lexer.lex(state, parser_state):
                seen.append(gc.isenabled())
                yield token

    assert gc.isenabled()
    front.lexer = Spy()
    try:
        parse('TASK "t" {\n  RUN "a"\n}\n')
        with pytest.raises(TissSyntaxError):
            parse('TASK "t" {\n  RUN "a" $\n}\n')
        assert gc.isenabled()
        gc.disable()
        try:
            parse('TASK "t" {\n  RUN "b"\n}\n')
            assert not gc.isenabled()  # the caller's choice stands
        finally:
            gc.enable()
        errors = []

        def many():
            try:
                for _ in range(20):
                    parse('TASK "t" {\n' + '  RUN "c"\n' * 50 + "}\n")
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=many) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
    finally:
        front.lexer = lexer
    assert gc.isenabled()
    assert len(seen) > 4000 and not any(seen)  # off while the tree was built

"""The statement and directive tables are complete, and everything that needs them agrees.

A statement added to ``ast.Statement`` without a table entry, or without a handler in the
interpreter, the formatter, the cost estimator or the dry-run plan, fails here -- none of them
falls back silently. The grammar's statement list is written from the table.
"""

from __future__ import annotations

import dataclasses
import re
import typing

from hypothesis import given, settings

import tisslang
from runtime.backends.base import GENERATION_DIRECTIVES, GenerationSettings
from runtime.estimate import COST_RULES
from runtime.interpreter import Interpreter
from runtime.plan import HEADINGS
from tisslang import ast, directives, grammar, statements
from tisslang.formatter import _Writer

from tiss_strategies import programs

STATEMENT_CLASSES = set(typing.get_args(ast.Statement))
TABLE_CLASSES = {spec.node for spec in statements.STATEMENTS}


def test_every_statement_class_has_a_table_entry_and_nothing_else_does():
    assert STATEMENT_CLASSES - TABLE_CLASSES == set()
    # OPTION is the one entry outside the union: it stands only inside CHOOSE.
    assert TABLE_CLASSES - STATEMENT_CLASSES == {ast.Option}
    assert [s.keyword for s in statements.STATEMENTS if s.within] == ["OPTION"]
    assert len(statements.BY_NODE) == len(statements.BY_KEYWORD) == len(statements.STATEMENTS)


def test_the_interpreter_has_a_handler_for_every_statement():
    missing = [c.__name__ for c in STATEMENT_CLASSES if not hasattr(Interpreter, "visit_" + c.__name__)]
    assert missing == []


def test_the_formatter_spells_every_statement():
    missing = [c.__name__ for c in TABLE_CLASSES if not hasattr(_Writer, "s_" + c.__name__)]
    assert missing == []


def test_the_estimator_and_the_plan_have_a_rule_for_every_statement():
    assert TABLE_CLASSES - COST_RULES == set()
    assert TABLE_CLASSES - HEADINGS == set()


def test_a_statement_without_a_rule_is_an_error_not_a_silent_default():
    import pytest

    from runtime.errors import Unsupported
    from runtime.estimate import Estimator
    from runtime.plan import plan_lines

    @dataclasses.dataclass(frozen=True)
    class Retry(ast.Node):  # a statement some future issue adds, without its rules
        body: tuple = ()

    with pytest.raises(Unsupported, match="Retry"):
        Estimator(None, lambda n: None, lambda s: "").block((Retry(),), {})
    with pytest.raises(TypeError, match="Retry"):
        plan_lines((Retry(),))


def test_table_fields_name_real_fields():
    for spec in statements.STATEMENTS:
        names = {f.name for f in dataclasses.fields(spec.node)}
        for field in spec.block_fields + spec.path_fields + spec.sets:
            assert field in names, (spec.keyword, field)
        for field, _word in spec.continuations:
            assert field in spec.block_fields, spec.keyword
        for field in spec.path_fields:
            assert typing.get_type_hints(spec.node)[field] is ast.String, (spec.keyword, field)


def test_clause_keywords_are_the_table_clauses():
    clauses = {word for spec in statements.STATEMENTS for word in spec.clauses}
    assert clauses == set(statements.CLAUSE_KEYWORDS)


def test_grammar_statement_list_comes_from_the_table():
    raw = grammar.GRAMMAR_PATH.read_text(encoding="utf-8")
    assert raw.count(grammar.STATEMENT_PLACEHOLDER) == 4
    assert "| mkdir |" not in raw  # the list is written only by grammar_text()
    text = grammar.grammar_text()
    alternatives = "(" + " | ".join(statements.GRAMMAR_RULES) + ")"
    assert text.count(alternatives) == 4
    defined = set(re.findall(r"^(\w+):", text, re.M))
    assert set(statements.GRAMMAR_RULES) <= defined


def test_every_keyword_terminal_of_the_grammar_is_in_the_table_and_back():
    text = grammar.grammar_text()
    literals = set(re.findall(r'^[A-Z_]+(?:\.\d+)?: "([A-Za-z_]+)"$', text, re.M))
    literals |= {"ELSE", "CATCH"}  # written as regexes (they swallow the separators before them)
    assert literals == statements.KEYWORDS


def test_each_example_parses_to_its_statement():
    for spec in statements.STATEMENTS:
        source = spec.example if spec.within is None else f"{spec.within} {{\n{spec.example}\n}}"
        program = tisslang.parse(source + "\n")
        node = program.body[0]
        if spec.within is not None:
            node = node.options[0]
        assert type(node) is spec.node, spec.keyword
        # T104 (a RUN whose result nothing reads) is what a one-statement example is.
        findings = [d for d in tisslang.check(program, known=("name", "notes")) if d.code != "T104"]
        assert findings == [], spec.keyword


def test_directive_table():
    assert len(directives.NAMES) == len(set(directives.NAMES))
    assert GENERATION_DIRECTIVES == tuple(s.name for s in directives.GENERATION)
    settings_fields = {f.name for f in dataclasses.fields(GenerationSettings)}
    for spec in directives.DIRECTIVES:
        assert spec.checked in (directives.WHERE_WRITTEN, directives.WHEN_USED)
        if spec.setting is not None:
            assert spec.setting in settings_fields
        (node,) = tisslang.parse(spec.example + "\n").body
        assert isinstance(node, ast.Directive) and node.name == spec.name
    assert tisslang.checker.KNOWN_DIRECTIVES == directives.NAMES


def _reference_walk(node):
    """What walk means, written recursively: the node, then each child's walk, in field order."""
    yield node
    for child in ast.iter_child_nodes(node):
        yield from _reference_walk(child)


@settings(max_examples=60, deadline=None)
@given(programs())
def test_walk_is_every_node_in_source_order(program):
    assert list(tisslang.walk(program)) == list(_reference_walk(program))
    nested = list(tisslang.walk(program, blocks_only=True))
    everything = [n for n in _reference_walk(program)
                  if type(n) in statements.BY_NODE or isinstance(n, ast.Program)]
    assert [id(n) for n in nested] == [id(n) for n in everything]


def test_block_fields_are_the_tables():
    assert set(ast.BLOCK_FIELDS) == {"body", "orelse", "handler", "options"}
    assert ast.BLOCK_FIELDS is statements.BLOCK_FIELDS


def test_the_reference_lists_every_statement_and_every_directive_as_the_tables_say():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "tisslang.md").read_text(encoding="utf-8")
    for spec in statements.STATEMENTS:
        if spec.is_keyword:
            assert re.search(rf"(?<![A-Z_]){spec.keyword}(?![A-Z_])", doc), spec.keyword
    for spec in directives.DIRECTIVES:
        row = f"| `@{spec.name}` | {spec.value} | {spec.governs} | {spec.checked} | {spec.doc} |"
        assert row in doc, spec.name

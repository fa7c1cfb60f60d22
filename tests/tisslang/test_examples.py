"""The scripts in examples/ together use the whole language (each one also parses, checks clean
and is formatted: see test_checker.py and test_formatter.py), so a new user who reads them has
seen every construct, and an edit that drops the last use of one fails here."""

import dataclasses
from pathlib import Path

from tisslang import ast, parse_file

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.tiss"))


def _features(program: ast.Program) -> set[str]:
    found = {"header"} if program.header else set()
    if program.comments:
        found.add("comment")
    stack: list[ast.Node] = [program]
    while stack:
        node = stack.pop()
        found.add(type(node).__name__)
        if isinstance(node, ast.Write):
            found.add("WRITE <<'RAW'" if node.raw else "WRITE <<DELIM" if node.delimiter
                      else 'WRITE "text"')
        elif isinstance(node, ast.If) and node.orelse:
            found.add("ELSE IF" if isinstance(node.orelse[0], ast.If) else "ELSE")
        elif isinstance(node, ast.Try) and node.handler is not None:
            found.add("CATCH")
        elif isinstance(node, ast.Contains) and node.negated:
            found.add("NOT CONTAINS")
        elif isinstance(node, ast.IsEmpty):
            found.add("IS_NOT_EMPTY" if node.negated else "IS_EMPTY")
        elif isinstance(node, ast.Delete) and node.recursive:
            found.add("RECURSIVE")
        elif isinstance(node, ast.Task):
            found.add("TASK block" if node.body is not None else "TASK line")
        elif isinstance(node, ast.PromptAgent) and node.variable:
            found.add("INTO")
        elif isinstance(node, ast.String) and not node.is_literal:
            found.add("{{ interpolation }}")
        stack.extend(ast.iter_child_nodes(node))
    return found


def test_the_examples_together_use_every_construct():
    assert len(EXAMPLES) >= 5
    used: set[str] = set()
    for path in EXAMPLES:
        used |= _features(parse_file(path))
    node_classes = {
        cls.__name__ for cls in vars(ast).values()
        if isinstance(cls, type) and dataclasses.is_dataclass(cls) and issubclass(cls, ast.Node)
        and cls is not ast.Node
    }
    variants = {
        "header", "comment", "WRITE <<'RAW'", "WRITE <<DELIM", 'WRITE "text"', "ELSE IF", "ELSE",
        "CATCH", "NOT CONTAINS", "IS_EMPTY", "IS_NOT_EMPTY", "RECURSIVE", "INTO",
        "{{ interpolation }}",
    }
    assert (node_classes | variants) - used == set()
    assert "TASK block" in used and "TASK line" in used

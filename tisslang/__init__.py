"""TissLang: the language of QuantaTissu agent scripts.

This package parses TissLang source into typed AST nodes. It imports only the standard library
and lark, so other tools can embed it without pulling in the runtime or the model.

    program = tisslang.parse(source, "script.tiss")   # or tisslang.parse_file(path)
    print(tisslang.format(program))                    # canonical source
    for d in tisslang.check(program): print(d.render("script.tiss"))
    for node in tisslang.walk(program): ...             # every node, in source order

The statement table (``tisslang.statements``) and the directive table (``tisslang.directives``)
say what each statement and directive is; every tool that needs that knowledge reads them.
"""

LANGUAGE_VERSION = "1.0"

from . import ast, directives, statements  # noqa: E402
from .ast import NodeVisitor, Program, to_json  # noqa: E402
from .checker import Diagnostic, check  # noqa: E402
from .errors import TissError, TissFileError, TissSyntaxError  # noqa: E402
from .formatter import format  # noqa: E402
from .parser import parse, parse_file, read_source  # noqa: E402
from .statements import walk  # noqa: E402

__all__ = [
    "LANGUAGE_VERSION", "ast", "statements", "directives", "walk", "parse", "parse_file",
    "read_source", "format", "check", "Diagnostic",
    "to_json", "NodeVisitor", "Program", "TissError", "TissSyntaxError", "TissFileError",
]

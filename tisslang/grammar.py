"""Loading the TissLang grammar (``tisslang.lark``) into a Lark LALR parser, once per process.

``build_parser(transformer, strict=...)`` is what the parser and the tests use; the test suite
builds it with ``strict=True`` so a shift/reduce conflict or a terminal collision fails loudly.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from lark import Lark

GRAMMAR_PATH = Path(__file__).with_name("tisslang.lark")


@lru_cache(maxsize=1)
def grammar_text() -> str:
    return GRAMMAR_PATH.read_text(encoding="utf-8")


def build_parser(transformer=None, *, strict: bool = False) -> Lark:
    """A fresh LALR parser; with ``transformer`` its callbacks build the AST during the parse.

    ``propagate_positions`` is off on purpose: the transformer builds frozen nodes from token
    positions itself (named keyword terminals keep every token), which is both exact and faster
    than Lark's meta bookkeeping.
    """
    return Lark(
        grammar_text(),
        parser="lalr",
        lexer="basic",
        transformer=transformer,
        propagate_positions=False,
        maybe_placeholders=False,
        strict=strict,
    )

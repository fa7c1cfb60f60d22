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

    Without a transformer the result is a Lark tree with ``propagate_positions`` (``meta.line``
    and friends on every subtree), for tools that want Lark trees. With the AST builder it is
    off: Lark only propagates positions onto ``Tree`` results, and the builder makes its frozen
    nodes from the tokens' own positions instead (keywords are named terminals, so every token
    reaches it), which is exact and skips a wrapper call per reduction.
    """
    return Lark(
        grammar_text(),
        parser="lalr",
        lexer="basic",
        transformer=transformer,
        propagate_positions=transformer is None,
        maybe_placeholders=False,
        strict=strict,
    )

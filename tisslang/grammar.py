"""Loading the TissLang grammar (``tisslang.lark``) into a Lark LALR parser, once per process.

``grammar_text()`` is the file with its ``$STATEMENT`` placeholder replaced by the statement
alternatives of the statement table (``statements.GRAMMAR_RULES``).

``build_parser(transformer, strict=...)`` builds one from the grammar; the test suite builds it
with ``strict=True`` so a shift/reduce conflict or a terminal collision fails loudly.
``load_parser(transformer)`` is what ``parse`` uses: the same parser, kept in the user's cache
directory (``$XDG_CACHE_HOME/quantatissu``, else ``~/.cache/quantatissu``) under a key made of
the grammar text and the Lark version, because building the LALR tables takes far longer than
loading them -- the difference a user feels on every ``tiss check`` (figures in
docs/architecture.md, "Measured figures").
Set ``TISS_NO_CACHE=1`` to bypass it; any problem with the cache just means a fresh build.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import lark
from lark import Lark

from .lexer import FastLexer

GRAMMAR_PATH = Path(__file__).with_name("tisslang.lark")
# The options that shape the parse tables (part of the cache key, with the grammar text).
_OPTIONS = {"parser": "lalr", "lexer": "basic", "maybe_placeholders": False}


# Where tisslang.lark lets any statement stand; the alternatives come from the statement table.
STATEMENT_PLACEHOLDER = "$STATEMENT"


@lru_cache(maxsize=1)
def grammar_text() -> str:
    """The grammar Lark builds: ``tisslang.lark`` with the statement alternatives written in."""
    from .statements import GRAMMAR_RULES

    alternatives = "(" + " | ".join(GRAMMAR_RULES) + ")"
    return GRAMMAR_PATH.read_text(encoding="utf-8").replace(STATEMENT_PLACEHOLDER, alternatives)


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
        transformer=transformer,
        propagate_positions=transformer is None,
        strict=strict,
        **_OPTIONS,
    )


def _cache_path() -> Path | None:
    if os.environ.get("TISS_NO_CACHE"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    material = f"{lark.__version__}\0{sorted(_OPTIONS.items())}\0{grammar_text()}"
    key = hashlib.sha256(material.encode("utf-8")).hexdigest()[:20]
    return Path(base) / "quantatissu" / f"tisslang-grammar-{key}.lark"


def load_parser(transformer) -> Lark:
    """The parser with ``transformer`` inline, from the cache when it holds this grammar, lexing
    with ``lexer.FastLexer`` (Lark's tokens, made faster)."""
    parser = _load_parser(transformer)
    parser.parser.lexer = FastLexer.wrap(parser.parser.lexer)
    return parser


def _load_parser(transformer) -> Lark:
    path = _cache_path()
    if path is not None:
        try:
            with open(path, "rb") as handle:
                # Lark.load() takes no transformer; _load (used by Lark's own cache) does.
                return Lark.__new__(Lark)._load(handle, transformer=transformer)
        except FileNotFoundError:
            pass
        except Exception:  # noqa: BLE001 - a damaged or foreign cache file: build afresh
            pass
    parser = build_parser(transformer)
    if path is not None:
        _save_atomically(parser, path)
    return parser


def _save_atomically(parser: Lark, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    except OSError:
        return  # no writable cache directory: every process builds its own parser
    try:
        with os.fdopen(fd, "wb") as handle:
            # The transformer is given again at load time, never pickled.
            parser.save(handle, exclude_options=("transformer",))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except Exception:  # noqa: BLE001 - caching is an optimisation, never a failure
        try:
            os.unlink(tmp)
        except OSError:
            pass

"""A Pygments lexer for TissLang, so `pygmentize -l tisslang`, Sphinx and MkDocs highlight scripts.

Registered under the ``pygments.lexers`` entry point (see pyproject.toml) with the aliases
``tisslang`` and ``tiss`` (the fence the docs use) and the ``*.tiss`` filename. Pygments is
optional: nothing in ``tisslang`` imports this module, and importing it without Pygments raises
``ImportError`` naming the extra that brings it.

Keywords come from the statement table (``tisslang.statements``), built-in references and budget
names from the checker, so the lexer knows what the parser knows. Heredocs are matched whole by a
callback: the body runs to the first line that is only the delimiter and is never lexed as code.
"""

from __future__ import annotations

import re

try:
    from pygments.lexer import (ExtendedRegexLexer, LexerContext, bygroups, default, include,
                                words)
    from pygments.token import (Comment, Error, Keyword, Name, Number, Operator, Punctuation,
                                String, Whitespace)
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("the TissLang Pygments lexer needs Pygments: pip install pygments "
                      "(or pip install 'quantatissu[dev]')") from exc

from . import checker, statements
from .parser import BUDGET_ALIASES

__all__ = ["TissLangLexer"]

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_INTERPOLATION = re.compile(r"\{\{[ \t]*" + _IDENT + r"(?:\.[A-Za-z0-9_]+)*[ \t]*\}\}")
_OPENER = re.compile(r"<<(')?(" + _IDENT + r")(')?")


def _heredoc(lexer, match, ctx: LexerContext):
    """``<<DELIM`` (or ``<<'DELIM'``), the rest of its line, the body and the closing line."""
    raw = match.group(1) is not None
    delimiter = match.group(2)
    yield match.start(), Operator, "<<"
    if raw:
        yield match.start(1), String.Delimiter, "'"
    yield match.start(2), String.Delimiter, delimiter
    if raw and match.group(3):
        yield match.start(3), String.Delimiter, "'"
    text = ctx.text
    pos = match.end()
    newline = text.find("\n", pos)
    if newline < 0:  # no body at all: the rest of the file is this line
        ctx.pos = pos
        return
    rest = text[pos:newline]
    comment = rest.find("#")
    if comment >= 0:
        if comment:
            yield pos, Whitespace, rest[:comment]
        yield pos + comment, Comment.Single, rest[comment:]
    elif rest:
        yield pos, Whitespace, rest
    yield newline, Whitespace, "\n"
    pos = newline + 1
    while pos < len(text):
        end = text.find("\n", pos)
        line_end = len(text) if end < 0 else end
        line = text[pos:line_end]
        if line.strip() == delimiter:
            lead = len(line) - len(line.lstrip())
            if lead:
                yield pos, Whitespace, line[:lead]
            yield pos + lead, String.Delimiter, line.strip()
            trail = line[lead + len(delimiter):]
            if trail:
                yield pos + lead + len(delimiter), Whitespace, trail
            ctx.pos = line_end
            return
        if raw or "{{" not in line:
            if line:
                yield pos, String.Heredoc, line
        else:
            at = 0
            for found in _INTERPOLATION.finditer(line):
                if found.start() > at:
                    yield pos + at, String.Heredoc, line[at:found.start()]
                yield pos + found.start(), String.Interpol, found.group()
                at = found.end()
            if at < len(line):
                yield pos + at, String.Heredoc, line[at:]
        if end >= 0:
            yield end, String.Heredoc, "\n"
        pos = line_end + 1
    ctx.pos = len(text)  # never closed: the parser reports it; here it is all body


def _keywords():
    return statements.STATEMENT_KEYWORDS + statements.CLAUSE_KEYWORDS


class TissLangLexer(ExtendedRegexLexer):
    """TissLang agent scripts (``.tiss``)."""

    name = "TissLang"
    aliases = ["tisslang", "tiss"]
    filenames = ["*.tiss"]
    mimetypes = ["text/x-tisslang"]

    tokens = {
        "root": [
            (r"\A#TISS!.*", Comment.Special),
            (r"#.*", Comment.Single),
            (r"[ \t\r\f\v]+", Whitespace),
            (r"\n", Whitespace),
            (_OPENER.pattern, _heredoc),
            (r'"', String.Double, "dq"),
            (r"'", String.Single, "sq"),
            (r"@" + _IDENT, Name.Decorator),
            include("words"),
            (r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?(?![A-Za-z0-9_])", Number),
            (r"==|!=|<=|>=|<|>|=", Operator),
            (r"[{}\[\](),:;]", Punctuation),
            (r".", Error),
        ],
        "words": [
            # TASK and STEP are keywords too: built-ins only when a field follows.
            (words(tuple(b for b in checker.BUILTINS if b not in statements.KEYWORDS),
                   prefix=r"(?<![.\w])", suffix=r"\b"), Name.Builtin, "fields"),
            (words(tuple(b for b in checker.BUILTINS if b in statements.KEYWORDS),
                   prefix=r"(?<![.\w])", suffix=r"(?=\.)"), Name.Builtin, "fields"),
            (words(_keywords(), prefix=r"(?<![.\w])", suffix=r"\b"), Keyword),
            (words(statements.EXPRESSION_KEYWORDS, prefix=r"(?<![.\w])", suffix=r"\b"),
             Operator.Word),
            (words(statements.LITERALS, prefix=r"(?<![.\w])", suffix=r"\b"), Keyword.Constant),
            (words(checker.BUDGETS + tuple(BUDGET_ALIASES), prefix=r"(?<![.\w])", suffix=r"\b"),
             Name.Constant),
            (_IDENT, Name.Variable, "fields"),
        ],
        "fields": [
            (r"(\.)([A-Za-z0-9_]+)", bygroups(Punctuation, Name.Attribute)),
            default("#pop"),
        ],
        "dq": [
            (r'"', String.Double, "#pop"),
            (r'\\(?:[\\"ntr{]|u[0-9A-Fa-f]{4})', String.Escape),
            (r"\\.", Error),
            (_INTERPOLATION.pattern, String.Interpol),
            (r'[^"\\\n{]+', String.Double),
            (r"\{", String.Double),
            default("#pop"),  # at a newline: unterminated, the string ends with its line
        ],
        "sq": [
            (r"'", String.Single, "#pop"),
            (r"\\[\\']", String.Escape),
            (r"[^'\\\n]+", String.Single),
            (r"\\", String.Single),
            default("#pop"),
        ],
    }

    def analyse_text(text):  # noqa: N805 - Pygments calls it on the class
        return 1.0 if text.startswith("#TISS!") else 0.0

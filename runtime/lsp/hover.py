"""Hover help: what a keyword or directive does, where a variable is set, what a built-in holds.

The word under the cursor is the REPL scanner's token there; the text comes from
``knowledge`` (the language's tables) and, for variables, from the lines that set them.
"""

from __future__ import annotations

import bisect

from lsprotocol import types

from runtime.lsp import knowledge
from runtime.lsp.document import Analysis, Pos
from runtime.repl import scan


def hover(analysis: Analysis, pos: Pos, markdown: bool = True) -> types.Hover | None:
    token = analysis.token_at(pos)
    if token is None:
        return None
    text = analysis.text
    normalised = text.normalised
    doc = None
    start, end = token.start, token.end
    if token.kind == scan.KEYWORD:
        doc = knowledge.statement(token.text)
    elif token.kind == scan.DIRECTIVE:
        doc = knowledge.directive(token.text[1:])
    elif token.kind in (scan.BUILTIN, scan.NAME):
        if token.kind == scan.NAME and start > 0 and normalised[start - 1] == ".":
            head = _head_before(analysis, start - 1)
            doc = knowledge.builtin(head, token.text) if head else None
        elif token.kind == scan.BUILTIN and knowledge.builtin(token.text):
            doc = knowledge.builtin(token.text)
        else:
            doc = _variable(analysis, pos)
    elif token.kind == scan.INTERPOLATION:
        doc = _variable(analysis, pos) or _builtin_in_interpolation(token, text.offset(*pos))
    if not doc:
        return None
    a, b = text.position(start), text.position(end)
    return types.Hover(
        contents=types.MarkupContent(
            types.MarkupKind.Markdown if markdown else types.MarkupKind.PlainText, doc),
        range=types.Range(types.Position(*text.to_client(*a)), types.Position(*text.to_client(*b))),
    )


def _head_before(analysis: Analysis, dot: int) -> str | None:
    """The built-in before a ``.`` at offset ``dot`` (``LAST_RUN`` in ``LAST_RUN.STDOUT``)."""
    i = bisect.bisect_right(analysis.token_starts, dot) - 1
    while i >= 0:
        token = analysis.tokens[i]
        if token.end == dot and token.kind == scan.BUILTIN:
            return token.text
        if token.end <= dot:
            return None
        i -= 1
    return None


def _builtin_in_interpolation(token: scan.Token, offset: int) -> str | None:
    inner = token.text.strip("{} \t")
    head, _, rest = inner.partition(".")
    field = rest.split(".")[0] if rest else None
    if field and offset >= token.start + token.text.index(inner) + len(head) + 1:
        return knowledge.builtin(head, field)
    return knowledge.builtin(head)


def _variable(analysis: Analysis, pos: Pos) -> str | None:
    site = analysis.site_at(pos)
    if site is None:
        return None
    lines = analysis.text.lines
    setters = [s for s in analysis.sites if s.name == site.name and s.definition]
    if not setters:
        return (f"**{site.name}**: a variable nothing in this script sets (pass it with "
                f"`tiss run --var {site.name}=...`)")
    shown = []
    for s in setters[:5]:
        node = s.node
        shown.append(f"line {node.line}:\n```tisslang\n{lines[node.line - 1].strip()}\n```")
    more = f"\n\n(and {len(setters) - 5} more)" if len(setters) > 5 else ""
    return f"**{site.name}**: variable, set at " + "\n".join(shown) + more

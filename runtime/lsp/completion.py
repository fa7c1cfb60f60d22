"""Completion for the language server: the REPL's completer, told where the cursor is.

``runtime.repl.completer.TissCompleter`` already knows what fits where (statement keywords at
the start of a statement, directives after ``@``, built-in fields after ``LAST_RUN.``, workspace
paths inside a path string, variables inside ``{{ }}``); the server gives it the text before
the cursor, the variables set above the cursor and the workspace folder, and turns its answers
into LSP items. Two things it adds: block statements come as snippets with their braces, and
right after ``SET_BUDGET`` only budget names are offered.
"""

from __future__ import annotations

import bisect
from pathlib import Path

from lsprotocol import types
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from runtime.lsp import knowledge
from runtime.lsp.document import Analysis, Pos
from runtime.repl import scan
from runtime.repl.completer import TissCompleter

_KINDS = {
    "statement": types.CompletionItemKind.Keyword,
    "keyword": types.CompletionItemKind.Keyword,
    "directive": types.CompletionItemKind.Property,
    "variable": types.CompletionItemKind.Variable,
    "built-in": types.CompletionItemKind.Module,
    "budget": types.CompletionItemKind.EnumMember,
    "boolean": types.CompletionItemKind.Value,
    "file": types.CompletionItemKind.File,
    "directory": types.CompletionItemKind.Folder,
}


def complete(analysis: Analysis, pos: Pos, workspace: Path, snippets: bool) -> list[types.CompletionItem]:
    text = analysis.text
    offset = text.offset(*pos)
    before = text.normalised[:offset]
    names = analysis.definitions_before(pos)
    completer = TissCompleter(variables=lambda: names, workspace=lambda: workspace)
    found = list(completer.get_completions(Document(before, len(before)),
                                           CompleteEvent(completion_requested=True)))
    if _after_set_budget(analysis, offset, found):
        found = [c for c in found if c.display_meta_text == "budget"]
    items = []
    for order, c in enumerate(found):
        meta = c.display_meta_text
        start = text.to_client(pos[0], pos[1] + c.start_position)
        end = text.to_client(*pos)
        edit_range = types.Range(types.Position(*start), types.Position(*end))
        item = types.CompletionItem(
            label=c.text,
            kind=_KINDS.get(meta, types.CompletionItemKind.Text),
            detail=meta,
            sort_text=f"{order:05d}",
            text_edit=types.TextEdit(edit_range, c.text),
        )
        doc = knowledge.describe(c.text, meta)
        if doc:
            item.documentation = types.MarkupContent(types.MarkupKind.Markdown, doc)
        snippet = knowledge.snippet(c.text) if snippets and meta == "statement" else None
        if snippet:
            item.kind = types.CompletionItemKind.Snippet
            item.insert_text_format = types.InsertTextFormat.Snippet
            item.text_edit = types.TextEdit(edit_range, snippet)
        items.append(item)
    return items


def _after_set_budget(analysis: Analysis, offset: int, found) -> bool:
    """Whether the word being typed directly follows SET_BUDGET (only budgets fit there)."""
    if not found:
        return False
    start = offset + found[0].start_position
    tokens = analysis.tokens
    i = bisect.bisect_left(analysis.token_starts, start) - 1
    while i >= 0 and tokens[i].kind in (scan.COMMENT, scan.HEADER):
        i -= 1
    return i >= 0 and tokens[i].kind == scan.KEYWORD and tokens[i].text == "SET_BUDGET"

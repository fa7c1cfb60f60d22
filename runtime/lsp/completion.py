"""Completion for the language server: the REPL's completer, told where the cursor is.

``runtime.repl.completer.TissCompleter`` already knows what fits where (statement keywords at
the start of a statement, directives after ``@``, built-in fields after ``LAST_RUN.``, workspace
paths inside a path string, variables inside ``{{ }}``); the server gives it the text before
the cursor, the variables set above the cursor and the workspace folder, and turns its answers
into LSP items. Two things it adds: block statements come as snippets with their braces, and
right after ``SET_BUDGET`` only budget names are offered.
"""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from tisslang import ast
from tisslang.statements import walk

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


def complete(analysis: Analysis, pos: Pos, workspace: Path, snippets: bool,
             markdown: bool = True) -> list[types.CompletionItem]:
    text = analysis.text
    offset = text.offset(*pos)
    before = text.normalised[_window_start(analysis, pos, offset):offset]
    names = analysis.definitions_before(pos)
    completer = TissCompleter(variables=lambda: names, workspace=lambda: workspace)
    found = list(completer.get_completions(Document(before, len(before)),
                                           CompleteEvent(completion_requested=True)))
    if _after_set_budget(before, found):
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
            item.documentation = types.MarkupContent(types.MarkupKind.Markdown, doc) if markdown else doc
        snippet = knowledge.snippet(c.text) if snippets and meta == "statement" else None
        if snippet:
            item.kind = types.CompletionItemKind.Snippet
            item.insert_text_format = types.InsertTextFormat.Snippet
            item.text_edit = types.TextEdit(edit_range, snippet)
        items.append(item)
    return items


# Up to this many characters before the cursor go to the completer as they are; in a bigger file
# it gets the cursor's line (or the heredoc around it), which is all its answers depend on, so
# completion stays instant in a 1 MB script.
WINDOW = 100_000


def _window_start(analysis: Analysis, pos: Pos, offset: int) -> int:
    """Where the text given to the completer starts: the file's start when it is small, else
    the cursor's line, or the WRITE line of the heredoc whose body holds the cursor."""
    if offset <= WINDOW:
        return 0
    line = pos[0] + 1
    if analysis.tree is not None:
        for node in walk(analysis.tree, blocks_only=True):
            if isinstance(node, ast.Write) and node.delimiter and node.line < line <= node.end_line:
                return analysis.text.offset(node.line - 1, 0)
    return analysis.text.offset(pos[0], 0)


def _after_set_budget(before: str, found) -> bool:
    """Whether the word being typed directly follows SET_BUDGET (only budgets fit there)."""
    if not found:
        return False
    tokens = [token for token in scan.scan(before[: len(before) + found[0].start_position]).tokens
              if token.kind not in (scan.COMMENT, scan.HEADER)]
    return bool(tokens) and tokens[-1].kind == scan.KEYWORD and tokens[-1].text == "SET_BUDGET"

"""LSP answers computed from an ``Analysis``: diagnostics, formatting, outline, folding, semantic
tokens (whole file or a range), go to definition, references, highlights and rename. Each
function is pure (no server state), takes the analysis and returns ``lsprotocol`` types in the
client's position encoding. Completion and hover have modules of their own.
"""

from __future__ import annotations

import bisect
import difflib
import re

from lsprotocol import types

import tisslang
from tisslang.formatter import FormatError

from runtime.lsp.document import Analysis, Pos, Symbol
from runtime.repl import scan

SOURCE = "tiss"


def lsp_range(analysis: Analysis, start: Pos, end: Pos) -> types.Range:
    text = analysis.text
    a, b = text.to_client(*start), text.to_client(*end)
    return types.Range(types.Position(*a), types.Position(*b))


def server_pos(analysis: Analysis, position: types.Position) -> Pos:
    return analysis.text.from_client(position.line, position.character)


# --- diagnostics ------------------------------------------------------------------------------

_SEVERITY = {"error": types.DiagnosticSeverity.Error, "warning": types.DiagnosticSeverity.Warning}


def diagnostics(analysis: Analysis) -> list[types.Diagnostic]:
    return [
        types.Diagnostic(
            range=lsp_range(analysis, f.start, f.end),
            message=f.message,
            severity=_SEVERITY.get(f.severity, types.DiagnosticSeverity.Information),
            source=SOURCE,
            code="syntax" if f.origin == "syntax" else f.code,
        )
        for f in analysis.findings
    ]


# --- formatting -------------------------------------------------------------------------------

# Above this many differing lines on both sides, one edit replaces the differing middle instead
# of a line diff: difflib is quadratic in the worst case, and an editor must not wait on it.
_DIFF_LIMIT = 4000


def formatting(analysis: Analysis) -> list[types.TextEdit]:
    """``tiss fmt``'s result as the smallest line edits; none when the file does not parse."""
    if analysis.program is None:
        return []
    try:
        formatted = tisslang.format(analysis.program)
    except FormatError:  # the formatter cannot spell this tree: a bug, and the file stays as is
        return []
    source = analysis.text.normalised
    if analysis.text.source != source:
        # \r\n line ends or a BOM: `tiss fmt` writes \n and no BOM, so every line changes;
        # one edit replaces the whole text.
        return [types.TextEdit(_whole(analysis), formatted)]
    if formatted == source:
        return []
    # Lines with their newlines, so a missing final newline is one changed line.
    old = _lines(source)
    new = _lines(formatted)
    # Common head and tail first: usually all that differs is a few lines in the middle.
    head = 0
    while head < min(len(old), len(new)) and old[head] == new[head]:
        head += 1
    tail = 0
    while tail < min(len(old), len(new)) - head and old[-1 - tail] == new[-1 - tail]:
        tail += 1
    a, b = old[head:len(old) - tail], new[head:len(new) - tail]
    if len(a) > _DIFF_LIMIT and len(b) > _DIFF_LIMIT:
        opcodes = [("replace", 0, len(a), 0, len(b))]
    else:
        opcodes = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    last = len(analysis.text.lines) - 1
    end_of_text = analysis.text.to_client(last, len(analysis.text.lines[last]))

    def at(index: int) -> types.Position:
        return types.Position(index, 0) if index < len(old) else types.Position(*end_of_text)

    return [types.TextEdit(types.Range(at(head + i1), at(head + i2)), "".join(b[j1:j2]))
            for tag, i1, i2, j1, j2 in opcodes if tag != "equal"]


def _lines(text: str) -> list[str]:
    """``text`` cut after each ``\\n`` (only there: the parser's idea of a line)."""
    parts = text.split("\n")
    out = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        out.append(parts[-1])
    return out


def _whole(analysis: Analysis) -> types.Range:
    """The client's whole text (its own line ends and BOM counted by ``Text.to_client``)."""
    last = len(analysis.text.lines) - 1
    end = analysis.text.to_client(last, len(analysis.text.lines[last]))
    return types.Range(types.Position(0, 0), types.Position(*end))


# --- outline and folding ----------------------------------------------------------------------

_SYMBOL_KINDS = {
    "TASK": types.SymbolKind.Module,
    "SETUP": types.SymbolKind.Constructor,
    "TEARDOWN": types.SymbolKind.Event,
    "STEP": types.SymbolKind.Function,
    "OPTION": types.SymbolKind.EnumMember,
}


def document_symbols(analysis: Analysis, uri: str, hierarchical: bool):
    if hierarchical:
        return [_document_symbol(analysis, s) for s in analysis.symbols]
    flat: list[types.SymbolInformation] = []

    def add(symbol: Symbol, container: str | None) -> None:
        flat.append(types.SymbolInformation(
            name=symbol.name, kind=_SYMBOL_KINDS[symbol.keyword],
            location=types.Location(uri, lsp_range(analysis, symbol.start, symbol.end)),
            container_name=container))
        for child in symbol.children:
            add(child, symbol.name)

    for symbol in analysis.symbols:
        add(symbol, None)
    return flat


def _document_symbol(analysis: Analysis, symbol: Symbol) -> types.DocumentSymbol:
    return types.DocumentSymbol(
        name=symbol.name,
        detail=symbol.keyword,
        kind=_SYMBOL_KINDS[symbol.keyword],
        range=lsp_range(analysis, symbol.start, symbol.end),
        selection_range=lsp_range(analysis, symbol.select_start, symbol.select_end),
        children=[_document_symbol(analysis, child) for child in symbol.children],
    )


def folding_ranges(analysis: Analysis) -> list[types.FoldingRange]:
    return [
        types.FoldingRange(start_line=f.start_line, end_line=f.end_line,
                           kind=types.FoldingRangeKind.Comment if f.comment else
                           types.FoldingRangeKind.Region)
        for f in analysis.folds
    ]


# --- semantic tokens (the REPL's scanner) -----------------------------------------------------

TOKEN_TYPES = ["keyword", "decorator", "variable", "property", "string", "number", "comment",
               "operator", "macro"]
TOKEN_MODIFIERS = ["declaration", "defaultLibrary", "readonly"]
LEGEND = types.SemanticTokensLegend(token_types=TOKEN_TYPES, token_modifiers=TOKEN_MODIFIERS)
_KIND_TYPES = {
    scan.KEYWORD: "keyword", scan.DIRECTIVE: "decorator", scan.BUILTIN: "variable",
    scan.NAME: "variable", scan.STRING: "string", scan.ESCAPE: "string",
    scan.INTERPOLATION: "macro", scan.HEREDOC_MARK: "keyword", scan.HEREDOC_BODY: "string",
    scan.HEREDOC_END: "keyword", scan.COMMENT: "comment", scan.HEADER: "comment",
    scan.NUMBER: "number", scan.BOOLEAN: "keyword", scan.OPERATOR: "operator",
}
_TYPE_INDEX = {name: i for i, name in enumerate(TOKEN_TYPES)}
_KIND_INDEX = {kind: _TYPE_INDEX[name] for kind, name in _KIND_TYPES.items()}
_PROPERTY = _TYPE_INDEX["property"]
_BUILTIN_MODIFIERS = (1 << TOKEN_MODIFIERS.index("defaultLibrary")) | \
    (1 << TOKEN_MODIFIERS.index("readonly"))
_DECLARATION = 1 << TOKEN_MODIFIERS.index("declaration")


def semantic_tokens(analysis: Analysis, lines: tuple[int, int] | None = None) -> types.SemanticTokens:
    """Every token's type for the client (``lines``: only those on lines first..last).

    The tokens come in text order, so the line of each is found by walking the line starts
    along with them (a search only when a token is not on the current or next line), and where
    every character is one unit for the client (``Text.one_unit``) its columns are code points:
    ``Text.to_client``'s answer without calling it 200,000 times on a 1 MB file.
    """
    text = analysis.text
    tokens = analysis.tokens if lines is None else analysis.tokens_between(*lines)
    declarations = {(s.line - 1, s.column - 1) for s in analysis.sites if s.definition}
    data: list[int] = []
    previous_line = previous_start = 0
    normalised = text.normalised
    line_starts = text.line_starts()
    line_texts = text.lines
    one_unit = text.one_unit
    line = -1
    line_start = next_start = 0  # the current line spans line_start..next_start (exclusive)
    for token in tokens:
        type_index = _KIND_INDEX.get(token.kind)
        offset = token.start
        length = token.end - offset
        if type_index is None or length <= 0:
            continue
        if not line_start <= offset < next_start:
            if offset >= next_start and line + 1 < len(line_starts) and \
                    (line + 2 == len(line_starts) or offset < line_starts[line + 2]):
                line += 1
            else:
                line = bisect.bisect_right(line_starts, offset) - 1
            line_start = line_starts[line]
            next_start = line_starts[line + 1] if line + 1 < len(line_starts) else len(normalised) + 1
            width = len(line_texts[line])
            shift = text.bom if line == 0 else 0
        column = offset - line_start
        modifiers = 0
        if token.kind == scan.NAME:
            if offset > 0 and normalised[offset - 1] == ".":
                type_index = _PROPERTY  # a field: LAST_RUN.EXIT_CODE, a list index x.0
            elif (line, column) in declarations:
                modifiers = _DECLARATION
        elif token.kind == scan.BUILTIN:
            modifiers = _BUILTIN_MODIFIERS
        if one_unit:
            start = min(column, width) + shift
            stop = min(column + length, width) + shift
        else:
            _, start = text.to_client(line, column)
            _, stop = text.to_client(line, column + length)
        if line == previous_line:
            data += (0, start - previous_start, stop - start, type_index, modifiers)
        else:
            data += (line - previous_line, start, stop - start, type_index, modifiers)
        previous_line, previous_start = line, start
    return types.SemanticTokens(data=data)


# --- variables: definition, references, rename -----------------------------------------------

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def definition(analysis: Analysis, uri: str, pos: Pos) -> list[types.Location]:
    site = analysis.site_at(pos)
    if site is None:
        return []
    return [types.Location(uri, _site_range(analysis, s)) for s in analysis.sites
            if s.name == site.name and s.definition]


def references(analysis: Analysis, uri: str, pos: Pos, include_declaration: bool) -> list[types.Location]:
    site = analysis.site_at(pos)
    if site is None:
        return []
    return [types.Location(uri, _site_range(analysis, s)) for s in analysis.sites
            if s.name == site.name and (include_declaration or not s.definition)]


def highlights(analysis: Analysis, pos: Pos) -> list[types.DocumentHighlight]:
    """Every occurrence of the variable under the cursor: where it is set (write) and read."""
    site = analysis.site_at(pos)
    if site is None:
        return []
    return [types.DocumentHighlight(
        _site_range(analysis, s),
        types.DocumentHighlightKind.Write if s.definition else types.DocumentHighlightKind.Read)
        for s in analysis.sites if s.name == site.name]


def prepare_rename(analysis: Analysis, pos: Pos) -> types.PrepareRenamePlaceholder | None:
    site = analysis.site_at(pos)
    if site is None:
        return None
    return types.PrepareRenamePlaceholder(range=_site_range(analysis, site), placeholder=site.name)


class RenameError(ValueError):
    """A new name that cannot be a variable's; the message says why and what to pick."""


def rename(analysis: Analysis, uri: str, pos: Pos, new_name: str) -> types.WorkspaceEdit | None:
    site = analysis.site_at(pos)
    if site is None:
        return None
    if not _IDENTIFIER.match(new_name):
        raise RenameError(f"{new_name!r} is not a variable name: use letters, digits and _, not "
                          "starting with a digit")
    if new_name in tisslang.statements.KEYWORDS:
        raise RenameError(f"{new_name!r} is a TissLang keyword; choose another name")
    if new_name in tisslang.checker.BUILTINS:
        raise RenameError(f"{new_name} is a built-in reference; choose another name")
    edits = [types.TextEdit(_site_range(analysis, s), new_name)
             for s in analysis.sites if s.name == site.name]
    return types.WorkspaceEdit(changes={uri: edits})


def _site_range(analysis: Analysis, site) -> types.Range:
    return lsp_range(analysis, (site.line - 1, site.column - 1), (site.end_line - 1, site.end_column - 1))

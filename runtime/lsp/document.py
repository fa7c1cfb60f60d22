"""What the server knows about one version of a document, computed from TissLang's own parts.

``Analysis(text, previous=...)`` parses (only the statement around the changed lines when
``tisslang.analysis.reparse`` can do that exactly from the previous analysis) and turns the
parser's error and every ``tisslang.check`` finding into ``Finding``s with exact ranges; after a
syntax error, the tree of what parsed before it (``tisslang.analysis.parse_before``) is made
when an answer first needs it. The REPL's scanner
(``runtime.repl.scan``) gives the tokens: the semantic highlighting, and what sits under the
cursor for hover. Outline, folding and variable sites come from the tree. Nothing here re-reads
the language from text on its own.

Positions here are 0-based lines and code-point columns of the normalised text (``Text``);
``features.py`` converts them for the client.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from functools import cached_property

import tisslang
from tisslang import ast, statements
from tisslang import TissSyntaxError
from tisslang.analysis import Site, node_at, parse_before, reparse, variable_sites
from tisslang.statements import walk

from runtime.lsp.text import Text
from runtime.repl import scan

Pos = tuple[int, int]  # 0-based line, code-point column


@dataclass(frozen=True)
class Finding:
    """A diagnostic: ``severity`` "error" or "warning"; ``origin`` "syntax" or "check"."""

    severity: str
    message: str
    start: Pos
    end: Pos
    origin: str
    code: str | None = None  # the checker's rule code (T001) for a "check" finding


@dataclass
class Symbol:
    """An outline entry: a TASK, SETUP, TEARDOWN, STEP or OPTION and the ones inside it."""

    keyword: str
    name: str
    start: Pos
    end: Pos
    select_start: Pos
    select_end: Pos
    children: list["Symbol"] = field(default_factory=list)


@dataclass(frozen=True)
class Fold:
    start_line: int
    end_line: int
    comment: bool = False


# The statements that make the outline, each with its keyword from the statement table.
OUTLINE = {node: statements.BY_NODE[node].keyword
           for node in (ast.Task, ast.Setup, ast.Teardown, ast.Step, ast.Option)}


def block_fields(node: ast.Node) -> tuple[tuple[str, tuple], ...]:
    """The (field, statements) pairs of ``node`` that hold nested statements."""
    return tuple((name, body) for name, body in statements.blocks(node) if body)


class Analysis:
    """One version of a document, analysed; the expensive parts are computed when first asked."""

    def __init__(self, text: Text, filename: str = "<editor>", previous: "Analysis | None" = None) -> None:
        self.text = text
        self.filename = filename
        # An edit of a file that parsed (typing within lines, lines added or removed): parse
        # again only the statement around the changed lines (tisslang.analysis.reparse; exact,
        # or None and a full parse).
        program = None
        if previous is not None and previous.program is not None and previous.text is not text:
            program = reparse(previous.program, previous.text.lines, text.lines, filename)
        self.reparsed = program is not None
        self.error: TissSyntaxError | None = None
        if program is None:
            try:
                program = tisslang.parse(text.normalised, filename)
            except TissSyntaxError as exc:
                self.error = exc
        self.program: ast.Program | None = program
        self.findings = self._findings()

    @cached_property
    def _best(self) -> tuple[ast.Program | None, Pos]:
        """The tree outline, completion and navigation use, and where its real text ends: the
        whole tree, or the tree of the lines above the syntax error (whose open blocks were
        closed below them). Computed when first asked, so diagnostics never wait for it."""
        lines = self.text.lines
        if self.program is not None:
            return self.program, (len(lines) - 1, len(lines[-1]))
        partial, count = parse_before(self.text.normalised, self.error, self.filename)
        if partial is None:
            return None, (0, 0)
        return partial, (count - 1, len(lines[count - 1]))

    @property
    def tree(self) -> ast.Program | None:
        return self._best[0]

    @property
    def tree_end(self) -> Pos:
        return self._best[1]

    # --- diagnostics --------------------------------------------------------------------------

    def _findings(self) -> list[Finding]:
        if self.error is not None:
            line, column = self.error.line - 1, self.error.column - 1
            start, end = self._error_range(line, column)
            return [Finding("error", self.error.message, start, end, "syntax")]
        if self.program is None:  # a tree or an error, never neither
            return []
        found = []
        checked = tisslang.check(self.program)
        # A few findings: descend to each one's node; many: index every node once.
        index = self._starts() if len(checked) > 20 else None
        for diagnostic in checked:
            if index is not None:
                node = index.get((diagnostic.line, diagnostic.column))
            else:
                node = node_at(self.program, diagnostic.line, diagnostic.column)
            start = (diagnostic.line - 1, diagnostic.column - 1)
            end = self._node_end(node, start) if node is not None else self._word_end(start)
            found.append(Finding(diagnostic.severity, diagnostic.message, start, end, "check",
                                 diagnostic.code or None))
        return found

    def _starts(self) -> dict[tuple[int, int], ast.Node]:
        """The innermost node starting at each (line, column), 1-based."""
        index: dict[tuple[int, int], ast.Node] = {}
        for node in walk(self.program):
            if node is self.program:
                continue
            key = (node.line, node.column)
            other = index.get(key)
            if other is None or (node.end_line, node.end_column) <= (other.end_line, other.end_column):
                index[key] = node
        return index

    def _node_end(self, node: ast.Node, start: Pos) -> Pos:
        """Where a finding about ``node`` ends: a reference or value as written, a directive's
        ``@name``, a statement's first line."""
        if isinstance(node, ast.Directive):
            return start[0], start[1] + 1 + len(node.name)
        if node.end_line == node.line:
            return node.end_line - 1, node.end_column - 1
        return start[0], len(self.text.lines[start[0]].rstrip())

    def _word_end(self, start: Pos) -> Pos:
        line = self.text.lines[start[0]] if start[0] < len(self.text.lines) else ""
        end = start[1]
        while end < len(line) and not line[end].isspace():
            end += 1
        return start[0], end

    def _error_range(self, line: int, column: int) -> tuple[Pos, Pos]:
        """The characters a syntax error is about: the scanner's token at its column (a whole
        string for a string's quote), else the rest of the line, else the bare position."""
        lines = self.text.lines
        if line >= len(lines):
            line = len(lines) - 1
            column = len(lines[line])
        text = lines[line]
        column = max(0, min(column, len(text)))
        tokens = scan.scan(text).tokens
        for i, token in enumerate(tokens):
            if token.start <= column < token.end:
                end = token.end
                if token.kind == scan.STRING and token.start == column and token.text in "\"'":
                    # The opening quote: extend over the string, to its closing quote or the
                    # end of the line (an unterminated string).
                    end = len(text.rstrip())
                    for after in tokens[i + 1:]:
                        if after.kind not in (scan.STRING, scan.ESCAPE, scan.INTERPOLATION):
                            break
                        end = after.end
                        if after.kind == scan.STRING and after.text == token.text:
                            break
                return (line, token.start), (line, end)
        rest = text[column:]
        if rest.strip():
            return (line, column), (line, len(text.rstrip()))
        return (line, column), (line, column)

    # --- tokens (the REPL's scanner) ---------------------------------------------------------

    @cached_property
    def tokens(self) -> list[scan.Token]:
        return scan.scan(self.text.normalised).tokens

    @cached_property
    def token_starts(self) -> list[int]:
        return [token.start for token in self.tokens]

    @cached_property
    def _statement_lines(self) -> list[int]:
        """0-based first lines of every statement, sorted: lines where the scanner can start
        afresh (a statement never starts inside a string or a heredoc body)."""
        if self.tree is None:
            return [0]
        return sorted({0} | {node.line - 1 for node in walk(self.tree, blocks_only=True)
                             if node is not self.tree})

    def tokens_between(self, first: int, last: int) -> list[scan.Token]:
        """The scanner's tokens on lines ``first`` to ``last`` (0-based, inclusive), scanning
        only from the nearest statement start above ``first``, not from the top of the file.
        The same tokens ``tokens`` has there (a test checks it)."""
        text = self.text
        last = min(last, len(text.lines) - 1)
        begin = text.offset(first, 0)
        end = text.offset(last, len(text.lines[last]))
        if "tokens" in self.__dict__:  # the whole file is scanned already
            i = bisect.bisect_left(self.token_starts, begin)
            j = bisect.bisect_left(self.token_starts, end)
            return self.tokens[i:j]
        lines = self._statement_lines
        restart = lines[max(bisect.bisect_right(lines, first) - 1, 0)]
        offset = text.offset(restart, 0)
        return [scan.Token(t.kind, t.start + offset, t.end + offset, t.text)
                for t in scan.scan(text.normalised[offset:end]).tokens if t.start + offset >= begin]

    def token_at(self, pos: Pos) -> scan.Token | None:
        """The token under the cursor (touching it on the right counts too)."""
        offset = self.text.offset(*pos)
        i = bisect.bisect_right(self.token_starts, offset) - 1
        for j in (i, i - 1):
            if 0 <= j < len(self.tokens):
                token = self.tokens[j]
                if token.start <= offset <= token.end and token.kind != scan.PUNCTUATION:
                    return token
        return None

    # --- variables ----------------------------------------------------------------------------

    @cached_property
    def sites(self) -> list[Site]:
        if self.tree is None:
            return []
        return [site for site in variable_sites(self.tree, self.text.lines)
                if site.name not in tisslang.checker.BUILTINS]

    def site_at(self, pos: Pos) -> Site | None:
        line, column = pos[0] + 1, pos[1] + 1
        for site in self.sites:
            if site.contains(line, column):
                return site
        return None

    def definitions_before(self, pos: Pos) -> list[str]:
        """Names of variables set above the cursor (or earlier on its line), in first-set order."""
        names: dict[str, None] = {}
        for site in self.sites:
            if site.definition and (site.line - 1, site.end_column - 1) <= pos:
                names.setdefault(site.name)
        return list(names)

    # --- outline and folding ------------------------------------------------------------------

    @cached_property
    def symbols(self) -> list[Symbol]:
        if self.tree is None:
            return []
        return self._symbols(self.tree.body)

    def _symbols(self, body: tuple) -> list[Symbol]:
        out: list[Symbol] = []
        for node in body:
            keyword = OUTLINE.get(type(node))
            inner: list[Symbol] = []
            for _, statements in block_fields(node):
                inner.extend(self._symbols(statements))
            if keyword is None:
                out.extend(inner)  # an IF, TRY, PARALLEL ... is not an entry; its steps are
                continue
            description = getattr(node, "description", None)
            name = description.text if description is not None else ""
            if description is not None and description.line:
                select = (description.line - 1, description.column - 1), \
                    (description.end_line - 1, description.end_column - 1)
            else:
                select = (node.line - 1, node.column - 1), (node.line - 1, node.column - 1 + len(keyword))
            end = min((node.end_line - 1, node.end_column - 1), self.tree_end)
            out.append(Symbol(keyword, name.replace("\n", " ") or keyword,
                              (node.line - 1, node.column - 1), end, select[0], select[1], inner))
        return out

    @cached_property
    def folds(self) -> list[Fold]:
        folds: list[Fold] = []
        if self.tree is not None:
            for node in walk(self.tree, blocks_only=True):  # statements: blocks and heredocs
                if node is not self.tree:
                    folds.extend(_node_folds(node))
            folds.extend(_comment_folds(self.tree.comments, self.text.lines))
        limit = self.tree_end[0]
        folds = [Fold(f.start_line, min(f.end_line, limit), f.comment) for f in folds]
        folds = [f for f in folds if f.end_line > f.start_line]
        folds.sort(key=lambda f: (f.start_line, -f.end_line))
        return folds


def _node_folds(node: ast.Node) -> list[Fold]:
    """Lines to fold (0-based) for a block statement or a heredoc; closing lines stay visible."""
    first, last = node.line - 1, node.end_line - 1
    if isinstance(node, ast.Write) and node.delimiter:
        return [Fold(first, last - 1)]
    fields = block_fields(node)
    if not fields:
        return []
    if isinstance(node, ast.If) and node.else_line:
        folds = [Fold(first, node.else_line - 2)]
        nested_if = len(node.orelse) == 1 and isinstance(node.orelse[0], ast.If) \
            and node.orelse[0].line == node.else_line
        if not nested_if:
            folds.append(Fold(node.else_line - 1, last - 1))
        return folds
    if isinstance(node, ast.Try) and node.catch_line:
        return [Fold(first, node.catch_line - 2), Fold(node.catch_line - 1, last - 1)]
    return [Fold(first, last - 1)]


def _comment_folds(comments: tuple[ast.Comment, ...], lines: list[str]) -> list[Fold]:
    """Runs of two or more whole-line comments on consecutive lines."""
    folds = []
    run_start = previous = None
    for comment in comments:
        line = comment.line - 1
        if line >= len(lines) or lines[line][: comment.column - 1].strip():
            continue  # a comment after a statement
        if previous is not None and line == previous + 1:
            previous = line
            continue
        if run_start is not None and previous > run_start:
            folds.append(Fold(run_start, previous, comment=True))
        run_start = previous = line
    if run_start is not None and previous > run_start:
        folds.append(Fold(run_start, previous, comment=True))
    return folds

"""Tab completion for REPL entries: keywords, directives, variables, built-ins, workspace paths.

What is offered depends on where the cursor is, as `scan.py` sees the text before it:

- at the start of a statement: statement keywords, then directives;
- elsewhere in code: clause and expression keywords, variables in scope, built-in references
  (`LAST_RUN.` then its fields), budget names, booleans; `@` starts a directive;
- inside `{{ ` in a string or heredoc: variables and built-in references;
- inside the first string of WRITE / READ / DELETE / MKDIR, and after FILE in a condition:
  files and directories of the workspace (never outside it);
- nothing in comments or plain string text.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable, Iterable, Iterator

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from runtime.repl import scan as tokens

_WORD = re.compile(r"@?[A-Za-z_][A-Za-z0-9_.]*$|@$")
_STATEMENT_START = re.compile(r"(?:^|[{;])\s*$")


def _matching(prefix: str, candidates: Iterable[str], meta: str, seen: set[str]) -> Iterator[Completion]:
    for candidate in candidates:
        if candidate.startswith(prefix) and candidate != prefix and candidate not in seen:
            seen.add(candidate)
            yield Completion(candidate, start_position=-len(prefix), display_meta=meta)


class TissCompleter(Completer):
    """Completes TissLang entries against the session's variables and workspace."""

    def __init__(
        self,
        variables: Callable[[], Iterable[str]] = lambda: (),
        workspace: Callable[[], Path] = Path.cwd,
    ) -> None:
        self.variables = variables
        self.workspace = workspace

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
        before = document.text_before_cursor
        state = tokens.scan(before).state
        if state.in_comment:
            return
        if state.in_interpolation:
            word = before[before.rfind("{{") + 2:].lstrip()
            if re.fullmatch(r"[A-Za-z0-9_.]*", word):
                yield from self.references(word, set())
            return
        if state.in_string:
            if state.string_statement in tokens.PATH_STATEMENTS and state.open_string is not None:
                yield from self.paths(before[state.open_string.end:])
            return
        if state.in_heredoc_body:
            return
        match = _WORD.search(before)
        word = match.group() if match else ""
        if not word and not complete_event.completion_requested:
            return
        line_before = before[: len(before) - len(word)].rsplit("\n", 1)[-1]
        at_start = bool(_STATEMENT_START.search(line_before))
        yield from self.code(word, at_start)

    def code(self, word: str, at_start: bool) -> Iterator[Completion]:
        seen: set[str] = set()
        if word.startswith("@"):
            yield from _matching(word, ("@" + d for d in tokens.DIRECTIVES), "directive", seen)
            return
        if "." in word:
            yield from self.references(word, seen)
            return
        if at_start:
            yield from _matching(word, tokens.STATEMENT_KEYWORDS, "statement", seen)
            yield from _matching(word, ("ELSE", "CATCH"), "keyword", seen)
            return
        yield from _matching(word, tokens.CLAUSE_KEYWORDS + tokens.EXPRESSION_KEYWORDS, "keyword", seen)
        yield from self.references(word, seen)
        yield from _matching(word, tokens.BUDGET_NAMES, "budget", seen)
        yield from _matching(word, ("true", "false"), "boolean", seen)

    def references(self, word: str, seen: set[str]) -> Iterator[Completion]:
        head, dot, field = word.partition(".")
        if dot:
            fields = tokens.BUILTINS.get(head, ())
            if "." not in field:
                yield from _matching(field, fields, f"{head} field", seen)
            return
        try:
            names = sorted(set(self.variables()))
        except Exception:  # a completer must never take the prompt down
            names = []
        yield from _matching(word, names, "variable", seen)
        yield from _matching(word, tokens.BUILTINS, "built-in", seen)

    def paths(self, typed: str) -> Iterator[Completion]:
        """Entries of the workspace directory `typed` points into, completing its last part."""
        directory, _, partial = typed.rpartition("/")
        if typed.startswith("/") or "\\" in typed:
            return
        try:
            root = self.workspace().resolve()
            folder = (root / directory).resolve() if directory else root
            if folder != root and root not in folder.parents:
                return  # completion never lists anything outside the workspace
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except (OSError, RuntimeError):
            return
        for entry in entries:
            name = entry.name
            if not name.startswith(partial) or (name.startswith(".") and not partial.startswith(".")):
                continue
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            yield Completion(
                name + ("/" if is_dir else ""),
                start_position=-len(partial),
                display=name + ("/" if is_dir else ""),
                display_meta="directory" if is_dir else "file",
            )

"""`tiss run -k PATTERN`: which STEPs run, chosen by their description, as pytest's `-k` does.

PATTERN is words joined with `and`, `or`, `not` and parentheses; a word matches a step whose
description contains it, ignoring case (`-k build`, `-k "test and not slow"`). Words next to each
other with no operator between them are one phrase, as descriptions are phrases:
`-k "write a greeting and not slow"` is the phrase "write a greeting" and not "slow". A step runs when
it matches, when a step around it matches (its whole body runs), or when a step inside it
matches (it runs so that step can; its other steps are deselected). SETUP, TEARDOWN and the
statements outside steps always run: they are what the selected steps stand on. A step that
does not run is `deselected` (runtime/result.py), which is not a failure.

A description is matched as it reads when the step starts (interpolated); the "around it" and
"inside it" rules look at descriptions as written in the script.
"""

from __future__ import annotations

import re
from typing import Callable

from runtime.errors import TissRuntimeError
from tisslang import ast, walk

_TOKEN = re.compile(r"\s*(\(|\)|[^\s()]+)")


class SelectionError(TissRuntimeError):
    """A `-k` pattern that is not an expression; exit status 2."""

    exit_code = 2


def compile_pattern(pattern: str) -> Callable[[str], bool]:
    """The `-k` expression as a predicate on a description."""
    tokens = _TOKEN.findall(pattern)
    if not tokens:
        raise SelectionError("-k needs a pattern: a word of the step descriptions to run, e.g. -k build")
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        position += 1
        return tokens[position - 1]

    def either() -> Callable[[str], bool]:
        left = both()
        while peek() == "or":
            take()
            left = (lambda a, b: lambda text: a(text) or b(text))(left, both())
        return left

    def both() -> Callable[[str], bool]:
        left = negated()
        while peek() == "and":
            take()
            left = (lambda a, b: lambda text: a(text) and b(text))(left, negated())
        return left

    def negated() -> Callable[[str], bool]:
        if peek() == "not":
            take()
            inner = negated()
            return lambda text: not inner(text)
        return atom()

    def atom() -> Callable[[str], bool]:
        token = peek()
        if token is None or token in (")", "and", "or"):
            raise SelectionError(f"-k {pattern!r}: expected a word or '(' "
                                 f"{'at the end' if token is None else f'before {token!r}'}")
        take()
        if token == "(":
            inner = either()
            if peek() != ")":
                raise SelectionError(f"-k {pattern!r}: a '(' is never closed; add ')'")
            take()
            return inner
        words = [token]
        while peek() is not None and peek() not in ("(", ")", "and", "or", "not"):
            words.append(take())
        phrase = " ".join(words).casefold()
        return lambda text: phrase in " ".join(text.split()).casefold()

    predicate = either()
    if peek() is not None:
        raise SelectionError(f"-k {pattern!r}: unexpected {peek()!r}; join words with and, or, not")
    return predicate


def _written(node: ast.Node) -> str:
    description = getattr(node, "description", None)
    return getattr(description, "text", "") or ""


class StepSelector:
    """The steps `-k PATTERN` runs; `prepare(program)` once per program before it runs."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.matches = compile_pattern(pattern)
        self._wanted: set[int] = set()

    def prepare(self, program: ast.Program) -> None:
        """Note the steps that run for a step around or inside them (descriptions as written)."""
        steps = [node for node in walk(program, blocks_only=True) if isinstance(node, ast.Step)]
        wanted: set[int] = set()
        for step in steps:
            under = [node for node in walk(step, blocks_only=True) if isinstance(node, ast.Step)]
            if self.matches(_written(step)):
                wanted.update(id(node) for node in under)  # its whole body runs
            elif any(self.matches(_written(node)) for node in under):
                wanted.add(id(step))  # it holds a selected step
        self._wanted = wanted

    def wanted(self, node: ast.Step, description: str) -> bool:
        return id(node) in self._wanted or self.matches(description)


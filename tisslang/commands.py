"""The work behind ``tiss parse``, ``tiss check`` and ``tiss fmt`` (the CLI only wires them).

Each function takes plain arguments, prints results to stdout and diagnostics to stderr as
``path:line:col: error|warning: message``, and returns the exit code: 0 clean, 1 findings (or a
file ``fmt --check`` would change), 2 a syntax error or an unreadable file.
"""

from __future__ import annotations

import difflib
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, TextIO

from .ast import dump
from .checker import RULES, check
from .errors import TissError, TissFileError, TissSyntaxError, _escaped
from .formatter import FormatError, format as format_program
from .parser import parse, parse_file, read_source

EXIT_OK, EXIT_FINDINGS, EXIT_INVALID = 0, 1, 2


class TissUsageError(TissError):
    """A flag value the command cannot use (``--select T999``); exit status 2."""


def _report(exc: TissError, err: TextIO) -> None:
    render = getattr(exc, "render", None)
    print(render() if callable(render) else f"tiss: error: {exc}", file=err)


def parse_command(path: str, *, as_json: bool = False, out: TextIO | None = None) -> int:
    """Print the tree of one script: readable (``ast.dump``) or JSON."""
    out = out or sys.stdout
    program = parse_file(path)  # errors propagate: the CLI prints them and exits 2
    _write(out, (program.to_json(indent=2) if as_json else dump(program)) + "\n")
    return EXIT_OK


def _write(out: TextIO, text: str) -> None:
    """Write to stdout; a reader that went away (``tiss parse x | head``) is not an error."""
    try:
        out.write(text)
        out.flush()
    except BrokenPipeError:
        if out is sys.stdout:
            # Point stdout at /dev/null so the interpreter's last flush stays quiet too.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)


# Directories a recursive walk never enters, as ruff's defaults: tool and package caches.
_SKIP_DIRS = frozenset({"node_modules", "venv", "site-packages", "__pycache__", "build", "dist"})
OUTPUT_FORMATS = ("text", "json", "github")


def expand_paths(paths: Iterable[str], err: TextIO) -> list[str]:
    """Files named as they are; directories walked (sorted) for ``*.tiss``, skipping hidden and
    cache directories. No paths means the current directory."""
    found: list[str] = []
    for path in list(paths) or ["."]:
        if not os.path.isdir(path):
            found.append(path)  # a missing file is reported by whoever reads it
            continue
        before = len(found)
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIP_DIRS)
            found.extend(os.path.normpath(os.path.join(root, f))
                         for f in sorted(files) if f.endswith(".tiss"))
        if len(found) == before:
            print(f"tiss: warning: no .tiss files under {path}", file=err)
    return found


def select_codes(select: Iterable[str] = (), ignore: Iterable[str] = ()) -> frozenset[str]:
    """The rule codes to report: ``select`` (default all) less ``ignore``. Each item is a code or
    a prefix (``T1`` is every warning), comma-separated lists allowed, as ruff's flags."""
    def expand(items: Iterable[str], flag: str) -> set[str]:
        codes: set[str] = set()
        for item in (part.strip().upper() for text in items for part in text.split(",")):
            if not item:
                continue
            matched = {code for code in RULES if code.startswith(item)}
            if not matched:
                close = difflib.get_close_matches(item, list(RULES), n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                raise TissUsageError(f"{flag} {item}: no rule has this code{hint} (the rules are "
                                     "listed in docs/tisslang.md, 'Rule codes')")
            codes |= matched
        return codes

    selected = expand(select, "--select") or set(RULES)
    return frozenset(selected - expand(ignore, "--ignore"))


@dataclass
class _Problem:
    """One line of the report: a checker finding or a syntax/file error (``code`` None)."""

    path: str
    line: int
    column: int
    severity: str
    message: str
    code: str | None
    source_line: str | None


def check_command(paths: Iterable[str] = (), *, known: Iterable[str] = (),
                  select: Iterable[str] = (), ignore: Iterable[str] = (),
                  output_format: str = "text",
                  out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Syntax and static checks for each file (directories: their ``*.tiss``; none: ``.``):
    0 clean, 1 findings, 2 a syntax error or an unreadable file (or a bad ``--select``).

    ``text`` prints each finding with its source line and a caret on stderr, then a summary;
    ``json`` prints one JSON list on stdout; ``github`` prints GitHub Actions annotations."""
    out, err = out or sys.stdout, err or sys.stderr
    if output_format not in OUTPUT_FORMATS:
        raise TissUsageError(f"unknown output format {output_format!r}; use one of "
                             f"{', '.join(OUTPUT_FORMATS)}")
    codes = select_codes(select, ignore)
    status = EXIT_OK
    known = tuple(name.partition("=")[0] for name in known)
    problems: list[_Problem] = []
    for path in expand_paths(paths, err):
        first = len(problems)
        program = _check_file(path, known, codes, problems)
        if program is None:
            status = EXIT_INVALID
        elif len(problems) > first and status == EXIT_OK:
            status = EXIT_FINDINGS
        if output_format == "text":
            _print_text(problems[first:], err)
            for note in _endpoint_notes(program, path) if program is not None else ():
                print(note, file=err)  # information, not findings
    if output_format == "text":
        print(_summary(problems), file=err)
    elif output_format == "json":
        _write(out, json.dumps([{
            "file": p.path, "line": p.line, "column": p.column, "severity": p.severity,
            "code": p.code, "rule": _rule_name(p),
            "message": p.message} for p in problems], indent=2) + "\n")
    else:
        _write(out, "".join(_github(p) + "\n" for p in problems))
        print(_summary(problems), file=err)
    return status


def _check_file(path: str, known: tuple[str, ...], codes: frozenset[str],
                problems: list[_Problem]):
    """Add one file's problems; its tree, or None when it does not parse or cannot be read."""
    try:
        source = read_source(path)
        program = parse(source, path)
    except TissSyntaxError as exc:
        problems.append(_Problem(path, exc.line, exc.column, "error", exc.message, None,
                                 exc.source_line))
        return None
    except TissFileError as exc:
        problems.append(_Problem(path, 0, 0, "error", str(exc), None, None))
        return None
    lines = source.splitlines()
    for d in check(program, known=known):
        if d.code in codes:
            text = lines[d.line - 1] if 0 < d.line <= len(lines) else None
            problems.append(_Problem(path, d.line, d.column, d.severity, d.message, d.code, text))
    return program


def _print_text(problems: list[_Problem], err: TextIO) -> None:
    for p in problems:
        if p.line == 0:  # an unreadable file: no position to show
            print(f"tiss: error: {_escaped(p.message)}", file=err)
            continue
        code = f" {p.code}" if p.code else ""
        print(f"{p.path}:{p.line}:{p.column}: {p.severity}:{code} {_escaped(p.message)}", file=err)
        if p.source_line is not None:
            text = p.source_line.rstrip("\n")
            pad = "".join(ch if ch == "\t" else " " for ch in _escaped(text[: max(p.column - 1, 0)]))
            print(f"    {_escaped(text)}\n    {pad}^", file=err)


def _summary(problems: list[_Problem]) -> str:
    """ruff's last line: ``All checks passed!`` or ``Found 3 problems (1 error, 2 warnings)
    in 2 files``."""
    if not problems:
        return "All checks passed!"
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    files = len({p.path for p in problems})
    parts = [_plural(n, word) for n, word in ((errors, "error"), (warnings, "warning")) if n]
    return (f"Found {_plural(len(problems), 'problem')} ({', '.join(parts)}) in "
            f"{_plural(files, 'file')}")


def _rule_name(p: _Problem) -> str:
    if p.code:
        return RULES[p.code].name
    return "syntax error" if p.line else "unreadable file"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _github(p: _Problem) -> str:
    """A GitHub Actions workflow command: ``::error file=F,line=L,col=C,title=T001::message``.
    Properties and message are escaped as the runner's toolkit does (%, CR, LF; and : , in
    properties), so a message cannot end the command early or start another."""
    def data(text: str) -> str:
        return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")

    def prop(text: str) -> str:
        return data(text).replace(":", "%3A").replace(",", "%2C")

    level = "error" if p.severity == "error" else "warning"
    fields = [f"file={prop(p.path)}"]
    if p.line:
        fields += [f"line={p.line}", f"col={p.column}"]
    fields.append(f"title={prop(p.code or _rule_name(p))}")
    message = f"{p.code} {p.message}" if p.code else p.message
    return f"::{level} {','.join(fields)}::{data(message)}"


def _endpoint_notes(program, path: str) -> list[str]:
    """A note for each ``@model`` that calls (or may call) an HTTP server: which endpoints a
    script would talk to, and that the API key goes to none but the user's own."""
    from . import ast

    notes, stack = [], [program]
    while stack:
        node = stack.pop()
        stack.extend(reversed(list(ast.iter_child_nodes(node))))
        if not (isinstance(node, ast.Directive) and node.name == "model" and node.value is not None):
            continue
        where = f"{path}:{node.line}:{node.column}: note:"
        value = node.value
        if isinstance(value, ast.String) and value.is_literal:
            if value.text.strip().startswith(("http://", "https://")):
                notes.append(f"{where} @model calls {value.text.strip()}; TISS_API_KEY is sent to it "
                             "only if it is on the server given by --model or TISS_MODEL")
        elif isinstance(value, (ast.String, ast.Ref)):
            notes.append(f"{where} @model is computed at run time and may name any server; "
                         "TISS_API_KEY is sent only to the server given by --model or TISS_MODEL")
    return notes


def fmt_command(paths: Iterable[str] = (), *, check_only: bool = False, diff: bool = False,
                out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Rewrite each file (directories: their ``*.tiss``; none: ``.``) in canonical form
    (atomically), or with ``check_only``/``diff`` only report: exit 1 when some file would
    change, 2 when some file does not parse. A summary line ends the output, as ruff's."""
    out, err = out or sys.stdout, err or sys.stderr
    status = EXIT_OK
    counts = {"changed": 0, "unchanged": 0, "failed": 0}
    for path in expand_paths(paths, err):
        outcome = _fmt_file(path, check_only, diff, out, err)
        counts[outcome] += 1
        code = {"changed": EXIT_FINDINGS if check_only or diff else EXIT_OK,
                "unchanged": EXIT_OK, "failed": EXIT_INVALID}[outcome]
        status = max(status, code)
    print(_fmt_summary(counts, check_only or diff), file=err)
    return status


def _fmt_summary(counts: dict[str, int], dry: bool) -> str:
    """``2 files reformatted, 5 files left unchanged`` (with --check: ``would be reformatted``,
    ``already formatted``), as ruff format says it."""
    changed, unchanged, failed = counts["changed"], counts["unchanged"], counts["failed"]
    parts = []
    if changed:
        parts.append(f"{_plural(changed, 'file')} {'would be reformatted' if dry else 'reformatted'}")
    if unchanged or not (parts or failed):
        parts.append(f"{_plural(unchanged, 'file')} {'already formatted' if dry else 'left unchanged'}")
    if failed:
        parts.append(f"{_plural(failed, 'file')} could not be formatted")
    return ", ".join(parts)


def _fmt_file(path: str, check_only: bool, diff: bool, out: TextIO, err: TextIO) -> str:
    """Format one file: ``changed`` (or would change), ``unchanged`` or ``failed``."""
    try:
        original = read_source(path)
        formatted = format_program(parse(original, path))
    except (TissSyntaxError, TissFileError) as exc:
        _report(exc, err)
        return "failed"
    except FormatError as exc:  # a tree the parser built must always format: a bug
        print(f"tiss: error: cannot format {path}: {exc}; the file is left as it was "
              "(this is a bug in tiss fmt, please report it)", file=err)
        return "failed"
    if formatted == original:
        return "unchanged"
    if diff:
        _write(out, "".join(difflib.unified_diff(
            original.splitlines(keepends=True), formatted.splitlines(keepends=True),
            fromfile=f"{path} (original)", tofile=f"{path} (formatted)")))
    if check_only or diff:
        if check_only:
            print(f"would reformat {path}", file=err)
        return "changed"
    if not os.stat(path).st_mode & 0o222:  # even root must not rewrite a read-only file
        print(f"tiss: error: {path} is read-only; tiss fmt leaves it as it is (make it "
              "writable, or see the changes with --diff)", file=err)
        return "failed"
    try:
        write_atomic(Path(path), formatted)
    except OSError as exc:
        print(f"tiss: error: cannot write {path}: {exc.strerror or exc}; the file is left as "
              "it was", file=err)
        return "failed"
    print(f"reformatted {path}", file=err)
    return "changed"


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: a temporary file in the same directory, fsync, rename,
    keeping the original file's permissions, owner and group (a new file gets the mode
    ``open()`` would give it, not ``mkstemp``'s owner-only one). A symlink is kept: its target
    is replaced. Set-user-ID and set-group-ID bits are never carried onto the new content.
    The same behaviour as ``lm.atomic.write_atomic`` (the layering keeps the two packages from
    sharing code); ``tests/atomic_contract.py`` pins both."""
    path = Path(os.path.realpath(path))  # write the link's target; the link stays a link
    directory = path.parent
    owner = None
    if path.exists():
        info = path.stat()
        mode = info.st_mode & 0o1777
        owner = (info.st_uid, info.st_gid)
    else:
        # Reading the umask means setting it; a thread creating a file meanwhile gets 077, not 0.
        umask = os.umask(0o077)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
            if owner is not None and owner != (os.geteuid(), os.getegid()):
                os.fchown(handle.fileno(), *owner)  # EPERM: refused, the file is left as it was
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)

"""The work behind ``tiss parse``, ``tiss check`` and ``tiss fmt`` (the CLI only wires them).

Each function takes plain arguments, prints results to stdout and diagnostics to stderr as
``path:line:col: error|warning: message``, and returns the exit code: 0 clean, 1 findings (or a
file ``fmt --check`` would change), 2 a syntax error or an unreadable file.
"""

from __future__ import annotations

import difflib
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterable, TextIO

from .ast import dump
from .checker import check
from .errors import TissError, TissFileError, TissSyntaxError
from .formatter import FormatError, format as format_program
from .parser import parse, parse_file, read_source

EXIT_OK, EXIT_FINDINGS, EXIT_INVALID = 0, 1, 2


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


def check_command(paths: Iterable[str], *, known: Iterable[str] = (),
                  out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Syntax and static checks for each file: 0 clean, 1 diagnostics, 2 a syntax error."""
    out, err = out or sys.stdout, err or sys.stderr
    status = EXIT_OK
    known = tuple(name.partition("=")[0] for name in known)
    for path in paths:
        try:
            program = parse_file(path)
        except (TissSyntaxError, TissFileError) as exc:
            _report(exc, err)
            status = EXIT_INVALID
            continue
        diagnostics = check(program, known=known)
        for diagnostic in diagnostics:
            print(diagnostic.render(path), file=err)
        for note in _endpoint_notes(program, path):  # information, not findings
            print(note, file=err)
        if diagnostics and status == EXIT_OK:
            status = EXIT_FINDINGS
    return status


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


def fmt_command(paths: Iterable[str], *, check_only: bool = False, diff: bool = False,
                out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Rewrite each file in canonical form (atomically), or with ``check_only``/``diff`` only
    report: exit 1 when some file would change, 2 when some file does not parse."""
    out, err = out or sys.stdout, err or sys.stderr
    status = EXIT_OK
    for path in paths:
        try:
            original = read_source(path)
            formatted = format_program(parse(original, path))
        except (TissSyntaxError, TissFileError) as exc:
            _report(exc, err)
            status = EXIT_INVALID
            continue
        except FormatError as exc:  # a tree the parser built must always format: a bug
            print(f"tiss: error: cannot format {path}: {exc}; the file is left as it was "
                  "(this is a bug in tiss fmt, please report it)", file=err)
            status = EXIT_INVALID
            continue
        if formatted == original:
            continue
        if diff:
            _write(out, "".join(difflib.unified_diff(
                original.splitlines(keepends=True), formatted.splitlines(keepends=True),
                fromfile=f"{path} (original)", tofile=f"{path} (formatted)")))
        if check_only or diff:
            if check_only:
                print(f"would reformat {path}", file=err)
            if status == EXIT_OK:
                status = EXIT_FINDINGS
            continue
        if not os.stat(path).st_mode & 0o222:  # even root must not rewrite a read-only file
            print(f"tiss: error: {path} is read-only; tiss fmt leaves it as it is (make it "
                  "writable, or see the changes with --diff)", file=err)
            status = EXIT_INVALID
            continue
        try:
            write_atomic(Path(path), formatted)
        except OSError as exc:
            print(f"tiss: error: cannot write {path}: {exc.strerror or exc}; the file is left as "
                  "it was", file=err)
            status = EXIT_INVALID
            continue
        print(f"reformatted {path}", file=err)
    return status


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

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
        if diagnostics and status == EXIT_OK:
            status = EXIT_FINDINGS
    return status


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
    keeping the original file's permissions (a new file gets the mode ``open()`` would give it,
    not ``mkstemp``'s owner-only one)."""
    directory = path.parent
    if path.exists():
        mode = path.stat().st_mode & 0o7777
    else:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
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

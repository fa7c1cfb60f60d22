"""The `tiss` command line: argument parsing and dispatch only.

Each subcommand is one `cmd_*` function that hands its parsed arguments to the module that does
the work; the modules are imported lazily so `tiss check` never loads NumPy. Exit codes follow
ruff and black: 0 clean, 1 findings or a failed step, 2 usage error or invalid script,
130 interrupted.

To add a subcommand: write `_add_NAME(subparsers)` that builds its parser and sets
`func=cmd_NAME`, write `cmd_NAME(args) -> int`, and call `_add_NAME` from `create_parser`.
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _version() -> str:
    try:
        dist = metadata.version("quantatissu")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        dist = "0+unknown"
    from tisslang import LANGUAGE_VERSION

    return f"tiss {dist} (TissLang {LANGUAGE_VERSION})"


def create_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tiss",
        description="Run, check and format TissLang agent scripts; train and sample the model.",
    )
    parser.add_argument("--version", action="version", version=_version())
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Subcommands register here, one line each.
    return parser


def _user_error_types() -> tuple[type[BaseException], ...]:
    """The project's own exception bases: these are messages for the user, never tracebacks."""
    from lm.errors import LMError
    from runtime.errors import TissRuntimeError
    from tisslang.errors import TissError

    return (TissError, TissRuntimeError, LMError)


def render_error(exc: BaseException) -> str:
    """The text a user sees for one of the project's errors.

    Errors that know their position (`file:line:col: error: ...` with a caret) provide `render()`;
    the rest are plain messages, prefixed like argparse's own.
    """
    render = getattr(exc, "render", None)
    return render() if callable(render) else f"tiss: error: {exc}"


def main(argv: list[str] | None = None) -> int:
    parser = create_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return func(args)
    except KeyboardInterrupt:
        print("tiss: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _user_error_types() as exc:
        print(render_error(exc), file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_USAGE)

"""`tiss run SCRIPT`: read and parse the script, set up the session from the flags, run, report.

The CLI (`runtime/cli.py`) only parses arguments and calls `run_script(args)`. Output: live
progress and the failure report on stdout (on stderr with `--report json`, which keeps stdout
for the JSON document). Exit status: 0 passed, 1 a step failed, 2 invalid script or usage,
130 interrupted. SIGTERM is treated like Ctrl-C, so TEARDOWN runs either way.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from runtime.budget import MAX_SECONDS
from runtime.errors import TissRuntimeError
from runtime.interpolate import BUILTIN_ROOTS
from runtime.report import ProgressPrinter, format_estimate, format_report, use_colour, write_line
from runtime.review import Reviewer
from runtime.secret import redact_value
from runtime.session import RunOptions, Session
from runtime.trace import JsonlTrace
from runtime.workspace import Workspace


class UsageError(TissRuntimeError):
    """A `tiss run` flag with a value that cannot work; exit status 2."""

    exit_code = 2


def parse_vars(items: list[str] | None) -> dict[str, str | bool]:
    """`--var NAME=VALUE` pairs. Values are strings (numeric ones compare as numbers), except
    exactly `true` and `false`, which are booleans: otherwise `--var dry=false` would make
    `IF dry` true (a non-empty string) and `dry == false` a type error. They render the same."""
    import re

    out: dict[str, str | bool] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise UsageError(
                f"--var expects NAME=VALUE with NAME an identifier (letters, digits, _), got {item!r}"
            )
        if name in BUILTIN_ROOTS:
            raise UsageError(f"--var {name}: {name} is a built-in reference and cannot be set; choose another name")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:  # bytes that are not UTF-8 arrive as lone surrogates
            raise UsageError(
                f"--var {name}: the value is not valid UTF-8 (byte 0x{ord(value[exc.start]) & 0xFF:02x} "
                f"at offset {exc.start}); pass text, or write the data to a file and READ it"
            ) from None
        out[name] = {"true": True, "false": False}.get(value, value)
    return out


def policy_from_args(args: Any) -> Any:
    """The command policy of `--allow`, `--deny`, `--policy`, `--approve` (runtime/policy.py)."""
    from runtime.policy import build_policy

    return build_policy(getattr(args, "allow", None), getattr(args, "deny", None),
                        getattr(args, "policy", None), getattr(args, "approve", None))


def _parse_script(path: str) -> tuple[Any, str]:
    from tisslang import parse, read_source
    from tisslang.errors import TissFileError

    try:
        source = read_source(path)
    except TissFileError as exc:
        raise UsageError(str(exc).replace("cannot read", "cannot read script", 1)) from None
    return parse(source, path), source


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Deliver SIGTERM as KeyboardInterrupt, so a terminated run still runs TEARDOWN."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_script(args: Any) -> int:
    """The `tiss run` subcommand; `args` as built by `cli._add_run`. With `--report json` a
    script that cannot run (invalid, unreadable, a bad flag value) still gives stdout one JSON
    object, ``{"status": "invalid", "exit_code": 2, "error": {...}}``, beside the message on
    stderr, so a caller parsing stdout always has JSON to parse."""
    try:
        return _run_scripts(args)
    except (TissRuntimeError, _tiss_error()) as exc:
        if getattr(args, "report", None) == "json":
            write_line(sys.stdout, json.dumps(_error_document(exc), ensure_ascii=False))
        raise


def _tiss_error() -> type[Exception]:
    from tisslang.errors import TissError

    return TissError


def _error_document(exc: Exception) -> dict[str, Any]:
    error: dict[str, Any] = {"kind": type(exc).__name__,
                             "message": getattr(exc, "message", None) or str(exc)}
    for field in ("filename", "line", "column"):
        if getattr(exc, field, None) is not None:
            error["file" if field == "filename" else field] = getattr(exc, field)
    exit_code = getattr(exc, "exit_code", 2)
    return redact_value({"status": "invalid" if exit_code == 2 else "error", "exit_code": exit_code,
                         "error": error})


def _run_scripts(args: Any) -> int:
    program, source = _parse_script(args.script)
    if args.timeout is not None and not args.timeout > 0:
        raise UsageError(f"--timeout must be a positive number of seconds, got {args.timeout:g}")
    if args.timeout is not None and args.timeout > MAX_SECONDS:
        raise UsageError(f"--timeout {args.timeout:g} is too large: at most {MAX_SECONDS:g} seconds (about 126 years)")
    workspace = Workspace(args.workspace or os.getcwd())
    if args.sandbox:
        from runtime.shell import sandbox_argv

        sandbox_argv(str(workspace.root))  # raises SandboxUnavailable (exit 2) when bwrap is missing
    from runtime.backends.base import BackendError
    from runtime.backends.select import resolve_backend

    try:
        backend = resolve_backend(args.model, args.model_name, user=True)
    except BackendError as exc:  # a --model / TISS_MODEL that names nothing usable
        raise UsageError(str(exc)) from None
    options = RunOptions(
        timeout=args.timeout,
        sandbox=args.sandbox,
        assume_yes=args.yes,
        variables=parse_vars(args.var),
        model_name=args.model_name,
        policy=policy_from_args(args),
    )
    json_report = args.report == "json"
    human = sys.stderr if json_report else sys.stdout
    colour = use_colour(human)

    if args.dry_run:
        from runtime.plan import format_plan

        from runtime.backends.select import describe_endpoints

        session = Session(workspace, backend=backend, options=options)
        estimate = session.estimate(program)
        endpoints = describe_endpoints(program, backend)
        if json_report:
            document = {"file": args.script, "dry_run": True, "estimate": estimate.as_value()}
            if endpoints:
                document["endpoints"] = endpoints
            write_line(sys.stdout, json.dumps(document))
        else:
            write_line(sys.stdout, f"dry run of {args.script} in {workspace.root} (nothing is executed)")
            write_line(sys.stdout, format_plan(program))
            write_line(sys.stdout, format_estimate(estimate))
            if endpoints:
                write_line(sys.stdout, "model endpoints:\n" + "\n".join(f"  {line}" for line in endpoints))
        return 0

    listeners: list[Any] = [ProgressPrinter(human, colour)]
    trace = None
    if args.trace:
        trace = _open_trace(args.trace, [args.script])
    if trace is not None:
        listeners.append(trace)
    reviewer = Reviewer(assume_yes=args.yes)
    session = Session(workspace, backend=backend, options=options, listeners=listeners, reviewer=reviewer)
    try:
        with _sigterm_as_interrupt():
            result = session.run(program, file=args.script, source=source)
    finally:
        if trace is not None:
            trace.close()
    write_line(human, format_report(result, colour))
    status = result.exit_code
    if json_report and not write_line(sys.stdout, json.dumps(redact_value(result.to_dict()), ensure_ascii=False)):
        _complain("cannot write the JSON report to stdout (closed or full); the run's own status "
                  f"was {result.exit_code}")
        status = 2
    if trace is not None and trace.error is not None:
        _complain(f"cannot write the trace file {args.trace}: {trace.error.strerror or trace.error}; "
                  f"the trace is incomplete (the run's own status was {result.exit_code})")
        status = 2
    return status


def _complain(message: str) -> None:
    write_line(sys.stderr, f"tiss: error: {message}")


def _open_trace(path: str, inputs: list[str]) -> JsonlTrace:
    """The `--trace` file, refused when it is one of the run's inputs (it would be overwritten
    before it is read) or a FIFO nobody reads (opening it would hang)."""
    for source in inputs:
        try:
            if os.path.samefile(path, source):
                raise UsageError(f"--trace {path} is the script itself; writing the trace would "
                                 "overwrite it: choose another file")
        except OSError:  # the trace file does not exist yet: it cannot be an input
            pass
    try:
        return JsonlTrace(path)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise UsageError(f"--trace {path} is a FIFO that no process is reading; start the "
                             "reader first, or choose a regular file") from None
        raise UsageError(f"cannot write the trace file {path}: {exc.strerror or exc}") from None

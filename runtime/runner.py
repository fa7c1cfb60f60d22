"""`tiss run SCRIPT`: read and parse the script, set up the session from the flags, run, report.

The CLI (`runtime/cli.py`) only parses arguments and calls `run_script(args)`. Output: live
progress and the failure report on stdout (on stderr with `--report json`, which keeps stdout
for the JSON document). Exit status: 0 passed, 1 a step failed, 2 invalid script or usage,
130 interrupted. SIGTERM is treated like Ctrl-C, so TEARDOWN runs either way.

Several scripts (or a directory of them) are all parsed first, then run one after another in
the workspace, each in a fresh session, with one summary and the exit status of the worst; `-x`
stops after the first that fails, Ctrl-C after the one it interrupts. `--junit-xml` writes the
results as JUnit XML (runtime/junit.py).
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
from runtime.errors import ScriptFailure, TissRuntimeError
from runtime.interpolate import BUILTIN_ROOTS
from runtime.report import (
    ProgressPrinter, format_estimate, format_report, format_summary, use_colour, worst_status, write_line,
)
from runtime.result import INTERRUPTED, PASSED, RunResult
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


def script_paths(items: list[str]) -> list[str]:
    """The scripts `tiss run` was given: files as named, a directory as every `*.tiss` under it
    (sorted, hidden directories left out); a directory with none is a usage error."""
    paths: list[str] = []
    for item in items:
        if os.path.isdir(item):
            found = sorted(
                str(path) for path in Path(item).rglob("*.tiss")
                if path.is_file() and not any(part.startswith(".") for part in path.relative_to(item).parts)
            )
            if not found:
                raise UsageError(f"{item} is a directory with no *.tiss scripts in it; name a script or "
                                 "a directory that holds some")
            paths.extend(found)
        else:
            paths.append(item)
    return paths


def warn_unknown_directives(program: Any, path: str) -> None:
    """`tiss check`'s unknown-directive warnings, on stderr before the run (a misspelt @timeout
    would otherwise just not apply)."""
    from tisslang.checker import check

    for finding in check(program):
        if finding.code == "T101":
            _warn(finding.render(path))


def header_requirements(source: str) -> list[tuple[str, str]]:
    """What a script's header comment says it needs (`# requires: model echo`, `# requires:
    model smollm2`, `# requires: terminal`), as (kind, what) pairs; the examples use it."""
    needs = []
    for line in source.lstrip("\ufeff").splitlines():
        if not line.startswith("#"):
            break  # the header comment ends at the first line that is not a comment
        words = line.lstrip("#").split()
        if words[:2] == ["requires:", "model"] and len(words) == 3:
            needs.append(("model", words[2]))
        elif words == ["requires:", "terminal"]:
            needs.append(("terminal", ""))
    return needs


def warn_unmet_requirements(path: str, source: str, args: Any) -> None:
    """Say before the run when a script's header asks for what this invocation lacks: its
    failure would otherwise look like a bug in the script."""
    for kind, what in header_requirements(source):
        if kind == "model" and what == "echo" and args.model != "echo":
            _warn(f"{path}: note: its header says `requires: model echo`: its checks expect the echo "
                  "backend's answers; run it with --model echo")
        elif kind == "terminal" and not args.yes and not _stdin_is_a_terminal():
            _warn(f"{path}: note: its header says `requires: terminal`: it asks a human; run it in a "
                  "terminal, or pass --yes to approve without asking")


def _stdin_is_a_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


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
    paths = script_paths(args.scripts)
    scripts = [(path, *_parse_script(path)) for path in paths]  # every one is valid before any runs
    if args.timeout is not None and not args.timeout > 0:
        raise UsageError(f"--timeout must be a positive number of seconds, got {args.timeout:g}")
    if args.timeout is not None and args.timeout > MAX_SECONDS:
        raise UsageError(f"--timeout {args.timeout:g} is too large: at most {MAX_SECONDS:g} seconds (about 126 years)")
    selector = None
    if args.select is not None:
        from runtime.selection import StepSelector

        selector = StepSelector(args.select)
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
    json_report = args.report == "json"
    human = sys.stderr if json_report else sys.stdout
    colour = use_colour(human)
    printer = ProgressPrinter(human, colour, quiet=args.quiet)
    options = RunOptions(
        timeout=args.timeout,
        sandbox=args.sandbox,
        assume_yes=args.yes,
        variables=parse_vars(args.var),
        model_name=args.model_name,
        policy=policy_from_args(args),
        strict=args.strict,
        select=selector,
        on_output=printer.output if args.verbose else None,
    )
    for path, program, source in scripts:
        warn_unknown_directives(program, path)
        warn_unmet_requirements(path, source, args)

    if args.dry_run:
        for path, program, _ in scripts:
            _dry_run(path, program, workspace, backend, options, json_report)
        return 0

    listeners: list[Any] = [printer]
    trace = None
    if args.trace:
        trace = _open_trace(args.trace, paths)
    if trace is not None:
        listeners.append(trace)
    junit = None
    if args.junit_xml:
        from runtime.junit import JunitRecorder

        _refuse_input(args.junit_xml, paths, "--junit-xml")
        junit = JunitRecorder()
        listeners.append(junit)
    reviewer = Reviewer(assume_yes=args.yes)
    results: list[RunResult] = []
    several = len(scripts) > 1
    try:
        for path, program, source in scripts:
            if selector is not None:
                selector.prepare(program)
            if several and not args.quiet:
                write_line(human, f"== {path}")
            session = Session(workspace, backend=backend, options=options, listeners=listeners, reviewer=reviewer)
            with _sigterm_as_interrupt():
                result = session.run(program, file=path, source=source)
            results.append(result)
            report = format_report(result, colour, summary=not several)
            if report:
                write_line(human, report)
            if result.status == INTERRUPTED or (args.exitfirst and result.status != PASSED):
                break
    finally:
        if trace is not None:
            trace.close()
    not_run = paths[len(results):]
    if several:
        if not_run:
            write_line(human, f"not run ({'interrupted' if results[-1].status == INTERRUPTED else '-x'}): "
                       + ", ".join(not_run))
        write_line(human, format_summary(results, colour))
    status = max((result.exit_code for result in results), default=0)
    if json_report:
        document = (redact_value(results[0].to_dict()) if not several else {
            "status": worst_status(result.status for result in results), "exit_code": status,
            "scripts": [redact_value(result.to_dict()) for result in results], "not_run": not_run,
        })
        if not write_line(sys.stdout, json.dumps(document, ensure_ascii=False)):
            _complain("cannot write the JSON report to stdout (closed or full); the run's own status "
                      f"was {status}")
            status = 2
    if junit is not None:
        from runtime.junit import write_junit

        try:
            write_junit(args.junit_xml, junit, results)
        except OSError as exc:
            _complain(f"cannot write the JUnit XML file {args.junit_xml}: {exc.strerror or exc}; "
                      f"the run's own status was {status}")
            status = 2
    if trace is not None and trace.error is not None:
        _complain(f"cannot write the trace file {args.trace}: {trace.error.strerror or trace.error}; "
                  f"the trace is incomplete (the run's own status was {status})")
        status = 2
    return status


def _dry_run(path: str, program: Any, workspace: Workspace, backend: Any, options: RunOptions,
             json_report: bool) -> None:
    from runtime.backends.select import describe_endpoints
    from runtime.plan import format_plan

    session = Session(workspace, backend=backend, options=options)
    try:
        estimate = session.estimate(program)
    except ScriptFailure as exc:  # a directive value the run would refuse, refused as it would
        raise exc.located(path, None, None) from None
    endpoints = describe_endpoints(program, backend)
    if json_report:
        document = {"file": path, "dry_run": True, "estimate": estimate.as_value()}
        if endpoints:
            document["endpoints"] = endpoints
        write_line(sys.stdout, json.dumps(document))
    else:
        write_line(sys.stdout, f"dry run of {path} in {workspace.root} (nothing is executed)")
        write_line(sys.stdout, format_plan(program))
        write_line(sys.stdout, format_estimate(estimate))
        if endpoints:
            write_line(sys.stdout, "model endpoints:\n" + "\n".join(f"  {line}" for line in endpoints))


def _warn(message: str) -> None:
    write_line(sys.stderr, message)


def _complain(message: str) -> None:
    write_line(sys.stderr, f"tiss: error: {message}")


def _refuse_input(path: str, inputs: list[str], flag: str,
                  consequence: str = "writing it would overwrite the script") -> None:
    """An output file that is one of the run's scripts would overwrite it: refuse it."""
    for source in inputs:
        try:
            if os.path.samefile(path, source):
                raise UsageError(f"{flag} {path} is the script itself; {consequence}: choose another file")
        except OSError:  # the output file does not exist yet: it cannot be an input
            pass


def _open_trace(path: str, inputs: list[str]) -> JsonlTrace:
    """The `--trace` file, refused when it is one of the run's inputs (it would be overwritten
    before it is read) or a FIFO nobody reads (opening it would hang)."""
    _refuse_input(path, inputs, "--trace", "writing the trace would overwrite it")
    try:
        return JsonlTrace(path)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise UsageError(f"--trace {path} is a FIFO that no process is reading; start the "
                             "reader first, or choose a regular file") from None
        raise UsageError(f"cannot write the trace file {path}: {exc.strerror or exc}") from None

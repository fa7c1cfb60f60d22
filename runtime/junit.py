"""`tiss run --junit-xml FILE`: the run as JUnit XML, the test report format CI systems read.

The layout is the common JUnit schema (Jenkins' junit XSD, which GitLab, GitHub Actions
reporters, Azure Pipelines and CircleCI read):

    <testsuites name="tiss run" tests= failures= errors= time=>   (the schema has no skipped here)
      <testsuite name=SCRIPT tests= failures= errors= skipped= time= timestamp= hostname=>
        <testcase classname=SCRIPT-AS-DOTTED-NAME name=STEP file= line= time=>
          <failure message= type=KIND>position, the script line, command output tails</failure>
          <skipped message=/>      a step not run: an earlier failure, or a CHOOSE option not chosen
          <error message= type=/>  interrupted (Ctrl-C)
          <system-out>LOG lines and each RUN's stdout</system-out>
          <system-err>each RUN's stderr</system-err>
        </testcase>

One testsuite per script, one testcase per STEP (a nested step is named `outer / inner`).
SETUP and TEARDOWN blocks appear only when they fail or are interrupted; a failure outside any
block (a top-level ASSERT) is a testcase named `(outside any step)`. A failure TRY caught does
not fail its testcase: it is noted in its system-out. Steps `-k` deselected are left out, as
pytest leaves them out. `JunitRecorder` builds the cases from the run's events (trace.py); the
file is written atomically once the run is over.
"""

from __future__ import annotations

import datetime
import socket
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.result import DESELECTED, FAILED, INTERRUPTED, NOT_CHOSEN, PASSED, RunResult
from runtime.secret import redact

_OUTPUT_CAP = 64 * 1024  # characters of captured output kept per testcase (the tail)


@dataclass
class _Case:
    kind: str
    name: str
    line: int | None
    status: str = PASSED
    duration: float = 0.0
    failure: dict[str, Any] | None = None
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)
    caught: bool = False  # failed inside a TRY that caught it


@dataclass
class _Suite:
    file: str
    started: datetime.datetime
    cases: list[_Case] = field(default_factory=list)


class JunitRecorder:
    """A listener (trace.py) that keeps, per script and per step, what the JUnit file needs."""

    def __init__(self) -> None:
        self.suites: list[_Suite] = []
        self._open: dict[str, list[_Case]] = {}  # per thread, the steps now running
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._handle(event)

    def _stack(self, thread: str) -> list[_Case]:
        if thread not in self._open:
            # A PARALLEL child's first step nests under the step that holds the PARALLEL.
            self._open[thread] = list(self._open.get("main", []))
        return self._open[thread]

    def _handle(self, event: dict[str, Any]) -> None:
        name = event["event"]
        thread = event.get("thread", "main")
        if name == "run_start":
            self.suites.append(_Suite(str(event.get("file") or "<script>"),
                                      datetime.datetime.now().astimezone()))
            self._open = {}
            return
        if not self.suites:
            return
        stack = self._stack(thread)
        if name == "step_start":
            outer = [case.name for case in stack if case.kind == "step"]
            description = str(event["description"])
            full = " / ".join([*outer, description]) if event["kind"] == "step" else description
            case = _Case(kind=event["kind"], name=full, line=event.get("line"))
            stack.append(case)
            self.suites[-1].cases.append(case)
        elif name == "step_end":
            if event.get("started"):
                case = stack.pop() if stack else _Case(event["kind"], str(event["description"]), event.get("line"))
            else:  # never started: skipped, not chosen or deselected
                outer = [c.name for c in stack if c.kind == "step"]
                case = _Case(kind=event["kind"], name=" / ".join([*outer, str(event["description"])]),
                             line=event.get("line"))
                self.suites[-1].cases.append(case)
            case.status = event["status"]
            case.duration = float(event.get("duration") or 0.0)
            case.failure = event.get("failure")
        elif name == "log" and stack:
            stack[-1].out.append(str(event["message"]) + "\n")
        elif name == "caught":
            # The steps that failed inside the TRY are closed by now; their failure is its.
            for case in self.suites[-1].cases:
                if (case.status == FAILED and case not in stack and case.failure
                        and case.failure.get("message") == event.get("message")):
                    case.caught = True
            if stack:
                stack[-1].out.append(f"caught by TRY (line {event.get('line')}): {event.get('message')}\n")
        elif name == "statement" and event.get("node") == "Run" and stack:
            stack[-1].out.append(f"$ {event.get('command', '')}\n{event.get('stdout', '')}")
            if event.get("stderr"):
                stack[-1].err.append(str(event["stderr"]))


def _failure_text(failure: dict[str, Any]) -> str:
    where = failure.get("file") or "<script>"
    if failure.get("line") is not None:
        where += f":{failure['line']}:{failure.get('column') or 1}"
    lines = [f"{where}: error: {failure.get('message', '')}"]
    if failure.get("source_line"):
        lines.append(f"    {failure['source_line']}")
    for stream in ("stdout", "stderr"):
        tail = failure.get(f"{stream}_tail")
        if tail:
            lines.append(f"{stream} of the last command (tail):")
            lines.extend(f"    {line}" for line in str(tail).split("\n"))
    return "\n".join(lines)


def _classname(file: str) -> str:
    path = Path(file)
    parts = [part for part in path.with_suffix("").parts if part not in ("/", ".", "..")]
    return ".".join(parts) or "script"


def _text(value: str) -> str:
    """Text as XML 1.0 can hold it: characters it forbids (most control characters) escaped."""
    return "".join(c if c in "\t\n\r" or (" " <= c <= "\ud7ff") or ("\ue000" <= c <= "\ufffd")
                   or c >= "\U00010000" else f"\\x{ord(c):02x}" for c in redact(value))


def build_xml(recorder: JunitRecorder, results: list[RunResult]) -> ET.ElementTree:
    """The document: `results[i]` is the run of `recorder.suites[i]` (for failures outside steps)."""
    hostname = socket.gethostname()
    root = ET.Element("testsuites", name="tiss run")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total_time = 0.0
    for index, suite in enumerate(recorder.suites):
        result = results[index] if index < len(results) else None
        cases = [c for c in suite.cases if c.status != DESELECTED
                 and (c.kind in ("step", "option") or c.status in (FAILED, INTERRUPTED))]
        if result is not None and result.failure is not None and not any(
                c.failure and c.status == FAILED for c in cases):
            outside = _Case(kind="step", name="(outside any step)", line=result.failure.line,
                            status=FAILED, failure=result.failure.to_dict())
            cases.append(outside)
        counts = {"tests": len(cases), "failures": 0, "errors": 0, "skipped": 0}
        duration = result.duration if result is not None else sum(c.duration for c in cases)
        element = ET.SubElement(
            root, "testsuite", name=suite.file, timestamp=suite.started.isoformat(timespec="seconds"),
            hostname=hostname,
        )
        for case in cases:
            name = case.name if case.kind == "step" else f"{case.kind.upper()} {case.name}".rstrip()
            attrs = {"classname": _classname(suite.file), "name": _text(name), "file": suite.file,
                     "time": f"{case.duration:.3f}"}
            if case.line is not None:
                attrs["line"] = str(case.line)
            testcase = ET.SubElement(element, "testcase", attrs)
            failure = case.failure or {}
            if case.status == FAILED and case.caught:
                case.out.insert(0, f"failed, and a TRY caught it: {failure.get('message', '')}\n")
            elif case.status == FAILED:
                node = ET.SubElement(testcase, "failure", message=_text(str(failure.get("message", "failed"))),
                                     type=str(failure.get("kind", "Failure")))
                node.text = _text(_failure_text(failure)) if failure else None
                counts["failures"] += 1
            elif case.status == INTERRUPTED:
                ET.SubElement(testcase, "error", message="interrupted (Ctrl-C or SIGTERM)", type="Interrupted")
                counts["errors"] += 1
            elif case.status == NOT_CHOSEN:
                reason = f"CHOOSE went on to the next option: {failure.get('message', '')}".rstrip(": ")
                ET.SubElement(testcase, "skipped", message=_text(reason))
                counts["skipped"] += 1
            elif case.status != PASSED:
                ET.SubElement(testcase, "skipped", message="not run: an earlier failure stopped the script")
                counts["skipped"] += 1
            if case.out:
                ET.SubElement(testcase, "system-out").text = _text("".join(case.out)[-_OUTPUT_CAP:])
            if case.err:
                ET.SubElement(testcase, "system-err").text = _text("".join(case.err)[-_OUTPUT_CAP:])
        for key, value in counts.items():
            element.set(key, str(value))
            totals[key] += value
        element.set("time", f"{duration:.3f}")
        total_time += duration
    for key, value in totals.items():
        if key != "skipped":  # testsuites has no skipped attribute in the schema; testsuite has
            root.set(key, str(value))
    root.set("time", f"{total_time:.3f}")
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(path: str, recorder: JunitRecorder, results: list[RunResult]) -> None:
    """Write the JUnit XML of the run atomically (a reader never sees half a file)."""
    from tisslang.commands import write_atomic

    document = build_xml(recorder, results)
    text = ET.tostring(document.getroot(), encoding="unicode", xml_declaration=False)
    write_atomic(Path(path), '<?xml version="1.0" encoding="UTF-8"?>\n' + text + "\n")

"""Human output of `tiss run`: steps as they start and end, LOG lines, failures, a summary.

`ProgressPrinter` is an event listener (see `trace.py`) that prints as the run goes:

    [ RUN  ] Write a greeting
           | wrote greeting.txt
    [  OK  ] Write a greeting (0.01s)

A step whose RUNs exited non-zero says so in its line (`[  OK  ] Probe (5ms; RUN exited 1)`).
With `quiet` (`tiss run -q`) only failed steps are printed; `output` (`tiss run -v`) prints each
RUN's output as it arrives, stdout lines after `>`, stderr lines after `2>`.

`format_failure` shows where and why a run stopped: `file:line:col: error: message`, the script
line with a caret under the column, and the tails of the last command's stdout and stderr.
`format_summary` is the closing line, over one script or several. Colour is used only when the
stream is a terminal and `NO_COLOR` is unset.
"""

from __future__ import annotations

import codecs
import os
import sys
import threading
from typing import Any, Iterable, TextIO

from runtime.estimate import Estimate
from runtime.result import DESELECTED, FAILED, INTERRUPTED, NOT_CHOSEN, PASSED, SKIPPED, Failure, RunResult
from runtime.secret import redact

_RESET = "\033[0m"
_COLOURS = {"green": "\033[32m", "red": "\033[31m", "yellow": "\033[33m", "dim": "\033[2m", "bold": "\033[1m"}
_LABELS = {
    PASSED: ("[  OK  ]", "green"),
    FAILED: ("[FAILED]", "red"),
    SKIPPED: ("[ SKIP ]", "yellow"),
    NOT_CHOSEN: ("[NOT CHOSEN]", "yellow"),
    INTERRUPTED: ("[ INT  ]", "red"),
}


def shown(text: object) -> str:
    """Text from a script, a command or a model, made safe for a terminal.

    Control characters other than newline and tab are shown as escapes (`\\x1b`), so a
    command's or model's output that a LOG prints cannot clear the screen, rewrite earlier
    lines with `\\r`, retitle the window or forge a green `[  OK  ]`. The trace and the JSON
    report keep the text exactly.
    """
    text = redact(str(text))
    if not any(_is_control(c) for c in text):
        return text
    return "".join(f"\\x{ord(c):02x}" if _is_control(c) else c for c in text)


def _is_control(c: str) -> bool:
    code = ord(c)
    return (code < 0x20 and c not in "\n\t") or 0x7F <= code <= 0x9F


def write_line(stream: TextIO | None, text: str) -> bool:
    """Write one line (the API key redacted) and flush; if it cannot be written (the reader has
    gone, `tiss run ... | head`; stdout closed or on a full disk), drop the output.

    The run itself goes on to the end (TEARDOWN included) and exits with its own status: a
    closed pipe must not stop a script half-way through its side effects. Returns whether
    the line was written.
    """
    if stream is None:  # Python gives None for a descriptor that was closed at start-up
        return False
    try:
        stream.write(redact(text) + "\n")
        stream.flush()
        return True
    except (OSError, ValueError):  # BrokenPipeError, EBADF, ENOSPC; ValueError: file closed
        _silence(stream)
        return False


def _silence(stream: TextIO) -> None:
    # Point the descriptor at /dev/null, so the text still buffered (and Python's flush at
    # exit) goes nowhere instead of raising again.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
    try:  # what stayed in the buffer would raise again at the next flush
        stream.flush()
    except (OSError, ValueError, AttributeError):
        pass


def use_colour(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Painter:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, colour: str) -> str:
        return f"{_COLOURS[colour]}{text}{_RESET}" if self.enabled else text


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.2f}s"


class ProgressPrinter:
    """Prints steps and LOG lines as events arrive; nesting is shown by indentation."""

    def __init__(self, stream: TextIO | None = None, colour: bool | None = None, *, quiet: bool = False) -> None:
        self.stream = stream or sys.stdout
        self.paint = Painter(use_colour(self.stream) if colour is None else colour)
        self.quiet = quiet
        self._depth: dict[str, int] = {}
        self._exits: dict[str, list[list[int]]] = {}  # per thread, per open step: non-zero RUN exits
        self._partial: dict[tuple[str, str], str] = {}  # -v: a line not yet ended, per thread and stream
        self._decoders: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def output(self, stream: str, chunk: bytes) -> None:
        """A RUN's output as it arrives (`tiss run -v`): printed line by line, at once."""
        thread = threading.current_thread()
        name = "main" if thread is threading.main_thread() else thread.name
        key = (name, stream)
        with self._lock:
            decoder = self._decoders.setdefault(key, codecs.getincrementaldecoder("utf-8")("replace"))
            text = self._partial.pop(key, "") + decoder.decode(chunk)
            *lines, rest = text.split("\n")
            if rest:
                self._partial[key] = rest
            for line in lines:
                self._output_line(name, stream, line)

    def _output_line(self, thread: str, stream: str, line: str) -> None:
        depth = self._depth.get(thread, self._depth.get("main", 0))
        mark = self.paint(" >" if stream == "stdout" else "2>", "dim")
        self._write(f"{'  ' * depth}      {mark} {shown(line)}".rstrip())

    def _flush_output(self, thread: str) -> None:
        for stream in ("stdout", "stderr"):
            key = (thread, stream)
            rest = self._partial.pop(key, "") + (self._decoders.pop(key).decode(b"", final=True)
                                                 if key in self._decoders else "")
            if rest:
                self._output_line(thread, stream, rest)

    def _write(self, text: str) -> None:
        write_line(self.stream, text)

    def __call__(self, event: dict[str, Any]) -> None:
        name = event["event"]
        thread = event.get("thread", "main")
        with self._lock:
            depth = self._depth.get(thread, 0)
            if thread != "main" and thread not in self._depth:
                depth = self._depth.get("main", 0)
            pad = "  " * depth
            if name == "statement" and event.get("node") == "Run":
                self._flush_output(thread)
                stack = self._exits.get(thread) or self._exits.get("main")
                if event.get("exit_code") and stack:
                    stack[-1].append(event["exit_code"])
            elif name == "step_start":
                self._exits.setdefault(thread, []).append([])
                if not self.quiet:
                    self._write(f"{pad}{self.paint('[ RUN  ]', 'bold')} {shown(event['description'])}")
                self._depth[thread] = depth + 1
            elif name == "step_end":
                status = event["status"]
                started = event.get("started", False)
                if started:
                    depth = max(0, depth - 1)
                    self._depth[thread] = depth
                    pad = "  " * depth
                exits = self._exits[thread].pop() if started and self._exits.get(thread) else []
                if status == DESELECTED or (self.quiet and status not in (FAILED, INTERRUPTED)):
                    return  # deselected steps show in the summary only, as pytest's
                label, colour = _LABELS.get(status, (f"[{status}]", "yellow"))
                notes = [_seconds(event["duration"])] if started else []
                if exits:
                    notes.append(f"RUN exited {', '.join(str(code) for code in exits)}"
                                 if len(exits) == 1 else
                                 f"{len(exits)} RUNs exited non-zero: {', '.join(str(code) for code in exits)}")
                timing = f" ({'; '.join(notes)})" if notes else ""
                self._write(f"{pad}{self.paint(label, colour)} {shown(event['description'])}{timing}")
                failure = event.get("failure")
                if failure and status in (FAILED, NOT_CHOSEN):
                    self._write(f"{pad}         {self.paint(shown(failure['message']), colour)}")
                self._failure_shown = failure["message"] if failure and status == FAILED else None
            elif self.quiet:
                return
            elif name == "log":
                bar = self.paint("|", "dim")
                for line in shown(event["message"]).split("\n"):
                    self._write(f"{pad}       {bar} {line}" if line else f"{pad}       {bar}")  # no trailing space
            elif name == "caught":
                # Each failure once: RETRY's failed attempts say which attempt; a failed inner
                # STEP's message was just printed under it, so the TRY only says it caught it.
                if "attempt" in event:
                    label, text = f"attempt {event['attempt']} of {event['attempts']} failed:", event["message"]
                elif event["message"] == getattr(self, "_failure_shown", None):
                    label, text = "caught:", f"the failure above, by the TRY at line {event['line']}"
                else:
                    label, text = "caught:", event["message"]
                self._failure_shown = None
                self._write(f"{pad}       {self.paint(label, 'yellow')} {shown(text)}")


def format_failure(failure: Failure, colour: bool = False) -> str:
    paint = Painter(colour)
    lines = [f"{shown(failure.location())}: {paint('error', 'red')}: {shown(failure.message)}"]
    if failure.source_line is not None:
        lines.append(f"    {shown(failure.source_line)}")
        if failure.column:
            prefix = shown(failure.source_line[: failure.column - 1])
            caret = "".join(c if c == "\t" else " " for c in prefix)
            lines.append(f"    {caret}{paint('^', 'red')}")
    for name, tail in (("stdout", failure.stdout_tail), ("stderr", failure.stderr_tail)):
        if tail:
            lines.append(f"  {name} of the last command (tail):")
            lines.extend(f"    {line}".rstrip() for line in shown(tail).split("\n"))
    return "\n".join(lines)


def format_summary(result: RunResult | Iterable[RunResult], colour: bool = False) -> str:
    """`PASSED: 3 passed in 12ms`; over several scripts their steps added up, the verdict the
    worst of theirs and `in N scripts` (`FAILED: 4 passed, 1 failed, 2 deselected in 2 scripts in 1.20s`)."""
    results = [result] if isinstance(result, RunResult) else list(result)
    paint = Painter(colour)
    counts: dict[str, int] = {}
    for one in results:
        for status, count in one.counts().items():
            counts[status] = counts.get(status, 0) + count
    parts = []
    for status, word, tint in (
        (PASSED, "passed", "green"),
        (FAILED, "failed", "red"),
        (SKIPPED, "skipped", "yellow"),
        (NOT_CHOSEN, "not chosen", "yellow"),
        (INTERRUPTED, "interrupted", "red"),
        (DESELECTED, "deselected", "yellow"),
    ):
        if counts.get(status):
            if status == FAILED:
                # A failure TRY caught does not fail the run; say so, or "PASSED: 1 failed" puzzles.
                caught = sum(1 for one in results for step in one.all_steps()
                             if step.status == FAILED and step.caught)
                if caught:
                    word += " (all caught by TRY)" if caught == counts[status] else f" ({caught} caught by TRY)"
            parts.append(paint(f"{counts[status]} {word}", tint))
    steps = ", ".join(parts) if parts else "no steps"
    status = worst_status(one.status for one in results)
    verdict = {PASSED: paint("PASSED", "green"), FAILED: paint("FAILED", "red"),
               INTERRUPTED: paint("INTERRUPTED", "red")}.get(status, status)
    scripts = f" in {len(results)} scripts" if len(results) > 1 else ""
    return f"{verdict}: {steps}{scripts} in {_seconds(sum(one.duration for one in results))}"


def worst_status(statuses: Iterable[str]) -> str:
    """The status of several runs: interrupted over failed over passed."""
    found = set(statuses)
    return next((s for s in (INTERRUPTED, FAILED) if s in found), PASSED)


def format_report(result: RunResult, colour: bool = False, *, summary: bool = True) -> str:
    """What follows the live progress: the failure (if any) and the summary line (left out
    with `summary=False`, when several scripts share one summary)."""
    parts = []
    if result.failure is not None:
        parts.append(format_failure(result.failure, colour))
    for failure in result.teardown_failures:
        if failure is not result.failure:
            parts.append("TEARDOWN also failed:\n" + format_failure(failure, colour))
    if result.status == INTERRUPTED and result.teardown_complete:
        parts.append("interrupted: running commands were killed and TEARDOWN ran")
    elif result.status == INTERRUPTED:
        parts.append("interrupted again during TEARDOWN: it was stopped before it finished, so "
                     "what it cleans up may still be there")
    if summary:
        parts.append(format_summary(result, colour))
    return "\n".join(parts)


def format_estimate(estimate: Estimate) -> str:
    text = (
        f"estimate: {estimate.api_calls} API call{'s' if estimate.api_calls != 1 else ''}, "
        f"{estimate.tokens} tokens, {estimate.seconds:g}s of RUN time bounded by @timeout"
    )
    if estimate.unbounded_runs:
        text += f" (+{estimate.unbounded_runs} RUN{'s' if estimate.unbounded_runs != 1 else ''} without @timeout)"
    if estimate.unbounded_loops:
        loops = estimate.unbounded_loops
        text += (f"; not an upper bound: {loops} FOR loop{'s' if loops != 1 else ''} over items "
                 "not known before the run, counted once")
    return text

"""What a run produced: per-step status, durations, and the failure with its position.

A `RunResult` holds a tree of `StepResult`s (SETUP, STEP, OPTION and TEARDOWN blocks, nested as
in the script). Step statuses:

- `passed`      the block ran to its end;
- `failed`      a statement in it failed (`failure` says which, where and why; an enclosing step
                of a failed step is failed too, and its `failure` is that same failure);
- `skipped`     an earlier failure stopped the script before the block started;
- `not_chosen`  a CHOOSE option that failed, so CHOOSE went on to the next one (not a failure);
- `interrupted` the block was running when the user pressed Ctrl-C;
- `deselected`  `tiss run -k PATTERN` did not select the step, so it never ran (not a failure).

`RunResult.to_dict()` is the `tiss run --report json` document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PASSED = "passed"
FAILED = "failed"
SKIPPED = "skipped"
NOT_CHOSEN = "not_chosen"
INTERRUPTED = "interrupted"
DESELECTED = "deselected"


@dataclass(frozen=True)
class Failure:
    """Why a statement failed: its message, kind and position, plus context for the report."""

    message: str
    kind: str
    file: str | None = None
    line: int | None = None
    column: int | None = None
    source_line: str | None = None  # the script line at fault, for the human report
    stderr_tail: str | None = None  # the last lines of the last command's stderr, if any
    stdout_tail: str | None = None  # the last lines of its stdout (test runners report there)

    def location(self) -> str:
        if self.line is None:
            return self.file or "<script>"
        return f"{self.file or '<script>'}:{self.line}:{self.column or 1}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "kind": self.kind,
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "source_line": self.source_line,
            "stderr_tail": self.stderr_tail,
            "stdout_tail": self.stdout_tail,
        }


@dataclass
class StepResult:
    """One block's outcome. Mutable while the run fills it in; read it once the run is over."""

    kind: str  # "setup", "step", "option", "teardown"
    description: str
    line: int | None = None
    column: int | None = None
    status: str = SKIPPED
    duration: float = 0.0  # seconds; 0 for a block that never started
    failure: Failure | None = None
    caught: bool = False  # failed inside a TRY whose CATCH handled it
    children: list["StepResult"] = field(default_factory=list)

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "description": self.description,
            "line": self.line,
            "column": self.column,
            "status": self.status,
            "duration": round(self.duration, 6),
            "failure": self.failure.to_dict() if self.failure else None,
            "caught": self.caught,
            "children": [child.to_dict() for child in self.children],
        }


@dataclass
class RunResult:
    """The outcome of running one program (or one REPL entry) in a `Session`."""

    file: str | None = None
    task: str | None = None
    steps: list[StepResult] = field(default_factory=list)
    status: str = PASSED  # passed, failed or interrupted
    duration: float = 0.0
    failure: Failure | None = None  # the failure that stopped the run, if any
    teardown_failures: list[Failure] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    teardown_complete: bool = True  # False when a second Ctrl-C / SIGTERM stopped TEARDOWN
    policy: list[dict[str, Any]] = field(default_factory=list)  # command-policy decisions, in order

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    @property
    def exit_code(self) -> int:
        """0 passed, 1 a step failed, 130 interrupted (the `tiss run` exit status)."""
        if self.status == INTERRUPTED:
            return 130
        return 0 if self.status == PASSED else 1

    def all_steps(self):
        for step in self.steps:
            yield from step.walk()

    def counts(self) -> dict[str, int]:
        counts = {PASSED: 0, FAILED: 0, SKIPPED: 0, NOT_CHOSEN: 0, INTERRUPTED: 0, DESELECTED: 0}
        for step in self.all_steps():
            counts[step.status] = counts.get(step.status, 0) + 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "task": self.task,
            "status": self.status,
            "exit_code": self.exit_code,
            "duration": round(self.duration, 6),
            "counts": self.counts(),
            "failure": self.failure.to_dict() if self.failure else None,
            "teardown_failures": [f.to_dict() for f in self.teardown_failures],
            "steps": [step.to_dict() for step in self.steps],
            "logs": list(self.logs),
            "policy": list(self.policy),
        }

"""The errors the runtime raises to its users, and the one list of failure kinds.

A failure while a script runs is a `ScriptFailure`; its `kind` is what `LAST_ERROR.KIND`,
reports and `--trace` events say. Each kind in `FAILURE_KINDS` is raised from exactly one
class (it and its subclasses, which keep the kind), defined here or beside the code that
raises it; docs/tisslang.md ("Failure kinds") documents them, and
tests/runtime/test_failure_kinds.py checks that classes, this list and the docs agree.
"""

from __future__ import annotations


class TissRuntimeError(Exception):
    """Base of every user-facing runtime error; the CLI prints these as messages."""

    exit_code = 2


class ScriptFailure(TissRuntimeError):
    """A failure while a script runs: it fails the innermost STEP unless a TRY catches it.

    `kind` names the failure for `LAST_ERROR.KIND` and reports (e.g. "AssertionFailed",
    "PathError", "TypeMismatch"); the position points at the statement or expression at fault.
    `render()` gives the `file:line:col: error: message` form the CLI prints.
    """

    exit_code = 1
    kind = "RuntimeError"

    def __init__(
        self,
        message: str,
        *,
        kind: str | None = None,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if kind is not None:
            self.kind = kind
        self.file = file
        self.line = line
        self.column = column

    def located(self, file: str | None, line: int | None, column: int | None) -> "ScriptFailure":
        """Fill in a position the raiser did not know; an existing position is kept."""
        if self.line is None:
            self.file, self.line, self.column = file, line, column
        elif self.file is None:
            self.file = file
        return self

    def location(self) -> str:
        if self.line is None:
            return self.file or ""
        return f"{self.file or '<script>'}:{self.line}:{self.column or 1}"

    def render(self) -> str:
        where = self.location()
        return f"{where}: error: {self.message}" if where else f"tiss: error: {self.message}"

    def __str__(self) -> str:
        return self.message


class PathError(ScriptFailure):
    """A path that would leave the workspace, or that names nothing usable inside it."""

    kind = "PathError"


class CommandError(ScriptFailure):
    """A RUN that could not be started or ran out of time."""

    kind = "CommandError"


class AssertionFailed(ScriptFailure):
    """An ASSERT whose condition is false; the message quotes it with the values involved."""

    kind = "AssertionFailed"


class Timeout(ScriptFailure):
    """A RUN killed at its time limit (`@timeout`, `--timeout` or the default)."""

    kind = "Timeout"


class ParallelFailed(ScriptFailure):
    """One or more PARALLEL children failed; the message lists each child's failure."""

    kind = "ParallelFailed"


class ParallelConflict(ScriptFailure):
    """Two PARALLEL children set the same variable."""

    kind = "ParallelConflict"


class NoOptionSucceeded(ScriptFailure):
    """Every option of a CHOOSE failed; the message lists why each one did."""

    kind = "NoOptionSucceeded"


class DirectiveError(ScriptFailure):
    """A directive with a value it does not accept (checked where the directive is written)."""

    kind = "DirectiveError"


class ReservedName(ScriptFailure):
    """VAR, READ or PROMPT_AGENT ... INTO tried to set a built-in name such as LAST_RUN."""

    kind = "ReservedName"


class InvalidRegex(ScriptFailure):
    """The right side of MATCHES is not a valid regular expression."""

    kind = "InvalidRegex"


class Unsupported(ScriptFailure):
    """A node the interpreter cannot evaluate in that place (a tree not made by the parser)."""

    kind = "Unsupported"


class InternalError(ScriptFailure):
    """An unexpected exception inside a statement: a bug in tiss, reported as a failure."""

    kind = "InternalError"


class WorkspaceError(TissRuntimeError):
    """The workspace itself is unusable (missing, not a directory); a usage problem."""

    exit_code = 2


class SandboxUnavailable(TissRuntimeError):
    """`--sandbox workspace` was asked for but bubblewrap cannot be found; a usage problem."""

    exit_code = 2


FAILURE_KINDS: dict[str, str] = {
    "AssertionFailed": "runtime.errors.AssertionFailed",
    "BudgetError": "runtime.budget.BudgetError",
    "BudgetExceeded": "runtime.budget.BudgetExceeded",
    "CommandError": "runtime.errors.CommandError",
    "DirectiveError": "runtime.errors.DirectiveError",
    "InternalError": "runtime.errors.InternalError",
    "Interrupted": "runtime.backends.base.BackendCancelled",
    "InvalidAnswer": "runtime.answers.InvalidAnswer",
    "InvalidRegex": "runtime.errors.InvalidRegex",
    "ModelError": "runtime.backends.base.BackendError",
    "ModelNotConfigured": "runtime.backends.base.BackendNotConfigured",
    "NoOptionSucceeded": "runtime.errors.NoOptionSucceeded",
    "ParallelConflict": "runtime.errors.ParallelConflict",
    "ParallelFailed": "runtime.errors.ParallelFailed",
    "PathError": "runtime.errors.PathError",
    "PolicyDenied": "runtime.policy.PolicyDenied",
    "ReservedName": "runtime.errors.ReservedName",
    "ReviewRejected": "runtime.review.ReviewRejected",
    "ReviewUnavailable": "runtime.review.ReviewUnavailable",
    "RuntimeError": "runtime.errors.ScriptFailure",
    "SettingsError": "runtime.backends.base.SettingsError",
    "Timeout": "runtime.errors.Timeout",
    "TypeMismatch": "runtime.values.TypeMismatch",
    "UndefinedReference": "runtime.interpolate.UndefinedReference",
    "Unsupported": "runtime.errors.Unsupported",
}
"""Every `LAST_ERROR.KIND`, and the class (module.Name) each one is raised from.

`RuntimeError` is the base class's own kind, never raised by the runtime itself; `Interrupted`
(a model call abandoned after Ctrl-C) ends the run as interrupted and never reaches a report.
"""

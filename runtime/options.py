"""`RunOptions`: how to run a script, the `tiss run` flags that are not about choosing it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

from runtime.policy import Policy
from runtime.shell import DEFAULT_CAP


@dataclass(frozen=True)
class RunOptions:
    """How to run: the `tiss run` flags that are not about choosing the script."""

    timeout: float | None = None  # --timeout: seconds per RUN (None: 10 minutes, or @timeout)
    sandbox: str | None = None  # --sandbox workspace: RUN inside bubblewrap
    assume_yes: bool = False  # --yes: approve REQUEST_REVIEW and PAUSE without asking
    variables: Mapping[str, Any] = field(default_factory=dict)  # --var NAME=VALUE
    model_name: str | None = None  # --model-name: the model HTTP servers are asked for
    output_cap: int = DEFAULT_CAP  # bytes of stdout / stderr kept per RUN
    policy: Policy = field(default_factory=Policy)  # --allow/--deny/--policy/--approve (runtime/policy.py)
    strict: bool = False  # --strict: a non-zero RUN fails its step unless the next statement checks it
    select: Any = None  # -k PATTERN: a runtime.selection.StepSelector; None runs every step
    # -v: called with ("stdout" | "stderr", bytes) as each RUN's output arrives
    on_output: Callable[[str, bytes], None] | None = None

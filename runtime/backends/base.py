"""What every model backend shares: the protocol, its settings and result types, and its error.

The interpreter builds one `GenerationSettings` per PROMPT_AGENT from the directives in scope
(`GenerationSettings.from_directives`), asks the backend to `count_tokens` of the prompt so the
budgets can refuse the call before it is sent, then calls `generate` and records the
`Completion`'s token counts.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field, fields
from typing import Any, Mapping, Protocol, runtime_checkable

from runtime.budget import parse_duration
from runtime.errors import ScriptFailure, TissRuntimeError
from tisslang import directives as directive_table

# Directives that configure generation, in the directive table's order (tisslang/directives.py).
GENERATION_DIRECTIVES = tuple(spec.name for spec in directive_table.GENERATION)


class BackendError(ScriptFailure):
    """A model call that could not be made or whose reply is unusable; it fails the step.

    A `ScriptFailure`, so the interpreter can give it the PROMPT_AGENT's position (`located`)
    and `LAST_ERROR.KIND` reads "ModelError".
    """

    exit_code = 1
    kind = "ModelError"


class BackendNotConfigured(BackendError):
    """PROMPT_AGENT ran with no backend selected; the message says how to select one."""

    exit_code = 2
    kind = "ModelNotConfigured"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "no model backend is configured for PROMPT_AGENT; choose one with "
            "`--model echo` (answers with the prompt itself, for dry runs), "
            "`--model http://HOST:PORT/v1` (an OpenAI-compatible server), "
            "`--model PATH` (a local checkpoint directory), "
            "or set the TISS_MODEL environment variable to one of these"
        )


class BackendCancelled(BackendError):
    """The call was abandoned because the run was cancelled (Ctrl-C, SIGTERM) while it waited.

    The interpreter turns it into the interruption it is; it never reaches a report as a failure.
    """

    kind = "Interrupted"


class SettingsError(BackendError):
    """A generation directive with a value of the wrong type or range: the script must change."""

    exit_code = 2
    kind = "SettingsError"


def estimate_tokens(text: str) -> int:
    """The budget estimate of a text's token count when no tokenizer is at hand.

    One token per 4 bytes of UTF-8, rounded up: close to BPE tokenizers on English prose and
    code, and it over-counts non-Latin text rather than under-counting it, which is the safe side
    for a budget that must refuse a call before it is sent.

    >>> estimate_tokens(""), estimate_tokens("abcd"), estimate_tokens("abcde")
    (0, 1, 2)
    """
    # surrogatepass: a lone surrogate (from a model's reply or a non-UTF-8 --var) is counted,
    # not a crash.
    return math.ceil(len(text.encode("utf-8", "surrogatepass")) / 4)


@dataclass(frozen=True)
class Completion:
    """A backend's answer to one prompt.

    `finish_reason` follows the OpenAI vocabulary: "stop" (natural end or a stop sequence),
    "length" (max_tokens reached), or whatever else the server reports.
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    model: str = ""  # the model the server says answered; "" when unknown
    elapsed: float = 0.0  # seconds the call took, measured by the backend

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _setting_error(name: str, value: object, expected: str) -> SettingsError:
    # Directive values come from the script, so the message speaks in directive terms.
    return SettingsError(f"@{name} must be {expected}, got {value!r}")


@dataclass(frozen=True)
class GenerationSettings:
    """How to generate one completion; `None` means "the backend's own default".

    `timeout` is in seconds. The interpreter passes the least of `@timeout` and the remaining
    EXECUTION_TIME budget, so a backend never waits longer than the run may: it is a deadline
    for the whole call, not for each read. `cancel`, when set from another thread (Ctrl-C in a
    PARALLEL block), makes the backend abandon the call and raise `BackendCancelled`.
    """

    persona: str | None = None
    model: str | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] = field(default_factory=tuple)
    timeout: float | None = None
    cancel: threading.Event | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_directives(cls, directives: Mapping[str, Any]) -> "GenerationSettings":
        """Settings from directive values in scope, keyed by name without the `@`.

        Directives that do not concern generation (`@shell`, `@output`, ...) are ignored; a
        generation directive with a value of the wrong type or range raises `BackendError`
        naming the directive.
        """
        values: dict[str, Any] = {}
        for spec in directive_table.GENERATION:  # the checks are the directive table's
            name = spec.name
            if name not in directives or directives[name] is None:
                continue
            raw = directives[name]
            if name == "timeout":
                # The budgets' duration rules, as where @timeout is written; called directly
                # (not from a script) a bad value gets these messages.
                try:
                    values[name] = parse_duration(raw, what="@timeout")
                except TissRuntimeError as exc:
                    raise _setting_error(name, raw, "a duration like 30, \"30s\", \"5m\" or \"500ms\"") from exc
                if values[name] <= 0:
                    raise _setting_error(name, raw, "a positive duration")
                continue
            try:
                values[spec.setting or name] = spec.convert(raw)
            except directive_table.DirectiveValueError as exc:
                raise SettingsError(f"@{name} {exc.requirement}, got {raw!r}") from None
        return cls(**values)

    def replace(self, **changes: Any) -> "GenerationSettings":
        current = {f.name: getattr(self, f.name) for f in fields(self)}
        current.update(changes)
        return GenerationSettings(**current)


@runtime_checkable
class ModelBackend(Protocol):
    """A language model the interpreter can prompt.

    `generate` raises `BackendError` for every failure a user can hit (unreachable server,
    timeout, HTTP error, malformed reply), never a bare library exception. `count_tokens` is what
    the budgets charge for a prompt before it is sent.
    """

    name: str

    def generate(self, prompt: str, settings: GenerationSettings) -> Completion: ...

    def count_tokens(self, text: str) -> int: ...

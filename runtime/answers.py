"""Structured answers: `@output "json"` makes PROMPT_AGENT read the model's answer as JSON.

Models wrap JSON in prose and Markdown fences (```` ```json ... ``` ````), so the answer's value
is the first JSON object or array found in the text, fences included: each `{` or `[` in order
is tried as the start of a JSON document (`json.JSONDecoder.raw_decode`) and the first that
decodes to an object or a list wins. An answer with none fails the PROMPT_AGENT with kind
`InvalidAnswer` and the text in the message, so a RETRY around it can ask again.
"""

from __future__ import annotations

import json
from typing import Any

from runtime.backends.base import SettingsError
from runtime.errors import ScriptFailure
from runtime.secret import redact
from runtime.taint import carry, join
from tisslang import directives as directive_table

_MAX_STARTS = 1000  # brackets tried before giving up, so a huge answer cannot take quadratic time
_SHOWN = 300  # characters of a refused answer shown in the message


class InvalidAnswer(ScriptFailure):
    """A model answer that is not what the script asked for (`@output "json"` and no JSON)."""

    kind = "InvalidAnswer"


def answer_format(directives: dict[str, Any]) -> str:
    """The `@output` in scope for a PROMPT_AGENT ("text" without one); `SettingsError` (checked
    when used, like the generation directives) for any other value."""
    value = directives.get("output", "text")
    spec = directive_table.BY_NAME["output"]
    try:
        return spec.convert(value)
    except directive_table.DirectiveValueError as exc:
        raise SettingsError(f"@output {exc.requirement}, got {value!r}") from None


def parse_answer(text: str) -> Any:
    """The first JSON object or array in `text` (see the module docstring)."""
    decoder = json.JSONDecoder()
    tried = 0
    index = _next_start(text, 0)
    while index != -1 and tried < _MAX_STARTS:
        tried += 1
        try:
            value, _end = decoder.raw_decode(text, index)
        except ValueError:
            index = _next_start(text, index + 1)
            continue
        if isinstance(value, (dict, list)):
            return value
        index = _next_start(text, index + 1)  # pragma: no cover - `{`/`[` only decode to these
    shown = redact(text)  # before the cut: no part of a secret may survive it
    shown = shown if len(shown) <= _SHOWN else shown[:_SHOWN] + "..."
    # The quoted answer keeps the answer's taint, so `LAST_ERROR.MESSAGE` (and the report that
    # quotes it) cannot carry model text into a RUN unasked; the text is the same either way.
    quoted = json.dumps(shown)
    raise InvalidAnswer(join([
        '@output "json": the answer holds no JSON object or array: "',
        carry(text, quoted[1:-1]),
        '"; ask for JSON in the prompt (a RETRY around the PROMPT_AGENT asks again)',
    ]))


def _next_start(text: str, start: int) -> int:
    brace, bracket = text.find("{", start), text.find("[", start)
    if brace == -1:
        return bracket
    if bracket == -1:
        return brace
    return min(brace, bracket)

"""The `echo` backend: answers with the final prompt it was given, for tests and dry runs.

The answer is what a chat model would have been shown: the `@persona` (when set), a blank
line, then the prompt. It honours `@stop` (the answer ends before the first stop sequence) and
`@max_tokens` (the answer is cut to that many estimated tokens), so scripts exercise the same
settings they will use with a real model. Token counts use `estimate_tokens`.
"""

from __future__ import annotations

import time

from runtime.backends.base import Completion, GenerationSettings, estimate_tokens


def echo_text(prompt: str, persona: str | None) -> str:
    """The text the echo backend answers before stop sequences and max_tokens apply.

    >>> echo_text("Say hi", "You are terse.")
    'You are terse.\\n\\nSay hi'
    """
    return f"{persona}\n\n{prompt}" if persona else prompt


def _cut_to_tokens(text: str, max_tokens: int) -> str:
    # The estimate is 4 bytes a token, so keep whole characters within max_tokens * 4 bytes.
    data = text.encode("utf-8")[: max_tokens * 4]
    return data.decode("utf-8", errors="ignore")


class EchoBackend:
    """A `ModelBackend` whose answer is its own input."""

    name = "echo"

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def generate(self, prompt: str, settings: GenerationSettings) -> Completion:
        started = time.monotonic()
        full_prompt = echo_text(prompt, settings.persona)
        text, finish = full_prompt, "stop"
        cuts = [text.find(stop) for stop in settings.stop if stop in text]
        if cuts:
            text = text[: min(cuts)]
        if settings.max_tokens is not None and estimate_tokens(text) > settings.max_tokens:
            text, finish = _cut_to_tokens(text, settings.max_tokens), "length"
        return Completion(
            text=text,
            prompt_tokens=estimate_tokens(full_prompt),
            completion_tokens=estimate_tokens(text),
            finish_reason=finish,
            model="echo",
            elapsed=time.monotonic() - started,
        )

    def __repr__(self) -> str:
        return "EchoBackend()"

"""Instruct models: a checkpoint whose tokenizer has a chat template, answering as the assistant.

What `tiss generate --chat`, `tiss chat` and PROMPT_AGENT on the local backend share:

- `load_instruct(spec)` loads a model by path or name (`lm.models.resolve_model`) and refuses one
  without a chat template with a message saying what to use instead.
- `InstructModel.prompt_ids(messages)` renders the template as transformers'
  `apply_chat_template` does (`lm.chat`: Jinja2 in a sandbox, with `add_generation_prompt`,
  `bos_token`, `eos_token`) and encodes the result with the template's special tokens
  recognised and nothing added (transformers encodes a rendered chat without adding special
  tokens; a template that wants BOS writes `bos_token` itself): the ids the model reads, which
  are also the prompt tokens budgets are charged.
- `InstructModel.reply(messages, ...)` streams the assistant's answer; generation ends at the
  end-of-turn token and at EOS, neither of which is part of the text.
- `fit(messages, ...)` drops the oldest turns of a conversation that no longer fits the context.

A message is `{"role": "system" | "user" | "assistant", "content": str}`, as in transformers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from runtime.errors import TissRuntimeError

Message = Mapping[str, str]


class ChatError(TissRuntimeError):
    """A model that cannot chat (no chat template, not pulled, not loadable): a usage problem."""

    exit_code = 2


def default_chat_model() -> str:
    """The model `tiss chat` uses without --checkpoint: SmolLM2 once it is pulled."""
    from lm.models import model_path

    if model_path("smollm2") is None:
        raise ChatError(
            "no instruct model is given and smollm2 is not downloaded yet; run: tiss models pull "
            "smollm2 (then `tiss chat --checkpoint smollm2`), or pass --checkpoint with a GGUF "
            "file or Hugging Face directory whose tokenizer has a chat template"
        )
    return "smollm2"


def load_instruct(spec: str | None) -> "InstructModel":
    """The instruct model `spec` names (a path or a pulled model's name; None: the default)."""
    import lm
    from lm.errors import LMError
    from lm.models import resolve_model

    spec = default_chat_model() if spec is None else str(spec)
    try:
        model, tokenizer = lm.load(resolve_model(spec))
    except LMError as exc:
        raise ChatError(f"cannot load {spec!r}: {exc}") from None
    return InstructModel(model, tokenizer, name=spec)


def chat_template(tokenizer: Any) -> str | None:
    """The tokenizer's chat template, or None for a plain (completion-only) model."""
    template = getattr(tokenizer, "chat_template", None)
    return template if isinstance(template, str) and template.strip() else None


class InstructModel:
    """A loaded model with a chat template, its weights prepared once for many replies."""

    def __init__(self, model: Any, tokenizer: Any, name: str = "model") -> None:
        from lm.chat import chat_stop_ids
        from lm.inference import InferenceModel

        template = chat_template(tokenizer)
        if template is None:
            raise ChatError(
                f"{name!r} has no chat template, so it is not an instruct model and cannot chat; "
                "use a model whose tokenizer has one (run: tiss models pull smollm2), or "
                "`tiss generate` without --chat to continue text"
            )
        self.name = name
        self.template = template
        self.tokenizer = tokenizer
        self.infer = model if isinstance(model, InferenceModel) else InferenceModel(model)
        self.context = int(self.infer.model.config.max_seq_len)
        # The template's end of turn (`<|im_end|>` for ChatML), the metadata's, and EOS.
        self.end_ids = chat_stop_ids(tokenizer)
        self._cache = None  # the KV cache kept between the replies of one conversation
        self._cached_ids: list[int] = []  # the ids it holds

    def render(self, messages: Sequence[Message]) -> str:
        """The prompt text: the conversation in the template, ending with the assistant's turn."""
        from lm.chat import apply_chat_template

        return apply_chat_template(self.tokenizer, [dict(m) for m in messages], add_generation_prompt=True)

    def prompt_ids(self, messages: Sequence[Message]) -> list[int]:
        """The token ids of the rendered prompt (special-token text in it is those tokens)."""
        return list(self.tokenizer.encode(self.render(messages), allowed_special="all"))

    def fit(self, messages: Sequence[Message], max_new_tokens: int) -> tuple[list[Message], list[int]]:
        """The conversation cut to fit the context with room for `max_new_tokens`, and its ids.

        Whole turns go, oldest first; the system message and the last user message stay (if
        those alone are too long, generation keeps the last tokens of the context).
        """
        kept = list(messages)
        ids = self.prompt_ids(kept)
        budget = max(1, self.context - max_new_tokens)
        while len(ids) > budget:
            first = next((i for i, m in enumerate(kept) if m.get("role") != "system"), None)
            if first is None or first >= len(kept) - 1:
                break
            del kept[first]
            # A turn is a user message with the assistant's answer after it.
            while first < len(kept) - 1 and kept[first].get("role") == "assistant":
                del kept[first]
            ids = self.prompt_ids(kept)
        return kept, ids

    def reply(self, messages: Sequence[Message], settings: Any = None, *, reuse_cache: bool = False,
              **sampling: Any):
        """A stream (an iterable of text pieces with `.result`, as `lm.stream` gives) of the
        assistant's answer to `messages` (fitted to the context), sampled with `settings` (an
        `lm.SamplingSettings`) and any of its fields as keywords.

        `reuse_cache=True` is for a conversation, where each prompt repeats the one before and
        its answer: the KV cache of the last reply is kept, and only the ids after the part the
        new prompt shares with it are run through the model. An answer that did not finish
        (Ctrl-C) leaves nothing to reuse, and the next prompt is run in full.
        """
        from lm.generate import SamplingSettings, stream

        settings = SamplingSettings.from_options(sampling, settings)
        _, ids = self.fit(messages, settings.max_new_tokens)
        if not reuse_cache:
            return stream(self.infer, self.tokenizer, ids, settings=settings, end_ids=self.end_ids)
        if self._cache is None:
            self._cache = self.infer.new_cache()
        self._cache.length = _shared_prefix(self._cached_ids, ids)
        self._cached_ids = []  # unknown until this reply finishes
        return _Remembering(
            stream(self.infer, self.tokenizer, ids, settings=settings, end_ids=self.end_ids, cache=self._cache),
            self,
        )


class _Remembering:
    """A stream that, once exhausted, records which ids its model's chat cache holds."""

    def __init__(self, inner: Any, owner: InstructModel) -> None:
        self._inner = inner
        self._owner = owner

    def __iter__(self):
        yield from self._inner
        self._owner._cached_ids = list(self._inner.cached_ids or [])

    @property
    def result(self):
        return self._inner.result


def _shared_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading ids `a` and `b` have in common.

    >>> _shared_prefix([1, 2, 3], [1, 2, 4, 5]), _shared_prefix([], [1]), _shared_prefix([1], [1])
    (2, 0, 1)
    """
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n

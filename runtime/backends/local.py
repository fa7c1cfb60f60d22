"""The local NumPy model as a `ModelBackend`: PROMPT_AGENT answered by a checkpoint on disk.

`LocalBackend(path=None)` loads what `lm.load` accepts (a checkpoint directory, a GGUF file, a
Hugging Face model directory) or a pulled model's name (`smollm2`), or the default model shipped
in `lm/default_model/` when `path` is None. Token counts come from the model's own tokenizer,
so the TOKENS budget is charged exactly what the model reads and writes.

An instruct model (its tokenizer has a chat template) is prompted as a chat: `@persona` is the
system message and the prompt the user message, rendered with the template
(`runtime.instruct`); the prompt tokens charged are those of the rendered template, and the
answer ends at the end-of-turn token or EOS. `count_prompt_tokens(prompt, settings)` gives that
count before the call, for the budget check.

How directives map onto generation:
- `@persona` on a model without a chat template is put before the prompt, separated by a blank
  line (the model has no chat roles).
- `@temperature` (default 0.8), `@top_k` (0 means no limit), `@top_p` (0 means greedy),
  `@min_p`, `@seed` (default: a fresh random seed per call), `@stop` and `@max_tokens`
  (default 256) apply as in `lm.generate`.
- `@model` names another model (path or pulled name) to answer this call; each is loaded once.
- `@timeout` ends a call that runs longer with a `BackendError`.
Finish reasons follow the OpenAI vocabulary the other backends use: "stop" for a stop string or
the end-of-text token, "length" when `@max_tokens` was reached.

One backend may serve PARALLEL branches at once; each call decodes with its own KV cache, and a
lock serialises calls on the same model because its decoding scratch buffers are shared (two
NumPy decodes on two cores would not be faster than one after another on this model size).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from runtime.backends.base import BackendError, Completion, GenerationSettings

DEFAULT_TEMPERATURE = 0.8
DEFAULT_MAX_TOKENS = 256


class _Loaded:
    """One model ready to decode: tokenizer, prepared weights, and the lock guarding them;
    `instruct` is set when the tokenizer has a chat template."""

    def __init__(self, path: Path | None) -> None:
        import lm
        from lm.errors import LMError
        from lm.inference import InferenceModel

        from runtime.instruct import InstructModel, chat_template

        try:
            model, tokenizer = lm.load() if path is None else lm.load(path)
            self.infer = InferenceModel(model)
        except LMError as exc:
            where = "the default model" if path is None else f"checkpoint {str(path)!r}"
            raise BackendError(f"cannot load {where} for the local backend: {exc}") from None
        self.tokenizer = tokenizer
        self.instruct = None
        if chat_template(tokenizer) is not None:
            self.instruct = InstructModel(self.infer, tokenizer, name=str(path))
        self.lock = threading.Lock()

    def chat_ids(self, prompt: str, persona: str | None) -> list[int]:
        """The rendered chat prompt's ids: `@persona` as the system message, then the prompt."""
        messages = [{"role": "system", "content": persona}] if persona else []
        messages.append({"role": "user", "content": prompt})
        return self.instruct.prompt_ids(messages)


class LocalBackend:
    """A `ModelBackend` running `lm.generate` on a local checkpoint (the default one if no path)."""

    def __init__(self, path: str | Path | None = None, *, lazy: bool = False) -> None:
        """Load the model now, so a bad path fails at once; `lazy=True` defers loading (and
        importing NumPy) to the first call, for a default backend that scripts may never use."""
        self.name = "local" if path is None else f"local:{path}"
        self.path = None if path is None else Path(_resolve(path)).expanduser()
        self._loaded: _Loaded | None = None
        self._others: dict[Path, _Loaded] = {}
        self._others_lock = threading.Lock()
        if not lazy:
            self._loaded = _Loaded(self.path)

    @property
    def _main(self) -> _Loaded:
        if self._loaded is None:
            with self._others_lock:
                if self._loaded is None:
                    self._loaded = _Loaded(self.path)
        return self._loaded

    def count_tokens(self, text: str) -> int:
        return len(self._main.tokenizer.encode(text))

    def count_prompt_tokens(self, prompt: str, settings: GenerationSettings) -> int:
        """Exactly the prompt tokens `generate(prompt, settings)` will report (and be charged)."""
        from lm.errors import LMError

        loaded = self._for(settings.model)
        try:
            if loaded.instruct is not None:
                return len(loaded.chat_ids(prompt, settings.persona))
        except LMError as exc:
            raise BackendError(f"local model: {exc}") from None
        text = f"{settings.persona}\n\n{prompt}" if settings.persona else prompt
        return len(loaded.tokenizer.encode(text))

    def _for(self, model: str | None) -> _Loaded:
        if not model:
            return self._main
        path = Path(_resolve(model)).expanduser()
        if self.path is not None and path.resolve() == self.path.resolve():
            return self._main
        with self._others_lock:
            if path not in self._others:
                if not path.exists():
                    raise BackendError(
                        f"@model {model!r} is not a checkpoint directory, model file or pulled model "
                        "name (`tiss models list`); the local backend answers with the model given "
                        "to --model, or @model naming another one"
                    )
                self._others[path] = _Loaded(path)
            return self._others[path]

    def generate(self, prompt: str, settings: GenerationSettings) -> Completion:
        from lm.errors import LMError
        from lm.generate import stream

        started = time.monotonic()
        loaded = self._for(settings.model)
        try:
            end_ids: frozenset[int] = frozenset()
            if loaded.instruct is not None:
                text = loaded.chat_ids(prompt, settings.persona)  # token ids of the rendered template
                end_ids = loaded.instruct.end_ids
            else:
                text = f"{settings.persona}\n\n{prompt}" if settings.persona else prompt
            s = stream(loaded.infer, loaded.tokenizer, text, settings=_sampling(settings), end_ids=end_ids)
            with loaded.lock:
                for _ in s:
                    if settings.timeout is not None and time.monotonic() - started > settings.timeout:
                        raise BackendError(
                            f"the local model did not finish within {settings.timeout:g} s; raise "
                            "@timeout or lower @max_tokens"
                        )
        except LMError as exc:
            raise BackendError(f"local model: {exc}") from None
        result = s.result
        return Completion(
            text=result.text,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            finish_reason="length" if result.finish_reason == "length" else "stop",
            model=self.name,
            elapsed=time.monotonic() - started,
        )

    def __repr__(self) -> str:
        return f"LocalBackend({None if self.path is None else str(self.path)!r})"


def _sampling(settings: GenerationSettings):
    """The `lm.generate.SamplingSettings` the directives in `settings` ask for (see the module
    docstring for the defaults and what 0 means); raises `LMError` for values `lm` refuses."""
    from lm.generate import SamplingSettings

    temperature = DEFAULT_TEMPERATURE if settings.temperature is None else settings.temperature
    top_p = settings.top_p
    if top_p is not None and top_p <= 0:
        top_p, temperature = None, 0.0  # an empty nucleus keeps only the most likely token
    return SamplingSettings(
        max_new_tokens=DEFAULT_MAX_TOKENS if settings.max_tokens is None else settings.max_tokens,
        temperature=temperature,
        top_k=settings.top_k or None,
        top_p=top_p,
        min_p=settings.min_p or None,
        stop=settings.stop,
        seed=settings.seed,
    )


def _resolve(spec: str | Path) -> str:
    """A pulled model's name as its file (`lm.models.resolve_model`); a path as it is."""
    from lm.models import ModelStoreError, resolve_model

    try:
        return resolve_model(spec)
    except ModelStoreError as exc:
        raise BackendError(str(exc)) from None

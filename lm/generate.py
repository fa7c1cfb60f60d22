"""Text generation: the decoding loop, stop sequences, streaming, and the sliding context window.

`stream(model, tokenizer, prompt, ...)` returns a `Stream`: iterating it yields text pieces as
tokens are decoded, and once it is exhausted `stream.result` holds the `GenerationResult`.
`generate(...)` runs a stream to the end and returns that result. How tokens are chosen is one
`SamplingSettings` (given whole as `settings=`, or field by field as keywords), the single
definition `tiss generate` and the local model backend build too.

Decoding details a caller can rely on:
- Pieces never split a UTF-8 character: token bytes go through an incremental UTF-8 decoder, so
  a character whose bytes span several tokens comes out whole with the token that completes it.
  Bytes that never form a valid character (a model can emit any bytes) come out as U+FFFD.
- Stop sequences end the text before the stop string. Text that might be the start of a stop
  string is held back until the next tokens rule it in or out, so a streamed piece is never taken
  back.
- The end-of-text token ends generation with finish reason "eos" and is not part of the text;
  so do the ids in `end_ids` (a chat model's end-of-turn token and its EOS).
- The prompt is text (encoded with special-token text taken as plain text) or a list of token
  ids (a rendered chat template, encoded by the caller with its special tokens).
- Repetition penalty (CTRL-style, as in Hugging Face): each token already in the context has a
  positive logit divided by the penalty and a negative one multiplied by it.
- When the context (the model's `max_seq_len`) is full, the window slides: the last half of it
  is kept, run through the model again, and generation goes on. The finish reason stays one of
  "length", "stop", "eos"; `result.window_slides` counts the slides and `result.note` says so.
  A prompt longer than the context keeps its last `max_seq_len` tokens (also a slide).
- `use_kv_cache=False` recomputes `model.forward` over the whole window for every token: slow,
  and the reference the cached path is tested against.
- `cache=` passes a KV cache that already holds the model's keys and values for the first
  `cache.length` prompt ids (a chat's earlier turns): only the rest of the prompt is run through
  the model. Once the stream is exhausted, `stream.cached_ids` lists the ids the cache then
  holds, so the next prompt can reuse the part it shares with them.

Letters: V vocabulary size.
"""

from __future__ import annotations

import codecs
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping, TextIO

import numpy as np

from lm.errors import LMError
from lm.console import write_out
from lm.inference import InferenceModel
from lm.kv_cache import KVCache
from lm.sampling import sample_token, validate_sampling
from lm.textin import read_utf8

FINISH_REASONS = ("length", "stop", "eos")


class GenerationError(LMError):
    """Bad generation settings (max_new_tokens, stop strings, repetition penalty, prompt)."""


@dataclass(frozen=True)
class GenerationResult:
    """What one generation produced, with the counts budgets and `--stats` need."""

    text: str  # the completion, without the prompt, the stop string or the end-of-text token
    prompt_tokens: int  # tokens the prompt encoded to (before any truncation to the context)
    completion_tokens: int  # tokens sampled, the end-of-text token or a stop's last token included
    finish_reason: str  # "length" (max_new_tokens reached), "stop" (a stop string) or "eos"
    token_ids: tuple[int, ...] = ()  # the sampled tokens, in order
    window_slides: int = 0  # how often the full context slid (0: it never filled)
    note: str | None = None  # a human-readable remark, e.g. about the sliding window
    seconds: float = 0.0  # wall time of the whole call, prompt processing included
    first_token_seconds: float | None = None  # wall time until the first token was sampled


@dataclass(frozen=True)
class SamplingSettings:
    """How a completion is sampled: the one definition of these settings.

    `lm.generate` and `lm.stream` take it (whole as `settings=`, or as keywords named like its
    fields), `tiss generate` builds it from its flags and the local model backend from the
    directives. Validated when made: a setting out of range raises `SamplingError` (temperature,
    top_k, top_p, min_p) or `GenerationError` (the rest) naming it, before any work is done.
    """

    max_new_tokens: int = 128  # tokens sampled at most (0: none)
    temperature: float = 1.0  # logits are divided by it; 0 is greedy
    top_k: int | None = None  # keep the k most likely tokens (None: all)
    top_p: float | None = None  # keep the smallest set whose probability reaches p, in (0, 1]
    min_p: float | None = None  # drop tokens below min_p times the top probability, in [0, 1]
    repetition_penalty: float = 1.0  # > 1 discourages tokens already in the context (1: none)
    stop: tuple[str, ...] = ()  # end before the first of these strings; one string or None work too
    seed: int | None = None  # seeds the sampler's numpy Generator (None: fresh entropy)

    def __post_init__(self) -> None:
        validate_sampling(self.temperature, self.top_k, self.top_p, self.min_p)
        n = self.max_new_tokens
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise GenerationError(f"max_new_tokens must be a whole number >= 0, got {n!r}")
        penalty = self.repetition_penalty
        if not isinstance(penalty, (int, float)) or not penalty > 0:
            raise GenerationError(f"repetition_penalty must be > 0 (1 means none), got {penalty!r}")
        stop = self.stop
        stops = () if stop is None else (stop,) if isinstance(stop, str) else tuple(stop)
        for s in stops:
            if not isinstance(s, str) or s == "":
                raise GenerationError(f"stop sequences must be non-empty strings, got {s!r}")
        object.__setattr__(self, "stop", stops)
        seed = self.seed
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise GenerationError(f"seed must be a whole number >= 0, got {seed!r}")

    @classmethod
    def from_options(cls, options: Mapping[str, Any], base: "SamplingSettings | None" = None) -> "SamplingSettings":
        """`base` (the defaults if None) with the fields `options` holds; other keys are ignored,
        so `vars()` of a command's parsed arguments can be passed as it is."""
        given = {f.name: options[f.name] for f in fields(cls) if f.name in options}
        return cls(**given) if base is None else replace(base, **given)


_SAMPLING_FIELDS = frozenset(f.name for f in fields(SamplingSettings))


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    """Where `text` is cut for the stop string that completes first, as generation meets it.

    Generation ends as soon as any stop string is complete, so the one that *ends* first wins
    (a longer stop that began earlier but was not finished yet never gets the chance); among
    stops ending at the same place, the one that began first. This makes the result the same
    however the text arrives in pieces.

    >>> _first_stop("><<", ["<", "><<"])  # "<" is complete at 2, before "><<" at 3
    1
    >>> _first_stop("xab", ["ab", "b"])  # both end at 3; "ab" began first
    1
    """
    best: tuple[int, int] | None = None  # (end, start)
    for stop in stops:
        start = text.find(stop)
        if start >= 0 and (best is None or (start + len(stop), start) < best):
            best = (start + len(stop), start)
    return None if best is None else best[1]


class _StopFilter:
    """Holds back text that may begin a stop string; finds the first complete one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = stops
        self.pending = ""

    def feed(self, piece: str) -> tuple[str, bool]:
        """Text that is safe to emit now, and whether a stop string was found."""
        self.pending += piece
        if not self.stops:
            out, self.pending = self.pending, ""
            return out, False
        first = _first_stop(self.pending, self.stops)
        if first is not None:
            out = self.pending[:first]
            self.pending = ""
            return out, True
        hold = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(self.pending)), hold, -1):
                if self.pending.endswith(s[:k]):
                    hold = k
                    break
        cut = len(self.pending) - hold
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out, False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


class Stream:
    """An iterable of decoded text pieces; `result` is set once iteration has finished.

    `settings` (a `SamplingSettings`; the defaults if None) with any of its fields given as
    keywords on top, and `max_new_tokens` (None: the settings' own) on top of those. Settings
    are validated when the stream is made, so bad settings fail before any work. `rng` replaces
    the generator `seed` would make. A stream is single-use.
    """

    def __init__(
        self,
        model,
        tokenizer,
        prompt: str | Sequence[int],
        max_new_tokens: int | None = None,
        *,
        settings: SamplingSettings | None = None,
        rng: np.random.Generator | None = None,
        use_kv_cache: bool = True,
        end_ids: Iterable[int] = (),
        cache: KVCache | None = None,
        **sampling: Any,
    ) -> None:
        if max_new_tokens is not None:
            sampling["max_new_tokens"] = max_new_tokens
        unknown = sorted(set(sampling) - _SAMPLING_FIELDS)
        if unknown:
            raise TypeError(f"unexpected keyword argument(s) {', '.join(map(repr, unknown))}; the settings "
                            f"are {', '.join(sorted(_SAMPLING_FIELDS))}")
        self.settings = SamplingSettings.from_options(sampling, settings)
        settings = self.settings
        if isinstance(prompt, (list, tuple)):
            if not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in prompt):
                raise GenerationError("a prompt given as token ids must be a list of whole numbers")
            prompt = [int(i) for i in prompt]
        elif not isinstance(prompt, str):
            raise GenerationError(f"the prompt must be text or token ids, got {type(prompt).__name__}")
        self._end_ids = frozenset(int(i) for i in end_ids)
        if isinstance(model, InferenceModel):
            self._infer, self._model = model, model.model
        else:
            self._infer, self._model = (InferenceModel(model) if use_kv_cache else None), model
        self._tokenizer = tokenizer
        self._prompt = prompt
        self._max_new = settings.max_new_tokens
        self._stops = settings.stop
        self._sampling = dict(temperature=settings.temperature, top_k=settings.top_k, top_p=settings.top_p,
                              min_p=settings.min_p)
        self._penalty = float(settings.repetition_penalty)
        self._rng = rng if rng is not None else np.random.default_rng(settings.seed)
        self._use_cache = use_kv_cache
        if cache is not None and not use_kv_cache:
            raise GenerationError("a KV cache was given with use_kv_cache=False; give one or the other")
        self._cache = cache
        self._started = False
        self.result: GenerationResult | None = None
        self.cached_ids: list[int] | None = None  # set when the stream is exhausted

    def __iter__(self) -> Iterator[str]:
        if self._started:
            raise GenerationError("a Stream can be iterated only once; make a new one")
        self._started = True
        return self._run()

    # -- the decoding loop -------------------------------------------------------------------

    def _run(self) -> Iterator[str]:
        t0 = time.perf_counter()
        tok = self._tokenizer
        try:
            eot = tok.eot_id
        except (AttributeError, LMError):  # a tokenizer trained without an end-of-text token
            eot = None
        ctx = int(self._model.config.max_seq_len)
        keep = max(1, ctx // 2)
        ids = list(self._prompt) if isinstance(self._prompt, list) else list(tok.encode(self._prompt))
        prompt_tokens = len(ids)
        if not ids:
            if eot is None:
                raise GenerationError("the prompt is empty and the tokenizer has no end-of-text token to start from")
            ids = [eot]  # documents start after an end-of-text token in training
        slides = 0
        cut_prompt = len(ids) > ctx
        if cut_prompt:
            ids = ids[-ctx:]
            slides += 1
        vocab = int(self._model.config.vocab_size)
        # A checkpoint may pair a model with a smaller tokenizer; ids it cannot decode are never
        # sampled (their rows were never trained anyway).
        known = min(vocab, int(getattr(tok, "vocab_size", vocab)))
        seen = np.zeros(vocab, dtype=bool)  # (V,)
        seen[ids] = True

        cache = None
        if self._use_cache:
            cache = self._cache if self._cache is not None else self._infer.new_cache()
            # The caller vouches that the cache holds ids[:cache.length]; at least one id is run
            # to get the next token's logits, and a prompt cut to the context starts over.
            cache.length = 0 if cut_prompt else max(0, min(cache.length, len(ids) - 1))
        context = list(ids)
        logits = self._prefill(context, cache) if self._max_new else None  # (V,)

        utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        stops = _StopFilter(self._stops)
        sampled: list[int] = []
        pieces: list[str] = []
        first_token_s = None
        finish = "length"
        while len(sampled) < self._max_new:
            if self._penalty != 1.0:
                logits = self._penalise(logits, seen)
            if known < vocab:
                logits = np.array(logits, dtype=np.float32, copy=True)  # (V,)
                logits[known:] = -np.inf
            token = sample_token(logits, self._rng, **self._sampling)
            if first_token_s is None:
                first_token_s = time.perf_counter() - t0
            sampled.append(token)
            seen[token] = True
            if token == eot or token in self._end_ids:
                finish = "eos"
                break
            text, stopped = stops.feed(utf8.decode(tok.decode_bytes([token])))
            if text:
                pieces.append(text)
                yield text
            if stopped:
                finish = "stop"
                break
            if len(sampled) == self._max_new:
                break
            if len(context) >= ctx:
                context = context[-keep:]
                slides += 1
                context.append(token)
                if cache is not None:
                    cache.reset()
                logits = self._prefill(context, cache)
            else:
                context.append(token)
                logits = self._feed(token, context, cache)
        if finish != "stop":
            text, stopped = stops.feed(utf8.decode(b"", final=True))
            text += "" if stopped else stops.flush()
            if stopped:
                finish = "stop"
            if text:
                pieces.append(text)
                yield text
        notes = []
        if cut_prompt:
            notes.append(f"the prompt of {prompt_tokens} tokens was cut to its last {ctx}, the context length")
        if slides > cut_prompt:
            n = slides - cut_prompt
            notes.append(
                f"the context of {ctx} tokens filled, so generation went on over a sliding window "
                f"of the last {keep} tokens ({n} time{'s' if n != 1 else ''})"
            )
        note = "; ".join(notes) or None
        self.cached_ids = context[: cache.length] if cache is not None else None
        self.result = GenerationResult(
            text="".join(pieces),
            prompt_tokens=prompt_tokens,
            completion_tokens=len(sampled),
            finish_reason=finish,
            token_ids=tuple(sampled),
            window_slides=slides,
            note=note,
            seconds=time.perf_counter() - t0,
            first_token_seconds=first_token_s,
        )

    def _prefill(self, context: list[int], cache) -> np.ndarray:
        """Logits (V,) after `context`, run on top of the cache's first `cache.length` ids of it
        (or in full without a cache)."""
        if cache is None:
            ids = np.asarray(context, dtype=np.int64)[None, :]  # (1, T)
            return np.asarray(self._model.forward(ids))[0, -1]
        ids = np.asarray(context[cache.length:], dtype=np.int64)[None, :]  # (1, T)
        return self._infer.forward(ids, cache, last=True)[0, -1]  # no (T, V) logits for a long prompt

    def _feed(self, token: int, context: list[int], cache) -> np.ndarray:
        """Logits (V,) after one more token, which `context` already ends with."""
        if cache is None:
            return self._prefill(context, None)
        return self._infer.step(token, cache)

    def _penalise(self, logits: np.ndarray, seen: np.ndarray) -> np.ndarray:
        out = np.array(logits, dtype=np.float32, copy=True)  # (V,)
        s = out[seen]
        out[seen] = np.where(s > 0, s / self._penalty, s * self._penalty)
        return out


def stream(model, tokenizer, prompt: str | Sequence[int], max_new_tokens: int | None = None, **options) -> Stream:
    """Decode `prompt`'s continuation piece by piece; see `Stream` and the module docstring.

    `model` is a `Transformer` (or an `InferenceModel` built from one, to reuse its prepared
    weights across calls); `prompt` is text or token ids. Keyword options: `settings` (a
    `SamplingSettings`) and its fields (temperature, top_k, top_p, min_p, repetition_penalty,
    stop, seed), rng, use_kv_cache, end_ids, cache.
    """
    return Stream(model, tokenizer, prompt, max_new_tokens, **options)


def generate(model, tokenizer, prompt: str | Sequence[int], max_new_tokens: int | None = None,
             **options) -> GenerationResult:
    """Generate a continuation of `prompt` and return it with its token counts.

    Takes what `stream` takes. The same settings and seed give the same text, with the cache
    or without it.
    """
    s = Stream(model, tokenizer, prompt, max_new_tokens, **options)
    for _ in s:
        pass
    return s.result


def read_prompt(prompt: str | None, prompt_file: str | Path | None, *,
                positional: str | None = None, stdin: TextIO | None = None) -> str:
    """The prompt text from exactly one of a string (``--prompt`` or the positional argument)
    and a UTF-8 file ("-" is standard input); with none of them, standard input when it is a
    pipe or a file (``echo hi | tiss generate``), as ollama and llm read it."""
    given = [name for name, value in (("PROMPT", positional), ("--prompt", prompt),
                                      ("--prompt-file", prompt_file)) if value is not None]
    if len(given) > 1:
        raise GenerationError(f"the prompt is given twice ({' and '.join(given)}); give it once")
    if not given:
        if stdin is not None and not stdin.isatty():
            text = stdin.read()  # `echo TEXT |` ends it with a newline the user did not mean
            if text:
                return text[:-1] if text.endswith("\n") else text
            raise GenerationError('no prompt: standard input was empty; give the prompt as an argument '
                                  '(tiss generate "def add"), with -p TEXT or --prompt-file FILE')
        raise GenerationError('no prompt: give it as an argument (tiss generate "def add"), with '
                              "-p TEXT or --prompt-file FILE, or pipe it on standard input")
    if positional is not None or prompt is not None:
        return positional if positional is not None else prompt
    return read_utf8(prompt_file, GenerationError, "the prompt")


def generate_to_console(
    checkpoint: str | Path | None,
    prompt: str,
    max_new_tokens: int | None = None,
    *,
    stats: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
    **options,
) -> GenerationResult:
    """What `tiss generate` does: load a checkpoint (the default model if None), stream the
    completion to `out` as it is decoded, and with `stats` print token counts, tokens/s and the
    time to the first token to `err`. `options` are what `stream` takes."""
    from lm.checkpoint import load

    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    model, tokenizer = load() if checkpoint is None else load(checkpoint)
    s = stream(model, tokenizer, prompt, max_new_tokens, **options)
    line_open = False
    try:
        for piece in s:
            if not write_out(out, piece):  # the reader went away (`| head`): stop generating
                return s.result
            line_open = not piece.endswith("\n") if piece else line_open
    except KeyboardInterrupt:
        if line_open:  # end the text's line, so the CLI's "interrupted" starts on its own
            write_out(out, "\n")
        raise
    if not write_out(out, "\n"):
        return s.result
    r = s.result
    if stats:
        decode_s = r.seconds - (r.first_token_seconds or 0.0)
        rate = (r.completion_tokens - 1) / decode_s if r.completion_tokens > 1 and decode_s > 0 else 0.0
        ttft = f"{r.first_token_seconds * 1000:.1f} ms" if r.first_token_seconds is not None else "n/a"
        print(
            f"prompt tokens: {r.prompt_tokens}, generated tokens: {r.completion_tokens}, "
            f"finish: {r.finish_reason}, {rate:.1f} tokens/s, time to first token: {ttft}, "
            f"total {r.seconds:.2f} s",
            file=err,
        )
        if r.note:
            print(f"note: {r.note}", file=err)
    return r

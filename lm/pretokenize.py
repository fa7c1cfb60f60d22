"""Pre-tokenization: cutting text into the chunks that byte-level BPE merges within.

BPE never merges across a chunk boundary, so the split decides what a token can be: a word with
its leading space (" return"), a run of digits, a run of punctuation, a run of whitespace. The
pattern is GPT-2's, written for Python's `re` (which has no `\\p{L}`):

- `'s 't 're 've 'm 'll 'd` — English contractions, kept as their own chunk;
- ` ?[^\\W\\d_]+` — letters (word characters that are neither digits nor `_`), one optional space;
- ` ?\\d+` — decimal digits;
- ` ?(?:[^\\s\\w]|_)+` — everything else that is not whitespace (punctuation, symbols, `_`,
  combining marks, emoji and their joiners);
- `\\s+(?!\\S)` then `\\s+` — whitespace runs; the first leaves a run's last space to the word that
  follows, so indentation becomes "    " + " if" rather than "     " + "if".

Every character falls in exactly one class, so the chunks concatenate back to the input:

>>> split("Hello,   world's 42_x\\r\\n")
['Hello', ',', '  ', ' world', "'s", ' 42', '_', 'x', '\\r\\n']

Pretrained models bring their own split, written in the notation of their reference
implementations (Oniguruma in HF `tokenizers`, llama.cpp's splitter): `\\p{L}` letters, `\\p{N}`
numbers, `\\s` Unicode White_Space. Python's `re` has no `\\p{..}`, and its `\\s`/`\\w` are not
those sets (`\\s` also matches U+001C..U+001F; `[^\\W\\d_]` also matches No/Nl numbers such as
"²"), so `translate` rewrites each such escape into an explicit character class computed from
`unicodedata` general categories: the classes are exact for every character the running
Python's Unicode database assigns (Unicode 14.0 on Python 3.11). Characters assigned only in a
later Unicode version are unassigned here, as they are in any peer built on Unicode 14.

A pre-tokenizer is a list of steps (`Splitter`): each step cuts every piece the previous step
produced, keeping both the matches and the text between them ("Isolated" in HF terms; what
llama.cpp does with each of its `regex_exprs`). `PRETOKENIZERS` names the splits of the
`tokenizer.ggml.pre` values llama.cpp knows and that this module reproduces exactly.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache
from itertools import groupby

PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+"""

CHUNK_RE = re.compile(PATTERN)


def split(text: str, chunk_re: re.Pattern[str] = CHUNK_RE) -> list[str]:
    """The chunks of `text`, in order; `"".join(split(text)) == text`."""
    return chunk_re.findall(text)


def count_chunks(
    texts: Iterable[str],
    chunk_re: re.Pattern[str] = CHUNK_RE,
    special_re: re.Pattern[str] | None = None,
) -> Counter[str]:
    """How often each chunk occurs over all `texts`; special-token text is cut out first.

    Counting once and training on the unique chunks is what makes training scale: a corpus has
    far fewer distinct chunks than chunks (docs/model.md, "Measurements behind the code").

    >>> sorted(count_chunks(["ab ab", "ab<|endoftext|>ab"], special_re=special_pattern(["<|endoftext|>"])).items())
    [(' ab', 1), ('ab', 3)]
    """
    counts: Counter[str] = Counter()
    findall = chunk_re.findall
    for text in texts:
        if special_re is not None:
            for piece in special_re.split(text)[::2]:  # odd items are the tokens themselves
                counts.update(findall(piece))
        else:
            counts.update(findall(text))
    return counts


@lru_cache(maxsize=64)
def _special_pattern(tokens: tuple[str, ...]) -> re.Pattern[str] | None:
    if not tokens:
        return None
    # Longest first, so "<|a|><|b|>"-style tokens that share a prefix match the longer one.
    ordered = sorted(tokens, key=lambda t: (-len(t), t))
    return re.compile("(" + "|".join(re.escape(t) for t in ordered) + ")")


def special_pattern(tokens: Iterable[str]) -> re.Pattern[str] | None:
    """A regex whose `split` alternates ordinary text and the special tokens found in it.

    >>> special_pattern(["<|endoftext|>"]).split("a<|endoftext|>b")
    ['a', '<|endoftext|>', 'b']
    """
    return _special_pattern(tuple(sorted(set(tokens))))


# ------------------------------------------------------------------------------------------
# Unicode-category classes and the pre-tokenizers of pretrained models

# The White_Space property (Unicode PropList.txt; stable since Unicode 6.3): what `\s` means in
# Oniguruma, Rust's regex and llama.cpp's splitter.
WHITE_SPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)

GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
# Llama 3's tokenizer.json pattern; llama.cpp spells the case-insensitive contractions out.
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_SPLIT_CPP = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_SPLIT = LLAMA3_SPLIT.replace(r"\p{N}{1,3}", r"\p{N}")
QWEN2_SPLIT_CPP = LLAMA3_SPLIT_CPP.replace(r"\p{N}{1,3}", r"\p{N}")
DIGIT_SPLIT = r"\p{N}"

# tokenizer.ggml.pre -> (steps, ignore_merges, add_bos default), as llama.cpp's llama-vocab.cpp
# maps them. Only pre-tokenizers whose every step this module reproduces exactly are here.
_GPT2 = (GPT2_SPLIT,)
_LLAMA3 = (LLAMA3_SPLIT_CPP,)
_SMOLLM = (DIGIT_SPLIT, GPT2_SPLIT)
_QWEN2 = (QWEN2_SPLIT_CPP,)
PRETOKENIZERS: dict[str, tuple[tuple[str, ...], bool, bool]] = {
    **dict.fromkeys(
        ("gpt-2", "phi-2", "gigachat", "a.x-4.0", "mellum", "modern-bert", "exaone4", "mpt", "olmo",
         "jais", "trillion", "granite-docling", "roberta-bpe"),
        (_GPT2, False, False),
    ),
    **dict.fromkeys(
        ("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"),
        (_LLAMA3, True, True),
    ),
    **dict.fromkeys(("dbrx", "smaug-bpe", "chatglm-bpe"), (_LLAMA3, False, False)),
    **dict.fromkeys(("glm4", "glm5"), (_LLAMA3, True, False)),
    **dict.fromkeys(
        ("starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b", "mellum2"),
        (_SMOLLM, False, False),
    ),
    **dict.fromkeys(
        ("qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "stablelm2", "hunyuan", "solar-open"),
        (_QWEN2, False, False),
    ),
}

# Step sequences that a single equivalent regex computes faster (checked against the peers by
# the tests): splitting off every number first and then applying GPT-2's pattern inside each
# piece is GPT-2's pattern with single numbers, where a whitespace run before a number is a
# piece's end and so is taken whole.
_FOLDED: dict[tuple[str, ...], str] = {
    _SMOLLM: r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+|\s+(?=\p{N})|\s+(?!\S)|\s+",
}
# Patterns whose alternatives together match every character, so `findall` loses nothing.
_COVERING = {GPT2_SPLIT, LLAMA3_SPLIT, LLAMA3_SPLIT_CPP, QWEN2_SPLIT, QWEN2_SPLIT_CPP, *_FOLDED.values()}


class PatternError(ValueError):
    """A pre-tokenizer pattern uses something this module cannot reproduce exactly."""


@lru_cache(maxsize=1)
def _category_spans() -> dict[str, list[tuple[int, int]]]:
    """General category (two letters, and its first letter) -> its code points as ranges."""
    import unicodedata

    categories = map(unicodedata.category, map(chr, range(0x110000)))
    ranges: dict[str, list[list[int]]] = {}
    start = 0
    for cat, run in groupby(categories):
        end = start + sum(1 for _ in run) - 1
        for key in (cat, cat[0]):
            spans = ranges.setdefault(key, [])
            if spans and spans[-1][1] == start - 1:
                spans[-1][1] = end
            else:
                spans.append([start, end])
        start = end + 1
    return {key: [(a, b) for a, b in spans] for key, spans in ranges.items()}


@lru_cache(maxsize=64)
def _category_class(name: str, bmp: bool) -> str | None:
    """The body of a character class for a category; `bmp`: only its BMP code points."""
    spans = _category_spans().get(name)
    if spans is None:
        return None
    limit = 0xFFFF if bmp else 0x10FFFF
    return "".join(
        _class_char(a) if a == min(b, limit) else f"{_class_char(a)}-{_class_char(min(b, limit))}"
        for a, b in spans
        if a <= limit
    )


@lru_cache(maxsize=1)
def _astral_stand_ins() -> dict[str, str]:
    """For every general category: a BMP character of that category (the highest one), to
    stand in for characters beyond the BMP while a BMP-only pattern splits the text.

    Python's `re` tests a class holding ranges beyond U+FFFF by scanning those ranges one by one
    for every character not in its BMP part, which makes `\\p{L}` several times slower than a
    BMP-only class (docs/model.md, "Measurements behind the code"). Every class `translate` builds is a union of general categories (and
    White_Space, which has no astral members), so a character and its category's stand-in
    belong to exactly the same classes; the split is computed on the stand-in text and cut from
    the original, position for position (both are one code point).
    """
    out: dict[str, str] = {}
    for key, spans in _category_spans().items():
        if len(key) == 2:
            bmp = [c for a, b in reversed(spans) if a <= 0xFFFF for c in (min(b, 0xFFFF), a)]
            found = next((chr(c) for c in bmp if chr(c) not in WHITE_SPACE), None)
            if found is not None:
                out[key] = found
    return out


def _stand_in(match: re.Match[str]) -> str:
    import unicodedata

    return _astral_stand_ins()[unicodedata.category(match.group())]


ASTRAL_RE = re.compile("[\U00010000-\U0010ffff]")


def _class_char(cp: int) -> str:
    return f"\\U{cp:08x}"


def _white_space_class() -> str:
    return "".join(_class_char(ord(c)) for c in WHITE_SPACE)


def translate(pattern: str, bmp: bool = False) -> str:
    """A peer's pattern (`\\p{L}`, `\\p{N}`, `\\s`, ...) as an equivalent Python `re` pattern.

    Supported escapes: `\\p{X}` / `\\P{X}` for a general category or category group (L, Lu, N, Nd,
    P, S, M, Z, C, ...), `\\s` and `\\S` (White_Space), anywhere; everything else is passed
    through as Python `re` reads it, after checking that it means the same there.

    >>> import re
    >>> re.fullmatch(translate(r"\\p{L}+"), "Zoë"), re.fullmatch(translate(r"\\p{L}"), "²")
    (<re.Match object; span=(0, 3), match='Zoë'>, None)
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    in_class = False
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            e = pattern[i + 1]
            if e in "pP":
                close = pattern.find("}", i + 2)
                if pattern[i + 2 : i + 3] != "{" or close < 0:
                    raise PatternError(f"pattern {pattern!r}: malformed \\{e} at {i}")
                name = pattern[i + 3 : close]
                body = _category_class(name, bmp)
                if body is None:
                    raise PatternError(
                        f"pattern {pattern!r}: \\{e}{{{name}}} is not a general category; only "
                        "general categories (L, Lu, N, Nd, P, S, M, Z, C, ...) are supported"
                    )
                if e == "P":
                    if in_class:
                        raise PatternError(f"pattern {pattern!r}: \\P{{..}} inside [...] is not supported")
                    out.append(f"[^{body}]")
                else:
                    out.append(body if in_class else f"[{body}]")
                i = close + 1
                continue
            if e in "sS":
                if in_class:
                    if e == "S":
                        raise PatternError(f"pattern {pattern!r}: \\S inside [...] is not supported")
                    out.append(_white_space_class())
                else:
                    out.append(f"[{'^' if e == 'S' else ''}{_white_space_class()}]")
                i += 2
                continue
            if e in "wWdDbBhHRXK" or e.isdigit() and e != "0":
                # \w, \d, \b ... mean other sets in Python than in Oniguruma/Rust; back-references
                # and the rest have no agreed meaning across the engines.
                raise PatternError(f"pattern {pattern!r}: the escape \\{e} is not supported")
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if c == "[" and not in_class:
            in_class = True
            out.append(c)
            if pattern[i + 1 : i + 2] == "^":
                out.append("^")
                i += 1
            if pattern[i + 1 : i + 2] == "]":  # a literal ] first in a class
                out.append("\\]")
                i += 1
            i += 1
            continue
        if c == "[" and in_class:
            raise PatternError(f"pattern {pattern!r}: nested character classes are not supported")
        if c == "]" and in_class:
            in_class = False
        out.append(c)
        i += 1
    return "".join(out)


class Splitter:
    """The pieces of text a pretrained model's pre-tokenizer makes: `Splitter(steps)(text)`.

    Each step is a pattern in the peers' notation; matches and the gaps between them are both
    kept, and every step cuts each piece of the step before independently.

    >>> Splitter([DIGIT_SPLIT, GPT2_SPLIT])("q.  5 12ab")
    ['q', '.', '  ', '5', ' ', '1', '2', 'ab']
    """

    def __init__(self, steps: Iterable[str]) -> None:
        self.steps = tuple(steps)
        folded = _FOLDED.get(self.steps)
        # Patterns naming characters beyond the BMP themselves cannot use the stand-ins.
        self._bmp = not any(
            "\\U" in s or ASTRAL_RE.search(s) or any(c in s for c in _astral_stand_ins().values())
            for s in self.steps
        )
        try:
            if folded is not None or (len(self.steps) == 1 and self.steps[0] in _COVERING):
                compiled = re.compile(translate(folded or self.steps[0], self._bmp))
                self._findall = compiled.findall
                self._finditer = compiled.finditer
                self._compiled: list[re.Pattern[str]] = []
            else:
                self._findall = None
                self._compiled = [re.compile(translate(s, self._bmp)) for s in self.steps]
        except re.error as exc:
            raise PatternError(f"pre-tokenizer pattern cannot be compiled: {exc}") from None

    def __call__(self, text: str) -> list[str]:
        if self._bmp and ASTRAL_RE.search(text) is not None:
            mapped = ASTRAL_RE.sub(_stand_in, text)
            if self._findall is not None:
                return [text[m.start() : m.end()] for m in self._finditer(mapped)]
            return [text[a:b] for a, b in self._spans(mapped)]
        if self._findall is not None:
            return self._findall(text)
        return [text[a:b] for a, b in self._spans(text)]

    def _spans(self, text: str) -> list[tuple[int, int]]:
        pieces = [(0, len(text))] if text else []
        for compiled in self._compiled:
            out: list[tuple[int, int]] = []
            for lo, hi in pieces:
                at = lo
                for m in compiled.finditer(text, lo, hi):
                    start, end = m.span()
                    if start == end:
                        continue
                    if start > at:
                        out.append((at, start))
                    out.append((start, end))
                    at = end
                if at < hi:
                    out.append((at, hi))
            pieces = out
        return pieces

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Splitter) and other.steps == self.steps

    def __hash__(self) -> int:
        return hash(self.steps)

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
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache

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

    Counting once and training on the unique chunks is what makes training scale: a 5 MB corpus
    has about a million chunks but only ~30 thousand distinct ones.

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

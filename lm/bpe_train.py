"""Learning byte-pair merges from chunk counts, incrementally.

The textbook loop (count every pair in the corpus, merge the best, repeat) costs a full pass per
merge. Here the corpus is its distinct chunks with their counts, and after each merge only the
chunks that contain the merged pair are touched:

- `stats` holds the weighted count of every adjacent pair;
- `where` maps a pair to the chunks it was ever seen in (stale entries are skipped: a chunk that
  no longer holds the pair is passed over by one substring search);
- a heap of `(-count, pair)` finds the best pair; entries go stale when counts drop and are
  re-pushed with the true count when popped (lazy invalidation), so each merge costs
  O(chunks touched), not O(vocabulary).

A chunk is kept as a `str` whose code points are token ids (`chr(id)`), so a pair is a 2-char
string, finding its occurrences is `str.find` and merging is `str.replace`, all running in C;
Python-level work is only the few neighbouring pair counts each occurrence changes. `str.replace` substitutes left to right without overlap, which is the standard
BPE rule: merging ("a", "a") in "aaa" gives [aa, a].

Ties between pairs with equal counts go to the smallest pair of ids, compared as (left, right),
which makes training deterministic whatever the iteration order of the input.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from operator import add

N_BYTES = 256

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class LearnedMerges:
    """The result of training: `merges[i]` is the pair of ids that became token `256 + i`;
    `segmented` maps each training chunk (as bytes) to its final token string (`chr(id)` each),
    which is exactly what encoding that chunk gives and can seed the encoder's cache."""

    merges: list[tuple[int, int]]
    segmented: dict[bytes, str]


def learn_merges(
    chunk_counts: Mapping[bytes, int],
    num_merges: int,
    progress: ProgressFn | None = None,
    progress_every: int = 64,
) -> LearnedMerges:
    """Learn up to `num_merges` merges from `{chunk bytes: count}`; fewer if pairs run out.

    The worked example from Wikipedia's article on byte-pair encoding: "aaabdaaabac" becomes
    "ZabdZabac" (Z = aa), then "ZYdZYac" (Y = ab; tied with Za at 2, and (a, b) < (Z, a)), then
    "XdXac" (X = ZY).

    >>> r = learn_merges({b"aaabdaaabac": 1}, 3)
    >>> r.merges
    [(97, 97), (97, 98), (256, 257)]
    >>> [ord(c) for c in r.segmented[b"aaabdaaabac"]]
    [258, 100, 258, 97, 99]
    """
    # latin-1 maps byte b to code point b, so a chunk's bytes become its initial token string.
    keys: list[bytes] = []
    words: list[str] = []
    counts: list[int] = []
    segmented: dict[bytes, str] = {}
    for chunk, count in chunk_counts.items():
        symbols = chunk.decode("latin-1")
        if len(symbols) > 1 and count > 0:
            keys.append(chunk)
            words.append(symbols)
            counts.append(count)
        else:
            segmented[chunk] = symbols  # nothing to merge in a single byte

    stats: defaultdict[str, int] = defaultdict(int)
    where: defaultdict[str, set[int]] = defaultdict(set)
    for i, (w, n) in enumerate(zip(words, counts)):
        for pair in map(add, w, w[1:]):
            stats[pair] += n
            where[pair].add(i)
    heap = [(-n, pair) for pair, n in stats.items()]
    heapq.heapify(heap)

    merges: list[tuple[int, int]] = []
    heappop, heappush = heapq.heappop, heapq.heappush
    while len(merges) < num_merges and heap:
        neg, pair = heappop(heap)
        current = stats.get(pair, 0)
        if current != -neg:  # stale: the count dropped since this entry was pushed
            if current > 0:
                heappush(heap, (-current, pair))
            continue
        new = chr(N_BYTES + len(merges))
        merges.append((ord(pair[0]), ord(pair[1])))
        _apply_merge(pair, new, words, counts, stats, where, heap)
        if progress is not None and len(merges) % progress_every == 0:
            progress(len(merges), num_merges)
    if progress is not None:
        progress(len(merges), num_merges)

    segmented.update(zip(keys, words))
    return LearnedMerges(merges, segmented)


def _apply_merge(
    pair: str,
    new: str,
    words: list[str],
    counts: list[int],
    stats: defaultdict[str, int],
    where: defaultdict[str, set[int]],
    heap: list[tuple[int, str]],
) -> None:
    """Replace `pair` by `new` in every chunk that holds it, updating pair counts in place.

    Only the neighbours of each occurrence change: (x, a) becomes (x, new) and (b, y) becomes
    (new, y). Occurrences are visited left to right, as `str.replace` merges them, and when two
    are adjacent the left neighbour of the second is the `new` made from the first, so "abab"
    trades (b, a) for (new, new). The cost is O(occurrences) dictionary updates plus C-speed
    scans, so even one enormous chunk (a long run of letters) trains quickly.
    """
    a, b = pair
    touched: set[str] = set()
    for i in where.pop(pair, ()):
        w = words[i]
        k = w.find(pair)
        if k < 0:
            continue  # stale index: an earlier merge consumed this occurrence
        n = counts[i]
        last = len(w) - 2
        previous_end = -1
        while k >= 0:
            if k:
                x = new if k == previous_end else w[k - 1]
                stats[x + a] -= n
                q = x + new
                stats[q] += n
                where[q].add(i)
                touched.add(q)
            if k < last:
                y = w[k + 2]
                stats[b + y] -= n
                q = new + y
                stats[q] += n
                where[q].add(i)
                touched.add(q)
            previous_end = k + 2
            k = w.find(pair, previous_end)
        words[i] = w.replace(pair, new)
    stats.pop(pair, None)
    for q in touched:
        count = stats[q]
        if count > 0:  # adjacent occurrences can create a pair and cancel it again
            heapq.heappush(heap, (-count, q))

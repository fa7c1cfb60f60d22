"""`BPETokenizer`: byte-level byte-pair encoding, trained from scratch, saved as versioned JSON.

Ids 0-255 are the bytes themselves, so any text (any Unicode, any bytes after UTF-8) encodes and
`decode(encode(s)) == s`. Ids `256 .. 256 + len(merges) - 1` are the learned merges in rank order
(merge i joins a pair of lower ids into id `256 + i`). The special tokens come last, at fixed ids
`256 + len(merges) + j` in the order given to `train`; `"<|endoftext|>"` is there by default.

Text is first cut into chunks (`lm.pretokenize`: words with their leading space, digit runs,
punctuation runs, whitespace); merges never cross a chunk boundary. Encoding a chunk applies the
merges by rank, and the result is cached per chunk, so the common case — a chunk seen before —
costs one dictionary lookup. Internally a token sequence is a `str` of `chr(id)` code points;
that lets merging use `str.replace` and lets encoding join cached pieces with one `"".join`.
When a text (or an `encode_batch`) brings many chunks the cache lacks, they are merged together
in numpy arrays (`_bpe_batch`) rather than by one Python loop each.

Special tokens: by default (`allowed_special="none"`) the text "<|endoftext|>" inside ordinary
input is encoded as plain text, so user text can never forge a document boundary.
`allowed_special="all"` or a set of token strings turns those into their ids;
`allowed_special="none_raise"` raises `TokenizerError` if any special token text appears.

Decoding: `decode_bytes(ids)` gives the raw bytes (a streaming decoder must use it, since one
character can span several tokens); `decode(ids)` decodes them as UTF-8 with replacement, so a
sequence cut inside a multi-byte character (as a model can sample) shows U+FFFD for the
incomplete or invalid bytes instead of raising.

The file (`tokenizer.json`, format "quantatissu-bpe", version 1) holds the split pattern, the
merges as `[left, right, "text"]` (the text is for people reading the file and is ignored on
load) and the special tokens with their ids.

Pretrained vocabularies (`lm.tokenizer_import`: GGUF metadata, HF `tokenizer.json`) have their own
ids: `vocab[id]` is the bytes of each token, merges are pairs of those ids in rank order, and
the split is the model's own (`lm.pretokenize.Splitter`). Added tokens are matched before the
split: non-special ones always (as both reference implementations do), special ones as
`allowed_special` says (a rendered chat prompt needs "all"); `special_match` says how
overlapping candidates are resolved ("leftmost_longest" as HF `tokenizers`, "longest_first" as
llama.cpp, which splits on the longest special token first wherever it occurs). Such a tokenizer
also carries `bos_id`, `eos_id`, `end_of_turn_id`, `pad_id`, `add_bos` and `chat_template`, and
is saved as version 2 of the file format (a tokenizer trained here is still written as version 1).
"""

from __future__ import annotations

import heapq
import json
import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache, partial
from itertools import compress, repeat
from operator import add, is_
from pathlib import Path

import numpy as np

from lm.atomic import write_atomic
from lm.bpe_train import N_BYTES, learn_merges
from lm.errors import LMError
from lm.pretokenize import PATTERN, PatternError, Splitter, count_chunks, special_pattern

FORMAT = "quantatissu-bpe"
VERSION = 1  # a tokenizer trained here: bytes, merges, special tokens
VERSION_VOCAB = 2  # a pretrained vocabulary with its own ids, split, added tokens and chat template
SPECIAL_MATCH_MODES = ("leftmost_longest", "longest_first")
NORMALIZERS = ("NFC", "NFD", "NFKC", "NFKD")
# The version-2 fields and their values in a tokenizer trained here.
_EXTRA_DEFAULTS: dict = {
    "added_tokens": {},
    "token_options": {},
    "pretokenizer": None,
    "special_match": "leftmost_longest",
    "missing_bytes": "skip",
    "ignore_merges": False,
    "normalizer": None,
    "bos_id": None,
    "eos_id": None,
    "end_of_turn_id": None,
    "pad_id": None,
    "add_bos": False,
    "chat_template": None,
}
EOT = "<|endoftext|>"
FILENAME = "tokenizer.json"

# Encoding caches chunk -> tokens; past this many entries the cache starts over, which bounds
# memory on endless novel input while keeping the hit rate on natural text (Zipf) high.
CACHE_LIMIT = 1 << 18
# Token sequences are strings of chr(id) internally, so ids must be valid code points.
MAX_VOCAB = 0x110000
# Chunks longer than this many bytes are merged with a heap (`_bpe_long`) instead of rescans.
LONG_CHUNK = 256
# When at least BATCH_MISSES distinct chunks of a text (or of a group of BATCH_GROUP characters
# of `encode_batch`) are not in the cache, they are merged together with numpy (`_bpe_batch`),
# which beats one Python loop per chunk once numpy's fixed cost per round is shared by enough
# chunks (the crossover measured is in docs/tokenizers.md).
BATCH_MISSES = 64
BATCH_GROUP = 1 << 20
# Stands for a byte that has no token while merging (it takes part in no merge) and is dropped.
_GAP = MAX_VOCAB - 1
_GAP_CHAR = chr(_GAP)


class TokenizerError(LMError):
    """A tokenizer misuse or a bad tokenizer file; the message says what to do."""


class _ChunkCache(dict):
    """chunk -> token string; a miss runs BPE on the chunk (`dict.__missing__` keeps hits in C)."""

    __slots__ = ("_bpe",)

    def __init__(self, bpe: Callable[[str], str]) -> None:
        super().__init__()
        self._bpe = bpe

    def __missing__(self, chunk: str) -> str:
        if len(self) >= CACHE_LIMIT:
            self.clear()
        tokens = self[chunk] = self._bpe(chunk)
        return tokens


def _ids(tokens: str) -> list[int]:
    """Token string -> list of ids (code points); numpy is faster past a few dozen tokens."""
    if len(tokens) < 64:
        return list(map(ord, tokens))
    return np.frombuffer(tokens.encode("utf-32-le", "surrogatepass"), dtype="<u4").tolist()


class BPETokenizer:
    """Byte-level BPE. `BPETokenizer().train(texts, 4096)`, or `BPETokenizer.load(path)`.

    >>> tok = BPETokenizer().train(["aaabdaaabac"], vocab_size=260)
    >>> tok.encode("aaabdaaabac")
    [258, 100, 258, 97, 99]
    >>> tok.decode([258, 100]), tok.special_tokens
    ('aaabd', {'<|endoftext|>': 259})
    """

    def __init__(self) -> None:
        self.merges: list[tuple[int, int]] = []
        self.special_tokens: dict[str, int] = {}
        self.pattern = PATTERN
        # A pretrained vocabulary (None: the layout above, bytes then merges then specials).
        self.vocab: list[bytes] | None = None
        self.added_tokens: dict[str, int] = {}  # non-special added tokens, always matched
        # token text -> (lstrip, rstrip, normalized), HF added-token options (absent: all False)
        self.token_options: dict[str, tuple[bool, bool, bool]] = {}
        self.pretokenizer: tuple[str, ...] | None = None  # steps for `Splitter`; None: `pattern`
        self.special_match = "leftmost_longest"
        self.ignore_merges = False  # a chunk that is itself a token is that token (Llama 3)
        self.missing_bytes = "skip"  # a byte without a token: "skip" (HF) or "block" (llama.cpp)
        self.normalizer: str | None = None
        self.bos_id: int | None = None
        self.eos_id: int | None = None
        self.end_of_turn_id: int | None = None
        self.pad_id: int | None = None
        self.add_bos = False
        self.chat_template: str | None = None
        self._build()

    # ----------------------------------------------------------------------------- training

    def train(
        self,
        texts: Iterable[str],
        vocab_size: int,
        special_tokens: Iterable[str] = (EOT,),
        progress: Callable[[int, int], None] | None = None,
    ) -> BPETokenizer:
        """Learn `vocab_size - 256 - len(special_tokens)` merges from `texts`; returns self.

        `texts` is any iterable of str (one str counts as one text). Special-token text inside
        the training texts is cut out, never learned as ordinary text. If the texts run out of
        pairs first, fewer merges are learned and `vocab_size` ends up smaller than asked.
        `progress(done, total)` is called every 64 merges and at the end.
        """
        specials = _check_specials(special_tokens)
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
            raise TokenizerError(f"vocab_size must be an integer, got {vocab_size!r}")
        smallest = N_BYTES + len(specials)
        if vocab_size > MAX_VOCAB:
            raise TokenizerError(f"vocab_size {vocab_size} is too large; the limit is {MAX_VOCAB}")
        if vocab_size < smallest:
            raise TokenizerError(
                f"vocab_size {vocab_size} is too small: 256 byte tokens and {len(specials)} "
                f"special token(s) need at least {smallest}"
            )
        if isinstance(texts, str):
            texts = [texts]
        chunk_re = re.compile(PATTERN)
        counts = count_chunks(_checked_texts(texts), chunk_re, special_pattern(specials))
        by_bytes: dict[bytes, int] = {}
        for chunk, n in counts.items():
            by_bytes[_utf8(chunk, chunk)] = n
        learned = learn_merges(by_bytes, vocab_size - smallest, progress)

        fresh = BPETokenizer()  # training replaces whatever this tokenizer was, pretrained fields too
        self.__dict__.update({k: v for k, v in fresh.__dict__.items() if not k.startswith("_")})
        self.pattern = PATTERN
        self.merges = learned.merges
        self.special_tokens = {t: N_BYTES + len(self.merges) + j for j, t in enumerate(specials)}
        self._build()
        # Training already segmented every chunk it saw, exactly as encoding would.
        cache = self._cache
        for chunk in counts:
            if len(cache) >= CACHE_LIMIT:
                break
            cache[chunk] = learned.segmented[chunk.encode("utf-8")]
        return self

    # ----------------------------------------------------------------------------- properties

    @property
    def vocab_size(self) -> int:
        """Number of ids (the model's embedding rows): 256 bytes + merges + special tokens, or
        the length of a pretrained vocabulary."""
        if self.vocab is not None:
            return len(self.vocab)
        return N_BYTES + len(self.merges) + len(self.special_tokens)

    @property
    def eot_id(self) -> int:
        """Id of "<|endoftext|>", the document separator (a pretrained vocabulary without it:
        its end-of-sequence id)."""
        try:
            return self.special_tokens[EOT]
        except KeyError:
            if self.eos_id is not None:
                return self.eos_id
            raise TokenizerError(
                f"this tokenizer has no {EOT} token; train it with special_tokens including it"
            ) from None

    @property
    def stop_ids(self) -> frozenset[int]:
        """Ids that end a generated answer: end of sequence and end of turn, where known."""
        return frozenset(i for i in (self.eos_id, self.end_of_turn_id) if i is not None)

    def token_id(self, text: str) -> int | None:
        """The id of a special or added token given by its text, or None."""
        found = self.special_tokens.get(text)
        return found if found is not None else self.added_tokens.get(text)

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes one id stands for (a special token's are its UTF-8 text)."""
        return self.decode_bytes([token_id])

    # ----------------------------------------------------------------------------- encoding

    def encode(
        self, text: str, allowed_special: str | Iterable[str] = "none", add_bos: bool = False
    ) -> list[int]:
        """Token ids for `text`.

        `allowed_special`: "none" (default: special-token text is plain text), "all", a set of
        special token strings to recognise, or "none_raise" (raise if any appears).
        `add_bos`: put the beginning-of-sequence id first (a pretrained vocabulary's `bos_id`).
        """
        if not isinstance(text, str):
            raise TokenizerError(f"encode expects str, got {type(text).__name__}")
        allowed = self._allowed_set(allowed_special, text)
        try:
            ids = _ids(self._resolve([self._plan(text, allowed)])[0])
        except UnicodeEncodeError:
            raise _surrogate_error(text) from None
        return self._bos(ids, add_bos)

    def _bos(self, ids: list[int], add_bos: bool) -> list[int]:
        if add_bos:
            if self.bos_id is None:
                raise TokenizerError("add_bos=True but this tokenizer has no beginning-of-sequence token")
            ids.insert(0, self.bos_id)
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """`encode(text)` with every special-token text treated as plain text."""
        return self.encode(text, "none")

    def encode_batch(
        self, texts: Iterable[str], allowed_special: str | Iterable[str] = "none"
    ) -> list[list[int]]:
        """`[encode(t) for t in texts]`; the chunk cache is shared across the batch, and the
        chunks not in it are merged together for texts of up to about a million characters."""
        out: list[list[int]] = []
        group: list[str] = []
        size = 0
        for text in texts:
            if not isinstance(text, str):
                raise TokenizerError(f"encode expects str, got {type(text).__name__}")
            group.append(text)
            size += len(text)
            if size >= BATCH_GROUP:
                out.extend(self._encode_group(group, allowed_special))
                group, size = [], 0
        out.extend(self._encode_group(group, allowed_special))
        return out

    def _encode_group(self, texts: list[str], allowed_special: str | Iterable[str]) -> list[list[int]]:
        try:
            plans = [self._plan(t, self._allowed_set(allowed_special, t)) for t in texts]
            return [_ids(tokens) for tokens in self._resolve(plans)]
        except UnicodeEncodeError:  # find the text at fault
            return [self.encode(t, allowed_special) for t in texts]

    def _plan(self, text: str, allowed: frozenset[str]) -> list[list[str] | int]:
        """What `text` is made of, in order: lists of chunks (to be merged, through the cache)
        and the ids of the added or special tokens cut out before the split."""
        split = self._split
        if self._partitions is not None:
            first, second = self._partitions(allowed)
            normalize = self._normalize
            plan: list[list[str] | int] = []
            for segment in first(text):
                if type(segment) is int:
                    plan.append(segment)
                    continue
                if normalize is not None:
                    segment = normalize(segment)
                for part in second(segment) if second is not None else (segment,):
                    plan.append(part if type(part) is int else split(part))
            return plan
        special_re = special_pattern(allowed) if allowed else None
        if special_re is None:
            return [split(text)]
        plan = []
        for j, part in enumerate(special_re.split(text)):
            if j % 2:  # split() with a group puts each matched special token at odd positions
                plan.append(self.special_tokens[part])
            elif part:
                plan.append(split(part))
        return plan

    def _resolve(self, plans: list[list[list[str] | int]]) -> list[str]:
        """The token string (`chr(id)` per token) of each plan.

        Chunks come from the cache. When at least BATCH_MISSES distinct chunks of all the plans
        are missing, they are merged together (`_fill`); fewer are merged one at a time by the
        cache's own miss handler.
        """
        lookup = self._cache.get  # dict.get does not call __missing__
        found: list[list[list[str | None] | int]] = []
        misses = 0
        for plan in plans:
            row: list[list[str | None] | int] = []
            for part in plan:
                if type(part) is int:
                    row.append(part)
                else:
                    tokens = list(map(lookup, part))
                    misses += tokens.count(None)
                    row.append(tokens)
            found.append(row)
        if misses >= BATCH_MISSES and not self._heap_only:
            missing: set[str] = set()
            for plan, row in zip(plans, found):
                for part, tokens in zip(plan, row):
                    if type(part) is not int and None in tokens:
                        missing.update(compress(part, map(is_, tokens, repeat(None))))
            if len(missing) >= BATCH_MISSES:
                if len(self._cache) + len(missing) > CACHE_LIMIT:
                    self._cache.clear()  # what was found is kept in `found`
                self._fill(missing)
        get = self._cache_get
        out = []
        for plan, row in zip(plans, found):
            pieces = []
            for part, tokens in zip(plan, row):
                if type(part) is int:
                    pieces.append(chr(part))
                elif None in tokens:
                    pieces.append("".join([t if t is not None else get(c) for t, c in zip(tokens, part)]))
                else:
                    pieces.append("".join(tokens))
            out.append(pieces[0] if len(pieces) == 1 else "".join(pieces))
        return out

    def _allowed_set(self, allowed: str | Iterable[str], text: str) -> frozenset[str]:
        """The special tokens to recognise in `text`, checking `allowed_special`."""
        if isinstance(allowed, str):
            if allowed == "none":
                return frozenset()
            if allowed == "all":
                return frozenset(self.special_tokens)
            if allowed == "none_raise":
                found = special_pattern(self.special_tokens)
                match = found.search(text) if found is not None else None
                if match is not None:
                    raise TokenizerError(
                        f"the text contains the special token {match.group()!r} at character "
                        f"{match.start()}; pass allowed_special='all' to encode it as that "
                        "token, or allowed_special='none' to encode it as plain text"
                    )
                return frozenset()
            raise TokenizerError(
                f"allowed_special must be 'none', 'all', 'none_raise' or a set of special "
                f"tokens, got {allowed!r}"
            )
        try:
            names = set(allowed)
        except TypeError:  # not iterable, or unhashable members
            names = None
        if names is None or not all(isinstance(t, str) for t in names):
            raise TokenizerError(
                "allowed_special must be 'none', 'all', 'none_raise' or a set of special-token "
                f"strings, got {allowed!r}"
            )
        allowed = names
        unknown = sorted(str(t) for t in allowed - self.special_tokens.keys())
        if unknown:
            raise TokenizerError(
                f"allowed_special names token(s) this tokenizer does not have: {unknown}; "
                f"its special tokens are {sorted(self.special_tokens)}"
            )
        return frozenset(allowed)

    def _fill(self, chunks: Iterable[str]) -> None:
        """Merge many chunks at once and cache them."""
        cache = self._cache
        batch: list[str] = []
        whole = self._whole
        for chunk in chunks:
            # A chunk that is a token (ignore_merges), or long enough for the heap, goes alone;
            # 4 bytes per character at most, so most chunks skip the encode.
            if not chunk:
                cache[chunk] = ""
            elif whole is not None and chunk.encode("utf-8") in whole:
                cache[chunk] = self._bpe(chunk)
            elif len(chunk) * 4 > LONG_CHUNK and len(chunk.encode("utf-8")) > LONG_CHUNK:
                cache[chunk] = self._bpe(chunk)
            else:
                batch.append(chunk)
        if not batch:
            return
        if self._tables is None:
            self._tables = _merge_tables(self._merged_of, self._result_of)
            table = self._byte_table
            # byte -> its token id; None where a byte is deleted (HF's missing bytes)
            ids = [b if table is None else table[b] for b in range(N_BYTES)]
            self._byte_ids = None if None in ids else np.array(ids, dtype=np.int64)
        byte_ids = self._byte_ids
        if byte_ids is None:  # deletions change lengths: translated one chunk at a time
            starts = [c.encode("utf-8").decode("latin-1").translate(self._byte_table) for c in batch]
            merged = _bpe_batch(starts, self._tables)
        else:
            raw = np.frombuffer("".join(batch).encode("utf-8"), np.uint8)
            points = np.frombuffer("".join(batch).encode("utf-32-le", "surrogatepass"), "<u4")
            utf8_len = 1 + (points >= 0x80) + (points >= 0x800) + (points >= 0x10000)
            char_counts = np.fromiter(map(len, batch), np.int64, len(batch))
            offsets = np.concatenate(([0], np.cumsum(char_counts)[:-1]))
            lengths = np.add.reduceat(utf8_len.astype(np.int64), offsets) if points.size else char_counts
            lengths[char_counts == 0] = 0
            merged = _bpe_batch_ids(byte_ids[raw], lengths, self._tables)
        for chunk, tokens in zip(batch, merged):
            cache[chunk] = tokens.replace(_GAP_CHAR, "") if _GAP_CHAR in tokens else tokens

    def _bpe(self, chunk: str) -> str:
        """The token string of one chunk (`chr(id)` per token)."""
        raw = chunk.encode("utf-8")
        if self._whole is not None:
            whole = self._whole.get(raw)
            if whole is not None:
                return chr(whole)
        tokens = raw.decode("latin-1")
        if self._byte_table is not None:
            tokens = tokens.translate(self._byte_table)
        if len(tokens) > LONG_CHUNK or self._heap_only:
            tokens = _bpe_long(tokens, self._merged_of, self._result_of)
        else:
            tokens = _bpe_short(tokens, self._merged_of, self._pair_of, self._result_of)
        return tokens.replace(_GAP_CHAR, "") if _GAP_CHAR in tokens else tokens

    # ----------------------------------------------------------------------------- decoding

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes `ids` stand for; concatenating chunks of a sequence gives the whole."""
        ids = ids if isinstance(ids, (list, tuple)) else list(ids)
        try:
            return b"".join(map(self._bytes_of.__getitem__, ids))
        except (KeyError, TypeError):
            for position, token in enumerate(ids):
                try:
                    self._bytes_of[token]
                except (KeyError, TypeError):  # TypeError: unhashable, e.g. a nested list
                    break
            raise TokenizerError(
                f"token id {token!r} at position {position} is not in the vocabulary "
                f"(0..{self.vocab_size - 1}); was it produced by a different tokenizer?"
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        """Text for `ids`; bytes that are not valid UTF-8 (a sequence cut mid-character)
        become U+FFFD replacement characters."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # ----------------------------------------------------------------------------- files

    def to_dict(self) -> dict:
        """The file's content: version 1 for a tokenizer trained here, version 2 (a superset) for
        a pretrained vocabulary or once any of the pretrained-model fields is set."""
        if self.vocab is not None:
            data = {
                "format": FORMAT,
                "version": VERSION_VOCAB,
                # Token bytes in the byte-level alphabet: printable, one character per byte.
                "vocab": [byte_level_encode(raw) for raw in self.vocab],
                "merges": [[a, b] for a, b in self.merges],
                "special_tokens": dict(self.special_tokens),
            }
        else:
            rendered = self._bytes_of
            data = {
                "format": FORMAT,
                "version": VERSION,
                "pattern": self.pattern,
                "merges": [
                    [a, b, rendered[N_BYTES + i].decode("utf-8", "backslashreplace")]
                    for i, (a, b) in enumerate(self.merges)
                ],
                "special_tokens": dict(self.special_tokens),
            }
        extra = self._extra_fields()
        if self.vocab is not None or any(v != _EXTRA_DEFAULTS[k] for k, v in extra.items()):
            data["version"] = VERSION_VOCAB
            data.update(extra)
        return data

    def _extra_fields(self) -> dict:
        return {
            "added_tokens": dict(self.added_tokens),
            "token_options": {t: list(o) for t, o in self.token_options.items()},
            "pretokenizer": None if self.pretokenizer is None else list(self.pretokenizer),
            "special_match": self.special_match,
            "missing_bytes": self.missing_bytes,
            "ignore_merges": self.ignore_merges,
            "normalizer": self.normalizer,
            "bos_id": self.bos_id,
            "eos_id": self.eos_id,
            "end_of_turn_id": self.end_of_turn_id,
            "pad_id": self.pad_id,
            "add_bos": self.add_bos,
            "chat_template": self.chat_template,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the tokenizer as JSON, atomically (a reader never sees half a file).

        A directory path means `<dir>/tokenizer.json`. Returns the file written."""
        target = Path(path)
        if target.is_dir():
            target = target / FILENAME
        text = json.dumps(self.to_dict(), ensure_ascii=False, indent=1) + "\n"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target, text)
        except OSError as exc:
            raise TokenizerError(f"cannot write tokenizer to {target}: {exc.strerror or exc}") from None
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BPETokenizer:
        """Read a file written by `save` (or `<dir>/tokenizer.json` for a directory)."""
        source = Path(path)
        if source.is_dir():
            source = source / FILENAME
        try:
            text = source.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise TokenizerError(
                f"tokenizer file {source} does not exist; train one with "
                "`tiss tokenizer train --corpus PATH --vocab-size N --out FILE`"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise TokenizerError(f"cannot read tokenizer file {source}: {exc}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TokenizerError(
                f"{source}:{exc.lineno}:{exc.colno}: tokenizer file is not valid JSON "
                f"({exc.msg}); it is corrupt, re-train or restore it"
            ) from None
        return cls.from_dict(data, source=str(source))

    @classmethod
    def from_gguf(cls, reader: object, source: str | None = None) -> BPETokenizer:
        """The tokenizer in an open `gguf.GGUFReader`'s metadata (`lm.tokenizer_import`)."""
        from lm.tokenizer_import import tokenizer_from_gguf

        return tokenizer_from_gguf(reader, source)

    @classmethod
    def from_hf(cls, directory: str | os.PathLike[str]) -> BPETokenizer:
        """The tokenizer of a Hugging Face model directory (`lm.tokenizer_import`)."""
        from lm.tokenizer_import import tokenizer_from_hf

        return tokenizer_from_hf(Path(directory))

    @classmethod
    def from_dict(cls, data: object, source: str = "<dict>") -> BPETokenizer:
        """Validate and build from `to_dict()` output; every defect is a `TokenizerError`."""

        def bad(why: str) -> TokenizerError:
            hint = "" if "re-train" in why else "; restore it or re-train it with `tiss tokenizer train`"
            return TokenizerError(f"{source}: not a usable tokenizer file: {why}{hint}")

        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise bad(f'expected a JSON object with "format": "{FORMAT}"')
        version = data.get("version")
        if version not in (VERSION, VERSION_VOCAB):
            raise bad(
                f"format version {version!r}, this program reads versions {VERSION} and "
                f"{VERSION_VOCAB}; re-train the tokenizer with this version of tiss"
            )
        if version == VERSION_VOCAB and "vocab" in data:
            return cls._from_vocab_dict(data, bad)
        pattern = data.get("pattern")
        if not isinstance(pattern, str):
            raise bad('"pattern" must be a string')
        try:
            re.compile(pattern)
        except re.error as exc:
            raise bad(f'"pattern" is not a valid regular expression ({exc})') from None
        merges_raw = data.get("merges")
        if not isinstance(merges_raw, list) or len(merges_raw) > MAX_VOCAB - N_BYTES:
            raise bad(f'"merges" must be a list of at most {MAX_VOCAB - N_BYTES} pairs')
        merges: list[tuple[int, int]] = []
        for i, entry in enumerate(merges_raw):
            if (
                not isinstance(entry, list)
                or len(entry) < 2
                or not all(type(x) is int and 0 <= x < N_BYTES + i for x in entry[:2])
            ):
                raise bad(
                    f"merge {i} is {entry!r}; expected [left, right, ...] with ids below {N_BYTES + i}"
                )
            merges.append((entry[0], entry[1]))
        if len(set(merges)) != len(merges):
            raise bad("the same pair is merged twice")
        specials = data.get("special_tokens")
        if not isinstance(specials, dict):
            raise bad('"special_tokens" must be an object {token: id}')
        first = N_BYTES + len(merges)
        expected = set(range(first, first + len(specials)))
        if (
            not all(isinstance(t, str) and t for t in specials)
            or not all(type(i) is int for i in specials.values())
            or set(specials.values()) != expected
        ):
            raise bad(f"special token ids must be distinct integers {first}..{first + len(specials) - 1}")
        tok = cls()
        tok.pattern = pattern
        tok.merges = merges
        tok.special_tokens = dict(sorted(specials.items(), key=lambda kv: kv[1]))
        if version == VERSION_VOCAB:
            tok._set_extra_fields(data, bad, vocab_size=tok.vocab_size)
        tok._build()
        return tok

    @classmethod
    def _from_vocab_dict(cls, data: dict, bad: Callable[[str], TokenizerError]) -> BPETokenizer:
        texts = data.get("vocab")
        if not isinstance(texts, list) or not texts or len(texts) >= MAX_VOCAB - 1:
            raise bad('"vocab" must be a non-empty list of token strings')
        vocab = []
        for i, text in enumerate(texts):
            raw = byte_level_decode(text) if isinstance(text, str) else None
            if raw is None:
                raise bad(f"vocab entry {i} is not a byte-level token string")
            vocab.append(raw)
        n = len(vocab)
        merges_raw = data.get("merges")
        if not isinstance(merges_raw, list) or not all(
            isinstance(m, list) and len(m) == 2 and all(type(x) is int and 0 <= x < n for x in m)
            for m in merges_raw
        ):
            raise bad(f'"merges" must be a list of [left, right] ids below {n}')
        specials = data.get("special_tokens")
        if not isinstance(specials, dict) or not all(
            isinstance(t, str) and t and type(i) is int and 0 <= i < n for t, i in specials.items()
        ):
            raise bad(f'"special_tokens" must be an object {{token: id}} with ids below {n}')
        tok = cls()
        tok.vocab = vocab
        tok.merges = [(a, b) for a, b in merges_raw]
        tok.special_tokens = dict(specials)
        tok._set_extra_fields(data, bad, vocab_size=n)
        try:
            tok._build()
        except TokenizerError as exc:
            raise bad(str(exc)) from None
        return tok

    def _set_extra_fields(self, data: dict, bad: Callable[[str], TokenizerError], vocab_size: int) -> None:
        """Read and check the version-2 fields (absent ones keep their defaults)."""
        def get(key: str, check: Callable[[object], bool], what: str):
            value = data.get(key, _EXTRA_DEFAULTS[key])
            if not check(value):
                raise bad(f'"{key}" must be {what}')
            return value

        def is_id(v: object) -> bool:
            return v is None or (type(v) is int and 0 <= v < vocab_size)

        added = get("added_tokens", lambda v: isinstance(v, dict) and all(
            isinstance(t, str) and t and type(i) is int and 0 <= i < vocab_size for t, i in v.items()),
            "an object {token: id}")
        options = get("token_options", lambda v: isinstance(v, dict) and all(
            isinstance(o, list) and len(o) == 3 and all(isinstance(x, bool) for x in o) for o in v.values()),
            "an object {token: [lstrip, rstrip, normalized]}")
        steps = get("pretokenizer", lambda v: v is None or (
            isinstance(v, list) and all(isinstance(s, str) for s in v)), "null or a list of patterns")
        self.added_tokens = dict(added)
        self.token_options = {t: (o[0], o[1], o[2]) for t, o in options.items()}
        self.pretokenizer = None if steps is None else tuple(steps)
        self.special_match = get("special_match", lambda v: v in SPECIAL_MATCH_MODES,
                                 f"one of {list(SPECIAL_MATCH_MODES)}")
        self.missing_bytes = get("missing_bytes", lambda v: v in ("skip", "block"), '"skip" or "block"')
        self.ignore_merges = get("ignore_merges", lambda v: isinstance(v, bool), "true or false")
        self.normalizer = get("normalizer", lambda v: v is None or v in NORMALIZERS,
                              f"null or one of {list(NORMALIZERS)}")
        for key in ("bos_id", "eos_id", "end_of_turn_id", "pad_id"):
            setattr(self, key, get(key, is_id, f"null or a token id below {vocab_size}"))
        self.add_bos = get("add_bos", lambda v: isinstance(v, bool), "true or false")
        self.chat_template = get("chat_template", lambda v: v is None or isinstance(v, str),
                                 "null or a string")

    # ----------------------------------------------------------------------------- internals

    def _build(self) -> None:
        """Derive the lookup tables from the fields above.

        Merging works on strings of `chr(id)`. `_merged_of` maps a pair (two such characters) to
        a character that orders like the merge's rank, `_result_of` that character to the merged
        token, `_pair_of` back to the pair. For a tokenizer trained here the rank character and
        the merged token coincide (merge i makes id 256 + i).
        """
        merged_of: dict[str, str] = {}
        pair_of: dict[str, str] = {}
        result_of: dict[str, str] = {}
        self._whole: dict[bytes, int] | None = None
        self._byte_table: dict[int, int] | None = None
        self._heap_only = False
        if self.vocab is None:
            bytes_of: dict[int, bytes] = {i: bytes([i]) for i in range(N_BYTES)}
            for i, (a, b) in enumerate(self.merges):
                new = N_BYTES + i
                bytes_of[new] = bytes_of[a] + bytes_of[b]
                pair = chr(a) + chr(b)
                merged_of[pair] = result_of[chr(new)] = chr(new)
                pair_of[chr(new)] = pair
            for token, token_id in self.special_tokens.items():
                bytes_of[token_id] = token.encode("utf-8")
            self._split = re.compile(self.pattern).findall
            self._partitions = None
        else:
            bytes_of = dict(enumerate(self.vocab))
            id_of = self._mergeable_ids()
            if len(self.vocab) >= MAX_VOCAB - 1:
                raise TokenizerError(f"a vocabulary of {len(self.vocab)} tokens is too large")
            # A byte without a token (SmolLM2 has none for 0x04, 0xF1, ...) is dropped, as both
            # references do; HF drops it before merging (its neighbours can merge), llama.cpp
            # after (it keeps them apart).
            gap = None if self.missing_bytes == "skip" else _GAP
            self._byte_table = {b: id_of.get(bytes([b]), gap) for b in range(N_BYTES)}
            produced: dict[int, int] = {}  # token id -> highest rank of a merge that makes it
            for rank, (a, b) in enumerate(self.merges):
                new = id_of.get(bytes_of[a] + bytes_of[b])
                if new is None:
                    raise TokenizerError(
                        f"merge {rank} ({bytes_of[a]!r} + {bytes_of[b]!r}) makes a token that is not "
                        "in the vocabulary; this vocabulary is not supported"
                    )
                key = chr(rank)
                merged_of[chr(a) + chr(b)] = key
                pair_of[key] = chr(a) + chr(b)
                result_of[key] = chr(new)
                produced[new] = rank
            # Merging every occurrence of the best pair at once (`_bpe_short`) equals the
            # reference's one-at-a-time order only if no merge can use a token made by a merge of
            # equal or later rank; a vocabulary that breaks this is always merged one at a time.
            self._heap_only = any(
                produced.get(a, -1) >= rank or produced.get(b, -1) >= rank
                for rank, (a, b) in enumerate(self.merges)
            )
            if self.ignore_merges:
                self._whole = id_of
            try:
                self._split = Splitter(self.pretokenizer or ()).__call__
            except PatternError as exc:
                raise TokenizerError(f"unsupported pre-tokenizer: {exc}") from None
            self._partitions = lru_cache(maxsize=16)(self._make_partitions)
        self._normalize = (
            None if self.normalizer is None else partial(unicodedata.normalize, self.normalizer)
        )
        self._bytes_of = bytes_of
        self._merged_of = merged_of
        self._pair_of = pair_of
        self._result_of = result_of
        self._chunk_re = re.compile(self.pattern)
        self._cache = _ChunkCache(self._bpe)
        self._cache_get = self._cache.__getitem__
        self._tables = None  # numpy merge tables for `_bpe_batch`, made on first use

    def _mergeable_ids(self) -> dict[bytes, int]:
        """bytes -> id of every token BPE can produce (added and special tokens are not merged
        into, unless they also are ordinary tokens)."""
        assert self.vocab is not None
        extra = set(self.special_tokens.values()) | set(self.added_tokens.values())
        id_of: dict[bytes, int] = {}
        for i, raw in enumerate(self.vocab):
            if i not in extra:
                id_of.setdefault(raw, i)
        for i in sorted(extra):
            id_of.setdefault(self.vocab[i], i)
        return id_of

    def _make_partitions(self, allowed: frozenset[str]) -> tuple[Callable, Callable | None]:
        """The two passes that cut added tokens out of text before the split.

        First pass: the tokens matched on the raw text (special tokens, and with HF the added
        tokens marked not `normalized`); second pass, on normalized text: the rest (HF). llama.cpp
        has a single pass over every allowed special token and every user-defined token.
        """
        tokens = {t: i for t, i in self.special_tokens.items() if t in allowed}
        tokens.update(self.added_tokens)
        if self.special_match == "longest_first":
            return _Partition(tokens, self.token_options, longest_first=True), None
        raw = {t: i for t, i in tokens.items() if not self.token_options.get(t, (0, 0, 0))[2]}
        normalized = {t: i for t, i in tokens.items() if t not in raw}
        return (
            _Partition(raw, self.token_options, longest_first=False),
            _Partition(normalized, self.token_options, longest_first=False) if normalized else None,
        )

    def __getstate__(self) -> dict:
        # The lookup tables hold bound methods and caches; the file's content rebuilds them.
        return self.to_dict()

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(BPETokenizer.from_dict(state).__dict__)
        self._partitions = None if self.vocab is None else lru_cache(maxsize=16)(self._make_partitions)
        self._cache = _ChunkCache(self._bpe)
        self._cache_get = self._cache.__getitem__

    def __repr__(self) -> str:
        if self.vocab is not None:  # a pretrained vocabulary may have hundreds of special tokens
            return (
                f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
                f"special_tokens={len(self.special_tokens)}, added_tokens={len(self.added_tokens)}, "
                f"chat_template={self.chat_template is not None})"
            )
        return (
            f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
            f"special_tokens={self.special_tokens})"
        )


def _bpe_short(
    tokens: str, merged_of: dict[str, str], pair_of: dict[str, str], result_of: dict[str, str]
) -> str:
    """Apply merges by rank to `tokens` (one char per id), rescanning the chunk each round.

    `merged_of` gives a pair's rank character, so `min` over the pairs present picks the
    earliest-learned merge; `str.replace` then merges all its occurrences. Fastest for the
    short chunks text is made of, but quadratic in the chunk's length.

    >>> _bpe_short("aaab", {"aa": "Z", "Za": "Y"}, {"Z": "aa", "Y": "Za"}, {"Z": "Z", "Y": "Y"})
    'Yb'
    """
    while len(tokens) > 1:
        # filter(None, ...) drops the pairs without a merge, in C: a rank character is never
        # empty, so never false.
        best = min(filter(None, map(merged_of.get, map(add, tokens, tokens[1:]))), default=None)
        if best is None:
            break
        tokens = tokens.replace(pair_of[best], result_of[best])
    return tokens


def _bpe_long(tokens: str, merged_of: dict[str, str], result_of: dict[str, str]) -> str:
    """BPE in O(n log n) for a long chunk: a heap of (rank, position) over a linked list.

    This is the reference implementations' order (lowest rank first, leftmost among equal
    ranks). For merges where every token a merge uses was made by earlier merges only, it gives
    the same result as replacing every occurrence of the best pair left to right
    (`_bpe_short`): a merge creates only pairs that hold the new, later-ranked token, so the
    remaining occurrences of the best pair are still the best, and leftmost-first is
    `str.replace`'s non-overlapping order.

    >>> _bpe_long("aaab", {"aa": "Z", "Za": "Y"}, {"Z": "Z", "Y": "Y"})  # aa first, then Za
    'Yb'
    """
    symbols: list[str | None] = list(tokens)
    n = len(symbols)
    nxt = list(range(1, n + 1))
    prv = list(range(-1, n - 1))
    heap = [
        (rank, i)
        for i, rank in enumerate(map(merged_of.get, map(add, tokens, tokens[1:])))
        if rank is not None
    ]
    heapq.heapify(heap)  # a rank character orders like the rank
    while heap:
        rank, i = heapq.heappop(heap)
        left = symbols[i]
        j = nxt[i]
        if left is None or j >= n or merged_of.get(left + symbols[j]) != rank:
            continue  # stale: this pair changed since it was pushed
        merged = symbols[i] = result_of[rank]
        symbols[j] = None
        k = nxt[i] = nxt[j]
        if k < n:
            prv[k] = i
            right = merged_of.get(merged + symbols[k])
            if right is not None:
                heapq.heappush(heap, (right, i))
        h = prv[i]
        if h >= 0:
            before = merged_of.get(symbols[h] + merged)
            if before is not None:
                heapq.heappush(heap, (before, h))
    return "".join(s for s in symbols if s is not None)


def _merge_tables(
    merged_of: dict[str, str], result_of: dict[str, str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The merges as sorted int64 keys `left << 21 | right` (ids are below 2**21), with each
    merge's rank and resulting id in the same order."""
    keys = np.fromiter(((ord(pair[0]) << 21) | ord(pair[1]) for pair in merged_of), np.int64, len(merged_of))
    ranks = np.fromiter(map(ord, merged_of.values()), np.int64, len(merged_of))
    results = np.fromiter((ord(result_of[r]) for r in merged_of.values()), np.int64, len(merged_of))
    order = np.argsort(keys)
    return keys[order], ranks[order], results[order]


def _bpe_batch(chunks: list[str], tables: tuple[np.ndarray, np.ndarray, np.ndarray]) -> list[str]:
    """`_bpe_short` on many chunks at once, as whole-array numpy steps.

    All chunks are laid end to end. The rank of every adjacent pair inside a chunk is looked up
    once; each round takes each chunk's lowest rank, merges every occurrence of that pair in the
    chunk (in a run of overlapping occurrences, "a a a", the leftmost and then every other one,
    as `str.replace` does) and looks up again only the pairs next to a merge. Chunks with nothing
    left to merge are retired. Equal to `_bpe_short` chunk by chunk, under the same condition on
    the merges (`_heap_only` false).
    """
    lengths = np.fromiter(map(len, chunks), np.int64, len(chunks))
    ids = np.frombuffer("".join(chunks).encode("utf-32-le", "surrogatepass"), "<u4").astype(np.int64)
    return _bpe_batch_ids(ids, lengths, tables)


def _bpe_batch_ids(
    ids: np.ndarray, lengths: np.ndarray, tables: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> list[str]:
    """`_bpe_batch` on the chunks' ids laid end to end (int64) and their lengths."""
    keys, ranks, results = tables
    no_rank = np.iinfo(np.int64).max
    last = keys.size - 1
    # A chunk can be empty: bytes without a token are dropped before merging (HF's way).
    out: list[str | None] = [None if n else "" for n in lengths.tolist()]
    owner = np.repeat(np.arange(lengths.size), lengths)

    def look_up(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rank (or no_rank) and table index of the pair starting at each position."""
        nxt = np.minimum(positions + 1, ids.size - 1)
        inside = (positions + 1 < ids.size) & (owner[positions] == owner[nxt])
        pair = (ids[positions] << 21) | ids[nxt]
        at = np.minimum(np.searchsorted(keys, pair), last)
        return np.where(inside & (keys[at] == pair), ranks[at], no_rank), at

    rank, at = look_up(np.arange(ids.size))
    while ids.size:
        n = ids.size
        starts = np.flatnonzero(np.concatenate(([True], owner[1:] != owner[:-1])))
        sizes = np.diff(np.append(starts, n))
        best = np.minimum.reduceat(rank, starts)
        finished = best == no_rank
        if finished.any():
            gone = np.repeat(finished, sizes)
            text = ids[gone].astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")
            offset = 0
            for chunk, size in zip(owner[starts[finished]].tolist(), sizes[finished].tolist()):
                out[chunk] = text[offset : offset + size]
                offset += size
            keep = ~gone
            ids, owner, rank, at = ids[keep], owner[keep], rank[keep], at[keep]
            best, sizes = best[~finished], sizes[~finished]
            n = ids.size
            if not n:
                break
        chosen = rank == np.repeat(best, sizes)
        follows = np.concatenate(([False], chosen[:-1]))
        if (chosen & follows).any():  # overlapping occurrences of a pair (x, x)
            position = np.arange(n)
            run_start = np.maximum.accumulate(np.where(chosen & ~follows, position, 0))
            chosen &= (position - run_start) % 2 == 0
        where = np.flatnonzero(chosen)
        ids[where] = results[at[where]]
        keep = np.ones(n, dtype=bool)
        keep[where + 1] = False
        moved = np.cumsum(keep) - 1  # old position -> new position, for kept ones
        ids, owner, rank, at = ids[keep], owner[keep], rank[keep], at[keep]
        merged = moved[where]
        stale = np.concatenate((merged, merged[merged > 0] - 1))  # repeats are harmless
        rank[stale], at[stale] = look_up(stale)
    return out  # type: ignore[return-value]


class _Partition:
    """Cuts added/special tokens out of text: `_Partition(tokens, options, mode)(text)` gives a
    list of `str` (text between tokens, never empty) and `int` (a token's id).

    `longest_first` (llama.cpp): every occurrence of the longest token (in UTF-8 bytes; equal
    lengths by id) is cut out first, then the next token in what is left, and so on.
    Otherwise (HF `tokenizers`): leftmost-longest; a token with `lstrip`/`rstrip` also takes
    the White_Space next to it on that side.
    """

    def __init__(
        self, tokens: dict[str, int], options: dict[str, tuple[bool, bool, bool]], longest_first: bool
    ) -> None:
        ordered = sorted(tokens, key=lambda t: (-len(t.encode("utf-8")), tokens[t]))
        self._tokens = tokens
        self._order = ordered
        self._longest_first = longest_first
        if not ordered:
            self._any = None
            return
        self._any = re.compile("|".join(map(re.escape, ordered)))
        if not longest_first:
            from lm.pretokenize import WHITE_SPACE

            ws = "[" + re.escape(WHITE_SPACE) + "]*"
            parts = []
            self._group_ids = [0]
            for t in ordered:
                lstrip, rstrip, _ = options.get(t, (False, False, False))
                parts.append(f"{ws if lstrip else ''}({re.escape(t)}){ws if rstrip else ''}")
                self._group_ids.append(tokens[t])
            self._regex = re.compile("|".join(parts))

    def __call__(self, text: str) -> list[str | int]:
        if self._any is None or self._any.search(text) is None:
            return [text] if text else []
        if not self._longest_first:
            out: list[str | int] = []
            at = 0
            for m in self._regex.finditer(text):
                if m.start() > at:
                    out.append(text[at : m.start()])
                out.append(self._group_ids[m.lastindex])
                at = m.end()
            if at < len(text):
                out.append(text[at:])
            return out
        fragments: list[str | int] = [text]
        for token in self._order:
            if not any(type(f) is str and token in f for f in fragments):
                continue
            token_id = self._tokens[token]
            cut: list[str | int] = []
            for f in fragments:
                if type(f) is str and token in f:
                    for j, part in enumerate(f.split(token)):
                        if j:
                            cut.append(token_id)
                        if part:
                            cut.append(part)
                else:
                    cut.append(f)
            fragments = cut
        return fragments


@lru_cache(maxsize=1)
def byte_level_alphabet() -> tuple[str, ...]:
    """The printable character that stands for each byte in byte-level BPE vocabularies (GPT-2's
    convention, used by HF `tokenizers` and GGUF files): printable Latin-1 bytes stand for
    themselves, the other 68 bytes for U+0100 onwards, in byte order.

    >>> byte_level_alphabet()[ord(" ")], byte_level_alphabet()[ord("a")], byte_level_alphabet()[0]
    ('Ġ', 'a', 'Ā')
    """
    shifted = 0
    out = []
    for b in range(N_BYTES):
        if 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or 0xAE <= b <= 0xFF:
            out.append(chr(b))
        else:
            out.append(chr(N_BYTES + shifted))
            shifted += 1
    return tuple(out)


@lru_cache(maxsize=1)
def _byte_level_decoding() -> dict[str, int]:
    return {c: b for b, c in enumerate(byte_level_alphabet())}


def byte_level_decode(text: str) -> bytes | None:
    """The bytes a byte-level token string stands for, or None if it is not one."""
    table = _byte_level_decoding()
    try:
        return bytes(table[c] for c in text)
    except KeyError:
        return None


def byte_level_encode(raw: bytes) -> str:
    """`byte_level_decode`'s inverse."""
    alphabet = byte_level_alphabet()
    return "".join(alphabet[b] for b in raw)


def _in_utf8(byte: int) -> bool:
    """Whether a byte can occur in valid UTF-8 (0xC0, 0xC1 and 0xF5..0xFF never do)."""
    return byte < 0xC0 or 0xC2 <= byte <= 0xF4


def _check_specials(special_tokens: Iterable[str]) -> tuple[str, ...]:
    if isinstance(special_tokens, str):
        special_tokens = (special_tokens,)
    specials = tuple(special_tokens)
    for t in specials:
        if not isinstance(t, str) or not t:
            raise TokenizerError(f"special tokens must be non-empty strings, got {t!r}")
        _utf8(t, t)
    if len(set(specials)) != len(specials):
        raise TokenizerError(f"special tokens must be distinct, got {list(specials)}")
    return specials


def _checked_texts(texts: Iterable[str]) -> Iterator[str]:
    try:
        iterator = iter(texts)
    except TypeError:
        raise TokenizerError(
            f"texts must be an iterable of str, got {type(texts).__name__}"
        ) from None
    for i, text in enumerate(iterator):
        if not isinstance(text, str):
            raise TokenizerError(
                f"training text {i} is {type(text).__name__}, not str; decode it first"
            )
        yield text


def _utf8(chunk: str, context: str) -> bytes:
    try:
        return chunk.encode("utf-8")
    except UnicodeEncodeError:
        raise _surrogate_error(context) from None


def _surrogate_error(text: str) -> TokenizerError:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return TokenizerError(
            f"the text has a lone surrogate {text[exc.start]!r} at character {exc.start}, which "
            "is not valid Unicode and has no UTF-8 bytes; read files with encoding='utf-8' "
            "(errors='replace' if they may be damaged)"
        )
    return TokenizerError("the text cannot be encoded as UTF-8")

"""The training corpus: assembled deterministically from what every Python installation ships.

`tiss corpus build` (`build_corpus`) writes a directory (default `corpus/build/`, git-ignored):

    corpus/build/
      manifest.json            what was built, from what, and the split (below)
      train/<source>/<path>    one UTF-8 document per file, bytes exactly as in the source
      valid/<source>/<path>

Sources, in this order:
- `stdlib/...`  the standard library's `.py` files (`sysconfig` "stdlib" path), recursively,
  without `site-packages` (differs per machine), test suites (`test`, `tests`, `idle_test`:
  often stripped by distributions) unless `include_tests`, and `pydoc_data` (next source);
- `pydoc/<topic>.txt`  the documentation topics of `pydoc_data.topics` (the text `help()` shows);
- `samples/...`  the project's committed samples under `corpus/` (TissLang scripts and prose).

The split is by file, never inside one: a file goes to `valid` when the first 8 bytes of the
SHA-256 of its corpus path (e.g. "stdlib/json/decoder.py"), read as a fraction of 2**64, fall
below `valid_fraction`. A path therefore stays on the same side across builds and Python
versions. If that leaves `valid` empty (tiny corpora), the file with the smallest hash goes there.

`manifest.json` (format "quantatissu-corpus", version 1) holds `python` (version and
implementation), `valid_fraction`, `files` (a list of `{"path": "train/stdlib/abc.py", "split",
"source", "origin", "bytes", "sha256"}` sorted by path; `path` is relative to the corpus
directory), `splits` (`{"train": {"files", "bytes"}, "valid": {...}}`) and `skipped`
(`{"origin", "reason"}` for files that were unreadable or not UTF-8: reported, never mangled).
Nothing in it depends on time or machine beyond the Python installation, so two builds from
the same installation give byte-identical manifests.

Readers (`lm/data.py`, `tiss tokenizer train`) call `split_files(corpus, "train")` or
`iter_texts(path, split)`; a path without a manifest is read as plain text files.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import platform
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from lm.console import say, write_out
from lm.errors import LMError

FORMAT = "quantatissu-corpus"
VERSION = 1
MANIFEST = "manifest.json"
SPLITS = ("train", "valid")
DEFAULT_VALID_FRACTION = 0.05
# The committed samples live in the source tree beside the packages; the build goes under the
# current directory, like every other output of `tiss`.
SAMPLES_DIR = Path(__file__).resolve().parent.parent / "corpus"
DEFAULT_OUT = Path("corpus") / "build"

_EXCLUDED_DIRS = frozenset({"site-packages", "dist-packages", "__pycache__", "pydoc_data"})
_TEST_DIRS = frozenset({"test", "tests", "idle_test"})

Report = Callable[[str], None]


class CorpusError(LMError):
    """A corpus that cannot be built or read; the message says what to do."""


@dataclass(frozen=True)
class Document:
    """One file of the corpus before it is written: where it goes and where it came from."""

    name: str  # corpus path under the split directory, e.g. "stdlib/json/decoder.py"
    source: str  # "stdlib", "pydoc" or "samples"
    origin: str  # where the bytes were read, for people reading the manifest
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class Skipped:
    origin: str
    reason: str


def valid_split(name: str, valid_fraction: float) -> bool:
    """Whether corpus path `name` belongs to the validation split (stable, content-blind).

    >>> valid_split("stdlib/abc.py", 0.0), valid_split("stdlib/abc.py", 1.0)
    (False, True)
    """
    return _path_hash(name) < valid_fraction * 2.0**64


def _path_hash(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big")


def _read_utf8(path: Path, origin: str, skipped: list[Skipped]) -> bytes | None:
    """The file's bytes if readable and valid UTF-8, else None with the reason recorded."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        skipped.append(Skipped(origin, f"unreadable: {exc.strerror or exc}"))
        return None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        skipped.append(
            Skipped(origin, f"not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}")
        )
        return None
    return data


def stdlib_documents(
    root: Path | None = None, include_tests: bool = False, skipped: list[Skipped] | None = None
) -> list[Document]:
    """The standard library's `.py` files under `root` (default: this Python's), sorted."""
    root = Path(root) if root is not None else Path(sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise CorpusError(f"standard library directory {root} does not exist; pass --stdlib DIR")
    skipped = skipped if skipped is not None else []
    excluded = _EXCLUDED_DIRS if include_tests else _EXCLUDED_DIRS | _TEST_DIRS
    docs = []
    for dirpath, dirnames, filenames in os.walk(root):
        # Pruning in place keeps os.walk out of site-packages (often far larger than the stdlib).
        dirnames[:] = sorted(d for d in dirnames if d not in excluded and not d.startswith("."))
        for filename in sorted(filenames):
            if not filename.endswith(".py"):
                continue
            path = Path(dirpath) / filename
            rel = path.relative_to(root).as_posix()
            data = _read_utf8(path, f"stdlib/{rel}", skipped)
            if data is not None:
                docs.append(Document(f"stdlib/{rel}", "stdlib", f"stdlib/{rel}", data))
    return docs


def pydoc_documents() -> list[Document]:
    """One document per `pydoc_data.topics` topic, sorted by topic name."""
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some minimal Python builds leave it out
        return []
    return [
        Document(f"pydoc/{name}.txt", "pydoc", f"pydoc_data.topics[{name!r}]", text.encode("utf-8"))
        for name, text in sorted(topics.items())
    ]


def sample_documents(samples: Path, skipped: list[Skipped] | None = None) -> list[Document]:
    """The committed samples: every non-hidden file under `samples`, except its build output."""
    skipped = skipped if skipped is not None else []
    if not samples.is_dir():
        return []
    docs = []
    for path in sorted(p for p in samples.rglob("*") if p.is_file() or p.is_symlink()):
        rel = path.relative_to(samples)
        if rel.parts[0] == "build" or any(part.startswith(".") for part in rel.parts):
            continue
        data = _read_utf8(path, f"samples/{rel.as_posix()}", skipped)
        if data is not None:
            docs.append(Document(f"samples/{rel.as_posix()}", "samples", f"corpus/{rel.as_posix()}", data))
    return docs


def build_corpus(
    out: str | os.PathLike[str] = DEFAULT_OUT,
    *,
    stdlib: str | os.PathLike[str] | None = None,
    use_stdlib: bool = True,
    include_tests: bool = False,
    pydoc: bool = True,
    samples: str | os.PathLike[str] | None = SAMPLES_DIR,
    valid_fraction: float = DEFAULT_VALID_FRACTION,
    report: Report | None = None,
) -> dict:
    """Assemble the corpus into `out` and return its manifest (see the module docstring).

    The directory is built beside `out` and swapped in at the end, so a failed or interrupted
    build leaves the previous corpus as it was. An existing `out` that is not a corpus build
    (no manifest.json) and not empty is refused rather than replaced. Skipped files are passed
    to `report` as they are found, and listed in the manifest.
    """
    if not 0.0 <= valid_fraction < 1.0:
        raise CorpusError(f"valid fraction must be in [0, 1), got {valid_fraction}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file())):
        raise CorpusError(
            f"{out} exists and is not a corpus build (no {MANIFEST}); choose another --out "
            "or remove it yourself"
        )
    skipped: list[Skipped] = []
    docs = stdlib_documents(stdlib, include_tests, skipped) if use_stdlib else []
    if pydoc:
        docs += pydoc_documents()
    if samples is not None:
        docs += sample_documents(Path(samples), skipped)
    if not docs:
        raise CorpusError("no documents found: every source was empty or skipped")
    if report is not None:
        for s in skipped:
            report(f"skipped {s.origin}: {s.reason}")

    split_of = {d.name: ("valid" if valid_split(d.name, valid_fraction) else "train") for d in docs}
    if valid_fraction > 0 and len(docs) > 1 and "valid" not in split_of.values():
        split_of[min(split_of, key=_path_hash)] = "valid"

    entries = []
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as exc:
        raise CorpusError(f"cannot create {out}: {_os_reason(exc, out.parent)}; choose another --out") from None
    try:
        for doc in docs:
            rel = f"{split_of[doc.name]}/{doc.name}"
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(doc.data)
            entries.append(
                {
                    "path": rel,
                    "split": split_of[doc.name],
                    "source": doc.source,
                    "origin": doc.origin,
                    "bytes": len(doc.data),
                    "sha256": hashlib.sha256(doc.data).hexdigest(),
                }
            )
        entries.sort(key=lambda e: e["path"])
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "python": {
                "version": platform.python_version(),
                "implementation": sys.implementation.name,
            },
            "valid_fraction": valid_fraction,
            "splits": {
                name: {
                    "files": sum(e["split"] == name for e in entries),
                    "bytes": sum(e["bytes"] for e in entries if e["split"] == name),
                }
                for name in SPLITS
            },
            "files": entries,
            "skipped": [{"origin": s.origin, "reason": s.reason} for s in skipped],
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        _swap_in(tmp, out)
    except OSError as exc:
        # A full disk or a directory that turned read-only: the previous build (if any) is intact.
        shutil.rmtree(tmp, ignore_errors=True)
        raise CorpusError(
            f"cannot write the corpus to {out}: {_os_reason(exc, out)}; the previous build (if any) "
            "is unchanged. Free some space or choose another --out"
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _os_reason(exc: OSError, path: Path) -> str:
    """Why an OS call failed, in words (a parent that is a file says so instead of 'File exists')."""
    for parent in (path, *path.parents):
        if parent.exists() and not parent.is_dir():
            return f"{parent} is a file, not a directory"
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    return exc.strerror or str(exc)


def _swap_in(tmp: Path, out: Path) -> None:
    """Replace `out` by the finished `tmp` with two renames: `out` is never half written (for
    an instant between the renames it is absent; the old build then sits at `.NAME.old`)."""
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def load_manifest(corpus: str | os.PathLike[str]) -> dict:
    """The manifest of a built corpus, checked enough that `split_files` can trust it."""
    path = Path(corpus) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorpusError(f"{path} does not exist; build the corpus with `tiss corpus build`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorpusError(f"cannot read {path}: {exc}; rebuild with `tiss corpus build`") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CorpusError(f"{path} is not a corpus manifest; rebuild with `tiss corpus build`")
    if data.get("version") != VERSION:
        raise CorpusError(
            f"{path} has version {data.get('version')!r}, this program reads {VERSION}; "
            "rebuild with `tiss corpus build`"
        )
    files = data.get("files")
    if not isinstance(files, list) or not all(
        isinstance(e, dict) and isinstance(e.get("path"), str) and e.get("split") in SPLITS
        for e in files
    ):
        raise CorpusError(f"{path}: malformed file list; rebuild with `tiss corpus build`")
    return data


def split_files(corpus: str | os.PathLike[str], split: str = "train") -> list[Path]:
    """The files of one split of a built corpus, in manifest (path) order."""
    if split not in SPLITS:
        raise CorpusError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    root = Path(corpus)
    return [root / e["path"] for e in load_manifest(root)["files"] if e["split"] == split]


def iter_texts(
    path: str | os.PathLike[str], split: str = "train", report: Report | None = None
) -> Iterator[str]:
    """The documents at `path` as strings, one per file.

    A built corpus (a directory with manifest.json) gives its `split`; any other directory
    gives every non-hidden file under it (sorted; `build/` subdirectories excluded, so
    `corpus/` itself means the committed samples), and a file gives itself. Files that are
    not UTF-8 are passed to `report` and skipped.
    """
    root = Path(path)
    if not root.exists():
        raise CorpusError(f"{root} does not exist; pass a text file, a directory or a built corpus")
    if root.is_file():
        files = [root]
    elif (root / MANIFEST).is_file():
        files = split_files(root, split)
    else:
        files = sorted(
            p
            for p in root.rglob("*")
            if p.is_file()
            and not any(part.startswith(".") or part == "build" for part in p.relative_to(root).parts)
        )
    for file in files:
        try:
            yield file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            if len(files) == 1:
                raise CorpusError(f"cannot read {file} as UTF-8 text: {exc}") from None
            if report is not None:
                report(f"skipped {file}: {exc}")


def build_command(
    out: str | None = None,
    stdlib: str | None = None,
    include_tests: bool = False,
    pydoc: bool = True,
    samples: bool = True,
    valid_fraction: float = DEFAULT_VALID_FRACTION,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """`tiss corpus build`: skipped files are reported on stderr, the summary on stdout."""
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    target = Path(out) if out else DEFAULT_OUT
    manifest = build_corpus(
        target,
        stdlib=stdlib,
        include_tests=include_tests,
        pydoc=pydoc,
        samples=SAMPLES_DIR if samples else None,
        valid_fraction=valid_fraction,
        report=lambda text: say(stderr, text),
    )
    write_out(stdout, summary(manifest, target) + "\n")
    return 0


def summary(manifest: dict, out: Path) -> str:
    """One line for the terminal."""
    s = manifest["splits"]
    mb = lambda n: f"{n / 1e6:.1f} MB"  # noqa: E731
    return (
        f"corpus: {len(manifest['files'])} files, "
        f"{mb(s['train']['bytes'] + s['valid']['bytes'])} "
        f"(train {s['train']['files']} files {mb(s['train']['bytes'])}, "
        f"valid {s['valid']['files']} files {mb(s['valid']['bytes'])}), "
        f"{len(manifest['skipped'])} skipped -> {out / MANIFEST}"
    )

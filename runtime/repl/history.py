"""Where the REPL keeps its history: `$XDG_STATE_HOME/tiss/history` (`~/.local/state` default).

History is state, not configuration or cache, which is what the XDG base directory spec's
STATE_HOME is for. A history that cannot be opened (read-only home, full disk) degrades to an
in-memory one with a warning rather than stopping the REPL.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from prompt_toolkit.history import FileHistory, History, InMemoryHistory


def history_path(env: Mapping[str, str] | None = None) -> Path:
    """The history file for this user.

    The spec says a relative XDG_STATE_HOME is invalid and must be ignored.
    """
    env = os.environ if env is None else env
    state = env.get("XDG_STATE_HOME", "")
    base = Path(state) if state and os.path.isabs(state) else Path(env.get("HOME") or Path.home()) / ".local" / "state"
    return base / "tiss" / "history"


def open_history(path: Path | None = None) -> tuple[History, str | None]:
    """A persistent history at `path` (default `history_path()`), and a warning if it fell back."""
    path = history_path() if path is None else path
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Opening for append proves the file is writable now, not at the first entry.
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        return InMemoryHistory(), f"history is not saved: cannot write {path} ({exc.strerror or exc})"
    return FileHistory(str(path)), None

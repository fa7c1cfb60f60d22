"""Run events, and the `--trace FILE` writer that keeps one JSON object per line for each.

The interpreter announces what happens as events: a name plus JSON-able fields. Listeners
(`JsonlTrace`, the human reporter in `report.py`, a REPL) receive every event; a listener that
fails never stops the run. Events are emitted from PARALLEL worker threads too, so `EventBus`
serialises delivery under one lock, and every event carries `t`, seconds since the run began.

Event names and their main fields:

- `run_start` {file, workspace}            one per program a session executes
- `program_end` {status, duration}         a program's statements are done (TEARDOWN not yet)
- `run_end` {status, exit_code, duration}  after TEARDOWN, when the session closes
- `step_start` {kind, description, line}
- `step_end` {kind, description, line, status, duration, failure, started}  (`started` is false
  for a step reported as skipped or not chosen without having run)
- `statement` {node, line, column, status, duration, ...result fields, error on failure}
- `log` {message, line, step}              - `caught` {line, kind, message} (TRY caught a failure;
  from RETRY also `attempt`, `attempts`)
- `prompt` {line, backend, prompt_tokens, completion_tokens, duration, finish_reason}
- `estimate` {line, API_CALLS, TOKENS, SECONDS, UNBOUNDED_RUNS, UNBOUNDED_LOOPS}
- `review` {kind, message, approved, comment, asked}
- `policy` {action, text, decision, rule, reason, tainted, asked, line}  a command-policy decision
  (runtime/interpreter_policy.py); also kept in the JSON report's `policy`

Events from a PARALLEL child carry `thread`, the child's thread name.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import IO, Any, Callable, Protocol

from runtime.secret import redact, redact_value

Event = dict[str, Any]


class Listener(Protocol):
    def __call__(self, event: Event) -> None: ...


class EventBus:
    """Fans events out to listeners, in order, one event at a time."""

    def __init__(self, listeners: list[Listener] | tuple[Listener, ...] = ()) -> None:
        self._listeners: list[Listener] = list(listeners)
        self._lock = threading.Lock()
        self._started = time.monotonic()

    def add(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def restart_clock(self) -> None:
        self._started = time.monotonic()

    def emit(self, name: str, /, **fields: Any) -> None:
        event: Event = {"event": name, "t": round(time.monotonic() - self._started, 6)}
        event.update(fields)
        thread = threading.current_thread()
        if thread is not threading.main_thread():
            event.setdefault("thread", thread.name)
        with self._lock:
            for listener in self._listeners:
                try:
                    listener(event)
                except Exception as exc:  # a broken listener must not break the run
                    print(redact(f"tiss: warning: event listener failed: {exc}"), file=sys.stderr)


class JsonlTrace:
    """A listener that appends each event as one JSON line to a file (flushed per event).

    The file is opened without blocking, so a FIFO nobody reads is refused at once
    (`OSError` ENXIO) instead of hanging the run before it starts. Once a write fails (a full
    disk, `/dev/full`) the trace stops and `error` holds why; the run goes on, and the caller
    reports the incomplete trace at the end. Every string is redacted (the API key) first.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.error: OSError | None = None
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
        try:
            os.set_blocking(fd, True)
            self._handle: IO[str] = open(fd, "w", encoding="utf-8", errors="backslashreplace")
        except BaseException:
            os.close(fd)
            raise

    def __call__(self, event: Event) -> None:
        if self.error is not None:
            return
        try:
            self._handle.write(json.dumps(redact_value(event), ensure_ascii=False, default=str) + "\n")
            self._handle.flush()
        except OSError as exc:
            self.error = exc

    def close(self) -> None:
        try:
            self._handle.close()
        except OSError as exc:
            if self.error is None:
                self.error = exc

    def __enter__(self) -> "JsonlTrace":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Recorder:
    """A listener that keeps events in memory; for tests and the REPL."""

    def __init__(self, keep: Callable[[Event], bool] | None = None) -> None:
        self.events: list[Event] = []
        self._keep = keep

    def __call__(self, event: Event) -> None:
        if self._keep is None or self._keep(event):
            self.events.append(event)

    def named(self, name: str) -> list[Event]:
        return [e for e in self.events if e["event"] == name]

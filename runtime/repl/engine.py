"""The running half of the REPL: entries and meta-commands in one persistent `Session`.

`Repl.handle(text)` takes one entry as read (by the prompt or from a pipe) and returns the status
`tiss run` would give for it: 0 passed, 1 failed, 2 invalid (syntax error, bad meta-command),
130 interrupted. Nothing it runs can end the REPL: the project's own errors are printed as
messages, Ctrl-C stops the running entry (the interpreter kills its commands' process groups),
and anything unexpected is reported as an internal error.

A STEP entry reports like `tiss run` (live progress, the failure, a summary line); a bare
statement just runs, with LOG lines printed plainly and, after each RUN, what the command
wrote and an `exit N` line, as a shell shows it (`:last` shows it again); an entry that is one
PROMPT_AGENT shows the model's answer. TEARDOWN blocks entered in the REPL run when the session
ends (`:reset`, `:quit`, Ctrl-D), as they would at the end of a script. The EXECUTION_TIME budget
counts only the time entries run, not the time the REPL waits at the prompt. `:load` and
`:save` paths are relative to the current directory, like a script given to `tiss run`.
"""

from __future__ import annotations

import json
import os
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable, TextIO

import tisslang
from tisslang import ast, walk
from tisslang.commands import write_atomic
from tisslang.errors import TissError

from runtime.errors import TissRuntimeError
from runtime.repl import meta
from runtime.report import (
    Painter, ProgressPrinter, format_failure, format_summary, shown, write_line,
)
from runtime.result import INTERRUPTED, RunResult
from runtime.session import Session
from runtime.values import show

# Builds a fresh session whose events go to the given listeners (see `main.py`).
SessionFactory = Callable[[list[Any]], Session]

# Ctrl-C during an entry: it may have been running a command, or waiting at a review prompt.
INTERRUPTED_NOTE = "interrupted: the entry stopped (any command it was running was killed)"

_POSITION_KEYS = ("line", "column", "end_line", "end_column")


class ReplError(TissRuntimeError):
    """A meta-command that could not do its work (a file to load or save, nothing to show)."""

    exit_code = 2


def _render(exc: BaseException) -> str:
    render = getattr(exc, "render", None)
    return render() if callable(render) else f"tiss: error: {exc}"


def _has_steps(body: Iterable[Any]) -> bool:
    """Whether an entry holds blocks that report like a script (STEP, SETUP, OPTION), anywhere."""
    return any(
        isinstance(node, (ast.Step, ast.Setup, ast.Option))
        for stmt in body for node in walk(stmt, blocks_only=True)
    )


def _has_teardown(body: tuple[Any, ...]) -> bool:
    # The parser lets TEARDOWN stand only at the top level or directly in the TASK block.
    return any(isinstance(node, ast.Teardown) for stmt in body for node in walk(stmt, blocks_only=True))


def _without_positions(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_positions(v) for k, v in value.items() if k not in _POSITION_KEYS}
    if isinstance(value, list):
        return [_without_positions(v) for v in value]
    return value


def ast_text(program: ast.Program) -> str:
    """The tree of an entry as indented JSON, positions left out (as `ast.dump` does)."""
    return json.dumps(_without_positions(program.to_dict())["body"], indent=2, ensure_ascii=False)


# How much of each stream a statement event carries (runtime/interpreter.py); a bare RUN shows
# that much of its output, and `:last` all of it.
_EVENT_TEXT_CAP = 4096


class _EntryPrinter:
    """The session's event listener: `tiss run` progress for STEP entries, plain output else.

    A bare RUN prints what the command wrote (stdout, then stderr) and an `exit N` line, the way
    a shell shows it; LOG prints its message. Control characters are escaped (`report.shown`),
    so output cannot drive the terminal, and a reader that went away (`| head`) is not an error.
    """

    def __init__(self, out: TextIO, colour: bool) -> None:
        self.out = out
        self.paint = Painter(colour)
        self.progress = ProgressPrinter(out, colour)
        self.stepped = False

    def __call__(self, event: dict[str, Any]) -> None:
        name = event["event"]
        if self.stepped:
            self.progress(event)
        elif name == "log":
            write_line(self.out, shown(event["message"]))
        elif name == "statement" and event.get("node") == "Run" and "exit_code" in event:
            self.command_output(event)
        elif name == "caught":
            write_line(self.out, f"{self.paint('caught:', 'yellow')} {shown(event['message'])}")

    def command_output(self, event: dict[str, Any]) -> None:
        for stream in ("stdout", "stderr"):
            text = event.get(stream) or ""
            if not text:
                continue
            if len(text) >= _EVENT_TEXT_CAP or event.get(f"{stream}_truncated"):
                write_line(self.out, self.paint(
                    f"({stream}: only its end is shown here; :last shows all that was captured)",
                    "dim"))
                text = text[text.find("\n") + 1:] or text  # from the first whole line
            body = shown(text[:-1] if text.endswith("\n") else text)
            write_line(self.out, self.paint(body, "yellow") if stream == "stderr" else body)
        timing = event.get("run_time", event.get("duration", 0.0))
        note = " (timed out)" if event.get("timed_out") else ""
        write_line(self.out, self.paint(f"exit {event['exit_code']}{note} in {timing:.2f}s", "dim"))


class Repl:
    """One REPL's state: the session, the entries that succeeded (for `:save`), the last entry."""

    def __init__(self, make_session: SessionFactory, out: TextIO, *, colour: bool = False) -> None:
        self._make_session = make_session
        self.out = out
        self.colour = colour
        self.paint = Painter(colour)
        self.printer = _EntryPrinter(out, colour)
        self.session = self._new_session()
        self.entries: list[str] = []  # source of each entry that passed, in order
        self.last_entry: str | None = None
        self.count = 0
        self.quit = False

    def _new_session(self) -> Session:
        session = self._make_session([self.printer])
        # EXECUTION_TIME counts the time entries run, not the time spent thinking at the prompt.
        session.budgets.pause()
        return session

    # -- what the reader asks for --------------------------------------------------------

    def variable_names(self) -> list[str]:
        return list(self.session.variables)

    def workspace_root(self) -> Path:
        return Path(self.session.workspace.root)

    # -- entries -------------------------------------------------------------------------

    def say(self, text: str = "") -> None:
        write_line(self.out, text)

    def handle(self, text: str) -> int:
        """Run one entry or meta-command; the status `tiss run` would give. Never raises."""
        try:
            if not text.strip():
                return 0
            if meta.is_meta(text):
                return self.meta(meta.parse_meta(text))
            self.count += 1
            return self.run_source(text, f"<repl:{self.count}>", remember=True)
        except KeyboardInterrupt:
            self.say(self.paint("interrupted", "red"))
            return 130
        except (TissError, TissRuntimeError) as exc:
            self.say(_render(exc))
            return getattr(exc, "exit_code", 2)
        except Exception as exc:  # a bug must not end the user's session
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            self.say(f"tiss: internal error (the session goes on): {detail}")
            if os.environ.get("TISS_DEBUG"):
                traceback.print_exc(file=self.out)
            return 1

    def run_source(self, source: str, filename: str, *, remember: bool) -> int:
        program = tisslang.parse(source, filename)
        if remember:
            self.last_entry = source
        return self.execute(program, source, filename)

    def execute(self, program: ast.Program, source: str, filename: str) -> int:
        stepped = _has_steps(program.body)
        self.printer.stepped = stepped
        self.session.budgets.resume()
        try:
            result = self.session.execute(program, file=filename, source=source)
        finally:
            self.session.budgets.pause()
            self.printer.stepped = False
        self.report(result, stepped)
        if result.passed:
            self.entries.append(source)
            if len(program.body) == 1 and isinstance(program.body[0], ast.PromptAgent):
                # A lone PROMPT_AGENT shows the answer, as Python echoes a lone expression.
                answer = (self.session.builtins.get("LAST_PROMPT") or {}).get("TEXT")
                if answer is not None:
                    self.say(shown(answer))
            if _has_teardown(program.body):
                self.say(self.paint("TEARDOWN runs when the session ends (:reset, :quit, Ctrl-D)", "dim"))
        return result.exit_code

    def report(self, result: RunResult, stepped: bool) -> None:
        if result.failure is not None:
            self.say(format_failure(result.failure, self.colour))
        if result.status == INTERRUPTED:
            self.say(self.paint(INTERRUPTED_NOTE, "red"))
        if stepped:
            self.say(format_summary(result, self.colour))

    # -- meta-commands -------------------------------------------------------------------

    def meta(self, command: meta.MetaCommand) -> int:
        handler = getattr(self, f"meta_{command.name}")
        return handler(command.argument)

    def meta_help(self, argument: str) -> int:
        self.say(meta.help_text())
        return 0

    def meta_quit(self, argument: str) -> int:
        self.quit = True
        return 0

    def meta_vars(self, argument: str) -> int:
        variables = self.session.variables
        if not variables:
            self.say("no variables yet (VAR name = value, READ \"file\" AS name)")
        for name, value in sorted(variables.items()):
            self.say(f"{name} = {show(value)}")
        for name, value in sorted(self.session.directives.items()):
            self.say(self.paint(f"@{name} {show(value)}", "dim"))
        usage = self.session.budgets.usage()
        shown = []
        if usage.api_calls_limit is not None:
            shown.append(f"API_CALLS {usage.api_calls}/{usage.api_calls_limit}")
        if usage.tokens_limit is not None:
            shown.append(f"TOKENS {usage.tokens}/{usage.tokens_limit}")
        if usage.seconds_limit is not None:
            shown.append(f"EXECUTION_TIME {usage.seconds:.1f}s/{usage.seconds_limit:g}s")
        if shown:
            self.say(self.paint("budgets: " + ", ".join(shown), "dim"))
        return 0

    def meta_last(self, argument: str) -> int:
        last = self.session.builtins.get("LAST_RUN")
        if not last:
            self.say("no command has run yet in this session")
            return 0
        timed_out = " (timed out)" if last.get("TIMED_OUT") else ""
        self.say(f"command: {last['COMMAND']}")
        self.say(f"exit code: {last['EXIT_CODE']}{timed_out}")
        self.say(f"time: {last['EXECUTION_TIME']:.3f}s")
        for stream in ("STDOUT", "STDERR"):
            text = last.get(stream, "")
            truncated = " (truncated)" if last.get(f"{stream}_TRUNCATED") else ""
            self.say(f"{stream.lower()}{truncated}:" + ("" if text else " (empty)"))
            for line in text.splitlines():
                self.say(f"  {line}")
        return 0

    def meta_ast(self, argument: str) -> int:
        source = argument or self.last_entry
        if not source:
            raise ReplError(":ast needs an entry (:ast RUN \"ls\"), or an earlier entry to show")
        self.say(ast_text(tisslang.parse(source, "<repl:ast>")))
        return 0

    def meta_load(self, argument: str) -> int:
        path = Path(argument).expanduser()
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ReplError(f"cannot load {argument}: {reason}") from None
        return self.run_source(source, str(path), remember=False)

    def meta_save(self, argument: str) -> int:
        path = Path(argument).expanduser()
        if not self.entries:
            raise ReplError("nothing to save yet: no entry has run successfully in this session")
        text = self.script_text()
        try:
            write_atomic(path, text)  # the same atomic replace as `tiss fmt`
        except OSError as exc:
            raise ReplError(f"cannot save {argument}: {exc.strerror or exc}") from None
        count = len(self.entries)
        self.say(f"saved {count} entr{'y' if count == 1 else 'ies'} to {argument}")
        return 0

    def script_text(self) -> str:
        """The successful entries as one formatted script (checked to parse back the same)."""
        pieces = [tisslang.format(tisslang.parse(source, "<repl>")) for source in self.entries]
        text = "".join(piece if piece.endswith("\n") else piece + "\n" for piece in pieces if piece)
        try:
            combined = tisslang.parse(text, "<repl:save>")
        except TissError as exc:
            reason = getattr(exc, "message", None) or str(exc)
            raise ReplError(f"the entries together are not one valid script ({reason}); nothing "
                            "was saved -- :reset starts a new script") from None
        expected = tuple(stmt for source in self.entries for stmt in tisslang.parse(source, "<repl>").body)
        if combined.body != expected:
            raise ReplError("the entries do not make one script that parses back the same; nothing was saved")
        return text

    def meta_reset(self, argument: str) -> int:
        status = self.close()
        self.session = self._new_session()
        self.entries = []
        self.last_entry = None
        self.count = 0
        self.say("session reset: variables, directives, budgets and entries forgotten")
        return status

    # -- the end ---------------------------------------------------------------------------

    def close(self) -> int:
        """End the session: run the pending TEARDOWN blocks; their status (0 when none failed)."""
        self.printer.stepped = True
        try:
            result = self.session.close()
        except KeyboardInterrupt:
            self.say(self.paint("interrupted during TEARDOWN", "red"))
            return 130
        finally:
            self.printer.stepped = False
        if result.steps or result.failure:
            for failure in result.teardown_failures:
                self.say(format_failure(failure, self.colour))
            if result.status == INTERRUPTED:
                self.say(self.paint("interrupted during TEARDOWN", "red"))
        return result.exit_code

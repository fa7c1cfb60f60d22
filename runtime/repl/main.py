"""`tiss repl`: build the session from the flags, then read entries from a terminal or a pipe.

On a terminal, entries come from the prompt_toolkit session (`reader.py`) and run in a `Repl`
(`engine.py`) until `:quit` or Ctrl-D; the exit status is 0 unless a TEARDOWN failed at the end.

With stdin not a terminal the REPL reads entries from it (an entry ends where `is_complete`
says it does, except that after an IF or TRY block the next line decides whether ELSE / CATCH
continues it, as in a script), prints no prompt, and behaves like `tiss run` on a script: it
stops at the first entry that fails and exits with that status (1 failed, 2 invalid, 130
interrupted), else 0; TEARDOWN runs at the end either way. So `printf 'RUN "ls"\\n' | tiss repl`
works in pipelines.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Iterable, Iterator, TextIO

from runtime.repl.engine import Repl
from runtime.repl.scan import scan
from runtime.repl.validator import entry_ready

BANNER = "TissLang {version} REPL in {workspace}; :help for help, Ctrl-D to leave."


def iter_entries(lines: Iterable[str]) -> Iterator[str]:
    """Group input lines into entries the way Enter does at the prompt.

    A blank line between entries is skipped. One difference, since a pipe can look ahead: an
    entry that ends with an IF / TRY block is held until the next line shows whether it goes on
    with ELSE / CATCH (comment lines in between are kept with it), as in a script.
    """
    buffer: list[str] = []
    held: str | None = None  # "ELSE" / "CATCH" that would continue the held entry
    for raw in lines:
        line = raw.rstrip("\n").rstrip("\r")
        if held is not None:
            stripped = line.lstrip()
            if stripped.startswith("#"):
                buffer.append(line)
                continue
            if not _continues(stripped, held):
                yield "\n".join(buffer)
                buffer = []
            held = None
        if not buffer and not line.strip():
            continue
        buffer.append(line)
        text = "\n".join(buffer)
        if entry_ready(text):
            held = scan(text).state.awaiting
            if held is None:
                yield text
                buffer = []
    if buffer and "\n".join(buffer).strip():
        yield "\n".join(buffer)


def _continues(line: str, word: str) -> bool:
    """Whether `line` starts with the keyword `word` (ELSE, not ELSEWHERE)."""
    return line.startswith(word) and not line[len(word):len(word) + 1].replace("_", "a").isalnum()


def run_piped(repl: Repl, stream: TextIO) -> int:
    """Run entries from a non-terminal stream; the status `tiss run` would give."""
    status = 0
    try:
        for entry in iter_entries(stream):
            status = repl.handle(entry)
            if status != 0 or repl.quit:
                break
    except KeyboardInterrupt:
        status = 130
    final = repl.close()
    return status if status != 0 else final


def interact(repl: Repl, prompt_session: Any) -> int:
    """The interactive loop; no error, however raised, ends it (only :quit and Ctrl-D do)."""
    while not repl.quit:
        try:
            text = prompt_session.prompt()
        except EOFError:
            break
        except KeyboardInterrupt:
            continue  # Ctrl-C at the prompt only clears the input
        except Exception as exc:  # the terminal, prompt_toolkit or a completer went wrong
            repl.say(f"tiss: internal error while reading (the session goes on): {exc!r}")
            continue
        repl.handle(text)
    return repl.close()


def _make_session_factory(args: Any):
    from runtime.backends.base import BackendError
    from runtime.backends.select import resolve_backend
    from runtime.review import Reviewer
    from runtime.runner import UsageError, policy_from_args
    from runtime.session import RunOptions, Session
    from runtime.workspace import Workspace

    if args.timeout is not None and not args.timeout > 0:
        raise UsageError(f"--timeout must be a positive number of seconds, got {args.timeout:g}")
    workspace = Workspace(args.workspace or os.getcwd())
    try:
        backend = resolve_backend(args.model, args.model_name, user=True)
    except BackendError as exc:
        raise UsageError(str(exc)) from None
    options = RunOptions(timeout=args.timeout, assume_yes=args.yes, model_name=args.model_name,
                         policy=policy_from_args(args))

    def make(listeners: list[Any]) -> Session:
        return Session(
            workspace, backend=backend, options=options, listeners=listeners,
            reviewer=Reviewer(assume_yes=args.yes),
        )

    return make, workspace


def run_repl(args: Any, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """The `tiss repl` subcommand; `args` as built by `cli._add_repl`."""
    from runtime.report import use_colour

    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    make_session, workspace = _make_session_factory(args)
    interactive = _isatty(stdin) and _isatty(stdout)
    repl = Repl(make_session, stdout, colour=interactive and use_colour(stdout))
    if not interactive:
        return run_piped(repl, stdin)

    from tisslang import LANGUAGE_VERSION

    from runtime.repl.completer import TissCompleter
    from runtime.repl.history import open_history
    from runtime.repl.reader import create_prompt_session

    history, warning = open_history()
    completer = TissCompleter(repl.variable_names, repl.workspace_root)
    prompt_session = create_prompt_session(completer, history)
    repl.say(BANNER.format(version=LANGUAGE_VERSION, workspace=workspace.root))
    if warning:
        repl.say(warning)
    return interact(repl, prompt_session)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False

"""Asking a human: REQUEST_REVIEW (approve / reject, optional comment), PAUSE (press Enter), approvals.

`Reviewer` asks on the terminal; `approve` asks the command policy's question (a RUN or a path
holding model text, runtime/interpreter_policy.py). With `assume_yes` (`tiss run --yes`)
reviews and pauses approve at once without asking. With no terminal and no `--yes` they raise
`ReviewUnavailable`, whose message says to rerun with `--yes` or in a terminal: a script must
never hang waiting on a pipe (the policy checks both itself first, to record its decision).
PARALLEL children may ask at the same time, so questions are asked one at a time.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from typing import Callable, TextIO

from runtime.errors import ScriptFailure


class ReviewUnavailable(ScriptFailure):
    """A review or pause with no terminal to ask on and no `--yes`."""

    kind = "ReviewUnavailable"


class ReviewRejected(ScriptFailure):
    """The reviewer said no; the step fails (LAST_REVIEW holds the answer)."""

    kind = "ReviewRejected"


@dataclass(frozen=True)
class ReviewAnswer:
    approved: bool
    comment: str = ""
    asked: bool = True  # False when `--yes` answered for the human


_YES = {"y", "yes", "a", "approve", "ok"}
_NO = {"n", "no", "r", "reject"}


class Reviewer:
    """Asks the human. `ask(prompt) -> str` reads one line (defaults to the terminal)."""

    def __init__(
        self,
        *,
        assume_yes: bool = False,
        ask: Callable[[str], str] | None = None,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        interactive: bool | None = None,
    ) -> None:
        self.assume_yes = assume_yes
        self._stdin = stdin or sys.stdin
        self._stdout = stdout or sys.stderr
        self._ask = ask
        if interactive is None:
            interactive = ask is not None or _isatty(self._stdin)
        self.interactive = interactive
        self._lock = threading.Lock()

    def _line(self, prompt: str) -> str:
        if self._ask is not None:
            return self._ask(prompt)
        self._stdout.write(prompt)
        self._stdout.flush()
        line = self._stdin.readline()
        if line == "":
            raise ReviewUnavailable("the terminal closed while waiting for an answer; rerun with --yes to approve")
        return line.rstrip("\n")

    def _need_terminal(self, what: str) -> ReviewUnavailable:
        return ReviewUnavailable(
            f"{what} needs an answer from a human, but there is no terminal to ask on; "
            "rerun with --yes to approve it, or run the script interactively in a terminal"
        )

    def review(self, message: str) -> ReviewAnswer:
        if self.assume_yes:
            return ReviewAnswer(True, "", asked=False)
        if not self.interactive:
            raise self._need_terminal("REQUEST_REVIEW")
        with self._lock:
            self._stdout.write(f"\nREVIEW REQUESTED: {message}\n")
            while True:
                answer = self._line("Approve? [y]es / [n]o: ").strip().lower()
                if answer in _YES or answer in _NO:
                    break
                self._stdout.write("Please answer y (approve) or n (reject).\n")
            comment = self._line("Comment (optional, Enter to skip): ").strip()
        return ReviewAnswer(answer in _YES, comment)

    def approve(self, heading: str, text: str, *, question: str = "Allow it?") -> ReviewAnswer:
        """The command policy's question (runtime/interpreter_policy.py): `heading`, then the
        exact command or path (`text`, shown safe for a terminal, each line indented), then a
        yes/no. The caller handles `--yes` and the no-terminal case, which it must record."""
        from runtime.report import shown  # here: runtime.report imports more than review needs

        if not self.interactive:
            raise self._need_terminal("approving a command")
        with self._lock:
            self._stdout.write(f"\nAPPROVAL NEEDED, {shown(heading)}:\n")
            for line in shown(text).split("\n"):
                self._stdout.write(f"    {line}\n")
            while True:
                answer = self._line(f"{question} [y]es / [n]o: ").strip().lower()
                if answer in _YES or answer in _NO:
                    break
                self._stdout.write("Please answer y (allow) or n (refuse).\n")
        return ReviewAnswer(answer in _YES, "")

    def pause(self, message: str) -> ReviewAnswer:
        if self.assume_yes:
            return ReviewAnswer(True, "", asked=False)
        if not self.interactive:
            raise self._need_terminal("PAUSE")
        with self._lock:
            self._stdout.write(f"\nPAUSED: {message}\n")
            self._line("Press Enter to continue: ")
        return ReviewAnswer(True, "")


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False

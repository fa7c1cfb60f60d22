"""The command policy inside the interpreter: the gate before RUN, WRITE, MKDIR and DELETE, and
the taint of files a tainted WRITE wrote.

A mixin of `Interpreter` (`runtime/interpreter.py`); the rules are `runtime/policy.py`, taint is
`runtime/taint.py`. `guard(action, text, node, ctx)` is called by each handler with the exact
command or path, before anything is done:

- RUN: a deny rule refuses (`PolicyDenied`, naming the rule); an allow rule lets it run;
  otherwise approval is needed when the command, or the `@shell` it runs in, holds model text,
  or for every RUN with `--approve all`.
- WRITE, MKDIR, DELETE: approval is needed when the path holds model text, unless an allow rule
  matches the path (the same globs, matched against the path).

Approval: `--yes` approves without asking; a terminal asks (the reviewer shows the text with the
model's parts between « and »); with neither the action fails with `PolicyDenied` saying how to
allow it. Every decision goes to the trace (a `policy` event) and the JSON report (`policy`),
with the tainted parts of the text, redacted like every other text there.

The REPL runs its entries through the same `Interpreter`, so the same gate applies there.
"""

from __future__ import annotations

import shlex
import unicodedata
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator

from runtime.policy import Policy, PolicyDenied, Rule, literal_pattern
from runtime.review import ReviewUnavailable
from runtime.errors import ScriptFailure
from runtime.secret import redact
from runtime.taint import carry, is_tainted, join, spans, taint, tainted_parts

if TYPE_CHECKING:
    from runtime.context import Context, SessionState
    from runtime.options import RunOptions
    from runtime.review import Reviewer
    from tisslang import ast

_RECORD_CHARS = 4096  # characters of the text and of each tainted part a decision record keeps
OPEN_MARK, CLOSE_MARK = "\u00ab", "\u00bb"  # « and »: around model text in an approval prompt

_WHAT = {"RUN": "command", "WRITE": "path", "MKDIR": "path", "DELETE": "path"}


def _visible(segment: str) -> str:
    # Invisible and direction-changing characters (Unicode format characters such as U+202E
    # RIGHT-TO-LEFT OVERRIDE or U+200B ZERO WIDTH SPACE, line and paragraph separators) could make
    # the command shown differ from the command run, and a model's own « or » could fake the
    # marks: all are shown as escapes. (C0/C1 controls are escaped by the reviewer's `shown`.)
    return "".join(
        f"\\u{ord(c):04x}" if c in (OPEN_MARK, CLOSE_MARK) or unicodedata.category(c) in ("Cf", "Zl", "Zp")
        else c
        for c in segment
    )


@contextmanager
def quoting(text: Any) -> Iterator[None]:
    """Around workspace calls on the path `text`: a failure they raise quotes the path (and parts
    derived from it: a component, a link target), so when the path holds model text the message
    is tainted, as a whole since those parts' exact places are not known; `LAST_ERROR.MESSAGE`
    then cannot carry the path into a RUN unasked."""
    try:
        yield
    except ScriptFailure as exc:
        if is_tainted(text) and not is_tainted(exc.message):
            exc.message = taint(exc.message)
        raise


def displayed(text: str) -> str:
    """`text` for the approval question: the model's parts between « and », nothing hidden."""
    out: list[str] = []
    plain = str(text)
    last = 0
    for start, end in spans(text):
        out.append(_visible(plain[last:start]))
        out.append(OPEN_MARK + _visible(plain[start:end]) + CLOSE_MARK)
        last = end
    out.append(_visible(plain[last:]))
    return "".join(out)


def _cut(text: str) -> str:
    text = redact(str(text))  # before the cut, so no part of a secret survives it
    return text if len(text) <= _RECORD_CHARS else text[:_RECORD_CHARS] + f"... ({len(text)} chars)"


class PolicyMixin:
    """`guard`, `note_write`, `read_taint`; see the module docstring."""

    options: "RunOptions"
    reviewer: "Reviewer"
    state: "SessionState"
    emit: Callable[..., None]

    @property
    def policy(self) -> Policy:
        return self.options.policy

    def guard(self, action: str, text: str, node: "ast.Node", ctx: "Context") -> None:
        """Let `action` on `text` (a RUN's command, another action's path) go ahead, or raise
        `PolicyDenied`; records the decision whenever a rule matched or approval was needed."""
        policy = self.policy
        tainted = is_tainted(text)
        if action == "RUN":
            rule = policy.denied_by(text)
            if rule is not None:
                self._record(action, text, node, "denied", rule=rule, asked=False)
                raise PolicyDenied(join([  # join: the quoted command keeps its taint
                    f"RUN denied by the {rule.describe()}: ", text, "; the command was not started"
                ]))
        # `@shell "{{ answer }}"` would let the model choose the program every RUN starts; an
        # allow rule is about the command, so it does not answer for the shell.
        shell = ctx.directives.get("shell") if action == "RUN" else None
        model_shell = is_tainted(shell)
        rule = policy.allowed_by(text)
        if rule is not None and not model_shell:
            if tainted or (action == "RUN" and policy.approve == "all"):
                self._record(action, text, node, "allowed", rule=rule, asked=False)
            return
        if model_shell:
            reason = join(["the @shell it runs in holds text from a model: ", carry(shell, displayed(shell))])
        elif tainted:
            reason = f"its {_WHAT[action]} holds text from a model"
        elif action == "RUN" and policy.approve == "all":
            reason = "--approve all asks before every RUN"
        else:
            return
        if self.reviewer.assume_yes:
            self._record(action, text, node, "approved", reason=reason, asked=False, shell=shell)
            return
        if not self.reviewer.interactive:
            self._record(action, text, node, "refused", reason=reason, asked=False, shell=shell)
            hint = f"--allow {shlex.quote(literal_pattern(text))}" if "\n" not in text else "--allow PATTERN"
            rule_hint = "" if model_shell else (
                f", add {hint} (or an allow rule in the --policy file) for what you trust")
            raise PolicyDenied(join([  # join: the quoted command (or path) keeps its taint
                f"{action} needs approval (", reason, ") and there is no terminal to ask on: ", text,
                f"; rerun with --yes to approve it{rule_hint}, or run in a terminal to be asked",
            ]))
        where = f"line {node.line}: " if getattr(node, "line", 0) else ""
        body = displayed(text)
        legend = f" (model text between {OPEN_MARK} and {CLOSE_MARK})" if tainted else ""
        try:
            answer = self.reviewer.approve(f"{where}{action} needs approval: {reason}{legend}", body,
                                           question=f"Allow this {action}?")
        except ReviewUnavailable as exc:  # the terminal closed while asking: not approved
            self._record(action, text, node, "refused", reason=reason, asked=True, shell=shell)
            raise PolicyDenied(join([f"{action} was not approved (", reason, f"): {exc.message}"])) from None
        decision = "approved" if answer.approved else "refused"
        self._record(action, text, node, decision, reason=reason, asked=True, shell=shell)
        if not answer.approved:
            raise PolicyDenied(join([f"{action} refused by the reviewer (", reason, "): ", text]))

    def _record(self, action: str, text: str, node: "ast.Node", decision: str, *,
                rule: Rule | None = None, reason: str | None = None, asked: bool,
                shell: Any = None) -> None:
        record: dict[str, Any] = {
            "action": action,
            "text": _cut(text),
            "decision": decision,
            "rule": rule.as_dict() if rule is not None else None,
            "reason": reason,
            "tainted": [_cut(part) for part in tainted_parts(text) + tainted_parts(shell)],
            "asked": asked,
            "line": getattr(node, "line", None) or None,
        }
        self.state.decide(record)
        self.emit("policy", **record)

    # -- files a tainted WRITE wrote -------------------------------------------------------

    def note_write(self, written: Any, content: str) -> None:
        """After a WRITE: remember (or forget) the file as holding model text."""
        self.state.tainted_files.wrote(written, is_tainted(content))

    def read_taint(self, identity: tuple[int, int] | None, content: str) -> str:
        """READ's text, tainted when the file read is one a tainted WRITE wrote in this run."""
        if identity is not None and self.state.tainted_files.holds(identity):
            return taint(content)
        return content

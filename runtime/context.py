"""What the interpreter runs with, besides its services: contexts, session state, script text.

- `Context`: the mutable state one block runs with (variables, `LAST_*`, directives in scope,
  where step results go, the cancel event). Nested blocks share the variables and `LAST_*` of
  their parent and copy its directives (a directive applies to the rest of its block and the
  blocks inside it). A PARALLEL child or a CHOOSE option gets a private overlay of variables and
  its own `LAST_*`, merged back when it finishes.
- `SessionState`: what outlives one program and every context shares by reference: the
  `TASK.DESCRIPTION`, the TEARDOWN blocks deferred to the end, where LOG lines and command-policy
  decisions go, the files a tainted WRITE wrote (`runtime/taint.py`). The session
  owns it and reads it back; the interpreter writes it, so it never calls the session.
- `ScriptText`: the file name and source text of the program that runs, for messages.
- `RunInterrupted`: how a worker thread stops after Ctrl-C (TRY never catches it).
"""

from __future__ import annotations

import threading
from collections import ChainMap
from dataclasses import dataclass, field
from typing import Any, MutableMapping

from runtime.result import StepResult
from runtime.taint import TaintedFiles
from tisslang import ast
from tisslang.formatter import expression as expr_text  # source text of a node, for messages


class RunInterrupted(BaseException):
    """A worker thread saw the session's cancel event (Ctrl-C): stop now, TRY does not catch it."""


@dataclass
class SessionState:
    """State the interpreter writes and the session keeps between programs (module docstring)."""

    task_description: str | None = None
    teardowns: list[ast.Teardown] = field(default_factory=list)
    teardown_ids: set[int] = field(default_factory=set)
    logs: list[str] | None = None  # the running program's `RunResult.logs`; None: dropped
    decisions: list[dict[str, Any]] | None = None  # the program's `RunResult.policy`; None: dropped
    tainted_files: TaintedFiles = field(default_factory=TaintedFiles)  # files a tainted WRITE wrote

    def defer_teardown(self, node: ast.Teardown) -> None:
        """Remember a TEARDOWN block for the end of the session; the same block is kept once."""
        if id(node) not in self.teardown_ids:
            self.teardown_ids.add(id(node))
            self.teardowns.append(node)

    def log(self, message: str) -> None:
        if self.logs is not None:
            self.logs.append(message)

    def decide(self, record: dict[str, Any]) -> None:
        """Keep one command-policy decision for the JSON report (runtime/interpreter_policy.py)."""
        if self.decisions is not None:
            self.decisions.append(record)


class ScriptText:
    """The program's file name and source text: quotes the failing line and ASSERT's condition."""

    def __init__(self, file: str | None = None, source: str | None = None) -> None:
        self.file = file
        if source is not None and source.startswith("\ufeff"):
            source = source[1:]  # the parser ignores a BOM; positions are counted without it
        self.lines: list[str] = source.splitlines() if source is not None else []

    def line(self, line: int | None) -> str | None:
        if line is None or not (1 <= line <= len(self.lines)):
            return None
        return self.lines[line - 1]

    def span(self, node: ast.Node) -> str:
        """The source text of a node (one or more lines), or a reconstruction without source."""
        lines = self.lines
        if node.line and node.end_line and lines and node.end_line <= len(lines):
            if node.line == node.end_line:
                return lines[node.line - 1][node.column - 1 : node.end_column - 1]
            first = lines[node.line - 1][node.column - 1 :]
            middle = lines[node.line : node.end_line - 1]
            last = lines[node.end_line - 1][: node.end_column - 1]
            return " ".join(part.strip() for part in [first, *middle, last])
        return expr_text(node)


@dataclass
class Context:
    """The mutable state one block runs with (see the module docstring)."""

    vars: MutableMapping[str, Any]
    last: dict[str, Any]
    directives: dict[str, Any]
    container: list[StepResult]
    cancel: threading.Event = field(default_factory=threading.Event)
    step: StepResult | None = None
    in_teardown: bool = False

    def nested(self, **changes: Any) -> "Context":
        """The context of a block inside this one: same variables and LAST_*, own directives."""
        child = Context(
            vars=self.vars,
            last=self.last,
            directives=dict(self.directives),
            container=self.container,
            cancel=self.cancel,
            step=self.step,
            in_teardown=self.in_teardown,
        )
        for name, value in changes.items():
            setattr(child, name, value)
        return child

    def isolated(self, container: list[StepResult]) -> "Context":
        """A context whose variable writes and LAST_* stay private until merged back."""
        vars_ = self.vars.new_child() if isinstance(self.vars, ChainMap) else ChainMap({}, self.vars)
        return Context(
            vars=vars_,
            last=dict(self.last),
            directives=dict(self.directives),
            container=container,
            cancel=self.cancel,
            step=self.step,
            in_teardown=self.in_teardown,
        )

"""REPL meta-commands: `:help`, `:vars`, `:last`, `:ast`, `:load`, `:save`, `:reset`, `:quit`.

An entry whose first non-blank character is `:` is a meta-command, never TissLang (no TissLang
statement starts with a colon); so are the bare words a Python user types, `exit`, `quit` and
`help` (with or without `()`). Parsing is separate from running so the validator can refuse an
unknown command before it is submitted.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from runtime.errors import TissRuntimeError


@dataclass(frozen=True)
class MetaSpec:
    name: str
    argument: str | None  # the argument's name in help; None when it takes none
    optional: bool
    summary: str


META_COMMANDS = {
    spec.name: spec
    for spec in (
        MetaSpec("help", None, False, "show this help (help works too)"),
        MetaSpec("vars", None, False, "list the session's variables and their values"),
        MetaSpec("last", None, False, "the last command's exit code, output and time"),
        MetaSpec("ast", "ENTRY", True, "show the syntax tree of ENTRY (default: the last entry)"),
        MetaSpec("load", "FILE", False, "run a .tiss script into this session"),
        MetaSpec("save", "FILE", False, "write this session's successful entries as a script"),
        MetaSpec("reset", None, False, "forget variables, directives, budgets and entries"),
        MetaSpec("quit", None, False, "leave the REPL (exit, quit and Ctrl-D do too)"),
    )
}
ALIASES = {"q": "quit", "exit": "quit", "h": "help", "?": "help"}


class MetaCommandError(TissRuntimeError):
    """A meta-command the REPL does not know, or one missing its argument.

    ``offset`` is where in the entry's text the problem is, for the validator's cursor.
    """

    exit_code = 2

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True)
class MetaCommand:
    name: str
    argument: str  # "" when none was given


# What a Python user types to leave or get help: an entry of just one of these words is never
# TissLang (every statement starts with an upper-case keyword), so it means what it does there.
PYTHON_WORDS = {"exit": "quit", "quit": "quit", "exit()": "quit", "quit()": "quit",
                "help": "help", "help()": "help"}


def is_meta(text: str) -> bool:
    return text.lstrip().startswith(":") or text.strip() in PYTHON_WORDS


def parse_meta(text: str) -> MetaCommand:
    """`:name [argument]` → MetaCommand; raises `MetaCommandError` with what to type instead."""
    if text.strip() in PYTHON_WORDS:
        return MetaCommand(PYTHON_WORDS[text.strip()], "")
    body = text.strip()[1:]
    name, _, argument = body.partition(" ")
    if "\n" in name:
        name, _, rest = name.partition("\n")
        argument = (rest + " " + argument).strip()
    name_end = len(text) - len(text.lstrip()) + 1 + len(name)  # the cursor goes after a bad name
    name = ALIASES.get(name, name)
    argument = argument.strip()
    spec = META_COMMANDS.get(name)
    if spec is None:
        close = difflib.get_close_matches(name, list(META_COMMANDS) + list(ALIASES), n=1)
        hint = f"; did you mean :{ALIASES.get(close[0], close[0])}?" if close else ""
        raise MetaCommandError(f"unknown command :{name}{hint} (:help lists the commands)", name_end)
    if spec.argument is None and argument:
        raise MetaCommandError(f":{name} takes no argument", text.index(argument, name_end))
    if spec.argument is not None and not spec.optional and not argument:
        raise MetaCommandError(f":{name} needs {spec.argument}: :{name} {spec.argument}",
                               len(text.rstrip()))
    return MetaCommand(name, argument)


def help_text() -> str:
    lines = [
        "Enter TissLang statements; Enter runs an entry once it is complete (blocks closed,",
        "heredoc ended). Put ELSE / CATCH on the closing line of the IF / TRY block:",
        "} ELSE {  -- Enter after a lone } runs the entry.",
        "",
    ]
    for spec in META_COMMANDS.values():
        usage = f":{spec.name}" + (f" [{spec.argument}]" if spec.optional else f" {spec.argument}" if spec.argument else "")
        lines.append(f"  {usage:<14} {spec.summary}")
    lines += [
        "",
        "Keys: Tab completes; Esc Enter submits from anywhere in the entry; Ctrl-C clears the",
        "input or stops a running command; Ctrl-D on an empty line quits.",
    ]
    return "\n".join(lines)

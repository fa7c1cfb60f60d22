"""The commands a page of documentation shows in its shell blocks, for the tests that keep the
docs true to the CLI (each parses them with the real argument parser)."""

from __future__ import annotations

import re
import shlex


def shell_lines(text: str, lang: str = "sh") -> list[str]:
    """The lines of the ```LANG fenced blocks in `text`, backslash continuations joined."""
    lines = []
    for block in re.findall(rf"```{lang}\n(.*?)```", text, re.S):
        lines.extend(block.replace("\\\n", " ").splitlines())
    return lines


def tiss_commands(text: str, lang: str = "sh") -> list[list[str]]:
    """The arguments of every `tiss` command in the ```LANG blocks of `text`:
    a line's `&&` and `|` parts are commands of their own; `VAR=value` prefixes and comments are
    dropped."""
    found = []
    for line in shell_lines(text, lang):
        for part in re.split(r"&&|\|", line):
            words = shlex.split(part, comments=True)
            while words and "=" in words[0]:  # VAR=value prefixes
                words = words[1:]
            if words and words[0] == "tiss":
                found.append(words[1:])
    return found

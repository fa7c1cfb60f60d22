"""What the editor says about TissLang's words: hover text, completion details, block snippets.

Read from the language's own tables, never written again here: statements from
``tisslang.statements`` (keyword, one-line description, example, block fields, clauses),
directives from ``tisslang.directives``, built-in references from
``tisslang.analysis.BUILTIN_DOCS``.
"""

from __future__ import annotations

import re
from functools import lru_cache

from tisslang import directives as _directives
from tisslang import statements as _table
from tisslang.analysis import BUILTIN_DOCS


def statement(keyword: str) -> str | None:
    """Markdown for a statement keyword: what it does and an example."""
    spec = _table.BY_KEYWORD.get(keyword)
    if spec is None or not spec.is_keyword:
        for spec in _table.STATEMENTS:  # a clause: AS belongs to READ, ELSE to IF ...
            if keyword in spec.clauses:
                return (f"**{keyword}**: part of {spec.keyword}, which does this: "
                        f"{spec.description}\n\n```tisslang\n{spec.example}\n```")
        return None
    return f"**{keyword}**: {spec.description}\n\n```tisslang\n{spec.example}\n```"


@lru_cache(maxsize=None)
def directive(name: str) -> str | None:
    """Markdown for a directive: what it does, its value, what it governs, an example."""
    for spec in _directives.DIRECTIVES:
        if spec.name == name:
            return (f"**@{name}**: {spec.doc}\n\nValue: {spec.value}; governs {spec.governs}."
                    f"\n\n```tisslang\n{spec.example}\n```")
    return None


def builtin(head: str, field: str | None = None) -> str | None:
    entry = BUILTIN_DOCS.get(head)
    if entry is None:
        return None
    what, fields = entry
    if field is None:
        listed = ", ".join(fields) if fields else "no fields"
        return f"**{head}**: {what} (built in; fields: {listed})"
    doc = fields.get(field)
    return f"**{head}.{field}**: {doc}" if doc else None


def describe(label: str, meta: str) -> str | None:
    """Documentation for a completion item."""
    if meta in ("statement", "keyword"):
        return statement(label)  # a clause (AS, ELSE ...) gets its statement's help
    if meta == "directive":
        return directive(label.lstrip("@"))
    if meta == "built-in":
        return builtin(label)
    if meta.endswith(" field"):
        return builtin(meta[: -len(" field")], label)
    return None


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def _placeholder(index: int, text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("$", "\\$").replace("}", "\\}")
    return "${%d:%s}" % (index, escaped)


@lru_cache(maxsize=None)
def snippet(keyword: str) -> str | None:
    """A snippet for a block statement, made from the first line of its example: its strings
    (or, for IF, its condition) become placeholders and the block gets braces with the cursor
    inside: ``STEP "${1:Run the tests}" {\\n\\t$0\\n}``."""
    spec = _table.BY_KEYWORD.get(keyword)
    if spec is None or not spec.is_keyword or not spec.block_fields:
        return None
    head = spec.example.split("\n")[0]
    head = head[len(keyword):].split("{")[0].strip()
    counter = iter(range(1, 100))
    if head and _STRING.fullmatch(head):
        middle = '"' + _placeholder(next(counter), head[1:-1]) + '" '
    elif head:
        middle = _placeholder(next(counter), head) + " "
    else:
        middle = ""
    return f"{keyword} {middle}{{\n\t$0\n}}"

"""One list of failure kinds: each `LAST_ERROR.KIND` is raised from one class, listed in
`runtime.errors.FAILURE_KINDS` and documented in docs/tisslang.md; no kind is a bare string."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import runtime
from runtime.errors import FAILURE_KINDS, ScriptFailure

ROOT = Path(__file__).resolve().parents[2]


def _all_failure_classes() -> list[type]:
    for info in pkgutil.walk_packages(runtime.__path__, "runtime."):
        if info.name.startswith("runtime.lsp") or info.name == "runtime.__main__":
            continue  # the optional `lsp` extra, and `python -m runtime`; neither defines failures
        importlib.import_module(info.name)
    found, stack = [], [ScriptFailure]
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    return found


def test_each_kind_comes_from_one_class_and_is_listed():
    owners: dict[str, list[str]] = {}
    for cls in _all_failure_classes():
        if "kind" in vars(cls) and cls.__module__.startswith("runtime."):
            owners.setdefault(cls.kind, []).append(f"{cls.__module__}.{cls.__qualname__}")
    assert {kind: names for kind, names in owners.items() if len(names) > 1} == {}
    assert {kind: names[0] for kind, names in owners.items()} == FAILURE_KINDS


def test_every_kind_is_documented():
    doc = (ROOT / "docs" / "tisslang.md").read_text(encoding="utf-8")
    table = doc.split("### Failure kinds", 1)[1].split("\n## ", 1)[0]
    documented = dict(re.findall(r"^\| `(\w+)` \|.*\| `([\w.]+)` \|$", table, re.M))
    assert documented == FAILURE_KINDS


def test_no_kind_is_a_bare_string_at_a_raise():
    # `ScriptFailure(..., kind="X")` would make a kind without a class.
    offenders = []
    for path in (ROOT / "runtime").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = getattr(node.func, "id", getattr(node.func, "attr", "")) if isinstance(node, ast.Call) else ""
            if name == "ScriptFailure" and any(k.arg == "kind" for k in node.keywords):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []

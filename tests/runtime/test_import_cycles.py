"""No import cycle between the runtime's modules, `if TYPE_CHECKING:` imports included: every
module of `runtime/` can be understood (and type-checked) on top of the ones it imports, and the
interpreter never reaches back into the session.

Imports at module level count wherever they stand (under `if TYPE_CHECKING:`, in `try:`);
imports inside a function do not: they are how the CLI and the backends load a subcommand's or a
backend's code only when it is used. `from package import submodule` counts as importing the
submodule."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "runtime"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _module_level(tree: ast.Module):
    """Every statement at module level, descending into if/try/with blocks but not functions."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.ClassDef):
            stack.extend(node.body)  # class bodies run at import time too
            continue
        for name in ("body", "orelse", "finalbody", "handlers"):
            stack.extend(getattr(node, name, []) or [])


def _imports(name: str, path: Path) -> set[str]:
    """The runtime modules `name` imports at module level (TYPE_CHECKING blocks too)."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in _module_level(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES]
            targets = submodules if len(submodules) == len(node.names) else [base] + submodules
        for target in targets:
            if target in MODULES and target != name:
                found.add(target)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycle_from(start: str) -> list[str] | None:
    """A path start -> ... -> start in GRAPH, if there is one (depth-first)."""
    stack = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in sorted(GRAPH[node]):
            if nxt == start:
                return path + [start]
            # A package's __init__ is imported with its submodules; the package importing
            # its own submodule lazily for re-export is not a cycle of meaning.
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, path + [nxt]))
    return None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_cycle_through(module):
    cycle = _cycle_from(module)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_graph_sees_type_checking_imports():
    # The analysis must not miss imports under `if TYPE_CHECKING:` (the point of the test).
    assert "runtime.context" in GRAPH["runtime.interpreter_conditions"]
    assert "runtime.options" in GRAPH["runtime.interpreter_directives"]


def test_the_interpreter_does_not_know_the_session():
    for name in ("runtime.interpreter", "runtime.interpreter_conditions",
                 "runtime.interpreter_concurrency", "runtime.interpreter_directives", "runtime.context"):
        assert "runtime.session" not in GRAPH[name], name


@pytest.mark.parametrize("module", ["runtime.interpreter", "runtime.session", "runtime.estimate",
                                    "runtime.plan", "runtime.context", "runtime.repl.engine"])
def test_each_module_imports_first_in_a_fresh_interpreter(module):
    # An import-order dependency (a cycle that only works from one entry point) fails here.
    proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr

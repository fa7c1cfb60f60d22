"""Directives at run time: checking one where it is written, and what `@model` and the
generation directives turn into for a PROMPT_AGENT (a backend and `GenerationSettings`).

A mixin of `Interpreter` (`runtime/interpreter.py`): it uses the interpreter's `value(node,
ctx)`, `backends` and `options`. `Backends` is the session's default backend plus those
`@model` chose, each resolved once per session.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable

from runtime import values
from runtime.backends.base import BackendNotConfigured, GenerationSettings
from runtime.backends.select import is_backend_spec
from runtime.budget import parse_duration
from runtime.errors import DirectiveError
from runtime.taint import join
from tisslang import ast
from tisslang import directives as directive_table

if TYPE_CHECKING:
    from runtime.context import Context
    from runtime.options import RunOptions


class Backends:
    """The default backend (may be None) and the backends `@model` named, resolved once each."""

    def __init__(self, default: Any = None, model_name: str | None = None) -> None:
        self.default = default
        self.model_name = model_name
        self._chosen: dict[str, Any] = {}
        self._lock = threading.Lock()

    def for_directives(self, directives: dict[str, Any]) -> Any:
        spec = directives.get("model")
        # `@model` picks a backend when it names one (echo, a URL), and also when it names a
        # checkpoint directory while no backend was chosen; otherwise it is the model name the
        # chosen backend is asked for.
        if isinstance(spec, str) and (is_backend_spec(spec) or self.default is None):
            with self._lock:
                if spec not in self._chosen:
                    from runtime.backends.select import resolve_backend

                    self._chosen[spec] = resolve_backend(spec, self.model_name)
                return self._chosen[spec]
        if self.default is None:
            raise BackendNotConfigured()
        return self.default


def check_directive(name: str, value: Any) -> None:
    """Refuse, where it is written, a value the directive table says the directive cannot use.

    Directives checked when used (the generation settings) and unknown ones pass here.
    """
    spec = directive_table.BY_NAME.get(name)
    if spec is None or spec.checked != directive_table.WHERE_WRITTEN:
        return
    if name == "timeout":
        parse_duration(value, what="@timeout")  # the budgets' duration rules (and messages)
    try:
        spec.convert(value)
    except directive_table.DirectiveValueError as exc:
        hint = f"; {exc.hint}" if exc.hint else ""
        raise DirectiveError(join([f"@{name} {exc.requirement}, got ", values.shown(value), hint])) from None


class DirectivesMixin:
    """`visit_Directive`, `backend_for(ctx)` and `settings(ctx)`; see the module docstring."""

    backends: Backends
    options: "RunOptions"
    value: Callable[[ast.Node, "Context"], Any]

    def visit_Directive(self, node: ast.Directive, ctx: "Context") -> dict[str, Any]:
        value = True if node.value is None else self.value(node.value, ctx)
        check_directive(node.name, value)  # where it is written, not at the RUN it affects
        ctx.directives[node.name] = value
        return {"name": node.name}

    def backend_for(self, ctx: "Context") -> Any:
        return self.backends.for_directives(ctx.directives)

    def settings(self, ctx: "Context") -> GenerationSettings:
        directives = dict(ctx.directives)
        if isinstance(directives.get("model"), str) and is_backend_spec(directives["model"]):
            directives.pop("model")  # it chose the backend, it is not a model name
        settings = GenerationSettings.from_directives(directives)
        if settings.model is None and self.options.model_name:
            settings = settings.replace(model=self.options.model_name)
        return settings

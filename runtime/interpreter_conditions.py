"""ASSERT and IF conditions: their truth, and why one is false (for ASSERT's message).

A mixin of `Interpreter` (`runtime/interpreter.py`): it uses the interpreter's `value(node, ctx)`
for operands and `workspace.exists` for `FILE ... EXISTS`; the operators follow
`runtime.values`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from runtime import values
from runtime.errors import ScriptFailure
from runtime.interpreter_policy import quoting
from runtime.taint import join
from tisslang import ast

if TYPE_CHECKING:
    from runtime.context import Context
    from runtime.workspace import Workspace


_VALUE_NODES = (ast.Ref, ast.String, ast.Number, ast.Boolean, ast.ListValue, ast.ObjectValue)


class ConditionsMixin:
    """`condition(expr, ctx)` and `explain(expr, ctx)`; see the module docstring."""

    workspace: "Workspace"
    value: Callable[[ast.Node, "Context"], Any]

    @staticmethod
    def _positioned(node: ast.Node, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except ScriptFailure as exc:
            if exc.line is None and node.line:
                exc.line, exc.column = node.line, node.column
            raise

    def condition(self, expr: ast.Node, ctx: "Context") -> bool:
        """The truth of an ASSERT / IF condition; operators follow `runtime.values`."""
        if isinstance(expr, ast.Or):
            return any(self.condition(operand, ctx) for operand in expr.operands)
        if isinstance(expr, ast.And):
            return all(self.condition(operand, ctx) for operand in expr.operands)
        if isinstance(expr, ast.Not):
            return not self.condition(expr.operand, ctx)
        if isinstance(expr, ast.Compare):
            left, right = self.value(expr.left, ctx), self.value(expr.right, ctx)
            return self._positioned(expr, lambda: values.compare(expr.op, left, right))
        if isinstance(expr, ast.Contains):
            left, right = self.value(expr.left, ctx), self.value(expr.right, ctx)
            found = self._positioned(expr, lambda: values.contains(left, right))
            return not found if expr.negated else found
        if isinstance(expr, ast.Matches):
            left, pattern = self.value(expr.left, ctx), self.value(expr.pattern, ctx)
            return self._positioned(expr, lambda: values.matches(left, pattern))
        if isinstance(expr, ast.IsEmpty):
            operand = self.value(expr.operand, ctx)
            empty = self._positioned(expr, lambda: values.is_empty(operand))
            return not empty if expr.negated else empty
        if isinstance(expr, ast.FileExists):
            path = self.value(expr.path, ctx)
            if not isinstance(path, str):
                raise values.TypeMismatch(
                    join([f"FILE needs a path string, got {values.type_name(path)} ", values.shown(path)]),
                    line=expr.line, column=expr.column,
                )
            with quoting(path):  # a failure quoting a model's path is tainted
                return self._positioned(expr, lambda: self.workspace.exists(path))
        value = self.value(expr, ctx)
        return self._positioned(expr, lambda: values.truth(value))

    def explain(self, expr: ast.Node, ctx: "Context") -> str:
        """Why a condition is false, with the values involved (for ASSERT's message)."""
        if isinstance(expr, ast.And):
            for operand in expr.operands:
                if not self.condition(operand, ctx):
                    return self.explain(operand, ctx)
        # Built with taint.join: a value quoted from a model keeps its taint in the message, so
        # `LAST_ERROR.MESSAGE` / `.REPORT` cannot carry model text into a RUN unasked.
        if isinstance(expr, ast.Compare):
            left, right = self.value(expr.left, ctx), self.value(expr.right, ctx)
            return join(["left is ", values.shown(left), ", right is ", values.shown(right)])
        if isinstance(expr, ast.Contains):
            left, right = self.value(expr.left, ctx), self.value(expr.right, ctx)
            word = "contains" if expr.negated else "does not contain"
            return join([values.shown(left), f" {word} ", values.shown(right)])
        if isinstance(expr, ast.Matches):
            left, pattern = self.value(expr.left, ctx), self.value(expr.pattern, ctx)
            return join([values.shown(left), " does not match ", values.shown(pattern)])
        if isinstance(expr, ast.IsEmpty):
            operand = self.value(expr.operand, ctx)
            return join(["the value is ", values.shown(operand)])
        if isinstance(expr, ast.FileExists):
            return join([values.shown(self.value(expr.path, ctx)), " does not exist in the workspace"])
        if isinstance(expr, _VALUE_NODES):
            return join(["the value is ", values.shown(self.value(expr, ctx))])
        return ""

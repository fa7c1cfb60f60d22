"""The QuantaTissu runtime: executes TissLang programs safely inside a workspace."""

# The public API, loaded on first use so that `tiss` subcommands that never run a script
# (and `import runtime.cli`) stay cheap.
_EXPORTS = {
    "run": "runtime.session",
    "Session": "runtime.session",
    "RunOptions": "runtime.session",
    "RunResult": "runtime.result",
    "StepResult": "runtime.result",
    "Failure": "runtime.result",
    "Workspace": "runtime.workspace",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'runtime' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)

"""Loss curves of a training run (`tiss plot RUN_DIR -o loss.png`).

Reads the run's `metrics.jsonl` (the per-step training loss and the evaluations' validation loss,
see `lm.train`) and draws both against optimiser steps (left) and training tokens seen (right),
with matplotlib's Agg backend (no display needed). Tokens per step come from the run's settings
in its checkpoint's trainer_state.json (batch x sequence length x gradient accumulation); a run
killed before its first checkpoint has none, and its picture shows steps only.

matplotlib is the optional extra `plot` (`pip install 'quantatissu[plot]'`). The picture is
`width` x `height` pixels exactly and is written atomically.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from lm.atomic import write_atomic
from lm.errors import LMError

PLOT_EXTRA = "pip install 'quantatissu[plot]'"
DPI = 100


class PlotError(LMError):
    """A run directory without metrics, an unwritable picture, or matplotlib missing."""


def read_metrics(run) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """`(step, loss)` of every training step and `(step, val_loss)` of every evaluation."""
    run = Path(run)
    if not run.is_dir():
        raise PlotError(f"{run} is not a directory; pass the run directory `tiss train --out` made")
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise PlotError(f"{run} has no metrics.jsonl: it is not a run directory of `tiss train --out`")
    train, val = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            continue
        if isinstance(record.get("loss"), (int, float)):
            train.append((record["step"], float(record["loss"])))
        elif isinstance(record.get("val_loss"), (int, float)):
            val.append((record["step"], float(record["val_loss"])))
    if not train:
        raise PlotError(f"{path} holds no training steps yet; plot the run once it has trained")
    return train, val


def tokens_per_step(run) -> int | None:
    """batch_size x seq_len x grad_accum of the run, from its checkpoint's settings, or None."""
    for name in ("checkpoint", ".checkpoint.old"):
        try:
            settings = json.loads((Path(run) / name / "trainer_state.json").read_text(encoding="utf-8"))["settings"]
            return int(settings["batch_size"]) * int(settings["seq_len"]) * int(settings.get("grad_accum", 1))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def plot_run(run, out, width: int = 1000, height: int = 500) -> Path:
    """Draw the run's loss curves into the PNG file `out` (`width` x `height` pixels)."""
    for name, value in (("--width", width), ("--height", height)):
        if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 10000:
            raise PlotError(f"{name} must be a whole number of pixels from 100 to 10000, got {value!r}")
    train, val = read_metrics(run)
    per_step = tokens_per_step(run)
    try:
        import matplotlib
    except ImportError:
        raise PlotError(f"tiss plot needs matplotlib: {PLOT_EXTRA}") from None
    matplotlib.use("Agg")  # files only: no display, no GUI toolkit
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    axes = fig.subplots(1, 2 if per_step else 1, squeeze=False)[0]
    scales = [("step", 1)] + ([("tokens", per_step)] if per_step else [])
    for ax, (label, scale) in zip(axes, scales):
        ax.plot([s * scale for s, _ in train], [v for _, v in train], label="training loss", linewidth=1)
        if val:
            ax.plot([s * scale for s, _ in val], [v for _, v in val], "o-", label="validation loss", markersize=3)
        ax.set_xlabel(label if label == "step" else "training tokens")
        ax.set_ylabel("loss (nats per token)")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(f"{Path(run).resolve().name}: {train[-1][0]} steps")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    target = Path(out)
    try:
        write_atomic(target, buffer.getvalue())
    except OSError as exc:
        raise PlotError(f"cannot write {target}: {exc.strerror or exc}; choose another -o") from None
    return target

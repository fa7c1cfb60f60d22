"""docs/model.md stays true to the CLI: every `tiss` command in its shell examples parses with the
real argument parser (a renamed or removed flag fails here), and the guide covers what the model
issues ask of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from docblocks import tiss_commands
from runtime import cli

DOC = Path(__file__).resolve().parents[2] / "docs" / "model.md"


COMMANDS = tiss_commands(DOC.read_text(encoding="utf-8"))


def test_the_guide_has_commands_for_every_subcommand():
    used = {c[0] if c[0] not in ("tokenizer", "corpus") else f"{c[0]} {c[1]}" for c in COMMANDS}
    assert {"corpus build", "tokenizer train", "tokenizer encode", "tokenizer decode", "train", "generate"} <= used


@pytest.mark.parametrize("argv", COMMANDS, ids=[" ".join(c)[:60] for c in COMMANDS])
def test_every_documented_command_parses(argv):
    try:
        cli.create_parser().parse_args(argv)
    except SystemExit as exc:  # argparse's way of rejecting a command line
        pytest.fail(f"docs/model.md: `tiss {' '.join(argv)}` is rejected by the CLI (exit {exc.code})")


@pytest.mark.parametrize(
    "topic",
    ["--threads", "--resume", "metrics.jsonl", "optimizer.safetensors", "trainer_state.json",
     "bits per byte", "--prompt-file -", "--no-kv-cache", "--stats", "lm.load()", "manifest.json"],
)
def test_the_guide_covers(topic):
    assert topic in DOC.read_text(encoding="utf-8")

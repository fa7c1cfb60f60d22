"""README.md stays true: every `tiss` command in its shell blocks parses with the real argument
parser, it says how to get `tiss` on the PATH after the quick start, it trains into a run
directory of its own (not docs/model.md's), and the quick start's output file is git-ignored."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from docblocks import shell_lines
from runtime import cli

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
MODEL_DOC = (ROOT / "docs" / "model.md").read_text(encoding="utf-8")


def _commands(text: str) -> list[list[str]]:
    # Not docblocks.tiss_commands: the README also runs `.venv/bin/tiss`, and a `VAR=value tiss`
    # line is not counted here (the model guide's runs/default would join _train_outs).
    found = []
    for line in shell_lines(text):
        for part in re.split(r"&&|\|", line):
            words = shlex.split(part, comments=True)
            if words and words[0] in ("tiss", ".venv/bin/tiss"):
                found.append(words[1:])
    return found


COMMANDS = _commands(README)


def test_the_readme_has_commands():
    assert {c[0] for c in COMMANDS} >= {"run", "models", "chat", "corpus", "train", "generate"}


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_every_readme_command_parses(argv):
    args = cli.create_parser().parse_args(argv)
    assert getattr(args, "func", None) is not None


def test_the_readme_says_how_to_put_tiss_on_the_path():
    assert ". .venv/bin/activate" in README and "`.venv/bin/tiss`" in README


def _train_outs(text: str) -> set[str]:
    return {argv[argv.index("--out") + 1] for argv in _commands(text)
            if argv[0] == "train" and "--out" in argv}


def test_the_readme_and_the_model_guide_train_into_different_runs():
    readme, guide = _train_outs(README), _train_outs(MODEL_DOC)
    assert readme and guide and not readme & guide


def test_the_readme_training_example_is_small_and_says_how_long_it_takes():
    (train,) = [argv for argv in COMMANDS if argv[0] == "train"]
    args = cli.create_parser().parse_args(train)
    assert args.steps <= 200 and args.d_model <= 64 and args.n_layers <= 2  # measured: ~12 s
    assert re.search(r"about \d+ s for the three commands on a busy\s+2-core machine", README)


def test_the_quick_start_output_is_git_ignored():
    assert "writes `greeting.txt` in\nthe current directory" in README
    ignored = subprocess.run(["git", "check-ignore", "-q", "greeting.txt"], cwd=ROOT)
    assert ignored.returncode == 0

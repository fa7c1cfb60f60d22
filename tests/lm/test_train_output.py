"""What `tiss train` prints, as nanoGPT users expect it: a line per saved checkpoint, ms/step and
tokens/s in the live line, a final summary with the elapsed time and the last validation loss,
a warning when the loss explodes, and `--sample-every N` samples. Through `runtime.cli.main`."""

import re

import pytest

from runtime import cli

TINY = ["--steps", "12", "--d-model", "32", "--n-layers", "1", "--n-heads", "2", "--seq-len", "16",
        "--batch-size", "4", "--vocab-size", "280", "--threads", "1", "--seed", "0"]


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    for i in range(4):
        (root / f"f{i}.py").write_text(
            "".join(f"def add_{j}(a, b):\n    return a + b * {j}\n\n" for j in range(40 * (i + 1))),
            encoding="utf-8")
    return root


def test_checkpoint_lines_live_line_and_summary(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "--corpus", str(corpus), "--out", str(out), *TINY,
                     "--eval-every", "6", "--save-every", "5"]) == 0
    err = capsys.readouterr().err
    checkpoint = out / "checkpoint"
    saved = re.findall(r"^step (\d+): checkpoint saved in (.+)$", err, re.M)
    assert saved == [("5", str(checkpoint)), ("10", str(checkpoint)), ("12", str(checkpoint))]
    live = [line for line in err.splitlines() if re.match(r"step \d+/12 \|", line)]
    assert live and all(re.search(r"\| [\d,]+ ms/step \| [\d,]+ tok/s \|", line) for line in live)
    validations = re.findall(r"^step \d+: validation loss (\d+\.\d{4})", err, re.M)
    summary = err.strip().splitlines()[-1]
    match = re.fullmatch(r"done: 12 steps in (\d+\.\d) s, loss \d+\.\d{4}, validation loss "
                         r"(\d+\.\d{4}); checkpoint in (.+)", summary)
    assert match, summary
    assert match.group(2) == validations[-1]  # the last validation, not an earlier one
    assert match.group(3) == str(checkpoint)
    assert "warning" not in err


def test_an_exploding_loss_warns_once(tmp_path, corpus, capsys):
    code = cli.main(["train", "--corpus", str(corpus), "--out", str(tmp_path / "run"), *TINY,
                     "--lr", "1000"])
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning: the loss is")]
    assert len(warnings) == 1, err
    assert "training is diverging" in warnings[0] and "lower --lr (now 1000)" in warnings[0]
    # Whether it then becomes NaN (an error, exit 2) or not, the warning came first.
    if code != 0:
        assert err.index(warnings[0]) < err.index("training diverged")


def test_sample_every_prints_samples_and_may_change_on_resume(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "--corpus", str(corpus), "--out", str(out), *TINY,
                     "--sample-every", "4"]) == 0
    samples = re.findall(r"^step (\d+) sample: '(.*)'$", capsys.readouterr().err, re.M)
    assert [step for step, _ in samples] == ["4", "8", "12"]
    assert all(len(text) > 8 for _, text in samples)
    # The same prompt each time (the validation data's first tokens), so they can be compared.
    assert len({text[:4] for _, text in samples}) == 1
    assert cli.main(["train", "--resume", str(out), "--steps", "14", "--sample-every", "7"]) == 0
    assert re.findall(r"^step (\d+) sample:", capsys.readouterr().err, re.M) == ["14"]


def test_no_samples_by_default_and_bad_values_refused(tmp_path, corpus, capsys):
    assert cli.main(["train", "--corpus", str(corpus), "--out", str(tmp_path / "a"), *TINY]) == 0
    assert " sample: " not in capsys.readouterr().err
    assert cli.main(["train", "--corpus", str(corpus), "--out", str(tmp_path / "b"), *TINY,
                     "--sample-every", "-1"]) == 2
    assert "--sample-every must be zero or a positive integer, got -1" in capsys.readouterr().err

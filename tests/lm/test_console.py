"""`lm.console`: the `tiss:` message prefix, and output into a pipe whose reader went away."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lm import console

TOKENIZER = Path(__file__).resolve().parents[2] / "lm" / "default_model" / "tokenizer.json"


def test_messages_read_like_the_cli_s():
    assert console.message("skipped x") == "tiss: skipped x"
    assert console.message("fewer merges", "note") == "tiss: note: fewer merges"
    err = io.StringIO()
    console.say(err, "rank 1 of 2: gone", "error")
    assert err.getvalue() == "tiss: error: rank 1 of 2: gone\n"


def test_write_out_into_a_closed_pipe_returns_false_and_silences_the_stream():
    read_end, write_end = os.pipe()
    os.close(read_end)
    with open(write_end, "w", encoding="utf-8") as stream:
        assert console.write_out(stream, "x" * 100_000) is False
        assert console.write_out(stream, "more") is True  # the descriptor is /dev/null now
        assert os.path.samestat(os.fstat(stream.fileno()), os.stat(os.devnull))


def test_write_out_to_a_stream_without_a_descriptor():
    out = io.StringIO()
    assert console.write_out(out, "text") is True and out.getvalue() == "text"


@pytest.mark.parametrize("command", [
    ["tokenizer", "encode", "--tokenizer", str(TOKENIZER), "--file", "{big}"],
    ["tokenizer", "encode", "--tokenizer", str(TOKENIZER), "--file", "{big}", "--show"],
    ["tokenizer", "decode", "--tokenizer", str(TOKENIZER)],  # the ids come from stdin
], ids=["encode", "encode-show", "decode"])
def test_tokenizer_output_into_a_closed_pipe_stops_quietly(tmp_path, command):
    # Output well beyond what a pipe and the reader's first read hold (some 100 KB), so the
    # writer really meets the closed pipe.
    big = tmp_path / "big.txt"
    big.write_text("hello world, " * 40_000, encoding="utf-8")
    ids = tmp_path / "ids.txt"
    ids.write_text((" ".join(map(str, range(100, 2000))) + " ") * 100, encoding="utf-8")
    args = [a.format(big=big) for a in command]
    # Buffered, as a shell runs it: unbuffered, one large write can end silently half done.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    with open(ids, "rb") as stdin:
        proc = subprocess.Popen([sys.executable, "-m", "runtime", *args], stdin=stdin,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.read(1)
    proc.stdout.close()  # like `| head -c 1`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_training_goes_on_to_its_checkpoint_when_the_log_reader_goes_away(tmp_path):
    # `tiss train ... 2>&1 | head`: the progress lines stop, the run does not.
    corpus = Path(__file__).resolve().parents[2] / "corpus" / "tiss"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "train", "--corpus", str(corpus), "--out", str(tmp_path / "run"),
         "--steps", "60", "--batch-size", "2", "--seq-len", "16", "--d-model", "16", "--n-layers", "1",
         "--n-heads", "2", "--vocab-size", "280", "--eval-every", "1", "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
    )
    proc.stdout.readline()
    proc.stdout.close()
    assert proc.wait(timeout=300) == 0
    assert (tmp_path / "run" / "checkpoint" / "model.safetensors").exists()
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) >= 60

"""`tiss generate` and `tiss tokenizer` as ollama and llm users type them: the prompt as an
argument, from a pipe, -p and -n; Ctrl-C on a line of its own; the shipped model's tokenizer
by default. Through the installed command (subprocess), as a user runs it."""

import os
import signal
import subprocess
import sys
import time

import pytest

from lm.checkpoint import DEFAULT_MODEL_DIR
from lm.tokenizer import BPETokenizer

TISS = [sys.executable, "-m", "runtime"]
GREEDY = ["--temperature", "0", "--seed", "0"]


def tiss(*args, stdin=None, **kwargs):
    return subprocess.run([*TISS, *args], input=stdin, capture_output=True, text=True,
                          timeout=120, **kwargs)


def test_the_prompt_as_argument_option_or_pipe_gives_the_same_text():
    by_arg = tiss("generate", "def add(a, b):", "-n", "6", *GREEDY, stdin="")
    by_flag = tiss("generate", "-p", "def add(a, b):", "--max-new-tokens", "6", *GREEDY)
    # `echo TEXT |` adds a newline the user did not mean: it is dropped.
    by_pipe = tiss("generate", "-n", "6", *GREEDY, stdin="def add(a, b):\n")
    assert by_arg.returncode == by_flag.returncode == by_pipe.returncode == 0, by_pipe.stderr
    assert by_arg.stdout == by_flag.stdout == by_pipe.stdout
    assert by_arg.stdout.strip()


def test_no_prompt_at_all_or_two_prompts_are_usage_errors():
    # stdin a terminal is the only case with nothing to read: run under a pseudo-terminal.
    import pty

    leader, follower = pty.openpty()
    try:
        done = subprocess.run([*TISS, "generate", "-n", "2"], stdin=follower, capture_output=True,
                              text=True, timeout=120)
    finally:
        os.close(leader)
        os.close(follower)
    assert done.returncode == 2
    assert done.stderr.startswith("tiss: error: no prompt: give it as an argument")
    empty = tiss("generate", "-n", "2", stdin="")  # a pipe with nothing in it (cron, </dev/null)
    assert empty.returncode == 2
    assert empty.stderr.startswith("tiss: error: no prompt: standard input was empty")
    two = tiss("generate", "x", "-p", "y")
    assert two.returncode == 2
    assert two.stderr == "tiss: error: the prompt is given twice (PROMPT and --prompt); give it once\n"


def test_ctrl_c_ends_the_generated_line_before_saying_interrupted():
    proc = subprocess.Popen([*TISS, "generate", "def", "-n", "100000", "--seed", "1"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        first = proc.stdout.read(8)  # text is streaming: interrupt in the middle of it
        assert first
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    out = (first + rest).decode("utf-8", "replace")
    assert proc.returncode == 130
    assert out.endswith("\n")
    assert err.decode() == "tiss: interrupted\n"


def test_tokenizer_encode_and_decode_default_to_the_shipped_model():
    text = "def add(a, b):\n    return a + b\n"
    shipped = BPETokenizer.load(DEFAULT_MODEL_DIR)
    encoded = tiss("tokenizer", "encode", text)
    assert encoded.returncode == 0, encoded.stderr
    assert encoded.stdout == " ".join(map(str, shipped.encode(text))) + "\n"
    decoded = tiss("tokenizer", "decode", stdin=encoded.stdout)
    assert decoded.returncode == 0 and decoded.stdout == text
    # --tokenizer still picks another one.
    explicit = tiss("tokenizer", "encode", "--tokenizer", str(DEFAULT_MODEL_DIR), text)
    assert explicit.stdout == encoded.stdout


@pytest.mark.parametrize("action", ["encode", "decode"])
def test_tokenizer_help_names_the_default(action):
    helptext = tiss("tokenizer", action, "--help").stdout
    assert "default: the shipped model's" in " ".join(helptext.split())


@pytest.mark.parametrize("pieces, shown", [(["def", " add"], "def add\n"),
                                           (["x = 1\n"], "x = 1\n")])
def test_ctrl_c_after_any_text_leaves_no_glued_or_blank_line(monkeypatch, capsys, pieces, shown):
    import importlib

    from runtime import cli

    module = importlib.import_module("lm.generate")  # `lm.generate` is also a function's name

    class Interrupted:
        result = None

        def __iter__(self):
            yield from pieces
            raise KeyboardInterrupt

    monkeypatch.setattr(module, "stream", lambda *a, **k: Interrupted())
    assert cli.main(["generate", "def", "-n", "3"]) == 130
    captured = capsys.readouterr()
    assert captured.out == shown and captured.err == "tiss: interrupted\n"

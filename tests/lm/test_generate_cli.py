"""`tiss generate` end to end on a tiny checkpoint made here: streamed text, --stats, stop strings,
seeds, and clear errors for a missing or corrupt checkpoint."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lm.checkpoint import load
from lm.generate import generate
from runtime import cli

TEXTS = [
    "the quick brown fox jumps over the lazy dog. " * 8,
    'STEP "greet" {\n    PROMPT_AGENT "say hello" INTO answer\n}\n' * 5,
    "naïve café — 日本語のテキスト 😀\n" * 4,
]


@pytest.fixture(scope="module")
def make_checkpoint(make_tiny_checkpoint):
    return lambda path, seed=0: make_tiny_checkpoint(path, TEXTS, 320, ctx=48, seed=seed)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, make_checkpoint):
    return make_checkpoint(tmp_path_factory.mktemp("gen") / "tiny")


def run(capsys, *args):
    code = cli.main(["generate", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_streams_the_same_text_as_the_library(ckpt, capsys):
    code, out, err = run(capsys, "--checkpoint", ckpt, "--prompt", "the quick", "--max-new-tokens", 20,
                         "--temperature", 0, "--stats")
    model, tok = load(ckpt)
    want = generate(model, tok, "the quick", 20, temperature=0)
    assert code == 0
    assert out == want.text + "\n"
    assert f"prompt tokens: {want.prompt_tokens}" in err
    assert f"generated tokens: {want.completion_tokens}" in err
    assert "tokens/s" in err and "time to first token" in err


def test_seeded_sampling_is_reproducible_and_cache_flag_agrees(ckpt, capsys):
    args = ["--checkpoint", ckpt, "--prompt", "STEP", "--max-new-tokens", 25, "--seed", 3, "--top-k", 40,
            "--top-p", 0.95, "--min-p", 0.01, "--repetition-penalty", 1.1]
    first = run(capsys, *args)
    second = run(capsys, *args)
    uncached = run(capsys, *args, "--no-kv-cache")
    assert first[0] == 0 and first[1] == second[1] == uncached[1]
    assert "prompt tokens" not in first[2]  # stats only when asked


def test_prompt_file_and_stop(ckpt, capsys, tmp_path):
    model, tok = load(ckpt)
    full = generate(model, tok, "naïve", 30, temperature=0).text
    assert len(full) > 4
    stop = full[2:4]
    prompt_file = tmp_path / "prompt.txt"
    prompt_file.write_text("naïve", encoding="utf-8")
    code, out, _ = run(capsys, "--checkpoint", ckpt, "--prompt-file", prompt_file, "--max-new-tokens", 30,
                       "--temperature", 0, "--stop", stop, "--stop", "\x00never")
    assert code == 0 and out == full[: full.find(stop)] + "\n"


def test_missing_checkpoint_is_a_clear_error(capsys, tmp_path):
    code, out, err = run(capsys, "--checkpoint", tmp_path / "nope", "--prompt", "x")
    assert code == 2 and out == ""
    assert err.startswith("tiss: error:") and "nope" in err and "Traceback" not in err


def test_corrupt_checkpoint_is_a_clear_error(capsys, tmp_path, make_checkpoint):
    bad = make_checkpoint(tmp_path / "bad")
    (bad / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    code, _, err = run(capsys, "--checkpoint", bad, "--prompt", "x")
    assert code == 2 and "model.safetensors" in err and "Traceback" not in err


def test_missing_prompt_file_and_bad_settings(ckpt, capsys, tmp_path):
    code, _, err = run(capsys, "--checkpoint", ckpt, "--prompt-file", tmp_path / "none.txt")
    assert code == 2 and "none.txt does not exist" in err
    code, _, err = run(capsys, "--checkpoint", ckpt, "--prompt", "x", "--top-p", 1.5)
    assert code == 2 and "top_p" in err


def test_real_process_streams_utf8(ckpt):
    proc = subprocess.run(
        [sys.executable, "-m", "runtime", "generate", "--checkpoint", str(ckpt), "--prompt", "日本",
         "--max-new-tokens", "12", "--temperature", "0"],
        capture_output=True, text=True, encoding="utf-8", timeout=120,
    )
    model, tok = load(ckpt)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == generate(model, tok, "日本", 12, temperature=0).text + "\n"


def test_closed_pipe_stops_quietly(ckpt):
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "generate", "--checkpoint", str(ckpt), "--prompt", "the",
         "--max-new-tokens", "2000", "--temperature", "1", "--seed", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    proc.stdout.read(1)
    proc.stdout.close()  # like `| head -c 1`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_prompt_from_stdin_in_a_real_process(ckpt):
    args = [sys.executable, "-m", "runtime", "generate", "--checkpoint", str(ckpt), "--prompt-file", "-",
            "--max-new-tokens", "10", "--temperature", "0", "--no-kv-cache", "--stats"]
    proc = subprocess.run(args, input="naïve café".encode(), capture_output=True, timeout=120)
    model, tok = load(ckpt)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode() == generate(model, tok, "naïve café", 10, temperature=0).text + "\n"
    assert "prompt tokens: " in proc.stderr.decode() and "tokens/s" in proc.stderr.decode()
    # bytes that are not UTF-8 are refused where they come in, not as a surrogate deep inside
    proc = subprocess.run(args, input=b"caf\xe9 latin-1", capture_output=True, timeout=120)
    err = proc.stderr.decode()
    assert proc.returncode == 2 and proc.stdout == b""
    assert err.startswith("tiss: error: standard input is not UTF-8 text (byte 0xe9 at offset 3)")


def test_non_utf8_prompt_file(ckpt, capsys, tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("café".encode("latin-1"))
    code, out, err = run(capsys, "--checkpoint", ckpt, "--prompt-file", bad)
    assert code == 2 and out == "" and "cannot read the prompt as UTF-8" in err


@pytest.mark.parametrize(
    "flag, value, fragment",
    [
        ("--temperature", -0.5, "temperature must be a number >= 0"),
        ("--temperature", "nan", "temperature must be a number >= 0"),
        ("--top-p", 0, "top_p must be in (0, 1]"),
        ("--top-p", 1.01, "top_p must be in (0, 1]"),
        ("--top-k", 0, "top_k must be a whole number >= 1"),
        ("--min-p", -0.1, "min_p must be in [0, 1]"),
        ("--max-new-tokens", -1, "max_new_tokens must be a whole number >= 0"),
        ("--repetition-penalty", 0, "repetition_penalty must be > 0"),
        ("--stop", "", "stop sequences must be non-empty"),
    ],
)
def test_bad_settings_are_messages_with_exit_2(ckpt, capsys, flag, value, fragment):
    code, out, err = run(capsys, "--checkpoint", ckpt, "--prompt", "x", flag, value)
    assert code == 2 and out == ""
    assert err.startswith("tiss: error: ") and fragment in err and "Traceback" not in err


def test_zero_new_tokens_prints_nothing_but_a_newline(ckpt, capsys):
    code, out, err = run(capsys, "--checkpoint", ckpt, "--prompt", "x", "--max-new-tokens", 0, "--stats")
    assert code == 0 and out == "\n"
    assert "generated tokens: 0" in err

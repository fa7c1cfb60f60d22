"""`tiss tokenizer train|encode|decode` through the real argument parser."""

from __future__ import annotations

import io

import pytest

from lm import BPETokenizer
from lm.corpus import SAMPLES_DIR, build_corpus
from lm.tokenizer_cli import _Progress
from runtime import cli


@pytest.fixture()
def trained(tmp_path, capsys):
    out = tmp_path / "tok.json"
    assert cli.main(["tokenizer", "train", "--corpus", str(SAMPLES_DIR), "--vocab-size", "400", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "tokenizer: vocab 400 (143 merges, 1 special)" in captured.out
    return out


def test_train_encode_decode_round_trip(trained, capsys):
    text = "STEP \"build\" { RUN \"make\" } 😀"
    assert cli.main(["tokenizer", "encode", "--tokenizer", str(trained), text]) == 0
    ids = capsys.readouterr().out.split()
    assert [int(i) for i in ids] == BPETokenizer.load(trained).encode(text)
    assert cli.main(["tokenizer", "decode", "--tokenizer", str(trained), *ids]) == 0
    assert capsys.readouterr().out == text


def test_encode_show_and_special(tmp_path, capsys):
    corpus = tmp_path / "ascii.txt"
    corpus.write_text("hi hi hi there\n" * 5, encoding="utf-8")
    tok = tmp_path / "tok.json"
    assert cli.main(["tokenizer", "train", "--corpus", str(corpus), "--vocab-size", "258", "--out", str(tok)]) == 0
    capsys.readouterr()
    # one merge, (h, i) -> 256, learned from "hi" x15; <|endoftext|> is 257; é is two raw bytes
    assert cli.main(["tokenizer", "encode", "--show", "--allow-special", "--tokenizer", str(tok), "hi<|endoftext|>é"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "256\t'hi'", "257\t'<|endoftext|>'", "195\tb'\\xc3'", "169\tb'\\xa9'"
    ]


def test_encode_from_file_and_stdin(trained, tmp_path, capsys, monkeypatch):
    source = tmp_path / "in.txt"
    source.write_text("line one\nline two\n", encoding="utf-8")
    assert cli.main(["tokenizer", "encode", "--tokenizer", str(trained), "--file", str(source)]) == 0
    from_file = capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO("line one\nline two\n"))
    assert cli.main(["tokenizer", "encode", "--tokenizer", str(trained)]) == 0
    assert capsys.readouterr().out == from_file
    monkeypatch.setattr("sys.stdin", io.StringIO("[108, 105]\n"))
    assert cli.main(["tokenizer", "decode", "--tokenizer", str(trained)]) == 0
    assert capsys.readouterr().out == "li"


def test_train_on_built_corpus_uses_train_split(tmp_path, capsys):
    samples = tmp_path / "s"
    samples.mkdir()
    for i in range(30):
        (samples / f"doc{i}.txt").write_text(f"document {i} says hello\n", encoding="utf-8")
    manifest = build_corpus(tmp_path / "c", use_stdlib=False, pydoc=False, samples=samples, valid_fraction=0.2)
    out = tmp_path / "t.json"
    assert cli.main(["tokenizer", "train", "--corpus", str(tmp_path / "c"), "--vocab-size", "300", "--out", str(out)]) == 0
    assert f"from {manifest['splits']['train']['files']} files" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["tokenizer", "decode", "--tokenizer", "{tok}", "12", "abc"], "'abc' is not a token id"),
        (["tokenizer", "decode", "--tokenizer", "{tok}", "100000"], "not in the vocabulary"),
        (["tokenizer", "encode", "--tokenizer", "{tmp}/missing.json", "x"], "does not exist; train one"),
        (["tokenizer", "train", "--corpus", "{tmp}/nowhere", "--out", "{tmp}/t.json"], "does not exist"),
        (["tokenizer", "train", "--corpus", "{tok}", "--vocab-size", "10", "--out", "{tmp}/t.json"], "too small"),
        (["tokenizer", "encode", "--tokenizer", "{tok}", "--file", "{tmp}/nofile"], "does not exist"),
    ],
)
def test_user_errors_are_messages_with_exit_2(trained, tmp_path, capsys, argv, message):
    argv = [a.format(tok=trained, tmp=tmp_path) for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("tiss: error:") and message in err
    assert "Traceback" not in err


def test_bare_tokenizer_command_prints_help(capsys):
    assert cli.main(["tokenizer"]) == 2
    assert "train" in capsys.readouterr().err


def test_progress_draws_only_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    quiet, tty = io.StringIO(), Tty()
    for stream in (quiet, tty):
        progress = _Progress(stream)
        list(progress.reading(["x"] * 50))
        progress.merging(10, 20)
        progress.done()
    assert quiet.getvalue() == ""
    assert "merging: 10/20 merges (50%)" in tty.getvalue() and "reading: 50 files" in tty.getvalue()


def test_non_utf8_stdin_is_refused(trained, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"caf\xe9"), encoding="utf-8", errors="surrogateescape"))
    assert cli.main(["tokenizer", "encode", "--tokenizer", str(trained)]) == 2
    assert "standard input is not UTF-8 text (byte 0xe9 at offset 3)" in capsys.readouterr().err


def test_small_corpus_notes_the_smaller_vocabulary_and_file_mode(tmp_path, capsys):
    import os
    import stat

    corpus = tmp_path / "tiny.txt"
    corpus.write_text("ab ab ab\n", encoding="utf-8")
    out = tmp_path / "tok.json"
    old = os.umask(0o022)
    try:
        assert cli.main(["tokenizer", "train", "--corpus", str(corpus), "--vocab-size", "1000", "--out", str(out)]) == 0
    finally:
        os.umask(old)
    captured = capsys.readouterr()
    vocab = BPETokenizer.load(out).vocab_size
    assert vocab < 1000 and f"vocabulary has {vocab} ids, not the 1000 asked for" in captured.err
    # a tokenizer is shared like any output, not private as mkstemp would leave it
    assert stat.S_IMODE(out.stat().st_mode) == 0o644

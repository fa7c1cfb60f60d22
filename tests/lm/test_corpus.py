"""Corpus build: deterministic, split by file, bad files reported and skipped; readers."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from lm.corpus import (
    CorpusError,
    build_corpus,
    iter_texts,
    load_manifest,
    split_files,
    valid_split,
)
from runtime import cli


@pytest.fixture()
def fake_stdlib(tmp_path: Path) -> Path:
    root = tmp_path / "stdlib"
    (root / "json").mkdir(parents=True)
    (root / "site-packages" / "numpy").mkdir(parents=True)
    (root / "test").mkdir()
    (root / "__pycache__").mkdir()
    for i in range(12):
        (root / f"mod{i:02d}.py").write_text(f"def f{i}(x):\n    return x + {i}\n", encoding="utf-8")
    (root / "json" / "decoder.py").write_text("'''JSON décodeur — ünïcode'''\n", encoding="utf-8")
    (root / "json" / "README.txt").write_text("not python\n", encoding="utf-8")
    (root / "site-packages" / "numpy" / "core.py").write_text("x = 1\n", encoding="utf-8")
    (root / "test" / "test_x.py").write_text("assert True\n", encoding="utf-8")
    (root / "__pycache__" / "mod00.py").write_text("stale\n", encoding="utf-8")
    (root / "latin1.py").write_bytes("# caf\xe9\n".encode("latin-1"))
    os.symlink(root / "missing-target.py", root / "dangling.py")
    return root


@pytest.fixture()
def samples(tmp_path: Path) -> Path:
    root = tmp_path / "samples"
    (root / "tiss").mkdir(parents=True)
    (root / "build").mkdir()
    (root / "tiss" / "a.tiss").write_text('STEP "x" { RUN "echo" }\n', encoding="utf-8")
    (root / "build" / "ignored.txt").write_text("build output\n", encoding="utf-8")
    (root / ".hidden").write_text("hidden\n", encoding="utf-8")
    return root


def test_build_layout_manifest_and_skips(tmp_path, fake_stdlib, samples):
    reports = []
    out = tmp_path / "out"
    manifest = build_corpus(
        out, stdlib=fake_stdlib, pydoc=False, samples=samples, valid_fraction=0.2, report=reports.append
    )
    names = {e["origin"] for e in manifest["files"]}
    assert "stdlib/json/decoder.py" in names and "corpus/tiss/a.tiss" in names
    assert not any("site-packages" in n or "test_x" in n or "__pycache__" in n for n in names)
    assert not any("README" in n or "ignored" in n or "hidden" in n for n in names)
    skipped = {s["origin"]: s["reason"] for s in manifest["skipped"]}
    assert skipped["stdlib/latin1.py"] == "not UTF-8: byte 0xe9 at offset 5"
    assert skipped["stdlib/dangling.py"].startswith("unreadable")
    assert sorted(reports) == sorted(f"skipped {o}: {r}" for o, r in skipped.items())

    assert manifest["python"]["version"].count(".") == 2
    assert [e["path"] for e in manifest["files"]] == sorted(e["path"] for e in manifest["files"])
    for entry in manifest["files"]:
        data = (out / entry["path"]).read_bytes()
        assert entry["path"].startswith(entry["split"] + "/")
        assert entry["bytes"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    for split in ("train", "valid"):
        files = [e for e in manifest["files"] if e["split"] == split]
        assert manifest["splits"][split] == {"files": len(files), "bytes": sum(e["bytes"] for e in files)}
        assert files, f"{split} split is empty"
    source = (fake_stdlib / "json" / "decoder.py").read_bytes()
    [entry] = [e for e in manifest["files"] if e["origin"] == "stdlib/json/decoder.py"]
    assert (out / entry["path"]).read_bytes() == source  # bytes kept exactly
    assert json.loads((out / "manifest.json").read_text(encoding="utf-8")) == manifest
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp left


def test_two_builds_give_identical_manifests(tmp_path, fake_stdlib, samples):
    kwargs = dict(stdlib=fake_stdlib, pydoc=True, samples=samples)
    build_corpus(tmp_path / "a", **kwargs)
    build_corpus(tmp_path / "b", **kwargs)
    a = (tmp_path / "a" / "manifest.json").read_bytes()
    assert a == (tmp_path / "b" / "manifest.json").read_bytes()
    assert b"pydoc/" in a
    # rebuilding in place replaces the old build, leaving the same result
    build_corpus(tmp_path / "a", **kwargs)
    assert (tmp_path / "a" / "manifest.json").read_bytes() == a


def test_split_is_by_path_hash_and_stable():
    names = [f"stdlib/m{i}.py" for i in range(2000)]
    valid = [n for n in names if valid_split(n, 0.05)]
    assert 50 <= len(valid) <= 150  # about 5%
    # a larger fraction only moves files from train to valid, never back
    assert set(valid) <= {n for n in names if valid_split(n, 0.2)}
    digest = int.from_bytes(hashlib.sha256(b"stdlib/m0.py").digest()[:8], "big")
    assert valid_split("stdlib/m0.py", 0.5) == (digest < 2**63)


def test_tiny_corpus_still_gets_a_validation_file(tmp_path, samples):
    manifest = build_corpus(tmp_path / "o", use_stdlib=False, pydoc=False, samples=samples, valid_fraction=0.01)
    assert manifest["splits"]["valid"]["files"] == 0  # one document: nothing to hold out
    (samples / "tiss" / "b.tiss").write_text("LOG \"b\"\n", encoding="utf-8")
    manifest = build_corpus(tmp_path / "o", use_stdlib=False, pydoc=False, samples=samples, valid_fraction=0.01)
    assert manifest["splits"]["valid"]["files"] == 1 and manifest["splits"]["train"]["files"] == 1


def test_refuses_to_replace_a_directory_that_is_not_a_corpus(tmp_path, samples):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work", encoding="utf-8")
    with pytest.raises(CorpusError, match="not a corpus build"):
        build_corpus(precious, use_stdlib=False, samples=samples)
    assert (precious / "thesis.tex").read_text(encoding="utf-8") == "years of work"


def test_bad_arguments(tmp_path, samples):
    with pytest.raises(CorpusError, match="does not exist"):
        build_corpus(tmp_path / "o", stdlib=tmp_path / "nowhere")
    with pytest.raises(CorpusError, match="valid fraction"):
        build_corpus(tmp_path / "o", samples=samples, valid_fraction=1.5)
    with pytest.raises(CorpusError, match="no documents"):
        build_corpus(tmp_path / "o", use_stdlib=False, pydoc=False, samples=tmp_path / "none")


def test_readers(tmp_path, fake_stdlib, samples):
    out = tmp_path / "out"
    manifest = build_corpus(out, stdlib=fake_stdlib, pydoc=False, samples=samples, valid_fraction=0.2)
    train = split_files(out, "train")
    assert [str(p.relative_to(out)) for p in train] == [
        e["path"] for e in manifest["files"] if e["split"] == "train"
    ]
    texts = list(iter_texts(out, "valid"))
    assert texts == [p.read_text(encoding="utf-8") for p in split_files(out, "valid")]
    # a plain directory: every non-hidden file outside build/
    assert list(iter_texts(samples)) == ['STEP "x" { RUN "echo" }\n']
    with pytest.raises(CorpusError, match="split must be one of"):
        split_files(out, "test")
    with pytest.raises(CorpusError, match="tiss corpus build"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "quantatissu-corpus", "version": 7}')
    with pytest.raises(CorpusError, match="version 7"):
        load_manifest(tmp_path)


def test_committed_samples_are_utf8_and_present():
    from lm.corpus import SAMPLES_DIR, sample_documents

    skipped = []
    docs = sample_documents(SAMPLES_DIR, skipped)
    assert skipped == []
    assert sum(d.name.endswith(".tiss") for d in docs) >= 5
    assert sum(d.name.endswith(".md") for d in docs) >= 3


def test_cli_corpus_build(tmp_path, fake_stdlib, capsys):
    out = tmp_path / "built"
    code = cli.main(["corpus", "build", "--out", str(out), "--stdlib", str(fake_stdlib), "--no-pydoc"])
    assert code == 0
    captured = capsys.readouterr()
    assert "corpus:" in captured.out and str(out / "manifest.json") in captured.out
    assert "skipped stdlib/latin1.py: not UTF-8" in captured.err
    assert load_manifest(out)["files"]
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "x").write_text("x")
    assert cli.main(["corpus", "build", "--out", str(precious), "--no-pydoc"]) == 2
    assert "tiss: error:" in capsys.readouterr().err


def test_committed_tiss_samples_parse_and_check_clean():
    """The samples teach the model TissLang, so they must be valid TissLang."""
    import tisslang

    from lm.corpus import SAMPLES_DIR

    scripts = sorted((SAMPLES_DIR / "tiss").glob("*.tiss"))
    assert scripts
    for script in scripts:
        program = tisslang.parse_file(script)
        assert tisslang.check(program) == [], script.name


def test_unwritable_destinations_are_clear_errors(tmp_path, samples, monkeypatch, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(CorpusError, match="a_file is a file, not a directory"):
        build_corpus(a_file / "sub", use_stdlib=False, pydoc=False, samples=samples)
    assert cli.main(["corpus", "build", "--out", str(a_file / "sub"), "--no-pydoc"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tiss: error: cannot create") and "Traceback" not in err

    # A full disk while writing: a clear error, and the previous build stays as it was.
    out = tmp_path / "out"
    before = build_corpus(out, use_stdlib=False, pydoc=False, samples=samples)

    def full(self, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(CorpusError, match="no space left.*previous build"):
        build_corpus(out, use_stdlib=False, pydoc=False, samples=samples)
    assert load_manifest(out) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporaries left

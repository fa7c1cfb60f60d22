"""`tiss plot RUN_DIR -o loss.png`: the loss curves of a training run as a PNG picture."""

from __future__ import annotations

import builtins
import json
import struct
import zlib

import pytest

from runtime.cli import main

pytest.importorskip("matplotlib")


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, after checking the signature and the chunk's CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    body = data[16:16 + length]
    (crc,) = struct.unpack(">I", data[16 + length:20 + length])
    assert crc == zlib.crc32(kind + body)
    assert data.endswith(b"IEND\xaeB`\x82")
    return struct.unpack(">II", body[:8])


def _run_dir(tmp_path, with_state=True):
    run = tmp_path / "run"
    run.mkdir()
    lines = [{"step": s, "loss": 5.0 - 0.1 * s, "lr": 1e-3, "grad_norm": 1.0, "tokens_per_s": 1.0, "elapsed_s": s}
             for s in range(1, 11)]
    lines.insert(5, {"step": 5, "val_loss": 4.7, "val_ppl": 110.0})
    lines.append({"step": 10, "val_loss": 4.3, "val_ppl": 73.7})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"step": 11, "lo')
    if with_state:
        (run / "checkpoint").mkdir()
        (run / "checkpoint" / "trainer_state.json").write_text(
            json.dumps({"settings": {"batch_size": 4, "seq_len": 32, "grad_accum": 2}}))
    return run


@pytest.mark.parametrize("size", [(640, 480), (333, 777)])
def test_png_of_the_size_asked(tmp_path, capsys, size):
    run = _run_dir(tmp_path)
    out = tmp_path / "loss.png"
    assert main(["plot", str(run), "-o", str(out), "--width", str(size[0]), "--height", str(size[1])]) == 0
    assert _png_size(out.read_bytes()) == size
    assert str(out) in capsys.readouterr().out


def test_run_without_checkpoint_still_plots_steps(tmp_path):
    run = _run_dir(tmp_path, with_state=False)
    assert main(["plot", str(run), "-o", str(tmp_path / "a.png")]) == 0
    assert _png_size((tmp_path / "a.png").read_bytes()) == (1000, 500)


def test_a_real_run_plots(tmp_path):
    from lm.train import train

    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sat on the mat and the dog sat on the log. " * 60)
    train(corpus, tmp_path / "r", steps=3, batch_size=2, seq_len=16, d_model=16, n_layers=1, n_heads=2,
          vocab_size=270, eval_every=2, threads=1, stream=open("/dev/null", "w"))
    assert main(["plot", str(tmp_path / "r"), "-o", str(tmp_path / "r.png"), "--width", "300", "--height", "200"]) == 0
    assert _png_size((tmp_path / "r.png").read_bytes()) == (300, 200)


@pytest.mark.parametrize("make, message", [
    (lambda p: p, "has no metrics.jsonl: it is not a run directory"),
    (lambda p: p / "missing", "is not a directory"),
])
def test_a_run_dir_without_metrics_is_a_clear_error(tmp_path, capsys, make, message):
    code = main(["plot", str(make(tmp_path)), "-o", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_empty_metrics_and_bad_size(tmp_path, capsys):
    (tmp_path / "metrics.jsonl").write_text("")
    assert main(["plot", str(tmp_path), "-o", str(tmp_path / "x.png")]) == 2
    assert "holds no training steps yet" in capsys.readouterr().err
    run = _run_dir(tmp_path / "sub") if (tmp_path / "sub").mkdir() is None else None
    assert main(["plot", str(run), "-o", str(tmp_path / "x.png"), "--width", "5"]) == 2
    assert "--width must be a whole number of pixels" in capsys.readouterr().err


def test_without_matplotlib_one_line_naming_the_extra(tmp_path, capsys, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert main(["plot", str(_run_dir(tmp_path)), "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err == "tiss: error: tiss plot needs matplotlib: pip install 'quantatissu[plot]'\n"

"""docs/running.md stays true: its demo script, run for real, prints what the page shows."""

import json
import re
from pathlib import Path

from runtime import cli

DOC = Path(__file__).resolve().parents[2] / "docs" / "running.md"


def _blocks(kind):
    return re.findall(rf"```{kind}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def _without_timings(text):
    return re.sub(r"\(\d+(\.\d+)?m?s(?=[;)])|in \d+(\.\d+)?m?s", "(T", text)


def test_demo_script_output_matches_the_page(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    demo = _blocks("tiss")[0]
    shown = next(block for block in _blocks("") if block.startswith("[ RUN  ] greet"))
    ws = tmp_path / "ws"
    ws.mkdir()
    monkeypatch.chdir(tmp_path)
    Path("demo.tiss").write_text(demo, encoding="utf-8")
    assert cli.main(["run", "demo.tiss", "--workspace", str(ws), "--trace", "trace.jsonl"]) == 1
    assert _without_timings(capsys.readouterr().out) == _without_timings(shown)
    events = [json.loads(line) for line in Path("trace.jsonl").read_text().splitlines()]
    documented = [json.loads(line) for line in _blocks("json")[1].splitlines()]
    for got, want in zip(events, documented):
        assert got["event"] == want["event"]
        assert set(got) == set(want), got
    assert cli.main(["run", "demo.tiss", "--workspace", str(ws), "--report", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["counts"] == {"passed": 2, "failed": 1, "skipped": 1, "not_chosen": 0, "interrupted": 0,
                                "deselected": 0}
    assert report["failure"]["line"] == 9 and report["logs"] == ["said hello", "cleaning up"]

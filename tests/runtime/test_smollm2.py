"""Opt-in: the real SmolLM2-135M-Instruct answers through `tiss run`.

Skipped unless TISS_SMOLLM2_GGUF names the GGUF file (`tiss models pull smollm2` puts it in
~/.cache/quantatissu/models/smollm2/), since CI has no such file. Asked the capital of France
with its chat template, the model answers "The capital of France is Paris." in transformers and
in llama.cpp; the NumPy engine must too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GGUF = os.environ.get("TISS_SMOLLM2_GGUF", "")

pytestmark = pytest.mark.skipif(
    not GGUF or not Path(GGUF).is_file(),
    reason="set TISS_SMOLLM2_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf (tiss models pull smollm2) to run",
)

SCRIPT = '''TASK "Ask SmolLM2 one question"
SET_BUDGET TOKENS = 200
@model "{gguf}"
@temperature 0
@max_tokens 24
STEP "ask" {{
    PROMPT_AGENT "What is the capital of France? Answer in one word." INTO capital
    LOG "answer: {{{{ capital }}}}"
    ASSERT capital MATCHES '(?i)\\bparis\\b'
}}
'''


def tiss(*argv, env=None, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "runtime", *map(str, argv)], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def test_the_capital_of_france_through_tiss_run(tmp_path):
    script = tmp_path / "ask.tiss"
    script.write_text(SCRIPT.format(gguf=GGUF), encoding="utf-8")
    trace = tmp_path / "trace.jsonl"
    proc = tiss("run", script, "--workspace", tmp_path, "--trace", trace)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| answer: The capital of France is Paris." in proc.stdout
    prompt = next(e for e in map(json.loads, trace.read_text().splitlines()) if e["event"] == "prompt")
    # The templated prompt: SmolLM2's default system message, the question, the assistant's turn.
    assert prompt["prompt_tokens"] > 20 and prompt["finish_reason"] == "stop"


def test_the_example_passes_on_the_pulled_model(tmp_path):
    # A cache where smollm2 is "pulled": the GGUF linked in, with the manifest a pull writes.
    from lm import models

    entry = models.MODELS["smollm2"]
    directory = tmp_path / "cache" / "quantatissu" / "models" / "smollm2"
    directory.mkdir(parents=True)
    (directory / entry.entry).symlink_to(Path(GGUF).resolve())
    (directory / models.MANIFEST).write_text(json.dumps({"name": "smollm2", "version": entry.version}))
    ws = tmp_path / "ws"
    ws.mkdir()
    proc = tiss("run", ROOT / "examples" / "ask_a_model.tiss", "--workspace", ws,
                env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASSED: 4 passed" in proc.stdout

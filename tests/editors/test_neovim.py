"""Neovim end to end: a real headless Neovim loads editors/nvim (filetype detection and the
`require("tisslang").setup()` client), opens a script with an error, gets the diagnostic at its
position from `tiss lsp`, formats the file and reads the outline. Skipped where nvim is missing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pygls", reason="the language server needs pygls (pip install 'quantatissu[lsp]')")

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "editors" / "nvim"

SCRIPT = 'STEP "greet" {\nLOG "hello {{ who }}"\n  STEP "inner" { RUN "true" }\n}\n'

LUA = r"""
local plugin, script, out, python, root = unpack(vim.fn.json_decode(vim.env.TISS_NVIM_TEST))
vim.opt.runtimepath:prepend(plugin)
vim.cmd("filetype plugin on")
require("tisslang").setup({ cmd = { python, "-m", "runtime", "lsp" }, root_dir = root })
vim.cmd("edit " .. vim.fn.fnameescape(script))
local buf = vim.api.nvim_get_current_buf()
local result = { filetype = vim.bo[buf].filetype }
local function finish()
  local f = io.open(out, "w"); f:write(vim.fn.json_encode(result)); f:close()
  vim.cmd("qall!")
end
local got = vim.wait(20000, function() return #vim.diagnostic.get(buf) > 0 end, 50)
result.diagnostics = {}
for _, d in ipairs(vim.diagnostic.get(buf)) do
  table.insert(result.diagnostics, { lnum = d.lnum, col = d.col, end_lnum = d.end_lnum,
    end_col = d.end_col, severity = d.severity, message = d.message })
end
if not got then result.error = "no diagnostics"; return finish() end
if vim.lsp.buf.format then
  vim.lsp.buf.format({ bufnr = buf, timeout_ms = 10000 })
else
  vim.lsp.buf.formatting_sync(nil, 10000)
end
result.formatted = table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), "\n")
local params = { textDocument = vim.lsp.util.make_text_document_params() }
local answers = vim.lsp.buf_request_sync(buf, "textDocument/documentSymbol", params, 10000) or {}
result.symbols = {}
local function walk(symbols, depth)
  for _, s in ipairs(symbols or {}) do
    table.insert(result.symbols, { name = s.name, depth = depth, line = (s.range or s.location.range).start.line })
    walk(s.children, depth + 1)
  end
end
for _, answer in pairs(answers) do walk(answer.result, 0) end
finish()
"""


def test_neovim_gets_diagnostics_formats_and_reads_the_outline(tmp_path):
    nvim = shutil.which("nvim")
    if nvim is None:
        pytest.skip("nvim is not installed (Debian: apt-get install neovim)")
    script = tmp_path / "greet.tiss"
    script.write_text(SCRIPT, encoding="utf-8")
    (tmp_path / "test.lua").write_text(LUA, encoding="utf-8")
    out = tmp_path / "result.json"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
           "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_STATE_HOME": str(tmp_path / "state"),
           "PYTHONPATH": str(ROOT),
           "TISS_NVIM_TEST": json.dumps([str(PLUGIN), str(script), str(out), sys.executable, str(tmp_path)])}
    proc = subprocess.run([nvim, "--headless", "-u", "NONE", "-i", "NONE", "-n",
                           "-c", f"luafile {tmp_path / 'test.lua'}"],
                          env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.exists(), f"nvim wrote no result (exit {proc.returncode}): {proc.stderr[-2000:]}"
    result = json.loads(out.read_text())
    assert result["filetype"] == "tisslang"
    assert "error" not in result, result
    # The undefined variable, and T104's warning about the RUN whose result nothing reads.
    diagnostic, unchecked = sorted(result["diagnostics"], key=lambda d: d["lnum"])
    assert unchecked["lnum"] == 2 and unchecked["severity"] == 2 and "never checked" in unchecked["message"]
    # `{{ who }}` on line 2: columns 11 up to 20 (exclusive), 0-based, as Neovim reports them.
    assert (diagnostic["lnum"], diagnostic["col"], diagnostic["end_lnum"], diagnostic["end_col"]) == (1, 11, 1, 20)
    assert diagnostic["severity"] == 1 and diagnostic["message"].startswith("undefined variable 'who'")
    assert result["formatted"] == ('STEP "greet" {\n    LOG "hello {{ who }}"\n    STEP "inner" {\n'
                                   '        RUN "true"\n    }\n}')
    assert result["symbols"] == [{"name": "greet", "depth": 0, "line": 0},
                                 {"name": "inner", "depth": 1, "line": 2}]


SYNTAX_SAMPLE = '''\
#TISS! a=b
# a comment
@model "echo"
@shoe 1
VAR name = "w\\u00e9 {{ LAST_RUN.STDOUT }} \\q"
VAR items = [1, -2.5, true, 'raw \\\\d {{ x }}']
SET_BUDGET TOKENS = 10
STEP "s" {
    WRITE "a.py" <<PY  # the body follows
    def f(): return {"RUN": 1}  # IF THEN
    print("{{ name }}")
    PY
    IF LAST_ESTIMATE.TOKENS >= 0 AND name IS_NOT_EMPTY THEN {
        RUN "x"
    }
}
'''
# (line, text on it, the syntax group Neovim must report there), 1-based lines.
EXPECTED_GROUPS = [
    (1, "#TISS!", "tissHeader"), (2, "a comment", "tissComment"), (3, "@model", "tissDirective"),
    (3, "echo", "tissString"), (4, "@shoe", "tissUnknownDirective"), (5, "VAR", "tissKeyword"),
    (5, "\\u00e9", "tissEscape"), (5, "LAST_RUN", "tissInterpolation"), (5, "\\q", "tissBadEscape"),
    (6, "-2.5", "tissNumber"), (6, "true", "tissBoolean"), (6, "{{ x }}", "tissRawString"),
    (7, "TOKENS", "tissBudget"), (7, "=", "tissOperator"), (8, "STEP", "tissKeyword"),
    (9, "<<PY", "tissHeredocMark"), (9, "# the body", "tissHeredocTail"),
    (10, "RUN", "tissHeredoc"), (10, "# IF THEN", "tissHeredoc"), (11, "{{ name }}", "tissInterpolation"),
    (12, "PY", "tissHeredocMark"), (13, "IF", "tissKeyword"), (13, "LAST_ESTIMATE", "tissBuiltin"),
    (13, ".TOKENS", "tissField"), (13, "IS_NOT_EMPTY", "tissOperatorWord"), (14, "RUN", "tissKeyword"),
]

SYNTAX_LUA = r"""
local plugin, script, out, probes = unpack(vim.fn.json_decode(vim.env.TISS_NVIM_TEST))
vim.opt.runtimepath:prepend(plugin)
vim.cmd("filetype plugin on")
vim.cmd("syntax on")
vim.cmd("edit " .. vim.fn.fnameescape(script))
local names = {}
for _, probe in ipairs(probes) do
  local line, col = probe[1], probe[2]
  table.insert(names, vim.fn.synIDattr(vim.fn.synID(line, col, 1), "name"))
end
local f = io.open(out, "w"); f:write(vim.fn.json_encode({ syntax = vim.bo.syntax, names = names })); f:close()
vim.cmd("qall!")
"""


def test_the_vim_syntax_file_is_generated_and_colours_each_construct(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_syntax", PLUGIN / "build_syntax.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    committed = (PLUGIN / "syntax" / "tisslang.vim").read_text(encoding="utf-8")
    assert committed == builder.render(), "run python editors/nvim/build_syntax.py"
    nvim = shutil.which("nvim")
    if nvim is None:
        pytest.skip("nvim is not installed (Debian: apt-get install neovim)")
    script = tmp_path / "sample.tiss"
    script.write_text(SYNTAX_SAMPLE, encoding="utf-8")
    lines = SYNTAX_SAMPLE.split("\n")
    probes = [[line, lines[line - 1].index(text) + 1] for line, text, _ in EXPECTED_GROUPS]
    (tmp_path / "syntax.lua").write_text(SYNTAX_LUA, encoding="utf-8")
    out = tmp_path / "result.json"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
           "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_STATE_HOME": str(tmp_path / "state"),
           "TISS_NVIM_TEST": json.dumps([str(PLUGIN), str(script), str(out), probes])}
    proc = subprocess.run([nvim, "--headless", "-u", "NONE", "-i", "NONE", "-n",
                           "-c", f"luafile {tmp_path / 'syntax.lua'}"],
                          env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.exists(), f"nvim wrote no result (exit {proc.returncode}): {proc.stderr[-2000:]}"
    result = json.loads(out.read_text())
    assert result["syntax"] == "tisslang"
    got = [(line, text, name) for (line, text, _), name in zip(EXPECTED_GROUPS, result["names"])]
    assert got == EXPECTED_GROUPS, [g for g, e in zip(got, EXPECTED_GROUPS) if g != e]


MULTI_LUA = r"""
local plugin, jobs, out = unpack(vim.fn.json_decode(vim.env.TISS_NVIM_TEST))
vim.opt.runtimepath:prepend(plugin)
vim.cmd("filetype plugin on")
vim.cmd("syntax on")
local results = {}
for _, job in ipairs(jobs) do
  vim.cmd("edit! " .. vim.fn.fnameescape(job[1]))
  local names = {}
  for _, probe in ipairs(job[2]) do
    table.insert(names, vim.fn.synIDattr(vim.fn.synID(probe[1], probe[2], 1), "name"))
  end
  table.insert(results, names)
end
local f = io.open(out, "w"); f:write(vim.fn.json_encode(results)); f:close()
vim.cmd("qall!")
"""

# What each REPL scanner token kind may be called by the Vim syntax file.
SCANNER_GROUPS = {
    "keyword": {"tissKeyword", "tissOperatorWord"},
    "directive": {"tissDirective", "tissUnknownDirective"},
    "builtin": {"tissBuiltin", "tissBudget", "tissField"},
    "string": {"tissString", "tissRawString", "tissEscape"},
    "escape": {"tissEscape", "tissBadEscape", "tissRawEscape"},
    "interpolation": {"tissInterpolation"},
    "heredoc.mark": {"tissHeredocMark"},
    "heredoc.body": {"tissHeredoc", "tissRawHeredoc"},
    "heredoc.end": {"tissHeredocMark"},
    "comment": {"tissComment", "tissHeredocTail"},
    "header": {"tissHeader"},
    "number": {"tissNumber"},
    "boolean": {"tissBoolean"},
    "operator": {"tissOperator"},
    "name": {"", "tissField"},
}


def test_the_vim_syntax_agrees_with_the_repl_scanner_on_every_example(tmp_path):
    nvim = shutil.which("nvim")
    if nvim is None:
        pytest.skip("nvim is not installed (Debian: apt-get install neovim)")
    from runtime.repl import scan

    examples = sorted((ROOT / "examples").glob("*.tiss"))
    jobs, expected = [], []
    for path in examples:
        text = path.read_text(encoding="utf-8")
        starts = [0]
        for line in text.split("\n")[:-1]:
            starts.append(starts[-1] + len(line) + 1)
        probes, kinds = [], []
        for token in scan.scan(text).tokens:
            if token.kind not in SCANNER_GROUPS or not token.text.strip():
                continue
            offset = token.start + len(token.text) - len(token.text.lstrip())
            line = max(i for i, s in enumerate(starts) if s <= offset)
            column = offset - starts[line]
            if not text[offset].isascii():
                continue  # synID counts bytes; the probes stay on ASCII characters
            before = text[starts[line]:offset]
            probes.append([line + 1, len(before.encode("utf-8")) + 1])
            kinds.append((path.name, line + 1, column + 1, token.kind, token.text))
        jobs.append([str(path), probes])
        expected.append(kinds)
    (tmp_path / "multi.lua").write_text(MULTI_LUA, encoding="utf-8")
    out = tmp_path / "result.json"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
           "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_STATE_HOME": str(tmp_path / "state"),
           "TISS_NVIM_TEST": json.dumps([str(PLUGIN), jobs, str(out)])}
    proc = subprocess.run([nvim, "--headless", "-u", "NONE", "-i", "NONE", "-n",
                           "-c", f"luafile {tmp_path / 'multi.lua'}"],
                          env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.exists(), f"nvim wrote no result (exit {proc.returncode}): {proc.stderr[-2000:]}"
    results = json.loads(out.read_text())
    wrong = [(where, name) for kinds, names in zip(expected, results)
             for where, name in zip(kinds, names) if name not in SCANNER_GROUPS[where[3]]]
    assert not wrong, wrong[:10]
    assert sum(len(k) for k in expected) > 300

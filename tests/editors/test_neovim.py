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
    (diagnostic,) = result["diagnostics"]
    # `{{ who }}` on line 2: columns 11 up to 20 (exclusive), 0-based, as Neovim reports them.
    assert (diagnostic["lnum"], diagnostic["col"], diagnostic["end_lnum"], diagnostic["end_col"]) == (1, 11, 1, 20)
    assert diagnostic["severity"] == 1 and diagnostic["message"].startswith("undefined variable 'who'")
    assert result["formatted"] == ('STEP "greet" {\n    LOG "hello {{ who }}"\n    STEP "inner" {\n'
                                   '        RUN "true"\n    }\n}')
    assert result["symbols"] == [{"name": "greet", "depth": 0, "line": 0},
                                 {"name": "inner", "depth": 1, "line": 2}]

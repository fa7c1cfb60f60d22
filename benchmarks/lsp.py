"""`tiss lsp` on a 1 MB script: how long until the editor shows diagnostics, and the other answers.

The script is examples/build_and_test.tiss's steps repeated inside one TASK until it passes 1 MB
(about 35,000 lines, 120,000 tokens), once clean and once with an undefined variable near the end
(so `tiss check` has one finding to report).

Sides, in the same run. "lsp": a real client (pygls, as pytest-lsp drives it) talks to `tiss lsp`
over stdio: the time from sending didOpen to receiving publishDiagnostics; then from a didChange to
the new diagnostics (this includes the server's debounce, printed beside it), once typing inside a
RUN's string and once adding a line near the end, then near the top (each time only the statement
around the edit is parsed again, tisslang.analysis.reparse; near the top everything below the
new line is moved in a copy); then semanticTokens/full, documentSymbol, foldingRange, completion near the end and
formatting.
"check": the peer, `tiss check` on the same file in a fresh process (parse + check + printing,
plus the process start-up and imports the server has already paid), and `tisslang.parse` +
`tisslang.check` in this process (the work diagnostics cannot skip).

Each figure is the median of --repeat runs (default 3), with the minimum. Run:
`python benchmarks/lsp.py` (needs `pip install 'quantatissu[lsp]'`). Record `cat /proc/loadavg`
with the figures: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def big_script(target: int = 1_000_000, bad: bool = False) -> str:
    lines = (ROOT / "examples" / "build_and_test.tiss").read_text(encoding="utf-8").split("\n")
    body = "\n".join(lines[3:-2]).replace("SETUP", "STEP").replace("TEARDOWN", "STEP")
    copies = target // len(body) + 1
    tail = '    LOG "{{ not_set }}"\n' if bad else ""
    return 'TASK "big" {\n' + "\n".join(body for _ in range(copies)) + "\n" + tail + "}\n"


async def lsp_side(text: str, path: Path) -> dict[str, float]:
    from lsprotocol import types as t
    from pytest_lsp import ClientServerConfig

    from runtime.lsp.server import DEBOUNCE_SECONDS

    client = await ClientServerConfig(server_command=[sys.executable, "-m", "runtime", "lsp"]).start()
    await client.initialize_session(t.InitializeParams(capabilities=t.ClientCapabilities()))
    uri = path.as_uri()
    figures: dict[str, float] = {}

    async def diagnostics_after(send) -> float:
        client.diagnostics.pop(uri, None)
        start = time.perf_counter()
        send()
        while uri not in client.diagnostics:
            await asyncio.sleep(0.002)
        return time.perf_counter() - start

    figures["open_to_diagnostics_s"] = await diagnostics_after(lambda: client.text_document_did_open(
        t.DidOpenTextDocumentParams(t.TextDocumentItem(uri, "tisslang", 1, text))))
    figures["diagnostics"] = len(client.diagnostics[uri])
    lines = text.split("\n")
    run_line = max(i for i, line in enumerate(lines) if 'RUN "' in line)
    column = lines[run_line].index('RUN "') + 5
    last = len(lines) - 3

    def change(version: int, line: int, character: int, new_text: str):
        return lambda: client.text_document_did_change(t.DidChangeTextDocumentParams(
            t.VersionedTextDocumentIdentifier(version=version, uri=uri), [
                t.TextDocumentContentChangePartial(
                    range=t.Range(t.Position(line, character), t.Position(line, character)),
                    text=new_text)]))

    # Typing inside a RUN's string: the statement is parsed again alone (tisslang.analysis.reparse).
    figures["edit_in_a_statement_to_diagnostics_s"] = await diagnostics_after(
        change(2, run_line, column, "x"))
    # A new line: the STEP around it is parsed again alone; near the end little follows it...
    figures["new_line_to_diagnostics_s"] = await diagnostics_after(
        change(3, run_line + 1, 0, '        LOG "new"\n'))
    # ... near the top, every node below it is moved down a line (in a copy).
    first_run = min(i for i, line in enumerate(lines) if 'RUN "' in line)
    opened = [d.range.start.line for d in client.diagnostics[uri]]
    figures["new_line_near_top_to_diagnostics_s"] = await diagnostics_after(
        change(4, first_run + 1, 0, '        LOG "new"\n'))
    # The answers stay right: a finding below both new lines is two lines further down.
    moved = [d.range.start.line for d in client.diagnostics[uri]]
    assert moved == [line + 1 for line in opened], (opened, moved)
    figures["debounce_s"] = DEBOUNCE_SECONDS
    doc = t.TextDocumentIdentifier(uri)
    requests = {
        "semantic_tokens_s": lambda: client.text_document_semantic_tokens_full_async(t.SemanticTokensParams(doc)),
        "document_symbol_s": lambda: client.text_document_document_symbol_async(t.DocumentSymbolParams(doc)),
        "folding_range_s": lambda: client.text_document_folding_range_async(t.FoldingRangeParams(doc)),
        "completion_s": lambda: client.text_document_completion_async(
            t.CompletionParams(doc, t.Position(last, 4))),
        "formatting_s": lambda: client.text_document_formatting_async(t.DocumentFormattingParams(
            doc, t.FormattingOptions(tab_size=4, insert_spaces=True))),
    }
    for name, request in requests.items():
        start = time.perf_counter()
        await request()
        figures[name] = time.perf_counter() - start
    await client.shutdown_session()
    await client.stop()
    return figures


def check_side(text: str, path: Path) -> dict[str, float]:
    import tisslang

    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "runtime", "check", str(path)], capture_output=True)
    cli = time.perf_counter() - start
    start = time.perf_counter()
    tisslang.check(tisslang.parse(text))
    return {"tiss_check_process_s": cli, "parse_and_check_in_process_s": time.perf_counter() - start}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, bad in (("clean", False), ("one_finding", True)):
            text = big_script(bad=bad)
            path = Path(tmp) / f"{kind}.tiss"
            path.write_text(text, encoding="utf-8")
            runs: dict[str, list[float]] = {}
            for _ in range(args.repeat):
                # Alternate the sides so load from other processes hits both alike.
                for figures in (check_side(text, path), asyncio.run(lsp_side(text, path))):
                    for name, value in figures.items():
                        runs.setdefault(name, []).append(value)
            results[kind] = runs
            results[kind]["bytes"] = [len(text.encode("utf-8"))]
            results[kind]["lines"] = [text.count("\n")]
    summary = {
        kind: {name: {"median": statistics.median(values), "min": min(values)} if len(values) > 1
               else values[0] for name, values in runs.items()}
        for kind, runs in results.items()
    }
    print(json.dumps({"benchmark": "lsp", "python": sys.version.split()[0],
                      "loadavg": Path("/proc/loadavg").read_text().split()[:3] if os.path.exists("/proc/loadavg") else None,
                      "results": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

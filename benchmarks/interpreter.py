"""Benchmark the runtime's RUN machinery against `subprocess.run`, same run.

Figures (one JSON object on stdout):
- interpreter overhead: a script of `--runs` `RUN "true"` statements (with an ASSERT on each
  exit code) through `runtime.run`, against the same number of bare
  `subprocess.run(["/bin/sh", "-c", "true"])` calls; per-command milliseconds and their ratio;
- an output flood of `--flood-mb` MB on stdout: `runtime.shell.run_command` (10 MiB cap, the rest
  read and dropped) against `subprocess.run(capture_output=True)` (keeps everything), each in a
  fresh interpreter so that peak RSS growth is measured cleanly; seconds, MB/s, RSS growth and
  the ratios;
- PARALLEL: two `sleep 1` children, wall seconds (1.0 means they fully overlap).

Run: `python benchmarks/interpreter.py [--runs 200] [--flood-mb 300]`. Not part of the tests.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time

import runtime
from tisslang import parse

_FLOOD_OURS = """
import resource, time, json
from runtime.shell import run_command
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
r = run_command("yes flood-line | head -c {n}", cwd={cwd!r})
elapsed = time.perf_counter() - t
grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({{"seconds": elapsed, "rss_growth_mib": grew / 1024, "kept": len(r.stdout),
                  "truncated": r.stdout_truncated}}))
"""

_FLOOD_PEER = """
import resource, time, json, subprocess
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
r = subprocess.run(["/bin/sh", "-c", "yes flood-line | head -c {n}"], cwd={cwd!r}, capture_output=True)
elapsed = time.perf_counter() - t
grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({{"seconds": elapsed, "rss_growth_mib": grew / 1024, "kept": len(r.stdout),
                  "truncated": False}}))
"""


def _child(code: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def bench_overhead(runs: int, workspace: str) -> dict:
    source = "".join(f'RUN "true"\nASSERT LAST_RUN.EXIT_CODE == 0\n' for _ in range(runs))
    program = parse(source)
    runtime.run(parse('RUN "true"'), workspace=workspace)  # warm-up: imports, first fork
    started = time.perf_counter()
    result = runtime.run(program, workspace=workspace)
    ours = time.perf_counter() - started
    if not result.passed:
        raise SystemExit(f"benchmark script failed: {result.failure}")
    started = time.perf_counter()
    for _ in range(runs):
        subprocess.run(["/bin/sh", "-c", "true"], cwd=workspace, stdin=subprocess.DEVNULL, capture_output=True)
    peer = time.perf_counter() - started
    return {
        "runs": runs,
        "ours_ms_per_run": round(ours / runs * 1000, 3),
        "subprocess_ms_per_run": round(peer / runs * 1000, 3),
        "ratio_ours_over_subprocess": round(ours / peer, 3),
    }


def bench_flood(megabytes: int, workspace: str) -> dict:
    n = megabytes * 1_000_000
    ours = _child(_FLOOD_OURS.format(n=n, cwd=workspace))
    peer = _child(_FLOOD_PEER.format(n=n, cwd=workspace))
    return {
        "megabytes": megabytes,
        "ours_seconds": round(ours["seconds"], 3),
        "ours_mb_per_s": round(megabytes / ours["seconds"], 1),
        "ours_rss_growth_mib": round(ours["rss_growth_mib"], 1),
        "ours_kept_bytes": ours["kept"],
        "subprocess_seconds": round(peer["seconds"], 3),
        "subprocess_mb_per_s": round(megabytes / peer["seconds"], 1),
        "subprocess_rss_growth_mib": round(peer["rss_growth_mib"], 1),
        "ratio_time_ours_over_subprocess": round(ours["seconds"] / peer["seconds"], 3),
        "ratio_rss_ours_over_subprocess": round(
            ours["rss_growth_mib"] / max(peer["rss_growth_mib"], 1e-9), 4
        ),
    }


def bench_parallel(workspace: str) -> dict:
    program = parse('PARALLEL {\n  RUN "sleep 1"\n  RUN "sleep 1"\n}\n')
    started = time.perf_counter()
    result = runtime.run(program, workspace=workspace)
    wall = time.perf_counter() - started
    return {"children": 2, "each_seconds": 1.0, "wall_seconds": round(wall, 3), "passed": result.passed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--flood-mb", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workspace:
        report = {
            "benchmark": "runtime",
            "overhead": bench_overhead(args.runs, workspace),
            "flood": bench_flood(args.flood_mb, workspace),
            "parallel": bench_parallel(workspace),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

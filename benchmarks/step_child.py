"""One side of a benchmark in a process of its own, driven a step at a time.

train.py, distributed.py and finetune.py time two sides (NumPy and PyTorch, threads and ranks)
in alternation, each in its own process so neither's memory or threads disturb the other. The
child answers each line it reads (``step``, then a closing word) with one JSON line; this is the
parent's end of that exchange.
"""

from __future__ import annotations

import json
import subprocess


class StepChild:
    def __init__(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env)

    def read(self) -> dict:
        """The child's next JSON line; a failed child ends the benchmark with its exit code."""
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the {self.name} benchmark process failed (exit {self.proc.wait()})")
        return json.loads(line)

    def step(self) -> dict:
        return self.send("step")

    def finish(self, word: str = "done") -> dict:
        """The child's summary after ``word``, once it has exited."""
        summary = self.send(word)
        self.proc.wait()
        return summary

    def send(self, word: str) -> dict:
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()
        return self.read()

"""Parse throughput: ``tisslang.parse`` (source to typed AST) against a Lark LALR JSON parser.

Both parsers get the same number of bytes in the same run: a generated TissLang script of at
least 1 MB that uses every construct (heredocs, conditions, blocks, values, comments), and a JSON
document of the same size. The JSON peer is Lark's own tutorial parser at its fastest setting:
LALR, basic lexer, a Transformer applied inline, building Python values. Each parser runs
``--repeat`` times, interleaved; the best time counts (the least disturbed by other processes).

    python benchmarks/parse.py [--size-mb 1.0] [--repeat 3]

Prints one JSON object: MB/s for both, and ``ratio`` = TissLang MB/s / JSON MB/s.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time

import lark
from lark import Lark, Transformer

import tisslang

JSON_GRAMMAR = r"""
    ?start: value
    ?value: object
          | array
          | string
          | SIGNED_NUMBER      -> number
          | "true"             -> true
          | "false"            -> false
          | "null"             -> null
    array  : "[" [value ("," value)*] "]"
    object : "{" [pair ("," pair)*] "}"
    pair   : string ":" value
    string : ESCAPED_STRING

    %import common.ESCAPED_STRING
    %import common.SIGNED_NUMBER
    %import common.WS
    %ignore WS
"""


class JsonBuilder(Transformer):
    def string(self, s):
        (s,) = s
        return s[1:-1]

    def number(self, n):
        (n,) = n
        return float(n)

    def array(self, items):
        return [] if items == [None] else list(items)

    def pair(self, kv):
        return tuple(kv)

    def object(self, pairs):
        return {} if pairs == [None] else dict(pairs)

    def null(self, _):
        return None

    def true(self, _):
        return True

    def false(self, _):
        return False


def tiss_block(i: int, rng: random.Random) -> str:
    """One varied chunk of TissLang: every statement kind and expression form appears."""
    n = rng.randint(0, 1000)
    return f'''# step {i}: build, check and report
STEP "build part {i}" {{
    @timeout "30s"
    VAR name_{i} = "part-{i}"
    VAR cfg_{i} = {{mode: "fast", "level": {n}, flags: [true, false, {n}.5], owner: name_{i}}}
    RUN "make -C parts/{i} all && echo built {{{{ name_{i} }}}}"
    ASSERT LAST_RUN.EXIT_CODE == 0 AND LAST_RUN.STDOUT CONTAINS "built"
    ASSERT NOT (LAST_RUN.STDERR IS_NOT_EMPTY OR LAST_RUN.EXECUTION_TIME > {n})
    WRITE "out/{i}.txt" <<EOF
    result for {{{{ name_{i} }}}}: {{ "ok": true }}
        indented line with IF and }} braces

    EOF
    IF LAST_RUN.STDOUT MATCHES '^built \\d+' THEN {{
        LOG "part {i} built at level {n}"
    }} ELSE IF FILE "parts/{i}/Makefile" EXISTS {{
        READ "parts/{i}/Makefile" AS makefile_{i}
    }} ELSE {{
        TRY {{
            RUN 'ls parts/{i}'
        }} CATCH {{
            LOG "missing: {{{{ LAST_ERROR.MESSAGE }}}}"
        }}
    }}
    PROMPT_AGENT "Summarise part {i}" INTO summary_{i}
    DELETE "tmp/{i}" RECURSIVE
}}
'''


def generate_tiss(size: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    parts = ["#TISS! Language=Shell\n", 'TASK "benchmark"\nSET_BUDGET TOKENS = 100000\n']
    total = sum(len(p) for p in parts)
    i = 0
    while total < size:
        block = tiss_block(i, rng)
        parts.append(block)
        total += len(block)
        i += 1
    return "".join(parts)


def generate_json(size: int, seed: int = 0) -> str:
    """A JSON array of records, trimmed to exactly ``size`` bytes by its last record."""
    rng = random.Random(seed)
    records = []
    total = 2
    i = 0
    while True:
        record = {"id": i, "name": f"part-{i}", "ok": rng.random() < 0.5, "level": rng.randint(0, 1000),
                  "score": round(rng.random() * 100, 3), "tags": ["fast", "safe", str(i)],
                  "owner": None, "cfg": {"mode": "fast", "flags": [True, False, i + 0.5]}}
        text = json.dumps(record)
        if records and total + len(text) + 2 > size:
            break
        records.append(text)
        total += len(text) + 2
        i += 1
    doc = "[" + ", ".join(records) + "]"
    # Pad with whitespace inside the array to hit the same byte count exactly.
    return doc[:-1] + " " * max(0, size - len(doc)) + "]"


def best_seconds(runs: dict, repeat: int) -> dict[str, float]:
    """Best time of each ``name: (function, text)``, the runs interleaved so that a burst of load
    from other processes hits both parsers alike."""
    best = {name: float("inf") for name in runs}
    for _ in range(repeat):
        for name, (fn, text) in runs.items():
            start = time.perf_counter()
            fn(text)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    args_parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args_parser.add_argument("--size-mb", type=float, default=1.0)
    args_parser.add_argument("--repeat", type=int, default=3)
    args = args_parser.parse_args(argv)

    tiss_text = generate_tiss(int(args.size_mb * 1_000_000))
    nbytes = len(tiss_text.encode("utf-8"))
    json_text = generate_json(nbytes)
    json_parser = Lark(JSON_GRAMMAR, parser="lalr", lexer="basic", transformer=JsonBuilder())

    # Warm up both (grammar loading and caches are not part of throughput), and check results.
    program = tisslang.parse(tiss_text)
    data = json_parser.parse(json_text)
    if not program.body or not data:
        raise SystemExit("benchmark inputs did not parse to anything")

    best = best_seconds({"tiss": (tisslang.parse, tiss_text),
                         "json": (json_parser.parse, json_text)}, args.repeat)
    tiss_s, json_s = best["tiss"], best["json"]
    mb = nbytes / 1_000_000
    result = {
        "benchmark": "parse",
        "bytes": nbytes,
        "json_bytes": len(json_text.encode("utf-8")),
        "tiss_statements": len(program.body),
        "tiss_seconds": round(tiss_s, 4),
        "json_seconds": round(json_s, 4),
        "tiss_mb_per_s": round(mb / tiss_s, 3),
        "lark_json_mb_per_s": round(mb / json_s, 3),
        "ratio": round(json_s / tiss_s, 3),
        "repeat": args.repeat,
        "python": platform.python_version(),
        "lark": lark.__version__,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The `tiss` command line: argument parsing and dispatch only.

Each subcommand is one `cmd_*` function that hands its parsed arguments to the module that does
the work; the modules are imported lazily so `tiss check` never loads NumPy. Exit codes follow
ruff and black: 0 clean, 1 findings or a failed step, 2 usage error or invalid script,
130 interrupted.

To add a subcommand: write `_add_NAME(subparsers)` that builds its parser and sets
`func=cmd_NAME`, write `cmd_NAME(args) -> int`, and call `_add_NAME` from `create_parser`.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from importlib import metadata

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _version() -> str:
    try:
        dist = metadata.version("quantatissu")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        dist = "0+unknown"
    from tisslang import LANGUAGE_VERSION

    return f"tiss {dist} (TissLang {LANGUAGE_VERSION})"


class _Parser(argparse.ArgumentParser):
    """argparse, except that an unknown flag is reported by the subcommand it was given to:
    that subcommand's usage and the nearest flag it has (`--worksapce` -> `--workspace`).

    Plain argparse collects a subcommand's unknown arguments and lets the top-level parser
    complain with the top-level usage, which names none of the subcommand's flags.
    """

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            target = _chosen_parser(self, parsed)
            message = f"unrecognized arguments: {' '.join(extras)}"
            for word in extras:
                if word.startswith("-"):
                    close = difflib.get_close_matches(word.split("=", 1)[0], _flags(target), n=1, cutoff=0.6)
                    if close:
                        message += f"; did you mean {close[0]}?"
                        break
            target.error(message)
        return parsed


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    return [flag for action in parser._actions for flag in action.option_strings]


def _chosen_parser(parser: argparse.ArgumentParser, parsed: argparse.Namespace) -> argparse.ArgumentParser:
    """The innermost subcommand parser the command line chose (`tiss tokenizer encode`)."""
    while True:
        chooser = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        name = getattr(parsed, chooser.dest, None) if chooser is not None and chooser.dest else None
        if name is None or name not in chooser.choices:
            return parser
        parser = chooser.choices[name]


def create_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tiss",
        description="Run, check and format TissLang agent scripts; train and sample the model.",
    )
    parser.add_argument("--version", action="version", version=_version())
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Subcommands register here, one line each.
    _add_run(subparsers)
    _add_parse(subparsers)
    _add_check(subparsers)
    _add_fmt(subparsers)
    _add_generate(subparsers)
    _add_tokenizer(subparsers)
    _add_corpus(subparsers)
    _add_train(subparsers)
    _add_plot(subparsers)
    _add_repl(subparsers)
    _add_lsp(subparsers)
    _add_models(subparsers)
    _add_chat(subparsers)
    _add_export(subparsers)
    return parser


def _add_run(subparsers) -> None:
    p = subparsers.add_parser(
        "run",
        help="run a TissLang script in a workspace",
        description="Run a .tiss script: its steps, commands and checks, confined to the workspace. "
        "Exit 0 all steps passed, 1 a step failed, 2 invalid script or usage, 130 interrupted.",
    )
    p.add_argument("scripts", nargs="+", metavar="SCRIPT",
                   help="a .tiss file, or a directory: every *.tiss under it (several: one summary, "
                   "exit status of the worst)")
    p.add_argument("--workspace", metavar="DIR", help="the directory the script works in (default: .)")
    p.add_argument("--var", action="append", metavar="NAME=VALUE", help="set a variable (repeatable)")
    p.add_argument("--timeout", type=float, metavar="S",
                   help="seconds each RUN may take (default 600; @timeout and budgets may lower it)")
    p.add_argument("--trace", metavar="FILE", help="write every event as one JSON object per line")
    p.add_argument("--report", choices=["json"], help="print the result as JSON on stdout")
    p.add_argument("--dry-run", action="store_true", help="print what would run and its cost estimate; run nothing")
    p.add_argument("--yes", action="store_true",
                   help="approve every REQUEST_REVIEW, PAUSE and command-policy question without asking")
    p.add_argument("--sandbox", choices=["workspace"],
                   help="run commands in bubblewrap: read-only system, writable workspace, no network")
    _add_policy_flags(p)
    p.add_argument("--model", metavar="SPEC",
                   help="model backend: echo, http(s)://HOST/v1, a checkpoint PATH or a pulled model's name "
                   "(default: $TISS_MODEL, else the model shipped in the package)")
    p.add_argument("--model-name", metavar="NAME", help="the model name to ask an HTTP server for")
    loud = p.add_mutually_exclusive_group()
    loud.add_argument("-v", "--verbose", action="store_true", help="stream each RUN's output as it arrives")
    loud.add_argument("-q", "--quiet", action="store_true", help="print only failures and the summary")
    p.add_argument("-k", dest="select", metavar="PATTERN",
                   help="run only the steps whose description contains PATTERN (case-insensitive; "
                   "'not PATTERN' for the others); the rest are reported as deselected")
    p.add_argument("-x", "--exitfirst", action="store_true",
                   help="stop at the first failure: within a script always so (later steps are skipped, "
                   "TEARDOWN runs); with several scripts, the scripts after it are not run")
    p.add_argument("--strict", action="store_true",
                   help="a RUN that exits non-zero fails its step unless the next statement reads "
                   "LAST_RUN.EXIT_CODE (as `set -e`; @strict true in a script)")
    p.add_argument("--junit-xml", metavar="FILE", help="also write the run as JUnit XML (a testcase per STEP)")
    p.set_defaults(func=cmd_run)


def _add_policy_flags(p) -> None:
    """The command policy's flags, shared by `tiss run` and `tiss repl` (runtime/policy.py)."""
    p.add_argument("--allow", action="append", default=[], metavar="PATTERN",
                   help="run commands matching this glob without asking, even with model text (repeatable)")
    p.add_argument("--deny", action="append", default=[], metavar="PATTERN",
                   help="refuse commands matching this glob (repeatable; deny wins over allow)")
    p.add_argument("--policy", metavar="FILE", help="a TOML file of allow = [...] and deny = [...] patterns")
    p.add_argument("--approve", choices=["tainted", "all"], default="tainted",
                   help="ask before actions holding model text (default), or before every RUN too")


def cmd_run(args: argparse.Namespace) -> int:
    from runtime.runner import run_script

    return run_script(args)


def _add_parse(subparsers) -> None:
    p = subparsers.add_parser(
        "parse", help="print the syntax tree of a TissLang script",
        description="Parse a .tiss script and print its tree (JSON with --json). Exit 2 on a syntax error.",
    )
    p.add_argument("file", metavar="FILE", help="the .tiss file to parse")
    p.add_argument("--json", action="store_true", help="print the tree as JSON")
    p.set_defaults(func=cmd_parse)


def cmd_parse(args: argparse.Namespace) -> int:
    from tisslang.commands import parse_command

    return parse_command(args.file, as_json=args.json)


def _add_check(subparsers) -> None:
    p = subparsers.add_parser(
        "check", help="check TissLang scripts for errors without running them",
        description="Syntax and static checks (undefined variables, unknown directives and budgets, "
        "built-in names as targets), each finding with a rule code (docs/tisslang.md). "
        "Exit 0 clean, 1 diagnostics, 2 a syntax error.",
    )
    p.add_argument("files", nargs="*", metavar="PATH",
                   help="the .tiss files, or directories to search for *.tiss (default: .)")
    p.add_argument("--var", action="append", default=[], metavar="NAME[=VALUE]",
                   help="a variable the script gets from `tiss run --var` (repeatable)")
    p.add_argument("--select", action="append", default=[], metavar="CODES",
                   help="report only these rules: codes or prefixes, comma-separated (T001,T1)")
    p.add_argument("--ignore", action="append", default=[], metavar="CODES",
                   help="do not report these rules (a line's own: # tiss: ignore[T001])")
    p.add_argument("--output-format", choices=["text", "json", "github"], default="text",
                   help="text (default), json, or github (GitHub Actions annotations)")
    p.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    from tisslang.commands import check_command

    return check_command(args.files, known=args.var, select=args.select, ignore=args.ignore,
                         output_format=args.output_format)


def _add_fmt(subparsers) -> None:
    p = subparsers.add_parser(
        "fmt", help="format TissLang scripts in place",
        description="Rewrite scripts in canonical form. Exit 1 with --check or --diff when a file "
        "would change, 2 on a syntax error.",
    )
    p.add_argument("files", nargs="*", metavar="PATH",
                   help="the .tiss files, or directories to search for *.tiss (default: .)")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file would change")
    p.add_argument("--diff", action="store_true", help="change nothing; print a unified diff")
    p.set_defaults(func=cmd_fmt)


def cmd_fmt(args: argparse.Namespace) -> int:
    from tisslang.commands import fmt_command

    return fmt_command(args.files, check_only=args.check, diff=args.diff)


def _add_generate(subparsers) -> None:
    p = subparsers.add_parser(
        "generate",
        help="sample text from a model checkpoint (the shipped default model if none is given)",
        description="Stream a continuation of a prompt to stdout.",
    )
    p.add_argument("--checkpoint", metavar="MODEL",
                   help="checkpoint directory, GGUF file, Hugging Face directory or pulled model name "
                   "(default: the shipped model; with --chat, smollm2)")
    p.add_argument("--chat", action="store_true",
                   help="answer as the assistant: the prompt is the user's message in the model's chat template")
    p.add_argument("--system", metavar="TEXT", help="with --chat: the system message")
    p.add_argument("text", nargs="?", metavar="PROMPT",
                   help="the prompt (or -p TEXT, --prompt-file F; default: stdin when it is a pipe)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("-p", "--prompt", metavar="TEXT", help="the prompt text")
    src.add_argument("--prompt-file", metavar="F", help="read the prompt from a UTF-8 file (- for stdin)")
    p.add_argument("-n", "--max-new-tokens", type=int, default=128, metavar="N", help="tokens to generate at most (128)")
    p.add_argument("--temperature", type=float, default=0.8, metavar="T", help="0 is greedy (0.8)")
    p.add_argument("--top-k", type=int, metavar="K", help="keep the K most likely tokens")
    p.add_argument("--top-p", type=float, metavar="P", help="keep the smallest set with probability mass P")
    p.add_argument("--min-p", type=float, metavar="M", help="drop tokens below M times the top probability")
    p.add_argument("--repetition-penalty", type=float, default=1.0, metavar="R", help="> 1 discourages repeats")
    p.add_argument("--stop", action="append", default=[], metavar="S", help="stop before S (repeatable)")
    p.add_argument("--seed", type=int, metavar="S", help="random seed, for reproducible samples")
    p.add_argument("--no-kv-cache", action="store_true", help="recompute the whole context per token (slow)")
    p.add_argument("--stats", action="store_true", help="print token counts, tokens/s and time to first token on stderr")
    p.set_defaults(func=cmd_generate)


def cmd_generate(args: argparse.Namespace) -> int:
    # Decoding one token is a chain of small matrix-vector products: a second BLAS thread only
    # adds hand-offs (measured in docs/model.md). BLAS reads this when NumPy is imported, just
    # below; an explicit OPENBLAS_NUM_THREADS still wins.
    import os

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if args.system is not None and not args.chat:
        print("tiss: error: --system needs --chat (a system message is part of a chat)", file=sys.stderr)
        return EXIT_USAGE
    from lm.generate import SamplingSettings, generate_to_console, read_prompt

    args.prompt = read_prompt(args.prompt, args.prompt_file, positional=args.text, stdin=sys.stdin)
    args.prompt_file = None
    if args.chat:
        from runtime.chat import generate_chat

        return generate_chat(args)
    from lm.models import resolve_model

    generate_to_console(
        None if args.checkpoint is None else resolve_model(args.checkpoint),
        args.prompt,
        settings=SamplingSettings.from_options(vars(args)),  # the flags named like its fields
        stats=args.stats,
        use_kv_cache=not args.no_kv_cache,
    )
    return EXIT_OK


def _add_tokenizer(subparsers) -> None:
    p = subparsers.add_parser(
        "tokenizer",
        help="train the byte-level BPE tokenizer, or inspect how it encodes and decodes",
        description="Train, or inspect, the model's byte-level BPE tokenizer.",
    )
    p.set_defaults(func=lambda args, p=p: _print_help_usage_error(p))
    sub = p.add_subparsers(dest="tokenizer_command", metavar="ACTION")

    t = sub.add_parser("train", help="learn merges from a corpus and write tokenizer.json")
    t.add_argument("--corpus", required=True, metavar="PATH",
                   help="a built corpus (its train split), a directory of text files, or one file")
    t.add_argument("--vocab-size", type=int, default=4096, metavar="N",
                   help="ids in all: 256 bytes + merges + special tokens (4096)")
    t.add_argument("--out", required=True, metavar="FILE", help="where to write the tokenizer JSON")
    t.add_argument("--special", action="append", metavar="TOKEN",
                   help="a special token (repeatable; default <|endoftext|>)")
    t.set_defaults(func=cmd_tokenizer_train)

    e = sub.add_parser("encode", help="print the token ids of a text")
    e.add_argument("--tokenizer", metavar="FILE", help="tokenizer JSON or a checkpoint directory (default: the shipped model's)")
    src = e.add_mutually_exclusive_group()
    src.add_argument("text", nargs="?", help="the text (default: read stdin)")
    src.add_argument("--file", metavar="F", help="encode this UTF-8 file")
    e.add_argument("--allow-special", action="store_true", help="encode special-token text as special tokens")
    e.add_argument("--show", action="store_true", help="one line per token: id and the text it stands for")
    e.set_defaults(func=cmd_tokenizer_encode)

    d = sub.add_parser("decode", help="print the text of token ids")
    d.add_argument("--tokenizer", metavar="FILE", help="tokenizer JSON or a checkpoint directory (default: the shipped model's)")
    d.add_argument("ids", nargs="*", help="token ids (default: read them from stdin)")
    d.set_defaults(func=cmd_tokenizer_decode)


def _print_help_usage_error(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def cmd_tokenizer_train(args: argparse.Namespace) -> int:
    from lm import tokenizer_cli

    return tokenizer_cli.train(args.corpus, args.vocab_size, args.out, args.special)


def cmd_tokenizer_encode(args: argparse.Namespace) -> int:
    from lm import tokenizer_cli

    text = tokenizer_cli.read_text(args.text, args.file)
    return tokenizer_cli.encode(args.tokenizer, text, args.allow_special, args.show)


def cmd_tokenizer_decode(args: argparse.Namespace) -> int:
    from lm import tokenizer_cli

    ids = tokenizer_cli.parse_ids(args.ids if args.ids else [sys.stdin.read()])
    return tokenizer_cli.decode(args.tokenizer, ids)


def _add_corpus(subparsers) -> None:
    p = subparsers.add_parser(
        "corpus",
        help="assemble the training corpus from the standard library and its documentation",
        description="Build the training corpus deterministically from this Python installation.",
    )
    p.set_defaults(func=lambda args, p=p: _print_help_usage_error(p))
    sub = p.add_subparsers(dest="corpus_command", metavar="ACTION")
    b = sub.add_parser("build", help="write corpus/build/ with manifest.json and a train/valid split")
    b.add_argument("--out", metavar="DIR", help="where to build (default: corpus/build)")
    b.add_argument("--stdlib", metavar="DIR", help="read the standard library from DIR (default: this Python's)")
    b.add_argument("--include-tests", action="store_true", help="also take the standard library's test suites")
    b.add_argument("--no-pydoc", action="store_true", help="leave out the pydoc_data documentation topics")
    b.add_argument("--no-samples", action="store_true", help="leave out the committed samples under corpus/")
    b.add_argument("--valid-fraction", type=float, default=0.05, metavar="F",
                   help="share of files held out for validation (0.05)")
    b.set_defaults(func=cmd_corpus_build)


def cmd_corpus_build(args: argparse.Namespace) -> int:
    from lm import corpus

    return corpus.build_command(
        args.out,
        stdlib=args.stdlib,
        include_tests=args.include_tests,
        pydoc=not args.no_pydoc,
        samples=not args.no_samples,
        valid_fraction=args.valid_fraction,
    )


def _add_train(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train the NumPy transformer on a text corpus, or resume a run",
        description="Train a model on the text files under --corpus into run directory --out "
        "(tokenizer, token files, metrics.jsonl, checkpoint/), or continue a run with --resume DIR.",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--corpus", metavar="PATH", help="a text file, a directory of them, or a built corpus")
    where.add_argument("--resume", metavar="DIR", help="continue the run in DIR (to --steps total steps)")
    where.add_argument("--chat-data", metavar="FILE.jsonl",
                       help='conversations, one {"messages": [...]} per line, to fine-tune an --init instruct model on '
                       "(loss on the assistant turns only)")
    p.add_argument("--out", metavar="DIR", help="run directory for a new run")
    p.add_argument("--init", metavar="MODEL",
                   help="fine-tune this model (GGUF file, Hugging Face directory, checkpoint, or pulled name such as "
                   "smollm2): its weights, architecture and tokenizer")
    p.add_argument("--steps", type=int, metavar="N", help="total optimiser steps (1000)")
    p.add_argument("--batch-size", type=int, metavar="B", help="sequences per micro-batch (16)")
    p.add_argument("--seq-len", type=int, metavar="T", help="tokens per sequence (128)")
    p.add_argument("--d-model", type=int, metavar="D", help="model width (256)")
    p.add_argument("--n-layers", type=int, metavar="L", help="transformer blocks (4)")
    p.add_argument("--n-heads", type=int, metavar="H", help="attention heads (4)")
    p.add_argument("--ffn-hidden", type=int, metavar="F", help="SwiGLU hidden width (about 8/3 D)")
    vocab = p.add_mutually_exclusive_group()
    vocab.add_argument("--vocab-size", type=int, metavar="V", help="train a BPE tokenizer of V tokens (2048)")
    vocab.add_argument("--tokenizer", metavar="FILE", help="use this tokenizer.json instead")
    p.add_argument("--lr", type=float, help="peak learning rate (1e-3)")
    p.add_argument("--warmup", type=int, metavar="N", help="linear warmup steps (min(100, steps/10))")
    p.add_argument("--grad-accum", type=int, metavar="K", help="micro-batches per step (1)")
    p.add_argument("--eval-every", type=int, metavar="N", help="validation every N steps (100)")
    p.add_argument("--save-every", type=int, metavar="N", help="checkpoint every N steps (500)")
    p.add_argument("--sample-every", type=int, metavar="N",
                   help="print a short sample from the model every N steps (default: never)")
    p.add_argument("--seed", type=int, metavar="S", help="initialisation and data-sampling seed (0)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="data-parallel worker threads (default: one per CPU, at most 8); the same N reproduces a run bit for bit")
    p.add_argument("--distributed", choices=["mpi"],
                   help="train across the processes `mpiexec -n N` starts, each on its share of every batch "
                   "(needs quantatissu[mpi]; see docs/scale-out.md)")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from lm.train import train

    train(
        args.corpus, args.out, resume=args.resume, steps=args.steps, batch_size=args.batch_size,
        seq_len=args.seq_len, d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads,
        ffn_hidden=args.ffn_hidden, vocab_size=args.vocab_size, tokenizer=args.tokenizer, lr=args.lr,
        warmup=args.warmup, grad_accum=args.grad_accum, eval_every=args.eval_every,
        save_every=args.save_every, seed=args.seed, threads=args.threads, distributed=args.distributed,
        init=args.init, chat_data=args.chat_data, sample_every=args.sample_every,
    )
    return EXIT_OK


def _add_plot(subparsers) -> None:
    p = subparsers.add_parser(
        "plot",
        help="draw a training run's loss curves into a PNG file",
        description="Training and validation loss of the run in RUN_DIR (its metrics.jsonl) against steps "
        "and training tokens, as a PNG picture (needs quantatissu[plot]).",
    )
    p.add_argument("run", metavar="RUN_DIR", help="the run directory `tiss train --out` made")
    p.add_argument("-o", "--out", metavar="FILE.png", default="loss.png", help="the picture to write (loss.png)")
    p.add_argument("--width", type=int, default=1000, metavar="PX", help="picture width in pixels (1000)")
    p.add_argument("--height", type=int, default=500, metavar="PX", help="picture height in pixels (500)")
    p.set_defaults(func=cmd_plot)


def cmd_plot(args: argparse.Namespace) -> int:
    from lm.plot import plot_run

    print(plot_run(args.run, args.out, width=args.width, height=args.height))
    return EXIT_OK


def _add_repl(subparsers) -> None:
    p = subparsers.add_parser(
        "repl",
        help="try TissLang one entry at a time in a persistent session",
        description="An interactive TissLang session: multi-line entries, highlighting, completion, "
        "history; :help lists the meta-commands. With stdin not a terminal it runs the entries it "
        "reads and exits with the status `tiss run` would give.",
    )
    p.add_argument("--workspace", metavar="DIR", help="the directory entries work in (default: .)")
    p.add_argument("--timeout", type=float, metavar="S",
                   help="seconds each RUN may take (default 600; @timeout and budgets may lower it)")
    p.add_argument("--yes", action="store_true",
                   help="approve every REQUEST_REVIEW, PAUSE and command-policy question without asking")
    p.add_argument("--model", metavar="SPEC",
                   help="model backend: echo, http(s)://HOST/v1, a checkpoint PATH or a pulled model's name "
                   "(default: $TISS_MODEL, else the model shipped in the package)")
    p.add_argument("--model-name", metavar="NAME", help="the model name to ask an HTTP server for")
    _add_policy_flags(p)
    p.set_defaults(func=cmd_repl)


def cmd_repl(args: argparse.Namespace) -> int:
    from runtime.repl.main import run_repl

    return run_repl(args)


def _add_lsp(subparsers) -> None:
    p = subparsers.add_parser(
        "lsp", help="run the TissLang language server (for editors)",
        description="Serve the Language Server Protocol on stdin/stdout: diagnostics, formatting, "
        "completion, hover, outline, navigation and highlighting for .tiss files. Needs "
        "pip install 'quantatissu[lsp]'.",
    )
    p.add_argument("--stdio", action="store_true",
                   help="accepted for editors that pass it; stdin/stdout is the only transport")
    p.set_defaults(func=cmd_lsp)


def cmd_lsp(args: argparse.Namespace) -> int:
    from runtime.lsp import main as serve_lsp

    return serve_lsp()


def _add_chat(subparsers) -> None:
    p = subparsers.add_parser(
        "chat",
        help="talk with an instruct model (one with a chat template), e.g. smollm2",
        description="An interactive multi-turn chat: answers stream as they are decoded; Ctrl-C stops "
        "an answer, Ctrl-D or /exit leaves, /reset starts over. With stdin not a terminal, each line "
        "is one turn and each answer is printed followed by a newline.",
    )
    p.add_argument("--checkpoint", metavar="MODEL",
                   help="GGUF file, Hugging Face directory or pulled model name (default: smollm2)")
    p.add_argument("--system", metavar="TEXT", help="the system message")
    # No argparse defaults: runtime.chat.SAMPLING_DEFAULTS (an lm.SamplingSettings) fills what
    # is not given, so chat's defaults are written once; the help repeats them for people.
    p.add_argument("--max-new-tokens", type=int, metavar="N", help="tokens per answer at most (512)")
    p.add_argument("--temperature", type=float, metavar="T", help="0 is greedy (0.2)")
    p.add_argument("--top-k", type=int, metavar="K", help="keep the K most likely tokens")
    p.add_argument("--top-p", type=float, metavar="P", help="nucleus probability mass (0.9)")
    p.add_argument("--min-p", type=float, metavar="M", help="drop tokens below M times the top probability")
    p.add_argument("--repetition-penalty", type=float, metavar="R", help="> 1 discourages repeats (1)")
    p.add_argument("--seed", type=int, metavar="S", help="random seed, for reproducible answers")
    p.set_defaults(func=cmd_chat)


def cmd_chat(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as in cmd_generate: decoding is matrix-vector
    from runtime.chat import run_chat

    return run_chat(args)


def _add_export(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="write a model as a Hugging Face directory or a llama.cpp GGUF file",
        description="Export a model for transformers, vLLM (--format hf) or llama.cpp (--format gguf); "
        "see docs/scale-out.md.",
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="checkpoint or run directory, GGUF file, Hugging Face directory or pulled model name")
    p.add_argument("--format", required=True, choices=["hf", "gguf"], help="hf: a directory; gguf: one file")
    p.add_argument("--out", required=True, metavar="PATH", help="the directory (hf) or file (gguf) to write")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16", "q8_0"],
                   help="weights: float32 (default), float16, bfloat16 (hf) or q8_0 (gguf)")
    p.add_argument("--force", action="store_true", help="replace PATH if it exists")
    p.add_argument("--gguf-pre", metavar="NAME",
                   help="the llama.cpp pre-tokenizer to name (gpt-2 for a tokenizer trained here; see docs)")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from lm.export import export_command

    return export_command(args.checkpoint, args.format, args.out, dtype=args.dtype, force=args.force,
                          gguf_pre=args.gguf_pre)


def _add_models(subparsers) -> None:
    p = subparsers.add_parser(
        "models",
        help="download named pretrained models (smollm2) into the user cache, or list them",
        description="Named pretrained models live in $XDG_CACHE_HOME/quantatissu/models "
        "(~/.cache/...); --checkpoint, --model and @model accept their names.",
    )
    p.set_defaults(func=lambda args, p=p: _print_help_usage_error(p))
    sub = p.add_subparsers(dest="models_command", metavar="ACTION")
    pull = sub.add_parser("pull", help="download a model from where it is published (version and hash pinned)")
    pull.add_argument("name", metavar="NAME", help="the model, e.g. smollm2")
    pull.add_argument("--force", action="store_true", help="download again even if it is already there")
    pull.set_defaults(func=cmd_models_pull)
    ls = sub.add_parser("list", help="show every known model: name, size on disk and path (or how to pull it)")
    ls.set_defaults(func=cmd_models_list)


def cmd_models_pull(args: argparse.Namespace) -> int:
    from lm.models import pull_command

    return pull_command(args.name, force=args.force)


def cmd_models_list(args: argparse.Namespace) -> int:
    from lm.models import list_command

    return list_command()


def _user_error_types() -> tuple[type[BaseException], ...]:
    """The project's own exception bases: these are messages for the user, never tracebacks."""
    from lm.errors import LMError
    from runtime.errors import TissRuntimeError
    from tisslang.errors import TissError

    return (TissError, TissRuntimeError, LMError)


def render_error(exc: BaseException) -> str:
    """The text a user sees for one of the project's errors.

    Errors that know their position (`file:line:col: error: ...` with a caret) provide `render()`;
    the rest are plain messages, prefixed like argparse's own.
    """
    render = getattr(exc, "render", None)
    return render() if callable(render) else f"tiss: error: {exc}"


def main(argv: list[str] | None = None) -> int:
    from runtime.secret import take_api_key

    take_api_key()  # out of the environment before anything runs: no child may read it
    parser = create_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return func(args)
    except KeyboardInterrupt:
        print("tiss: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _user_error_types() as exc:
        from runtime.secret import redact

        print(redact(render_error(exc)), file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_USAGE)

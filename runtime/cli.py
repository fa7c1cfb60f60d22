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


def create_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tiss",
        description="Run, check and format TissLang agent scripts; train and sample the model.",
    )
    parser.add_argument("--version", action="version", version=_version())
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Subcommands register here, one line each.
    _add_generate(subparsers)
    return parser


def _add_generate(subparsers) -> None:
    p = subparsers.add_parser(
        "generate",
        help="sample text from a model checkpoint (the shipped default model if none is given)",
        description="Stream a continuation of a prompt to stdout.",
    )
    p.add_argument("--checkpoint", metavar="DIR", help="checkpoint directory (default: the shipped model)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", metavar="TEXT", help="the prompt text")
    src.add_argument("--prompt-file", metavar="F", help="read the prompt from a UTF-8 file (- for stdin)")
    p.add_argument("--max-new-tokens", type=int, default=128, metavar="N", help="tokens to generate at most (128)")
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
    from lm.generate import generate_to_console, read_prompt

    generate_to_console(
        args.checkpoint,
        read_prompt(args.prompt, args.prompt_file),
        args.max_new_tokens,
        stats=args.stats,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        min_p=args.min_p,
        repetition_penalty=args.repetition_penalty,
        stop=args.stop,
        seed=args.seed,
        use_kv_cache=not args.no_kv_cache,
    )
    return EXIT_OK


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
        print(render_error(exc), file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_USAGE)

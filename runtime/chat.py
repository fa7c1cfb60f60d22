"""`tiss chat` and `tiss generate --chat`: talking to an instruct model as its user.

`tiss generate --chat --prompt TEXT [--system TEXT]` prints one assistant answer.

`tiss chat` keeps a conversation. On a terminal it reads turns with prompt_toolkit (history in
`$XDG_STATE_HOME/tiss/chat_history`), streams each answer as it is decoded, and keeps every turn
for the next answer. Ctrl-C while an answer streams stops it (the part already shown stays in
the conversation); Ctrl-C at the prompt clears the line; Ctrl-D or `/exit` leaves; `/reset`
starts the conversation over (the system message stays). When the conversation outgrows the
model's context, its oldest turns are dropped.

With stdin not a terminal every non-empty line is one user turn, in one conversation, and each
answer is printed on stdout followed by a newline (so `printf 'hi\\nbye\\n' | tiss chat` gives two
answers); `/reset` works there too.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, TextIO

from lm.console import silence, write_out
from runtime.instruct import InstructModel, load_instruct

PROMPT = "you> "
# Chat's own sampling defaults, as `lm.SamplingSettings` (the one definition of the settings);
# `tiss chat`'s flags override them. Small instruct models stray at higher temperatures;
# SmolLM2's authors suggest temperature 0.2 and top-p 0.9.
SAMPLING_DEFAULTS = {"max_new_tokens": 512, "temperature": 0.2, "top_p": 0.9}
HELP = "/reset starts over, /exit (or Ctrl-D) leaves; Ctrl-C stops an answer."


@dataclass
class Conversation:
    """The messages so far; the system message, if any, comes first and survives `reset`."""

    system: str | None = None
    turns: list[dict[str, str]] = field(default_factory=list)

    def messages(self) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.turns

    def ask(self, text: str) -> None:
        self.turns.append({"role": "user", "content": text})

    def answered(self, text: str) -> None:
        self.turns.append({"role": "assistant", "content": text})

    def reset(self) -> None:
        self.turns.clear()

    def withdraw(self) -> None:
        """Take back the last question, which got no answer."""
        if self.turns and self.turns[-1]["role"] == "user":
            self.turns.pop()


def answer(model: InstructModel, conversation: Conversation, settings: Any, out: TextIO) -> str:
    """Stream the assistant's answer to `out` (sampled with `settings`, an
    `lm.SamplingSettings`), add it to the conversation and return it.

    KeyboardInterrupt stops the answer; what was shown of it is kept, then the interrupt goes on
    to the caller. Any other error leaves the conversation without an answer.
    """
    shown: list[str] = []
    stream = model.reply(conversation.messages(), settings, reuse_cache=True)
    try:
        for piece in stream:
            shown.append(piece)
            out.write(piece)
            out.flush()
    except KeyboardInterrupt:
        conversation.answered("".join(shown).strip())
        raise
    conversation.answered("".join(shown).strip())
    return conversation.turns[-1]["content"]


def generate_chat(args: Any, out: TextIO | None = None) -> int:
    """`tiss generate --chat`: one answer to `--prompt` (with `--system`) on stdout."""
    from lm.generate import SamplingSettings, read_prompt

    out = sys.stdout if out is None else out
    settings = SamplingSettings.from_options(vars(args))  # the flags named like its fields
    model = load_instruct(args.checkpoint)
    conversation = Conversation(system=args.system)
    conversation.ask(read_prompt(args.prompt, args.prompt_file))
    stream = model.reply(conversation.messages(), settings)
    for piece in stream:
        if not write_out(out, piece):
            return 0  # the reader went away (`... | head`): stop quietly
    if not write_out(out, "\n"):
        return 0
    if args.stats:
        r = stream.result
        print(f"prompt tokens: {r.prompt_tokens} (chat template included), generated tokens: "
              f"{r.completion_tokens}, finish: {r.finish_reason}, total {r.seconds:.2f} s", file=sys.stderr)
    return 0


def chat_history_path() -> Path:
    from runtime.repl.history import history_path

    return history_path().with_name("chat_history")


def chat_settings(options: dict[str, Any]) -> Any:
    """The `lm.SamplingSettings` of `tiss chat`: `SAMPLING_DEFAULTS` with the flags given
    (`options` is `vars()` of the parsed arguments; a flag left out is None there)."""
    from lm.generate import SamplingSettings

    base = SamplingSettings(**SAMPLING_DEFAULTS)
    return SamplingSettings.from_options({k: v for k, v in options.items() if v is not None}, base=base)


def run_chat(args: Any, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """The `tiss chat` subcommand; `args` as built by `cli._add_chat`."""
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    settings = chat_settings(vars(args))
    interactive = _isatty(stdin) and _isatty(stdout)
    if interactive:  # a large model takes seconds to load: say what is happening
        print(f"loading {args.checkpoint or 'smollm2'} ...", file=stdout, flush=True)
    model = load_instruct(args.checkpoint)
    conversation = Conversation(system=args.system)
    if not interactive:
        return chat_piped(model, conversation, settings, stdin, stdout)
    return chat_interactive(model, conversation, settings, stdout)


def chat_piped(model: InstructModel, conversation: Conversation, settings: Any,
               lines: Iterable[str], out: TextIO) -> int:
    """One turn per non-empty input line; each answer on `out` with a newline after it."""
    try:
        for raw in lines:
            text = raw.strip()
            if not text:
                continue
            if text == "/reset":
                conversation.reset()
                continue
            if text in ("/exit", "/quit"):
                break
            conversation.ask(text)
            answer(model, conversation, settings, out)
            out.write("\n")
            out.flush()
    except BrokenPipeError:  # the reader went away (`... | head`): stop quietly
        silence(out)
    return 0


def chat_interactive(model: InstructModel, conversation: Conversation, settings: Any, out: TextIO) -> int:
    """The terminal loop: read a turn, stream the answer, until Ctrl-D or /exit."""
    from prompt_toolkit import PromptSession

    from lm.errors import LMError
    from runtime.repl.history import open_history

    history, warning = open_history(chat_history_path())
    session: PromptSession[str] = PromptSession(PROMPT, history=history)
    system = f" (system: {_short(conversation.system)})" if conversation.system else ""
    print(f"Chatting with {model.name}{system}. {HELP}", file=out)
    if warning:
        print(warning, file=out)
    while True:
        try:
            text = session.prompt().strip()
        except KeyboardInterrupt:
            continue  # Ctrl-C at the prompt clears the line
        except EOFError:
            break
        if not text:
            continue
        if text in ("/exit", "/quit"):
            break
        if text == "/reset":
            conversation.reset()
            print("(the conversation starts over)", file=out)
            continue
        if text in ("/help", "/?"):
            print(HELP, file=out)
            continue
        if text.startswith("/"):
            print(f"unknown command {text.split()[0]!r}; {HELP}", file=out)
            continue
        conversation.ask(text)
        try:
            answer(model, conversation, settings, out)
            print(file=out)
        except KeyboardInterrupt:
            print("\n[stopped]", file=out)
        except LMError as exc:  # e.g. the template refuses these messages: say so, chat on
            conversation.withdraw()
            print(f"\ntiss: error: {exc}", file=out)
    return 0


def _short(text: str, width: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _isatty(stream: Any) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False

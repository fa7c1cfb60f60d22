"""Chat templates: turning a conversation into the prompt text an instruct model was trained on.

A pretrained instruct model ships a Jinja2 template (`tokenizer.chat_template` in GGUF metadata,
`tokenizer_config.json` or `chat_template.jinja` in a Hugging Face directory). `render_chat`
renders it exactly as transformers' `apply_chat_template` does: the same Jinja2 environment
(sandboxed and immutable, `trim_blocks` and `lstrip_blocks` on, the `loopcontrols` extension and
the `{% generation %}` block), the same helpers (`raise_exception`, `strftime_now`, a `tojson`
filter that is `json.dumps` without HTML escaping, `dict`, a `namespace` that refuses underscore
names) and the same variables (`messages`, `tools`, `documents`, `add_generation_prompt`, the
special tokens, any extra keyword).

Templates arrive with downloaded files, so they are treated as untrusted: the messages are
rebuilt from plain JSON types before the template sees them, the sandbox refuses attribute
access to Python internals, and a template that names an underscore attribute
(`messages.__class__`, `''.__class__.__mro__`, `x|attr('__dict__')`) is refused before it
renders at all.

`end_of_turn_token` finds the token a template closes an assistant turn with (`<|im_end|>` for
ChatML, `<|eot_id|>` for Llama 3), at which generation must stop.

Jinja2 is an optional dependency: `pip install 'quantatissu[llama]'`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from lm.errors import LMError

if TYPE_CHECKING:
    from lm.tokenizer import BPETokenizer

INSTALL_HINT = "pip install 'quantatissu[llama]'"
# Names a message's reasoning may be given under; transformers copies it to the first and to
# "thinking" so templates of either convention see it.
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


class ChatTemplateError(LMError):
    """A chat template that cannot be rendered or is refused; the message says why."""


def render_chat(
    template: str,
    messages: Sequence[Mapping[str, Any]],
    add_generation_prompt: bool = True,
    bos_token: str | None = None,
    eos_token: str | None = None,
    **extra: Any,
) -> str:
    """The prompt text for `messages` ([{"role": ..., "content": ...}, ...]).

    `add_generation_prompt` appends the opening of an assistant turn (what a model answering
    needs). `bos_token`/`eos_token` are the token texts the template may use; None leaves the
    variable undefined, as transformers does for a tokenizer without that token. Further keyword
    arguments become template variables (`tools`, `documents`, `enable_thinking`, ...).
    """
    if not isinstance(template, str):
        raise ChatTemplateError(f"a chat template is a string, got {type(template).__name__}")
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise ChatTemplateError("messages must be a list of {'role': ..., 'content': ...} objects")
    chat = _plain(list(messages))
    for i, message in enumerate(chat):
        if not isinstance(message, dict):
            raise ChatTemplateError(f"message {i} is {message!r}; expected a dict with role and content")
    chat = _alias_reasoning(chat)
    variables: dict[str, Any] = {}
    if bos_token is not None:
        variables["bos_token"] = bos_token
    if eos_token is not None:
        variables["eos_token"] = eos_token
    variables.update(_plain(extra))
    tools = variables.pop("tools", None)
    documents = variables.pop("documents", None)
    compiled = _compile(template)
    jinja2 = _jinja2()
    try:
        return compiled.render(
            messages=chat,
            tools=tools,
            documents=documents,
            add_generation_prompt=add_generation_prompt,
            **variables,
        )
    except jinja2.exceptions.SecurityError as exc:
        raise ChatTemplateError(f"chat template refused: it tried to reach Python internals ({exc})") from None
    except jinja2.exceptions.TemplateError as exc:
        raise ChatTemplateError(f"chat template error: {exc}") from None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, ZeroDivisionError) as exc:
        raise ChatTemplateError(
            f"chat template failed on these messages: {type(exc).__name__}: {exc}"
        ) from None


def apply_chat_template(
    tokenizer: BPETokenizer,
    messages: Sequence[Mapping[str, Any]],
    add_generation_prompt: bool = True,
    **extra: Any,
) -> str:
    """`render_chat` with a pretrained tokenizer's template and its BOS/EOS token texts."""
    if tokenizer.chat_template is None:
        raise ChatTemplateError("this model has no chat template; it is not an instruct model")
    pad = _token_text(tokenizer, tokenizer.pad_id)
    if pad is not None:  # transformers passes every special token the tokenizer has
        extra = {"pad_token": pad, **extra}
    return render_chat(
        tokenizer.chat_template,
        messages,
        add_generation_prompt=add_generation_prompt,
        bos_token=_token_text(tokenizer, tokenizer.bos_id),
        eos_token=_token_text(tokenizer, tokenizer.eos_id),
        **extra,
    )


def end_of_turn_token(
    template: str,
    special_tokens: Iterable[str],
    bos_token: str | None = None,
    eos_token: str | None = None,
) -> str | None:
    """The special token that the template puts right after an assistant's message, or None.

    Found by rendering a short conversation and reading what follows the assistant's text
    (whitespace skipped): `<|im_end|>` for ChatML, `<|eot_id|>` for Llama 3, the EOS token for
    templates that end a turn with `eos_token`.
    """
    marker = "ANSWER-5e1f0c"  # survives `trim` and friends
    conversations = (
        [{"role": "user", "content": "question"}, {"role": "assistant", "content": marker}],
        [{"role": "system", "content": "system"}, {"role": "user", "content": "question"},
         {"role": "assistant", "content": marker}],
    )
    candidates = sorted({t for t in special_tokens if t}, key=len, reverse=True)
    for chat in conversations:
        try:
            text = render_chat(template, chat, add_generation_prompt=False,
                               bos_token=bos_token, eos_token=eos_token)
        except ChatTemplateError:
            continue
        at = text.find(marker)
        if at < 0:
            continue
        rest = text[at + len(marker):].lstrip()
        for token in candidates:
            if rest.startswith(token):
                return token
        return None
    return None


def end_of_turn_id(tokenizer: BPETokenizer) -> int | None:
    """The id generation must stop at after an assistant turn, by the tokenizer's template (or
    its metadata's end-of-turn id, or its EOS id)."""
    if tokenizer.chat_template is not None:
        names = [*tokenizer.special_tokens, *tokenizer.added_tokens]
        token = end_of_turn_token(
            tokenizer.chat_template, names,
            _token_text(tokenizer, tokenizer.bos_id), _token_text(tokenizer, tokenizer.eos_id),
        )
        if token is not None:
            return tokenizer.token_id(token)
    return tokenizer.end_of_turn_id if tokenizer.end_of_turn_id is not None else tokenizer.eos_id


def chat_stop_ids(tokenizer: BPETokenizer) -> frozenset[int]:
    """Every id that ends an assistant's answer: the template's end of turn, the metadata's end
    of turn, and end of sequence."""
    found = end_of_turn_id(tokenizer)
    return tokenizer.stop_ids | ({found} if found is not None else set())


# ----------------------------------------------------------------------------------------- internals

def _token_text(tokenizer: BPETokenizer, token_id: int | None) -> str | None:
    if token_id is None:
        return None
    return tokenizer.decode_bytes([token_id]).decode("utf-8", errors="replace")


def _jinja2():
    try:
        import jinja2
        import jinja2.ext
        import jinja2.sandbox
    except ImportError:
        raise ChatTemplateError(
            f"rendering a chat template needs jinja2, which is not installed: {INSTALL_HINT}"
        ) from None
    return jinja2


def _plain(value: Any) -> Any:
    """`value` rebuilt from JSON types only; anything else becomes a placeholder string naming
    its type, so no object with methods reaches the template."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and type(value).__module__ == "numpy":
        return _plain(item())
    return f"<{type(value).__name__}>"


def _alias_reasoning(chat: list[dict]) -> list[dict]:
    out = []
    for message in chat:
        reasoning = next((message[k] for k in _REASONING_FIELDS if message.get(k) is not None), None)
        if reasoning is not None:
            message = {"thinking": reasoning, **message, "reasoning_content": reasoning}
        out.append(message)
    return out


@lru_cache(maxsize=32)
def _compile(template: str):
    jinja2 = _jinja2()
    env = _environment()
    try:
        tree = env.parse(template)
    except jinja2.exceptions.TemplateSyntaxError as exc:
        raise ChatTemplateError(
            f"chat template line {exc.lineno}: {exc.message}; the model's template is broken"
        ) from None
    _refuse_internals(tree)
    return env.from_string(tree)


@lru_cache(maxsize=1)
def _environment():
    jinja2 = _jinja2()
    from jinja2 import nodes
    from jinja2.ext import Extension
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationBlock(Extension):
        """`{% generation %}...{% endgeneration %}` marks assistant text for training masks in
        transformers; rendering outputs its body unchanged."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    class TemplateDict:
        def __call__(self, *args, **kwargs):
            return dict(*args, **kwargs)

        def fromkeys(self, *args, **kwargs):
            return dict.fromkeys(*args, **kwargs)

    class TemplateNamespace(jinja2.utils.Namespace):
        def __init__(*args, **kwargs):
            self, args = args[0], args[1:]
            attrs = dict(*args, **kwargs)
            for name in attrs:
                TemplateNamespace._check(name)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name, value):
            TemplateNamespace._check(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

        @staticmethod
        def _check(name):
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError(
                    f"a namespace attribute may not start with an underscore: {name!r}"
                )

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationBlock, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    sandboxed_attr = env.filters["attr"]

    @jinja2.pass_environment
    def attr(environment, obj, name):
        # Jinja's sandbox answers an unsafe `attr` with an empty value; refuse it outright, as a
        # name written in the template is refused (`_refuse_internals`).
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"attribute {name!r} is not available to templates")
        return sandboxed_attr(environment, obj, name)

    env.filters["attr"] = attr
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    env.globals["dict"] = TemplateDict()
    env.globals["namespace"] = TemplateNamespace
    return env


def _refuse_internals(tree) -> None:
    """Refuse a template that names an underscore attribute or item anywhere."""
    from jinja2 import nodes

    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        name = None
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            name = node.arg.value
        elif isinstance(node, nodes.Filter) and node.name == "attr" and node.args:
            arg = node.args[0]
            name = arg.value if isinstance(arg, nodes.Const) else None
        if isinstance(name, str) and name.startswith("_"):
            raise ChatTemplateError(
                f"chat template line {node.lineno}: refused: it reaches for the Python attribute "
                f"{name!r}; templates may only read the messages and variables they are given"
            )

"""An OpenAI-compatible chat server as a model backend, with the standard library only.

One PROMPT_AGENT is one `POST {base_url}/chat/completions`: `@persona` becomes the system
message and the prompt the user message; `@model`, `@temperature`, `@top_p`, `@max_tokens`,
`@seed` and `@stop` go into the body when set. `@top_k` and `@min_p` are not part of the OpenAI
API; they are sent only when a script sets them (vLLM and llama.cpp servers honour them, others
may refuse the request, which is then reported as an HTTP error). Token counts come from the
reply's `usage`.

Before a call is sent the budgets charge `count_prompt_tokens(prompt, settings)`, which must be an
upper bound on what the server will count, since the call's completion cap (`max_tokens`) is what
that charge leaves of TOKENS: a generic server offers no tokenizer, so the bound is the UTF-8 byte
count of the prompt and the persona (a byte-level BPE never makes more tokens than bytes, and a
SentencePiece model with byte fallback neither, bar a prefix token per message) plus an allowance
for what the server's chat template adds (role markers, a default system prompt). The allowance
is kept per message shape (the model name sent and whether there is a system message, since a
template may add a default system prompt only when there is none) and learned from the usage
the server reports, P prompt tokens for B bytes: the template adds at least P - B, so the
allowance never falls below the largest P - B seen; and at most P (the content is at least one
token, or none), so once the server has reported a P below `TEMPLATE_ALLOWANCE` the allowance is
the smallest such P. Before any report it is `TEMPLATE_ALLOWANCE`. The only overshoot left is a
server that reports more prompt tokens than bytes + allowance (a template larger than the
allowance on the first call of its shape), or more completion tokens than the `max_tokens` it
was sent: the budgets then fail the run after that call, and no later call is sent.

A server that reports no usage is charged the same bounds: the prompt's bound, and for the
answer its UTF-8 byte count, at most the `max_tokens` it was sent.

The API key (TISS_API_KEY, passed in by `select.py` only for the origin the user configured)
goes only into the `Authorization: Bearer` header: it is not kept in any public attribute, not
shown by `repr`, and redacted from every error message (before any text is shortened) in case a
server echoes it back.

`settings.timeout` bounds the whole call (connecting, headers, body), not each read: a watcher
thread shuts the socket down when the deadline passes or `settings.cancel` is set, so a server
that trickles one byte at a time cannot hold a call past its deadline, and Ctrl-C during a
PARALLEL block stops a call at once. Replies are parsed defensively: nesting too deep for the
JSON parser is a malformed reply, and lone surrogates in the text become U+FFFD.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.client import HTTPException
from typing import Any

from runtime import secret
from runtime.backends.base import (
    BackendCancelled,
    BackendError,
    Completion,
    GenerationSettings,
    estimate_tokens,
)

DEFAULT_TIMEOUT = 120.0  # seconds; chat models on a busy server can take a while
TEMPLATE_ALLOWANCE = 64
"""Tokens a prompt is charged for the server's chat template before the server has reported any
usage for that message shape (see the module docstring): more than ChatML's or Llama 3's role
markers with a default system prompt of a sentence or two."""
_MAX_REPLY_BYTES = 64 * 1024 * 1024  # a chat reply is text; anything bigger is not a reply
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}
_WATCH_POLL = 0.05  # seconds between the watcher's looks at the cancel event
_SNIPPET = 200  # characters of a malformed reply quoted in the error
_DETAIL = 300  # characters of a server's error explanation quoted in the error
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def normalise_base_url(url: str) -> str:
    """The base URL calls are made under: no trailing slash, no `/chat/completions` suffix.

    >>> normalise_base_url("http://localhost:8000/v1/chat/completions")
    'http://localhost:8000/v1'
    """
    parsed = urllib.parse.urlsplit(url.strip())
    if parsed.username is not None or parsed.password is not None:
        # Not echoed: the URL holds a secret, and errors end up in traces and reports.
        raise BackendError(
            "the model server URL contains credentials (user:password@); remove them and put "
            "the API key in the TISS_API_KEY environment variable instead"
        )
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise BackendError(
            f"{url!r} is not a model server URL; use one like http://localhost:8000/v1"
        )
    base = url.strip().rstrip("/")
    if base.endswith("/chat/completions"):
        base = base[: -len("/chat/completions")]
    return base


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects are answered as HTTP errors: urllib would resend the Authorization header to
    wherever the server points, and would turn the POST into a body-less GET besides."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 - urllib's signature
        return None


class _Call:
    """One request's deadline and cancel event. A watcher thread shuts down every socket the
    request opened when either comes, which ends any blocking read or connect at once."""

    def __init__(self, timeout: float, cancel: threading.Event | None) -> None:
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.cancel = cancel
        self.expired: str | None = None  # "timeout" or "cancelled" once the watcher fired
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="http-deadline", daemon=True)
        self._watcher.start()

    def remaining(self) -> float:
        # Capped for the socket layer, which cannot take a timeout of years; the watcher
        # enforces the real deadline.
        return min(86400.0, max(0.001, self.deadline - time.monotonic()))

    def connect(self, address: Any, timeout: Any = None, source_address: Any = None) -> socket.socket:
        # Each blocking step also gets at most what is left of the whole call.
        sock = socket.create_connection(address, self.remaining(), source_address)
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shutdown(sock)
        return sock

    def _watch(self) -> None:
        while True:
            left = self.deadline - time.monotonic()
            if self._done.wait(max(0.0, min(_WATCH_POLL, left))):
                return
            if self.cancel is not None and self.cancel.is_set():
                self._expire("cancelled")
                return
            if time.monotonic() >= self.deadline:
                self._expire("timeout")
                return

    def _expire(self, why: str) -> None:
        with self._lock:
            self.expired = why
            for sock in self._sockets:
                _shutdown(sock)

    def finish(self) -> None:
        self._done.set()


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _opener_for(url: str, call: _Call) -> urllib.request.OpenerDirector:
    """An opener whose connections register their sockets with `call` (see `_Call`)."""

    class Connection(http.client.HTTPConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._create_connection = call.connect

    class SecureConnection(http.client.HTTPSConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._create_connection = call.connect

    class Handler(urllib.request.HTTPHandler):
        def http_open(self, req):  # noqa: ANN001 - urllib's signature
            return self.do_open(Connection, req)

    class SecureHandler(urllib.request.HTTPSHandler):
        def https_open(self, req):  # noqa: ANN001 - urllib's signature
            return self.do_open(SecureConnection, req, context=self._context)

    handlers: list[urllib.request.BaseHandler] = [_RefuseRedirects(), Handler(), SecureHandler()]
    # A proxy from the environment must not capture calls to a server on this machine.
    host = urllib.parse.urlsplit(url).hostname or ""
    if host in _LOOPBACK_HOSTS:
        handlers.append(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener(*handlers)


def _error_detail(raw: bytes) -> str:
    """The server's own explanation from an error body, shortened for one line."""
    text = raw.decode("utf-8", errors="replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        error = parsed.get("error", parsed.get("detail", parsed.get("message")))
        if isinstance(error, dict):
            error = error.get("message", error)
        if error is not None:
            text = error if isinstance(error, str) else json.dumps(error)
    return secret.cut(" ".join(text.split()), _DETAIL)


_HTTP_HINTS = {
    400: "the server refused the request; check the @-directives this prompt uses",
    401: "the server wants credentials; set TISS_API_KEY",
    403: "the server refused the credentials in TISS_API_KEY",
    404: "check the base URL; it is the part before /chat/completions, e.g. http://HOST:PORT/v1",
    429: "the server is rate limiting; wait, or lower the load with budgets",
}


class _Secret:
    """A string that shows as `[redacted]` in any repr, so debuggers and logs never print it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "[redacted]"

    __str__ = __repr__


class HttpBackend:
    """A `ModelBackend` that calls an OpenAI-compatible `/chat/completions` endpoint."""

    name = "http"

    def __init__(
        self,
        base_url: str,
        model_name: str | None = None,
        *,
        api_key: str | None = None,
        default_timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.base_url = normalise_base_url(base_url)
        self.url = self.base_url + "/chat/completions"
        self.model_name = model_name
        self.default_timeout = default_timeout
        self.__api_key = _Secret(api_key) if api_key else None
        secret.register(api_key)
        # Per message shape: [the least the template adds, the most it can add] so far.
        self._template: dict[tuple[str | None, bool], list[float]] = {}
        self._template_lock = threading.Lock()

    def __repr__(self) -> str:
        auth = "set" if self.__api_key else "none"
        return f"HttpBackend({self.base_url!r}, model_name={self.model_name!r}, api_key={auth})"

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def _shape(self, settings: GenerationSettings) -> tuple[str | None, bool]:
        return (settings.model or self.model_name, bool(settings.persona))

    def template_allowance(self, settings: GenerationSettings) -> int:
        """The tokens the server's chat template may add to a prompt sent with `settings`."""
        with self._template_lock:
            least, most = self._template.get(self._shape(settings), (0, TEMPLATE_ALLOWANCE))
        return int(max(least, min(TEMPLATE_ALLOWANCE, most)))

    def count_prompt_tokens(self, prompt: str, settings: GenerationSettings) -> int:
        """What the budgets charge a prompt before it is sent: an upper bound on the server's
        count, bytes plus the template allowance (see the module docstring)."""
        return _content_bytes(prompt, settings) + self.template_allowance(settings)

    def _learn(self, prompt: str, settings: GenerationSettings, reported: int) -> None:
        """What a reply's prompt count says about the template (see the module docstring)."""
        added = reported - _content_bytes(prompt, settings)
        with self._template_lock:
            least, most = self._template.setdefault(self._shape(settings), [0, TEMPLATE_ALLOWANCE])
            self._template[self._shape(settings)] = [max(least, added), min(most, reported)]

    def request_body(self, prompt: str, settings: GenerationSettings) -> dict[str, Any]:
        """The JSON body of the chat request for one prompt (the tests pin it exactly)."""
        messages = []
        if settings.persona:
            messages.append({"role": "system", "content": settings.persona})
        messages.append({"role": "user", "content": prompt})
        body: dict[str, Any] = {}
        model = settings.model or self.model_name
        if model:
            body["model"] = model
        body["messages"] = messages
        for key in ("temperature", "top_p", "max_tokens", "seed", "top_k", "min_p"):
            value = getattr(settings, key)
            if value is not None:
                body[key] = value
        if settings.stop:
            body["stop"] = list(settings.stop)
        return body

    def generate(self, prompt: str, settings: GenerationSettings) -> Completion:
        timeout = settings.timeout if settings.timeout is not None else self.default_timeout
        body = self.request_body(prompt, settings)
        request = urllib.request.Request(
            self.url,
            data=json.dumps(body).encode("utf-8"),
            method="POST",
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        if self.__api_key:
            request.add_header("Authorization", f"Bearer {self.__api_key.reveal()}")
        started = time.monotonic()
        call = _Call(timeout, getattr(settings, "cancel", None))
        try:
            raw = self._send(request, call)
        finally:
            call.finish()
        elapsed = time.monotonic() - started
        return self._parse(raw, prompt, settings, elapsed)

    # -- transport ------------------------------------------------------------------------

    def _fail(self, message: str) -> BackendError:
        if self.__api_key:
            message = message.replace(self.__api_key.reveal(), secret.REDACTED)
        return BackendError(secret.redact(message))

    def _stopped(self, call: _Call) -> BackendError:
        if call.expired == "cancelled":
            return BackendCancelled(f"the call to the model server at {self.base_url} was cancelled")
        return self._timed_out(call.timeout)

    def _timed_out(self, timeout: float) -> BackendError:
        return self._fail(
            f"the model server at {self.base_url} did not answer within {timeout:g}s; "
            "raise @timeout or check that the server is not overloaded"
        )

    def _send(self, request: urllib.request.Request, call: _Call) -> bytes:
        try:
            with _opener_for(self.url, call).open(request, timeout=call.remaining()) as response:
                raw = self._read(response)
        except BackendError:
            raise
        except (OSError, HTTPException, ValueError) as exc:  # URLError and HTTPError are OSErrors
            if call.expired:  # whatever the cut-off socket raised, the reason is the deadline
                raise self._stopped(call) from None
            raise self._transport_error(exc, call.timeout) from None
        if call.expired:  # the watcher cut the reply short
            raise self._stopped(call)
        return raw

    def _transport_error(self, exc: Exception, timeout: float) -> BackendError:
        if isinstance(exc, urllib.error.HTTPError):
            try:
                detail = _error_detail(exc.read(4096))
            except (OSError, HTTPException, ValueError):
                detail = ""
            hint = _HTTP_HINTS.get(exc.code) or (
                "the server failed; try again or check its logs" if exc.code >= 500 else ""
            )
            if 300 <= exc.code < 400:
                location = exc.headers.get("Location", "") if exc.headers else ""
                hint = "redirects are not followed; give the final URL to --model" + (
                    f" (it points to {secret.cut(location, _DETAIL)})" if location else ""
                )
            if exc.code == 401 and self.__api_key is None and secret.api_key() is not None:
                hint = (f"TISS_API_KEY is sent only to the server given by --model or TISS_MODEL "
                        f"({secret.bound_origin() or 'none is'}), not to a script's @model")
            parts = [f"the model server at {self.base_url} answered HTTP {exc.code} {secret.cut(str(exc.reason), _DETAIL)}"]
            parts += [detail] if detail else []
            return self._fail(": ".join(parts) + (f" ({hint})" if hint else ""))
        if isinstance(exc, urllib.error.URLError):
            reason = exc.reason
            if isinstance(reason, (TimeoutError, socket.timeout)):
                return self._timed_out(timeout)
            if isinstance(reason, ConnectionRefusedError):
                return self._fail(
                    f"could not connect to the model server at {self.base_url}: connection "
                    "refused; start the server, or choose another backend with --model or "
                    "TISS_MODEL"
                )
            if isinstance(reason, socket.gaierror):
                return self._fail(
                    f"could not find the host of the model server {self.base_url}; "
                    "check the URL given to --model or TISS_MODEL"
                )
            return self._fail(f"could not reach the model server at {self.base_url}: {secret.cut(str(reason), _DETAIL)}")
        if isinstance(exc, (TimeoutError, socket.timeout)):
            return self._timed_out(timeout)
        return self._fail(
            f"the connection to the model server at {self.base_url} failed mid-reply: "
            f"{secret.cut(str(exc) or type(exc).__name__, _DETAIL)}"
        )

    def _read(self, response: Any) -> bytes:
        # The deadline is the watcher's (see `_Call`); here only the size is bounded.
        chunks, size = [], 0
        while True:
            chunk = response.read(65536)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > _MAX_REPLY_BYTES:
                raise self._fail(f"the model server at {self.base_url} sent a reply over 64 MiB")
            chunks.append(chunk)

    # -- reply ----------------------------------------------------------------------------

    def _malformed(self, why: str, raw: bytes) -> BackendError:
        # Redacted before it is cut: a key straddling the cut must not leave its first part.
        snippet = secret.cut(raw[: _SNIPPET + 4096].decode("utf-8", errors="replace"), _SNIPPET, "")
        return self._fail(
            f"the model server at {self.base_url} sent a malformed reply ({why}): {snippet!r}; "
            "is this an OpenAI-compatible /chat/completions endpoint?"
        )

    def _parse(
        self, raw: bytes, prompt: str, settings: GenerationSettings, elapsed: float
    ) -> Completion:
        try:
            reply = json.loads(raw.decode("utf-8"))
        except ValueError:
            raise self._malformed("not JSON", raw) from None
        except RecursionError:
            raise self._malformed("JSON nested too deeply", raw) from None
        if not isinstance(reply, dict):
            raise self._malformed("not a JSON object", raw)
        if "error" in reply and "choices" not in reply:
            raise self._fail(
                f"the model server at {self.base_url} reported an error: {_error_detail(raw)}"
            )
        choices = reply.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise self._malformed("no choices", raw)
        choice = choices[0]
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else None
        if not isinstance(text, str):
            raise self._malformed("choices[0].message.content is not text", raw)
        text = _clean(text)
        finish = choice.get("finish_reason")
        usage = reply.get("usage")
        prompt_tokens = completion_tokens = None
        if isinstance(usage, dict):
            prompt_tokens = usage.get("prompt_tokens")
            completion_tokens = usage.get("completion_tokens")
        if _is_count(prompt_tokens):
            self._learn(prompt, settings, prompt_tokens)  # for the next call's charge and cap
        else:  # no usage: charged the bounds, as a call is capped by them
            prompt_tokens = self.count_prompt_tokens(prompt, settings)
        if not _is_count(completion_tokens):
            completion_tokens = len(text.encode("utf-8", "surrogatepass"))
            if settings.max_tokens is not None:
                completion_tokens = min(completion_tokens, settings.max_tokens)
        model = reply.get("model")
        return Completion(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            finish_reason=_clean(finish) if isinstance(finish, str) else "unknown",
            model=_clean(model) if isinstance(model, str) else "",
            elapsed=elapsed,
        )


def _clean(text: str) -> str:
    """JSON may carry lone surrogates (`"\\ud800"`), which no file or terminal can take."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def _content_bytes(prompt: str, settings: GenerationSettings) -> int:
    """The UTF-8 bytes of what a call sends as message text: the prompt and the persona."""
    persona = settings.persona or ""
    return len(prompt.encode("utf-8", "surrogatepass")) + len(persona.encode("utf-8", "surrogatepass"))


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0

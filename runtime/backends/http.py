"""An OpenAI-compatible chat server as a model backend, with the standard library only.

One PROMPT_AGENT is one `POST {base_url}/chat/completions`: `@persona` becomes the system
message and the prompt the user message; `@model`, `@temperature`, `@top_p`, `@max_tokens`,
`@seed` and `@stop` go into the body when set. `@top_k` and `@min_p` are not part of the OpenAI
API; they are sent only when a script sets them (vLLM and llama.cpp servers honour them, others
may refuse the request, which is then reported as an HTTP error). Token counts come from the
reply's `usage`; a server that sends none is charged with `estimate_tokens`.

Before a call is sent the budgets charge `count_tokens(prompt)`, the documented estimate of one
token per 4 bytes of UTF-8 (`estimate_tokens`), since a generic server offers no tokenizer.

The API key (TISS_API_KEY, passed in by `select.py`) goes only into the `Authorization: Bearer`
header: it is not kept in any public attribute, not shown by `repr`, and scrubbed from every
error message in case a server echoes it back.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from http.client import HTTPException
from typing import Any

from runtime.backends.base import BackendError, Completion, GenerationSettings, estimate_tokens

DEFAULT_TIMEOUT = 120.0  # seconds; chat models on a busy server can take a while
_MAX_REPLY_BYTES = 64 * 1024 * 1024  # a chat reply is text; anything bigger is not a reply
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


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


def _opener_for(url: str) -> urllib.request.OpenerDirector:
    handlers: list[urllib.request.BaseHandler] = [_RefuseRedirects()]
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
    text = " ".join(text.split())
    return text[:300] + ("..." if len(text) > 300 else "")


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
        self._opener = _opener_for(self.url)

    def __repr__(self) -> str:
        auth = "set" if self.__api_key else "none"
        return f"HttpBackend({self.base_url!r}, model_name={self.model_name!r}, api_key={auth})"

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

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
        raw = self._send(request, timeout, started)
        elapsed = time.monotonic() - started
        return self._parse(raw, prompt, settings, elapsed)

    # -- transport ------------------------------------------------------------------------

    def _fail(self, message: str) -> BackendError:
        if self.__api_key:
            message = message.replace(self.__api_key.reveal(), "[redacted]")
        return BackendError(message)

    def _timed_out(self, timeout: float) -> BackendError:
        return self._fail(
            f"the model server at {self.base_url} did not answer within {timeout:g}s; "
            "raise @timeout or check that the server is not overloaded"
        )

    def _send(self, request: urllib.request.Request, timeout: float, started: float) -> bytes:
        try:
            with self._opener.open(request, timeout=timeout) as response:
                return self._read(response, timeout, started)
        except urllib.error.HTTPError as exc:
            try:
                detail = _error_detail(exc.read(4096))
            except (OSError, HTTPException):
                detail = ""
            hint = _HTTP_HINTS.get(exc.code) or (
                "the server failed; try again or check its logs" if exc.code >= 500 else ""
            )
            if 300 <= exc.code < 400:
                location = exc.headers.get("Location", "") if exc.headers else ""
                hint = "redirects are not followed; give the final URL to --model" + (
                    f" (it points to {location})" if location else ""
                )
            parts = [f"the model server at {self.base_url} answered HTTP {exc.code} {exc.reason}"]
            parts += [detail] if detail else []
            raise self._fail(": ".join(parts) + (f" ({hint})" if hint else "")) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise self._timed_out(timeout) from None
            if isinstance(reason, ConnectionRefusedError):
                raise self._fail(
                    f"could not connect to the model server at {self.base_url}: connection "
                    "refused; start the server, or choose another backend with --model or "
                    "TISS_MODEL"
                ) from None
            if isinstance(reason, socket.gaierror):
                raise self._fail(
                    f"could not find the host of the model server {self.base_url}; "
                    "check the URL given to --model or TISS_MODEL"
                ) from None
            raise self._fail(f"could not reach the model server at {self.base_url}: {reason}") from None
        except (TimeoutError, socket.timeout):
            raise self._timed_out(timeout) from None
        except (OSError, HTTPException) as exc:
            raise self._fail(
                f"the connection to the model server at {self.base_url} failed mid-reply: "
                f"{exc or type(exc).__name__}"
            ) from None

    def _read(self, response: Any, timeout: float, started: float) -> bytes:
        # The socket timeout bounds each wait for data; the deadline bounds a server that
        # keeps trickling bytes, to within one more socket timeout.
        chunks, size = [], 0
        while True:
            chunk = response.read(65536)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > _MAX_REPLY_BYTES:
                raise self._fail(f"the model server at {self.base_url} sent a reply over 64 MiB")
            chunks.append(chunk)
            if time.monotonic() - started > timeout:
                raise self._timed_out(timeout)

    # -- reply ----------------------------------------------------------------------------

    def _malformed(self, why: str, raw: bytes) -> BackendError:
        snippet = raw[:200].decode("utf-8", errors="replace")
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
        finish = choice.get("finish_reason")
        usage = reply.get("usage")
        prompt_tokens = completion_tokens = None
        if isinstance(usage, dict):
            prompt_tokens = usage.get("prompt_tokens")
            completion_tokens = usage.get("completion_tokens")
        if not _is_count(prompt_tokens):
            prompt_tokens = self.count_tokens(prompt) + (
                self.count_tokens(settings.persona) if settings.persona else 0
            )
        if not _is_count(completion_tokens):
            completion_tokens = self.count_tokens(text)
        model = reply.get("model")
        return Completion(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            finish_reason=finish if isinstance(finish, str) else "unknown",
            model=model if isinstance(model, str) else "",
            elapsed=elapsed,
        )


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0

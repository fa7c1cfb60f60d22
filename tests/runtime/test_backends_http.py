"""The OpenAI-compatible HTTP backend against a stub server on 127.0.0.1 that records requests."""

from __future__ import annotations

import json
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import pytest

from runtime.backends import (
    BackendError,
    GenerationSettings,
    HttpBackend,
    generate_within_budget,
    resolve_backend,
)
from runtime.budget import Budgets, BudgetExceeded

API_KEY = "sk-test-0123456789abcdef"


def chat_reply(text="Hello there", prompt_tokens=11, completion_tokens=3, finish="stop"):
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "stub-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict


@dataclass
class StubServer:
    """What the handler answers is `respond(recorded) -> (status, body bytes)`; `chunks` and
    `delay` shape how slowly it answers."""

    url: str
    requests: list[Recorded] = field(default_factory=list)
    respond: Callable[[Recorded], tuple[int, bytes]] = lambda r: (200, json.dumps(chat_reply()).encode())
    delay: float = 0.0
    chunk_delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    other_methods: list[str] = field(default_factory=list)


@pytest.fixture
def stub():
    state: dict[str, StubServer] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep the test output quiet
            pass

        def do_GET(self):
            state["s"].other_methods.append(f"GET {self.path}")
            self.send_error(404)

        def do_POST(self):
            server_state = state["s"]
            length = int(self.headers.get("Content-Length", 0))
            raw = self.rfile.read(length)
            recorded = Recorded(self.path, {k.lower(): v for k, v in self.headers.items()},
                                json.loads(raw))
            server_state.requests.append(recorded)
            status, payload = server_state.respond(recorded)
            time.sleep(server_state.delay)
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for name, value in server_state.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if server_state.chunk_delay:
                    for i in range(0, len(payload), 8):
                        self.wfile.write(payload[i:i + 8])
                        self.wfile.flush()
                        time.sleep(server_state.chunk_delay)
                else:
                    self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up first, which is what timeout tests want

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    host, port = server.server_address
    state["s"] = StubServer(url=f"http://{host}:{port}/v1")
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state["s"]
    server.shutdown()
    server.server_close()


def test_request_body_headers_and_path_are_exact(stub):
    backend = HttpBackend(stub.url, "base-model", api_key=API_KEY)
    settings = GenerationSettings.from_directives({
        "persona": "You are a careful reviewer.", "model": "tiny-chat", "temperature": 0.2,
        "top_p": 0.9, "max_tokens": 64, "seed": 7, "stop": ["\n\n", "END"], "shell": "bash",
    })
    completion = backend.generate("Review {{ nothing }} here", settings)

    assert len(stub.requests) == 1
    request = stub.requests[0]
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.body == {
        "model": "tiny-chat",
        "messages": [
            {"role": "system", "content": "You are a careful reviewer."},
            {"role": "user", "content": "Review {{ nothing }} here"},
        ],
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 64,
        "seed": 7,
        "stop": ["\n\n", "END"],
    }
    assert completion.text == "Hello there"
    assert (completion.prompt_tokens, completion.completion_tokens) == (11, 3)
    assert completion.finish_reason == "stop" and completion.model == "stub-model"
    assert completion.elapsed >= 0


def test_minimal_request_has_only_the_user_message_and_no_auth(stub):
    backend = HttpBackend(stub.url + "/chat/completions/")  # a full endpoint URL is accepted
    backend.generate("hi", GenerationSettings())
    request = stub.requests[0]
    assert request.path == "/v1/chat/completions"
    assert request.body == {"messages": [{"role": "user", "content": "hi"}]}
    assert "authorization" not in request.headers


def test_model_name_from_selection_is_used_unless_the_script_sets_model(stub):
    backend = resolve_backend(stub.url, "served-model", env={"TISS_API_KEY": API_KEY}, user=True)
    backend.generate("a", GenerationSettings())
    backend.generate("b", GenerationSettings(model="override"))
    assert [r.body["model"] for r in stub.requests] == ["served-model", "override"]
    assert stub.requests[0].headers["authorization"] == f"Bearer {API_KEY}"


def test_nonstandard_top_k_and_min_p_are_sent_only_when_set(stub):
    backend = HttpBackend(stub.url)
    backend.generate("x", GenerationSettings(top_k=40, min_p=0.05))
    assert stub.requests[0].body["top_k"] == 40 and stub.requests[0].body["min_p"] == 0.05


def test_missing_usage_is_charged_the_upper_bounds(stub):
    from runtime.backends.http import TEMPLATE_ALLOWANCE

    reply = chat_reply(text="abcdefgh")
    del reply["usage"]
    stub.respond = lambda r: (200, json.dumps(reply).encode())
    completion = HttpBackend(stub.url).generate("0123456789", GenerationSettings(persona="abcd"))
    # The bounds a call is capped by (bytes, plus the template allowance for the prompt), not the
    # 4-bytes estimate, which could charge less than the server used: prompt 10 + persona 4 bytes,
    # answer 8 bytes, at most the max_tokens sent.
    assert (completion.prompt_tokens, completion.completion_tokens) == (14 + TEMPLATE_ALLOWANCE, 8)
    capped = HttpBackend(stub.url).generate("0123456789", GenerationSettings(max_tokens=5))
    assert capped.completion_tokens == 5


def test_http_500_is_a_backend_error_with_the_servers_message(stub):
    stub.respond = lambda r: (500, json.dumps({"error": {"message": "CUDA out of memory"}}).encode())
    with pytest.raises(BackendError) as info:
        HttpBackend(stub.url).generate("x", GenerationSettings())
    message = str(info.value)
    assert "HTTP 500" in message and "CUDA out of memory" in message
    assert stub.url in message and "check its logs" in message


def test_http_401_says_to_set_the_key_and_never_leaks_it(stub):
    # A careless server echoes the credentials it refused.
    stub.respond = lambda r: (401, json.dumps({"error": f"bad key {r.headers['authorization']}"}).encode())
    backend = HttpBackend(stub.url, api_key=API_KEY)
    with pytest.raises(BackendError) as info:
        backend.generate("x", GenerationSettings())
    message = str(info.value)
    assert "HTTP 401" in message and "TISS_API_KEY" in message and "[redacted]" in message
    assert API_KEY not in message
    assert API_KEY not in repr(backend) and API_KEY not in str(vars(backend))
    assert API_KEY not in "".join(traceback.format_exception(info.value))


def test_redirects_are_refused_so_the_key_goes_nowhere_else(stub):
    # urllib alone would follow a 302 with a GET that carries the Authorization header along.
    stub.respond = lambda r: (302, b"")
    stub.headers = {"Location": stub.url.replace("/v1", "/elsewhere")}
    with pytest.raises(BackendError) as info:
        HttpBackend(stub.url, api_key=API_KEY).generate("x", GenerationSettings())
    message = str(info.value)
    assert "HTTP 302" in message and "redirects are not followed" in message and "/elsewhere" in message
    assert len(stub.requests) == 1 and stub.other_methods == []  # nothing went to the target


def test_garbage_reply_is_a_malformed_reply_error(stub):
    stub.respond = lambda r: (200, b"<html>proxy login</html>")
    with pytest.raises(BackendError, match=r"malformed reply \(not JSON\).*proxy login"):
        HttpBackend(stub.url).generate("x", GenerationSettings())


@pytest.mark.parametrize("reply, why", [
    ({"choices": []}, "no choices"),
    ({"object": "list"}, "no choices"),
    ([1, 2], "not a JSON object"),
    ({"choices": [{"message": {"content": None}, "finish_reason": "stop"}]}, "not text"),
])
def test_wrong_json_shape_is_a_malformed_reply_error(stub, reply, why):
    stub.respond = lambda r: (200, json.dumps(reply).encode())
    with pytest.raises(BackendError, match=why):
        HttpBackend(stub.url).generate("x", GenerationSettings())


def test_error_object_in_a_200_reply_is_reported(stub):
    stub.respond = lambda r: (200, json.dumps({"error": {"message": "model not loaded"}}).encode())
    with pytest.raises(BackendError, match="reported an error: model not loaded"):
        HttpBackend(stub.url).generate("x", GenerationSettings())


def test_slow_reply_times_out_at_the_settings_timeout(stub):
    stub.delay = 3.0
    started = time.monotonic()
    with pytest.raises(BackendError, match=r"did not answer within 0.3s; raise @timeout"):
        HttpBackend(stub.url).generate("x", GenerationSettings(timeout=0.3))
    assert time.monotonic() - started < 2.0


def test_trickling_reply_is_bounded_by_the_deadline(stub):
    # Every 8 bytes arrive within the socket timeout, but the whole reply would take ~5s.
    stub.chunk_delay = 0.02
    started = time.monotonic()
    with pytest.raises(BackendError, match="did not answer within 0.5s"):
        HttpBackend(stub.url).generate("x", GenerationSettings(timeout=0.5))
    assert time.monotonic() - started < 2.0


def test_connection_refused_says_how_to_fix_it():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more.
    with pytest.raises(BackendError) as info:
        HttpBackend(f"http://127.0.0.1:{port}/v1").generate("x", GenerationSettings(timeout=5))
    message = str(info.value)
    assert "connection refused" in message and "--model" in message and "TISS_MODEL" in message


def test_over_budget_calls_are_never_sent(stub):
    backend = HttpBackend(stub.url)
    budgets = Budgets()
    budgets.set("API_CALLS", 2)
    settings = GenerationSettings(max_tokens=10)
    generate_within_budget(backend, "one", settings, budgets)
    generate_within_budget(backend, "two", settings, budgets)
    with pytest.raises(BudgetExceeded, match="API_CALLS exceeded: limit 2 calls, 2 used"):
        generate_within_budget(backend, "three", settings, budgets)
    assert [r.body["messages"][-1]["content"] for r in stub.requests] == ["one", "two"]


def test_prompt_over_the_token_budget_is_never_sent(stub):
    backend = HttpBackend(stub.url)
    budgets = Budgets()
    budgets.set("TOKEN_COUNT", 200)  # the alias of TOKENS
    # 40 bytes + a template allowance of 64 -> 104 prompt tokens, + @max_tokens 100 = 204 > 200
    with pytest.raises(BudgetExceeded) as info:
        generate_within_budget(backend, "x" * 40, GenerationSettings(max_tokens=100), budgets)
    assert "TOKENS exceeded: limit 200 tokens, 0 used" in str(info.value)
    assert "104 prompt tokens + @max_tokens 100 = 204" in str(info.value)
    assert stub.requests == []
    # The refused call was not counted; a smaller one fits and is charged its real usage.
    generate_within_budget(backend, "x" * 40, GenerationSettings(max_tokens=90), budgets)
    assert budgets.usage().tokens == 14 and budgets.usage().api_calls == 1


def test_failed_call_gives_its_tokens_back(stub):
    stub.respond = lambda r: (503, b"overloaded")
    backend = HttpBackend(stub.url)
    budgets = Budgets()
    budgets.set("TOKENS", 100)
    with pytest.raises(BackendError, match="HTTP 503"):
        generate_within_budget(backend, "abc", GenerationSettings(max_tokens=30), budgets)
    usage = budgets.usage()
    assert (usage.api_calls, usage.tokens, usage.tokens_in_flight) == (1, 0, 0)


def test_remaining_execution_time_bounds_the_call_timeout(stub):
    stub.delay = 3.0
    budgets = Budgets()
    budgets.set("EXECUTION_TIME", "400ms")
    started = time.monotonic()
    with pytest.raises(BackendError, match="did not answer within 0.[34]"):
        generate_within_budget(HttpBackend(stub.url), "x", GenerationSettings(timeout=60), budgets)
    assert time.monotonic() - started < 2.0

"""Budgets that cannot be overshot: each model call's completion cap is what its prompt leaves
of TOKENS, sent to an HTTP server as `max_tokens` (a stub on 127.0.0.1 that records it and
answers with exactly that many completion tokens, the worst a real server may do)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from runtime.backends import Completion, EchoBackend, GenerationSettings, HttpBackend, generate_within_budget
from runtime.budget import BudgetExceeded, Budgets
from runtime.result import FAILED

PROMPT_TOKENS = 20  # what the stub reports for every prompt


@pytest.fixture
def greedy_server():
    """A server that records each request's body and uses every completion token it may."""
    bodies: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            bodies.append(body)
            used = body.get("max_tokens", 500)  # no cap: it runs on, as llama.cpp's server did
            reply = {
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "x" * used},
                             "finish_reason": "length"}],
                "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": used},
            }
            payload = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    host, port = server.server_address
    yield f"http://{host}:{port}/v1", bodies
    server.shutdown()
    server.server_close()


class FixedCount(HttpBackend):
    """The HTTP backend counting every prompt as PROMPT_TOKENS, as the stub reports."""

    def count_tokens(self, text):
        return PROMPT_TOKENS if text else 0


def test_two_uncapped_calls_under_tokens_100_never_pass_100(run, greedy_server):
    url, bodies = greedy_server
    result = run(
        'SET_BUDGET TOKENS = 100\n'
        'PROMPT_AGENT "first" INTO a\n'
        'PROMPT_AGENT "second" INTO b\n',
        backend=FixedCount(url, "stub"),
    )
    # The first call may take all that its prompt leaves (80), so the second cannot even be sent.
    assert [body["max_tokens"] for body in bodies] == [100 - PROMPT_TOKENS]
    assert result.status == FAILED and result.failure.kind == "BudgetExceeded" and result.failure.line == 3
    assert "leave no room for an answer, so it was not sent" in result.failure.message
    assert run.session.budgets.usage().tokens == 100


def test_the_cap_is_what_remains_after_earlier_calls_and_its_own_prompt(run, greedy_server):
    url, bodies = greedy_server
    result = run(
        'SET_BUDGET TOKENS = 100\n'
        '@max_tokens 10\n'
        'PROMPT_AGENT "first"\n'
        'STEP "uncapped" {\n'
        '    @max_tokens 1000\n'
        '    PROMPT_AGENT "too big"\n'
        '}\n',
        backend=FixedCount(url, "stub"),
    )
    assert [body["max_tokens"] for body in bodies] == [10]  # @max_tokens 1000 does not fit: refused
    assert result.status == FAILED and "so it was not sent" in result.failure.message
    budgets = Budgets()
    budgets.set("TOKENS", 100)
    backend = FixedCount(url, "stub")
    generate_within_budget(backend, "one", GenerationSettings(max_tokens=10), budgets)  # 30 used
    generate_within_budget(backend, "two", GenerationSettings(), budgets)
    assert bodies[-1]["max_tokens"] == 100 - 30 - PROMPT_TOKENS
    assert budgets.usage().tokens == 100


def test_without_a_tokens_budget_no_cap_is_added(greedy_server):
    url, bodies = greedy_server
    generate_within_budget(FixedCount(url, "stub"), "x", GenerationSettings(), Budgets())
    assert "max_tokens" not in bodies[0]


def test_a_prompt_that_does_not_fit_is_never_sent(greedy_server):
    url, bodies = greedy_server
    budgets = Budgets()
    budgets.set("TOKENS", PROMPT_TOKENS)  # the prompt alone, no room for an answer
    with pytest.raises(BudgetExceeded, match="leave no room for an answer"):
        generate_within_budget(FixedCount(url, "stub"), "x", GenerationSettings(), budgets)
    assert bodies == [] and budgets.usage().api_calls == 0


class LimitRecorder(EchoBackend):
    """The local model's limit is `settings.max_tokens` (runtime/backends/local.py): record it."""

    def __init__(self):
        super().__init__()
        self.limits = []

    def generate(self, prompt, settings):
        self.limits.append(settings.max_tokens)
        return Completion("ok", self.count_tokens(prompt), 1, "stop")


def test_every_backend_gets_the_cap_in_its_settings():
    backend = LimitRecorder()
    budgets = Budgets()
    budgets.set("TOKENS", 50)
    generate_within_budget(backend, "abcd" * 5, GenerationSettings(), budgets)  # 5 prompt tokens
    assert backend.limits == [45]


def test_the_local_model_stops_at_the_cap(make_tiny_checkpoint, tmp_path):
    from runtime.backends.guarded import prompt_tokens
    from runtime.backends.local import LocalBackend

    texts = ["the quick brown fox jumps over the lazy dog. " * 8]
    backend = LocalBackend(make_tiny_checkpoint(tmp_path / "tiny", texts, 300, ctx=64))
    settings = GenerationSettings(temperature=1.0, seed=3, max_tokens=30)
    free = generate_within_budget(backend, "the quick", settings, Budgets())
    assert free.completion_tokens > 6  # uncapped, this seed runs past the cap below
    budgets = Budgets()
    prompt = prompt_tokens(backend, "the quick", settings)  # what the budget charges the prompt
    budgets.set("TOKENS", prompt + 6)
    capped = generate_within_budget(backend, "the quick", settings.replace(max_tokens=None), budgets)
    assert capped.completion_tokens <= 6 and capped.finish_reason == "length"
    assert budgets.usage().tokens <= prompt + 6


def test_what_a_server_adds_to_prompts_is_charged_from_the_next_call_on(greedy_server):
    url, bodies = greedy_server  # it reports PROMPT_TOKENS (20) for every prompt
    backend = HttpBackend(url, "stub")  # estimates "abcd" * 2 as 2 tokens
    budgets = Budgets()
    budgets.set("TOKENS", 200)
    generate_within_budget(backend, "abcd" * 2, GenerationSettings(max_tokens=5), budgets)
    assert backend.count_prompt_tokens("abcd" * 2, GenerationSettings()) == 20  # 2 + 18 learned
    generate_within_budget(backend, "abcd" * 2, GenerationSettings(), budgets)
    # 25 used; the cap leaves room for the 20 prompt tokens the server will count, not just 2.
    assert bodies[-1]["max_tokens"] == 200 - 25 - 20
    assert budgets.usage().tokens == 200

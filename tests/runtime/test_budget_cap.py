"""Budgets that cannot be overshot: each model call's completion cap is what its prompt leaves
of TOKENS, sent to an HTTP server as `max_tokens` (a stub on 127.0.0.1 that records it and
answers with exactly that many completion tokens, the worst a real server may do)."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from runtime.backends import Completion, EchoBackend, GenerationSettings, HttpBackend, generate_within_budget
from runtime.backends.http import TEMPLATE_ALLOWANCE
from runtime.budget import BudgetExceeded, Budgets
from runtime.result import FAILED

PROMPT_TOKENS = 20  # what the stub reports for every prompt


@contextmanager
def greedy_chat_server(prompt_tokens, fill):
    """A server on 127.0.0.1 that records each request's body, reports `prompt_tokens(body)`
    prompt tokens and uses every completion token it may (no cap: it runs on, as llama.cpp's
    server did); yields its URL and the recorded bodies."""
    bodies: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            bodies.append(body)
            used = body.get("max_tokens", 500)
            reply = {"choices": [{"index": 0, "message": {"role": "assistant", "content": fill * used},
                                  "finish_reason": "length"}],
                     "usage": {"prompt_tokens": prompt_tokens(body), "completion_tokens": used}}
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
    try:
        yield f"http://{host}:{port}/v1", bodies
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def greedy_server():
    """A server that records each request's body and uses every completion token it may."""
    with greedy_chat_server(lambda body: PROMPT_TOKENS, "x") as served:
        yield served


class FixedCount(HttpBackend):
    """The HTTP backend charging every prompt PROMPT_TOKENS, as the stub reports (these tests are
    about the cap; the HTTP backend's own charge, an upper bound, is tested further down)."""

    def count_prompt_tokens(self, prompt, settings):
        return PROMPT_TOKENS


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


# -- the HTTP backend's charge for a prompt is an upper bound on what the server counts ---------

TEMPLATE = 30  # tokens the stub's chat template adds to every prompt
DEFAULT_SYSTEM = 25  # and the default system prompt it adds when there is no system message


@pytest.fixture
def template_server():
    """A greedy server whose tokenizer makes one token per byte (the most a byte-level BPE can)
    and whose chat template adds TEMPLATE tokens, DEFAULT_SYSTEM more without a system message;
    `extra[0]` adds more still (a server beyond the documented bound)."""
    extra = [0]

    def prompt_tokens(body):
        content = sum(len(m["content"].encode()) for m in body["messages"])
        system = any(m["role"] == "system" for m in body["messages"])
        return content + TEMPLATE + (0 if system else DEFAULT_SYSTEM) + extra[0]

    with greedy_chat_server(prompt_tokens, "y") as (url, bodies):
        yield url, bodies, extra


def test_the_first_call_to_a_server_cannot_take_the_run_past_tokens(run, template_server):
    # The case: two uncapped calls under TOKENS = 100. Before, the first call was charged
    # the 4-bytes estimate (2 tokens), sent max_tokens 98, and the run ended at 158 tokens.
    url, bodies, _ = template_server
    result = run('SET_BUDGET TOKENS = 100\nPROMPT_AGENT "first" INTO a\nPROMPT_AGENT "second" INTO b\n',
                 backend=HttpBackend(url, "stub"))
    first_charge = len("first") + TEMPLATE_ALLOWANCE
    assert bodies[0]["max_tokens"] == 100 - first_charge
    used = run.session.budgets.usage().tokens
    assert used == (5 + TEMPLATE + DEFAULT_SYSTEM) + (100 - first_charge) <= 100
    # The second is charged 6 bytes + what the server showed its template adds (55): no room.
    assert len(bodies) == 1 and result.failure.line == 3
    assert "leave no room for an answer, so it was not sent" in result.failure.message


@pytest.mark.parametrize("persona", [None, "Be brief. \u00e9\u2713"])
def test_uncapped_calls_never_pass_tokens_whatever_the_prompts(template_server, persona):
    url, bodies, _ = template_server
    backend = HttpBackend(url, "stub")
    budgets = Budgets()
    budgets.set("TOKENS", 1000)
    prompts = ["a", "x" * 120, "d\u00e9j\u00e0 vu \u2713 \U0001f600", "", "hello world " * 5]
    sent = 0
    for index, prompt in enumerate(prompts * 4):
        cap = None if index % 5 == 4 else 12  # every fifth uncapped: it takes all that is left
        try:
            generate_within_budget(backend, prompt, GenerationSettings(persona=persona, max_tokens=cap), budgets)
        except BudgetExceeded as exc:
            assert "so it was not sent" in str(exc)  # refused before, never after the fact
            continue
        sent += 1
        assert budgets.usage().tokens <= 1000
    assert sent >= 3 and len(bodies) == sent
    assert budgets.usage().tokens <= 1000


def test_the_allowance_is_learned_per_shape_and_never_below_what_the_server_showed(template_server):
    url, bodies, _ = template_server
    backend = HttpBackend(url, "stub")
    with_system, without = GenerationSettings(persona="sys"), GenerationSettings()
    assert backend.template_allowance(without) == backend.template_allowance(with_system) == TEMPLATE_ALLOWANCE
    generate_within_budget(backend, "hi", with_system.replace(max_tokens=1), Budgets())
    # It reported 3 + 2 + 30 = 35 prompt tokens: the template adds 30 at least and 35 at most.
    assert backend.template_allowance(with_system) == 35
    assert backend.template_allowance(without) == TEMPLATE_ALLOWANCE  # may add a default system prompt
    generate_within_budget(backend, "x" * 300, without.replace(max_tokens=1), Budgets())
    # It reported 355 for 300 bytes: at least 55, at most 355; the allowance stays 64.
    assert backend.template_allowance(without) == TEMPLATE_ALLOWANCE
    generate_within_budget(backend, "a", without.replace(max_tokens=1), Budgets())
    assert backend.template_allowance(without) == TEMPLATE + DEFAULT_SYSTEM + 1  # 56 at most
    assert backend.count_prompt_tokens("\u00e9", without) == 2 + 56
    assert backend.template_allowance(GenerationSettings(model="other")) == TEMPLATE_ALLOWANCE


def test_a_server_beyond_the_bound_fails_the_run_after_that_call_and_no_call_follows(run, template_server):
    # The one overshoot left (docs/running.md): a template larger than the allowance on the
    # first call of its shape. The run fails with the budget error and sends nothing more.
    url, bodies, extra = template_server
    extra[0] = 100
    result = run('SET_BUDGET TOKENS = 150\n@max_tokens 10\nPROMPT_AGENT "first"\nPROMPT_AGENT "second"\n',
                 backend=HttpBackend(url, "stub"))
    assert len(bodies) == 1 and result.status == FAILED and result.failure.kind == "BudgetExceeded"
    assert result.failure.line == 3 and "used after a call that took" in result.failure.message
    assert run.session.budgets.usage().tokens == 5 + TEMPLATE + DEFAULT_SYSTEM + 100 + 10

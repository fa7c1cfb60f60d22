"""PROMPT_AGENT end to end against a local OpenAI-compatible stub on 127.0.0.1, via `tiss run`."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from runtime import cli


class Stub:
    """Records each request; answers with `reply` (a JSON-able object) or an HTTP `status`."""

    def __init__(self):
        self.requests = []
        self.status = 200
        self.reply = {
            "choices": [{"message": {"role": "assistant", "content": "stub answer"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 2},
            "model": "tiny",
        }
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                stub.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                payload = json.dumps(stub.reply if stub.status == 200 else {"error": {"message": "boom"}}).encode()
                self.send_response(stub.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    server = Stub()
    yield server
    server.close()


def test_requests_carry_persona_settings_and_key_and_budget_stops_the_second(stub, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TISS_API_KEY", "sk-test-123")
    ws = tmp_path / "ws"
    ws.mkdir()
    script = tmp_path / "s.tiss"
    script.write_text(
        'SET_BUDGET API_CALLS = 1\n'
        '@persona "Be brief."\n@temperature 0.2\n@max_tokens 16\n@seed 7\n'
        'VAR who = "stub"\n'
        'STEP "ask" {\n'
        '  PROMPT_AGENT "hello {{ who }}" INTO answer\n'
        '  ASSERT answer == "stub answer"\n'
        '  ASSERT LAST_PROMPT.PROMPT_TOKENS == 11\n'
        '  PROMPT_AGENT "second"\n'
        '}\n'
    )
    trace = tmp_path / "trace.jsonl"
    code = cli.main(["run", str(script), "--workspace", str(ws), "--model", stub.url,
                     "--model-name", "tiny", "--trace", str(trace)])
    out = capsys.readouterr().out
    assert code == 1
    assert len(stub.requests) == 1  # the over-budget call was never sent
    request = stub.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-test-123"
    assert request["body"] == {
        "model": "tiny",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello stub"}],
        "temperature": 0.2,
        "max_tokens": 16,
        "seed": 7,
    }
    assert "s.tiss:11:3: error: budget API_CALLS exceeded" in out
    text = trace.read_text()
    assert "sk-test-123" not in text + out
    prompt_events = [json.loads(line) for line in text.splitlines() if '"prompt"' in line]
    assert prompt_events[0]["prompt_tokens"] == 11 and prompt_events[0]["completion_tokens"] == 2


def test_server_error_fails_the_step_with_a_clear_message(stub, tmp_path, capsys):
    stub.status = 500
    ws = tmp_path / "ws"
    ws.mkdir()
    script = tmp_path / "s.tiss"
    script.write_text('STEP "ask" {\n  PROMPT_AGENT "hi"\n}\nSTEP "next" { LOG "x" }\n')
    code = cli.main(["run", str(script), "--workspace", str(ws), "--model", stub.url, "--report", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert report["failure"]["line"] == 2 and "500" in report["failure"]["message"]
    assert [s["status"] for s in report["steps"]] == ["failed", "skipped"]


def test_tiss_model_environment_variable_is_the_default(stub, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TISS_MODEL", stub.url)
    ws = tmp_path / "ws"
    ws.mkdir()
    script = tmp_path / "s.tiss"
    script.write_text('PROMPT_AGENT "hi" INTO a\nASSERT a == "stub answer"\n')
    assert cli.main(["run", str(script), "--workspace", str(ws)]) == 0, capsys.readouterr()
    assert len(stub.requests) == 1

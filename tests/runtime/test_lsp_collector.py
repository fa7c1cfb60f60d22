"""The language server holds Python's garbage collector off from the start of an analysis until
its diagnostics are sent, and gives it back as it found it (see TissServer.collector_held)."""

from __future__ import annotations

import asyncio
import gc

import pytest

pytest.importorskip("pygls", reason="the language server needs pygls (pip install 'quantatissu[lsp]')")

from runtime.lsp import server as srv  # noqa: E402
from runtime.lsp.text import Text  # noqa: E402

URI = "file:///tmp/held.tiss"


@pytest.fixture
def served(monkeypatch):
    ls = srv.create_server()
    seen: dict[str, list] = {"analysis": [], "sent": []}
    real = srv._analyse

    def analyse(doc, text):
        seen["analysis"].append(gc.isenabled())
        return real(doc, text)

    monkeypatch.setattr(srv, "_analyse", analyse)
    monkeypatch.setattr(ls, "text_document_publish_diagnostics",
                        lambda params: seen["sent"].append((params, gc.isenabled())))
    yield ls, seen
    ls.worker.shutdown()
    ls.answers.shutdown()


def publish(ls, source: str, delay: float = 0) -> None:
    async def run():
        ls.documents[URI] = srv._Document(URI, Text(source), 1)
        await ls.publish(URI, delay)

    asyncio.run(run())


def test_held_from_the_analysis_until_the_diagnostics_are_sent(served):
    ls, seen = served
    assert gc.isenabled()
    publish(ls, 'TASK "t" {\n  LOG "{{ nope }}"\n}\n')
    assert seen["analysis"] == [False]
    (params, enabled), = seen["sent"]
    assert not enabled and [d.message[:20] for d in params.diagnostics] == ["undefined variable '"]
    assert gc.isenabled()


def test_given_back_after_a_syntax_error_and_after_an_internal_error(served, monkeypatch):
    ls, seen = served
    publish(ls, 'TASK "t" {\n  RUN "a" $\n}\n')
    assert len(seen["sent"]) == 1 and gc.isenabled()
    monkeypatch.setattr(srv.features, "diagnostics", lambda analysis: 1 / 0)
    monkeypatch.setattr(ls, "log", lambda message, *a: seen.setdefault("log", []).append(message))
    publish(ls, 'TASK "t" {\n}\n')
    assert "ZeroDivisionError" in seen["log"][0]
    assert gc.isenabled()


def test_a_collector_someone_else_turned_off_stays_off(served):
    ls, seen = served
    gc.disable()
    try:
        publish(ls, 'TASK "t" {\n}\n')
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_holds_nest():
    ls = srv.create_server()
    try:
        with ls.collector_held():
            with ls.collector_held():
                assert not gc.isenabled()
            assert not gc.isenabled()
        assert gc.isenabled()
    finally:
        ls.worker.shutdown()
        ls.answers.shutdown()

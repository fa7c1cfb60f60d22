"""The Session API the REPL builds on: persistent state, deferred TEARDOWN, cancel, run()."""

import threading
import time

import pytest

import runtime
from runtime.backends import EchoBackend
from runtime.report import ProgressPrinter, format_report
from runtime.result import FAILED, INTERRUPTED, PASSED
from runtime.session import RunOptions, Session
from runtime.trace import Recorder
from tisslang import parse


@pytest.fixture
def session(tmp_path):
    return Session(tmp_path, backend=EchoBackend(), options=RunOptions(assume_yes=True))


def test_state_persists_between_programs(session):
    assert session.execute(parse('VAR x = 1\nRUN "echo hi"\n@persona "P"')).status == PASSED
    assert session.execute(parse('ASSERT x == 1\nASSERT LAST_RUN.STDOUT == "hi"')).status == PASSED
    assert session.execute(parse('PROMPT_AGENT "q" INTO a')).status == PASSED
    assert session.variables["a"] == "P\n\nq"  # the top-level directive persisted
    assert session.variables["x"] == 1 and session.builtins["LAST_RUN"]["EXIT_CODE"] == 0


def test_failure_stops_one_program_but_session_goes_on(session):
    result = session.execute(parse('VAR y = 2\nASSERT y == 3\nVAR z = 1'), file="<repl>", source='VAR y = 2\nASSERT y == 3\nVAR z = 1')
    assert result.status == FAILED and result.failure.line == 2 and result.failure.file == "<repl>"
    assert "z" not in session.variables
    assert session.execute(parse('VAR z = y')).status == PASSED
    assert session.variables["z"] == 2


def test_budgets_accumulate_across_programs(session):
    session.execute(parse('SET_BUDGET API_CALLS = 1\nPROMPT_AGENT "a"'))
    result = session.execute(parse('PROMPT_AGENT "b"'))
    assert result.status == FAILED and "API_CALLS" in result.failure.message


def test_teardown_deferred_to_close_and_runs_once(session, tmp_path):
    session.execute(parse('TEARDOWN {\n  RUN "echo x >> td.txt"\n}\nLOG "a"'))
    assert not (tmp_path / "td.txt").exists()
    final = session.close()
    assert final.status == PASSED and (tmp_path / "td.txt").read_text() == "x\n"
    session.close()
    assert (tmp_path / "td.txt").read_text() == "x\n"
    with pytest.raises(RuntimeError):
        session.execute(parse('LOG "x"'))


def test_cancel_from_another_thread_interrupts_parallel_and_teardown_runs(tmp_path):
    events = Recorder()
    session = Session(tmp_path, listeners=[events])
    threading.Timer(0.5, session.cancel).start()
    started = time.monotonic()
    result = session.run(parse(
        'PARALLEL {\n  RUN "sleep 30"\n  RUN "sleep 30"\n}\nSTEP "later" { LOG "x" }\n'
        'TEARDOWN { WRITE "td.txt" "ran" }\n'
    ))
    assert time.monotonic() - started < 10  # vs 20-60 s without the kill; margin for load
    assert result.status == INTERRUPTED and result.exit_code == 130
    assert (tmp_path / "td.txt").read_text() == "ran"
    assert "interrupted" in format_report(result)


def test_run_function_is_the_public_entry_point(tmp_path):
    result = runtime.run(parse('STEP "s" { RUN "true" }'), workspace=str(tmp_path))
    assert isinstance(result, runtime.RunResult) and result.passed
    data = result.to_dict()
    assert data["steps"][0]["status"] == "passed" and data["steps"][0]["duration"] >= 0


def test_listener_errors_do_not_break_the_run(tmp_path, capsys):
    def broken(event):
        raise ValueError("listener bug")

    result = Session(tmp_path, listeners=[broken]).run(parse('LOG "x"'))
    assert result.passed
    assert "listener failed" in capsys.readouterr().err


def test_progress_printer_colours_only_when_asked(tmp_path):
    import io

    plain, coloured = io.StringIO(), io.StringIO()
    source = 'STEP "s" { LOG "x" }'
    Session(tmp_path, listeners=[ProgressPrinter(plain)]).run(parse(source))
    Session(tmp_path, listeners=[ProgressPrinter(coloured, colour=True)]).run(parse(source))
    assert "\033[" not in plain.getvalue() and "\033[32m" in coloured.getvalue()

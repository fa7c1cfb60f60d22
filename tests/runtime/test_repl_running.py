"""The REPL's running half: entries in one persistent session, meta-commands, `:save`
round-trips through `tiss run`, Ctrl-C during a command, the interactive loop on a pipe input,
and the non-terminal mode's exit statuses."""

from __future__ import annotations

import io
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

import tisslang
from runtime.backends import EchoBackend
from runtime.repl.completer import TissCompleter
from runtime.repl.engine import Repl
from runtime.repl.main import interact, iter_entries, run_piped, run_repl
from runtime.repl.reader import create_prompt_session
from runtime.review import Reviewer
from runtime.session import RunOptions, Session
from runtime.workspace import Workspace


@pytest.fixture
def make_repl(tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()

    def make(**options):
        out = io.StringIO()

        def factory(listeners):
            return Session(
                Workspace(workspace), backend=EchoBackend(), listeners=listeners,
                options=RunOptions(assume_yes=True, **options), reviewer=Reviewer(assume_yes=True),
            )

        repl = Repl(factory, out)
        repl.workspace_dir = workspace
        return repl, out

    return make


def take(out: io.StringIO) -> str:
    text = out.getvalue()
    out.seek(0)
    out.truncate()
    return text


def test_state_carries_over_between_entries(make_repl):
    repl, out = make_repl()
    assert repl.handle("VAR name = \"world\"") == 0
    assert repl.handle('RUN "echo hello {{ name }}"') == 0
    assert repl.handle('ASSERT LAST_RUN.STDOUT == "hello world"') == 0
    assert repl.handle('@persona "Be brief."') == 0
    assert repl.handle('PROMPT_AGENT "Hi {{ name }}" INTO answer') == 0
    assert repl.session.variables["answer"] == "Be brief.\n\nHi world"
    take(out)
    assert repl.handle('PROMPT_AGENT "Echo {{ name }}"') == 0  # a lone prompt shows its answer
    assert take(out).endswith("Be brief.\n\nEcho world\n")
    assert repl.handle("SET_BUDGET API_CALLS = 1") == 0
    assert repl.handle('PROMPT_AGENT "again"') == 1  # the budget spans entries
    assert "budget API_CALLS exceeded: limit 1 call" in take(out)
    assert repl.variable_names() == ["name", "answer"]


def test_builtin_fields_completed_and_checked_are_the_ones_the_interpreter_sets(make_repl):
    # `tiss check` (and the REPL's completion, which shares its table) must know every field
    # the runtime sets, or a script using a real field gets a false error.
    from tisslang.checker import BUILTINS

    repl, out = make_repl()
    entry = (
        'RUN "echo hi"\n'
        'PROMPT_AGENT "hello"\n'
        'TRY {\n    ASSERT false\n}\n'
        'ESTIMATE_COST {\n    RUN "true"\n}\n'
        'REQUEST_REVIEW "fine?"\n'
    )
    assert repl.handle(entry) == 0, take(out)
    set_now = repl.session.builtins
    assert set(set_now) == {name for name in BUILTINS if name.startswith("LAST_")}
    for name, value in set_now.items():
        assert set(value) == set(BUILTINS[name]), name


def test_time_at_the_prompt_is_not_execution_time(make_repl):
    repl, out = make_repl()
    assert repl.handle('SET_BUDGET EXECUTION_TIME = "500ms"') == 0
    time.sleep(0.8)  # the user thinks for longer than the whole budget
    assert repl.handle('RUN "true"') == 0
    assert repl.handle('RUN "sleep 2"') == 1  # but running time counts, across entries
    assert "EXECUTION_TIME" in take(out)


def test_bare_statements_just_run_and_steps_report_like_tiss_run(make_repl):
    repl, out = make_repl()
    repl.handle('LOG "plain"')
    repl.handle('RUN "exit 3"')
    text = take(out)
    assert text.startswith("plain\nexit 3 in ")
    assert "[ RUN" not in text and "PASSED" not in text
    repl.handle('STEP "check" {\n    LOG "inside"\n}')
    text = take(out)
    assert "[ RUN  ] check" in text and "| inside" in text and "[  OK  ] check" in text
    assert "PASSED: 1 passed" in text
    # Steps nested in other blocks (IF, CHOOSE options) report too.
    repl.handle('CHOOSE {\n    OPTION "first" {\n        ASSERT false\n    }\n    OPTION "second" {\n        LOG "b"\n    }\n}')
    text = take(out)
    assert "[NOT CHOSEN] first" in text and "[  OK  ] second" in text and "1 passed" in text
    repl.handle('IF true {\n    STEP "nested" {\n        LOG "n"\n    }\n}\n')
    assert "[  OK  ] nested" in take(out)


def test_a_bare_run_shows_what_the_command_wrote_with_control_characters_escaped(make_repl):
    repl, out = make_repl()
    assert repl.handle('RUN "echo one; echo two; echo oops >&2; exit 4"') == 0
    text = take(out)
    assert text.startswith("one\ntwo\noops\nexit 4 in "), text
    # Output cannot clear the screen or rewrite lines, neither from RUN nor through LOG.
    assert repl.handle(r"""RUN 'printf "a\033[2Jb\rc"'""") == 0
    repl.handle('LOG "{{ LAST_RUN.STDOUT }}"')
    text = take(out)
    assert "\x1b" not in text and "\r" not in text
    assert text.count("a\\x1b[2Jb\\x0dc\n") == 2, text
    # A long output shows its last whole lines and says where the rest is.
    repl.handle('RUN "seq 1 5000"')
    lines = take(out).splitlines()
    assert lines[0] == "(stdout: only its end is shown here; :last shows all that was captured)"
    assert lines[1].isdigit() and int(lines[1]) > 1 and lines[-2] == "5000"
    repl.handle(":last")
    assert "\n  1\n  2\n" in take(out)


def test_no_error_ends_the_repl(make_repl, monkeypatch):
    repl, out = make_repl()
    assert repl.handle('RUN "ls" extra') == 2
    assert "<repl:1>:1:10: error:" in take(out)
    assert repl.handle("ASSERT 1 == 2") == 1
    assert "assertion failed" in take(out)
    assert repl.handle('READ "../outside" AS x') == 1
    assert repl.handle(":nonsense") == 2
    assert "unknown command :nonsense" in take(out)
    assert repl.handle(":load /no/such/file.tiss") == 2
    assert "cannot load /no/such/file.tiss" in take(out)

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the interpreter")

    monkeypatch.setattr(repl.session, "execute", broken)
    assert repl.handle('LOG "x"') == 1
    assert "internal error (the session goes on): RuntimeError: a bug in the interpreter" in take(out)
    monkeypatch.undo()
    assert repl.handle('LOG "still here"') == 0
    assert take(out) == "still here\n"


def test_meta_vars_last_ast_help(make_repl):
    repl, out = make_repl()
    repl.handle(":last")
    assert "no command has run yet" in take(out)
    repl.handle('VAR xs = [1, "two"]')
    repl.handle("@temperature 0.5")
    repl.handle('SET_BUDGET TOKENS = 100')
    repl.handle('RUN "printf \'out\\n\'; echo err >&2; exit 4"')
    take(out)
    repl.handle(":vars")
    text = take(out)
    assert 'xs = [1, "two"]' in text and "@temperature 0.5" in text and "TOKENS 0/100" in text
    repl.handle(":last")
    text = take(out)
    assert "exit code: 4" in text and "  out" in text and "  err" in text and "command: printf" in text
    assert repl.handle(':ast RUN "ls"') == 0
    assert '"type": "Run"' in take(out)
    repl.handle(":ast")  # the last entry
    assert '"type": "Run"' in take(out)
    repl.handle(":help")
    assert ":save FILE" in take(out)
    assert repl.handle(":quit") == 0 and repl.quit


def test_reset_runs_teardown_and_forgets_state(make_repl):
    repl, out = make_repl()
    repl.handle('TEARDOWN {\n    WRITE "teardown.txt" "ran"\n}')
    assert "TEARDOWN runs when the session ends" in take(out)
    repl.handle("VAR a = 1")
    assert not (repl.workspace_dir / "teardown.txt").exists()
    assert repl.handle(":reset") == 0
    assert (repl.workspace_dir / "teardown.txt").read_text() == "ran"
    assert repl.session.variables == {} and repl.entries == []
    assert repl.handle("ASSERT a == 1") == 1  # a is gone


def test_save_round_trips_through_tiss_run(make_repl, tmp_path):
    repl, out = make_repl()
    entries = [
        'VAR greeting = "hello"',
        'WRITE "notes/a.txt" <<EOF\n    {{ greeting }} from the repl\n\n    second line\n    EOF',
        "ASSERT 1 == 2",  # fails: not saved
        'RUN "wc -l < notes/a.txt"',
        'STEP "check" {\n    ASSERT LAST_RUN.STDOUT == 3\n    READ "notes/a.txt" AS text\n}',
        'IF text CONTAINS "hello" {\n    WRITE "verdict.txt" "yes"\n}\nELSE {\n    WRITE "verdict.txt" "no"\n}',
        "# a comment entry\nLOG \"done {{ text }}\"",
    ]
    statuses = [repl.handle(e) for e in entries]
    assert statuses == [0, 0, 1, 0, 0, 0, 0]
    saved = tmp_path / "saved.tiss"
    assert repl.handle(f":save {saved}") == 0
    assert "saved 6 entries" in take(out)
    text = saved.read_text()
    assert "ASSERT 1 == 2" not in text and "# a comment entry" in text
    assert tisslang.format(tisslang.parse(text)) == text  # saved already formatted

    # The saved script, run by `tiss run` in a fresh workspace, gives the same files and state.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "runtime", "run", str(saved), "--workspace", str(fresh)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("notes/a.txt", "verdict.txt"):
        assert (fresh / name).read_text() == (repl.workspace_dir / name).read_text()
    session = Session(Workspace(fresh))
    session.execute(tisslang.parse(text), source=text)
    assert session.variables["text"] == repl.session.variables["text"]


def test_save_with_nothing_and_to_a_bad_place(make_repl, tmp_path):
    repl, out = make_repl()
    assert repl.handle(f":save {tmp_path / 'x.tiss'}") == 2
    assert "nothing to save yet" in take(out)
    repl.handle("VAR a = 1")
    assert repl.handle(f":save {tmp_path / 'missing' / 'x.tiss'}") == 2
    assert "cannot save" in take(out)
    assert not (tmp_path / "missing").exists()
    # Entries that are each fine but not one script together (two TASKs) are not saved.
    repl.handle('TASK "one"')
    repl.handle('TASK "two"')
    take(out)
    assert repl.handle(f":save {tmp_path / 'two.tiss'}") == 2
    assert take(out) == (
        "tiss: error: the entries together are not one valid script (a second TASK: a script has "
        "one TASK (the first is at line 2); describe the extra work with STEP); nothing was saved "
        "-- :reset starts a new script\n")
    assert not (tmp_path / "two.tiss").exists()


def test_load_runs_a_script_into_the_session(make_repl, tmp_path):
    repl, out = make_repl()
    script = tmp_path / "lib.tiss"
    script.write_text('VAR loaded = 42\nSTEP "from file" {\n    LOG "in step"\n}\n')
    assert repl.handle(f":load {script}") == 0
    assert "[  OK  ] from file" in take(out)
    assert repl.handle("ASSERT loaded == 42") == 0


def test_ctrl_c_interrupts_a_running_command_and_kills_its_group(make_repl):
    repl, out = make_repl()
    pidfile = repl.workspace_dir / "pid"
    # The background sleep is in the command's process group; Ctrl-C must kill it too.
    entry = 'RUN "sleep 30 & echo $! > pid; wait"'
    timer = threading.Timer(0.7, lambda: os.kill(os.getpid(), signal.SIGINT))
    started = time.monotonic()
    timer.start()
    try:
        status = repl.handle(entry)
    finally:
        timer.cancel()
    assert status == 130
    assert time.monotonic() - started < 10
    assert "interrupted" in take(out)
    pid = int(pidfile.read_text())
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the background sleep {pid} survived Ctrl-C")
    assert repl.handle('RUN "echo after"') == 0  # and the REPL goes on
    assert repl.session.builtins["LAST_RUN"]["STDOUT"] == "after"


def test_interactive_loop_on_a_pipe_input(make_repl):
    repl, out = make_repl()
    with create_pipe_input() as pipe:
        prompt = create_prompt_session(
            TissCompleter(repl.variable_names, repl.workspace_root), input=pipe, output=DummyOutput()
        )
        pipe.send_text('VAR x = 1\rSTEP "s" {\rASSERT x == 2\r}\rRUN "x" oops\r\x03:vars\r\x04')
        stuck = []

        def give_up():  # a prompt that never reaches the Ctrl-D must fail, not hang the suite
            app = prompt.app
            if app.is_running and app.loop is not None:
                stuck.append(prompt.default_buffer.text)
                app.loop.call_soon_threadsafe(lambda: app.exit(exception=EOFError))

        watchdog = threading.Timer(15, give_up)
        watchdog.start()
        try:
            assert interact(repl, prompt) == 0
        finally:
            watchdog.cancel()
        assert stuck == []
    text = out.getvalue()
    assert "[FAILED] s" in text and "x = 1" in text
    assert "oops" not in text  # refused by the validator, then cleared with Ctrl-C


def test_iter_entries_groups_lines_like_enter_does():
    source = 'VAR x = 1\n\nIF x == 1 {\n  LOG "a"\n}\nELSE {\n  LOG "b"\n}\nTRY { RUN "false" }\nLOG "c"\n'
    assert list(iter_entries(io.StringIO(source))) == [
        "VAR x = 1",
        'IF x == 1 {\n  LOG "a"\n}\nELSE {\n  LOG "b"\n}',
        'TRY { RUN "false" }',
        'LOG "c"',
    ]
    assert list(iter_entries(io.StringIO('STEP "open" {\n  LOG "x"\n'))) == ['STEP "open" {\n  LOG "x"']
    # A comment between the block and its CATCH stays with it; ELSEWHERE is not ELSE; a blank
    # line, or the end of input, ends the held entry.
    source = 'TRY { RUN "a" }\n# then\nCATCH { LOG "b" }\nIF x { }\nELSEWHERE\nIF y { }\n\nELSE { }\nIF z { }'
    assert list(iter_entries(io.StringIO(source))) == [
        'TRY { RUN "a" }\n# then\nCATCH { LOG "b" }',
        "IF x { }",
        "ELSEWHERE",
        "IF y { }",
        "ELSE { }",
        "IF z { }",
    ]


@pytest.mark.parametrize("stdin, status, seen, unseen", [
    ('RUN "echo hi"\nLOG "ok"\n', 0, ["ok"], []),
    ('LOG "one"\nASSERT 1 == 2\nLOG "never"\n', 1, ["one", "assertion failed"], ["never"]),
    ('LOG "one"\nRUN "x" y\nLOG "never"\n', 2, ["one", "error"], ["never"]),
    ('LOG "one"\n:quit\nLOG "never"\n', 0, ["one"], ["never"]),
    ('REQUEST_REVIEW "ship?"\n', 1, ["rerun with --yes"], []),
])
def test_pipe_mode_exits_with_the_status_tiss_run_would_give(tmp_path, stdin, status, seen, unseen):
    args = SimpleNamespace(workspace=str(tmp_path), model=None, model_name=None, yes=False, timeout=None)
    out = io.StringIO()
    assert run_repl(args, stdin=io.StringIO(stdin), stdout=out) == status
    for text in seen:
        assert text in out.getvalue()
    for text in unseen:
        assert text not in out.getvalue()


def test_pipe_mode_teardown_failure_fails_the_run(make_repl):
    repl, out = make_repl()
    stream = io.StringIO('TEARDOWN {\n    ASSERT false\n}\nLOG "body"\n')
    assert run_piped(repl, stream) == 1
    assert "body" in out.getvalue()


def test_tiss_repl_in_a_shell_pipeline(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "runtime", "repl", "--workspace", str(tmp_path)],
        input='RUN "printf hi > f.txt"\nASSERT FILE "f.txt" EXISTS\n:vars\n',
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "f.txt").read_text() == "hi"
    failing = subprocess.run(
        [sys.executable, "-m", "runtime", "repl", "--workspace", str(tmp_path)],
        input="ASSERT false\n", capture_output=True, text=True, timeout=60,
    )
    assert failing.returncode == 1 and "Traceback" not in failing.stdout + failing.stderr


def test_pipe_mode_into_a_reader_that_goes_away_is_quiet(tmp_path):
    # `... | tiss repl | head -1`: the entries still run to the end, nothing is printed about
    # the closed pipe, and the status is the run's own.
    entries = "".join(f'LOG "line {i}"\n' for i in range(2000)) + 'RUN "touch done.txt"\n'
    proc = subprocess.run(
        f"{shlex.quote(sys.executable)} -m runtime repl --workspace {shlex.quote(str(tmp_path))}"
        " | head -1",
        shell=True, input=entries, capture_output=True, text=True, timeout=60,
    )
    assert proc.stdout == "line 0\n"
    assert proc.stderr == ""
    assert (tmp_path / "done.txt").exists()


def test_usage_errors_exit_2(tmp_path, capsys):
    from runtime import cli

    assert cli.main(["repl", "--workspace", str(tmp_path), "--model", "ftp://x"]) == 2
    assert "only http:// and https://" in capsys.readouterr().err
    assert cli.main(["repl", "--workspace", str(tmp_path), "--timeout", "0"]) == 2

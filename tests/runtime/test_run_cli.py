"""`tiss run` end to end: exit statuses, reports, trace, dry run, Ctrl-C, sandbox, examples."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runtime import cli, shell

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.tiss"))


@pytest.fixture
def ws(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    return root


def write_script(tmp_path, text, name="script.tiss"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def tiss(*argv):
    return cli.main([str(a) for a in argv])


def requirements(example: Path) -> list[tuple[str, str]]:
    """What an example's header comment says it needs, as (kind, what) pairs.

    `# requires: model echo`     run it with `--model echo` (its answers need an echoing model);
    `# requires: model NAME`     a pulled model (`tiss models pull NAME`) the script's @model names;
    `# requires: terminal`       a human answers its questions on a terminal.
    An example without such a line passes as `tiss run examples/X.tiss`, with no flags at all.
    """
    needs = []
    for line in example.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break  # the header comment ends at the first line that is not a comment
        words = line.lstrip("#").split()
        if words[:1] != ["requires:"]:
            continue
        if words[1:2] == ["model"] and len(words) == 3:
            needs.append(("model", words[2]))
        elif words[1:] == ["terminal"]:
            needs.append(("terminal", ""))
        else:
            raise AssertionError(f"{example.name}: unknown requirement {line!r}")
    return needs


def _answer_on_a_terminal(argv: list[str], cwd: Path) -> tuple[int, str]:
    """Run `argv` with a pseudo-terminal as stdin and stderr (where questions are asked) and
    answer as a user who approves: `y` to Approve?, a comment, Enter to Press Enter."""
    import pty
    import select

    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, cwd=cwd, stdin=slave, stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    answers = {b"Approve?": b"y\n", b"Comment": b"ok\n", b"Press Enter": b"\n"}
    seen = b""
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if not ready:
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            seen += chunk
            for question, answer in answers.items():
                if question in chunk:
                    os.write(master, answer)
        out, _ = proc.communicate(timeout=60)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out + seen.decode(errors="replace")


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_passes_as_a_user_runs_it(example, ws, capsys, monkeypatch):
    """`cd somewhere; tiss run examples/X.tiss`: no --workspace, no --yes, and --model only
    when the header asks for the echo backend; otherwise the shipped default model answers."""
    from lm.models import model_path

    monkeypatch.delenv("TISS_MODEL", raising=False)
    monkeypatch.chdir(ws)
    argv = ["run", str(example)]
    terminal = False
    for kind, what in requirements(example):
        if kind == "model" and what == "echo":
            argv += ["--model", "echo"]
        elif kind == "model":
            if model_path(what) is None:
                pytest.skip(f"{example.name} asks the real model {what}, which is not pulled here "
                            f"(run: tiss models pull {what})")
            assert f'@model "{what}"' in example.read_text(), "the script itself must choose it"
        elif kind == "terminal":
            terminal = True
    if terminal:
        code, out = _answer_on_a_terminal([sys.executable, "-m", "runtime", *argv], ws)
        assert code == 0, out
        assert "PASSED" in out
        return
    code = cli.main(argv)
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    assert "PASSED" in out.out


def test_examples_exist():
    assert EXAMPLES, "examples/*.tiss is empty"


def test_the_examples_that_need_more_than_the_default_model_say_so_in_their_header():
    folder = EXAMPLES[0].parent
    assert requirements(folder / "ask_a_model.tiss") == [("model", "smollm2")]
    assert requirements(folder / "agent.tiss") == [("model", "echo")]
    assert requirements(folder / "fix_failing_test.tiss") == [("model", "echo")]
    assert requirements(folder / "review.tiss") == [("terminal", "")]
    assert requirements(folder / "hello.tiss") == []
    assert requirements(folder / "local_model.tiss") == []  # the shipped default model


def test_human_output_shows_steps_logs_failure_and_summary(tmp_path, ws, capsys):
    script = write_script(
        tmp_path,
        'STEP "good" {\n  LOG "hello"\n}\nSTEP "bad" {\n  RUN "echo oops >&2; exit 2"\n'
        '  ASSERT LAST_RUN.EXIT_CODE == 0\n}\nSTEP "later" { LOG "x" }\n',
    )
    assert tiss("run", script, "--workspace", ws) == 1
    out = capsys.readouterr().out
    assert "[ RUN  ] good" in out and "| hello" in out and "[  OK  ] good" in out
    assert "[FAILED] bad" in out and "[ SKIP ] later" in out
    assert f"{script}:6:3: error: assertion failed: LAST_RUN.EXIT_CODE == 0 (left is 2, right is 0)" in out
    assert "\n      ASSERT LAST_RUN.EXIT_CODE == 0\n      ^\n" in out  # the line, a caret at column 3
    assert "stderr of the last command (tail):\n    oops\n" in out
    assert "FAILED: 1 passed, 1 failed, 1 skipped" in out
    assert "\033[" not in out  # no colour when not a terminal


def test_invalid_script_exits_2_with_position(tmp_path, ws, capsys):
    script = write_script(tmp_path, 'STEP "x" {\n  ASSERT\n}\n')
    assert tiss("run", script, "--workspace", ws) == 2
    err = capsys.readouterr().err
    assert f"{script}:2:" in err and "error" in err


def test_missing_script_and_bad_var_exit_2(tmp_path, ws, capsys):
    assert tiss("run", tmp_path / "nope.tiss", "--workspace", ws) == 2
    assert "cannot read script" in capsys.readouterr().err
    script = write_script(tmp_path, 'LOG "x"\n')
    assert tiss("run", script, "--workspace", ws, "--var", "no-equals") == 2
    assert "NAME=VALUE" in capsys.readouterr().err
    assert tiss("run", script, "--workspace", tmp_path / "missing-ws") == 2
    assert "does not exist; create it first" in capsys.readouterr().err
    assert tiss("run", script, "--workspace", script) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_var_option_and_report_json(tmp_path, ws, capsys):
    script = write_script(tmp_path, 'TASK "t"\nSTEP "s" {\n  ASSERT n == 3\n  LOG "{{ who }}"\n}\n')
    assert tiss("run", script, "--workspace", ws, "--var", "n=3", "--var", "who=me", "--report", "json") == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["status"] == "passed" and report["exit_code"] == 0 and report["task"] == "t"
    assert report["steps"][0]["description"] == "s" and report["logs"] == ["me"]
    assert "[  OK  ] s" in captured.err  # progress moves to stderr


def test_report_json_on_failure_has_line(tmp_path, ws, capsys):
    script = write_script(tmp_path, 'STEP "s" {\n  ASSERT 1 == 2\n}\n')
    assert tiss("run", script, "--workspace", ws, "--report", "json") == 1
    report = json.loads(capsys.readouterr().out)
    assert report["failure"]["line"] == 2 and report["steps"][0]["status"] == "failed"


def test_trace_is_one_json_object_per_event(tmp_path, ws, capsys):
    script = write_script(tmp_path, 'STEP "s" {\n  RUN "echo hi"\n  LOG "x"\n  PROMPT_AGENT "q"\n}\n')
    trace = tmp_path / "trace.jsonl"
    assert tiss("run", script, "--workspace", ws, "--trace", trace, "--model", "echo") == 0
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    names = [e["event"] for e in events]
    assert names[0] == "run_start" and names[-1] == "run_end"
    assert {"step_start", "step_end", "statement", "log", "prompt"} <= set(names)
    run_event = next(e for e in events if e["event"] == "statement" and e["node"] == "Run")
    assert run_event["exit_code"] == 0 and run_event["stdout"] == "hi\n" and run_event["line"] == 2
    assert all("t" in e for e in events)


def test_api_key_never_reaches_trace_or_output(tmp_path, ws, capsys, monkeypatch):
    monkeypatch.setenv("TISS_API_KEY", "sk-very-secret")
    script = write_script(tmp_path, 'RUN "env"\nLOG "{{ LAST_RUN.STDOUT }}"\n')
    trace = tmp_path / "trace.jsonl"
    assert tiss("run", script, "--workspace", ws, "--trace", trace, "--report", "json") == 0
    captured = capsys.readouterr()
    assert "sk-very-secret" not in captured.out + captured.err + trace.read_text()


def test_dry_run_touches_nothing_and_prints_plan_and_estimate(tmp_path, ws, capsys):
    script = write_script(
        tmp_path,
        '@max_tokens 10\nSTEP "s" {\n  WRITE "f.txt" "x"\n  RUN "touch ran"\n  PROMPT_AGENT "hello"\n}\n',
    )
    trace = tmp_path / "trace.jsonl"
    assert tiss("run", script, "--workspace", ws, "--dry-run", "--model", "echo", "--trace", trace) == 0
    out = capsys.readouterr().out
    assert os.listdir(ws) == [] and not trace.exists()  # not even the trace file is written
    assert 'WRITE "f.txt"' in out and 'RUN "touch ran"' in out
    assert "estimate: 1 API call, 12 tokens" in out and "1 RUN without @timeout" in out
    assert tiss("run", script, "--workspace", ws, "--dry-run", "--model", "echo", "--report", "json") == 0
    assert json.loads(capsys.readouterr().out) == {
        "file": script, "dry_run": True,
        "estimate": {"API_CALLS": 1, "TOKENS": 12, "SECONDS": 0.0, "UNBOUNDED_RUNS": 1,
                     "UNBOUNDED_LOOPS": 0},
    }
    assert os.listdir(ws) == []


def test_review_without_tty_fails_and_yes_approves(tmp_path, ws):
    script = write_script(tmp_path, 'STEP "gate" {\n  REQUEST_REVIEW "go?"\n}\n')
    base = [sys.executable, "-m", "runtime", "run", script, "--workspace", str(ws)]
    proc = subprocess.run(base, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "rerun with --yes" in proc.stdout
    proc = subprocess.run(base + ["--yes"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_kills_command_runs_teardown_exits_130(tmp_path, ws, signum, dead):
    script = write_script(
        tmp_path,
        'STEP "long" {\n  RUN "sleep 60 & echo $! > bg.pid; sleep 60"\n}\nSTEP "after" { LOG "x" }\n'
        'TEARDOWN {\n  WRITE "teardown.txt" "ran"\n}\n',
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "run", script, "--workspace", str(ws)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while not (ws / "bg.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (ws / "bg.pid").exists(), proc.communicate(timeout=5)
    time.sleep(0.2)
    started = time.monotonic()
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, out + err
    assert time.monotonic() - started < 10  # vs 20-60 s without the kill; margin for load
    assert (ws / "teardown.txt").read_text() == "ran"
    assert "[ INT  ] long" in out and "[ SKIP ] after" in out
    assert dead(int((ws / "bg.pid").read_text()))


def test_sandbox_missing_bwrap_exits_2(tmp_path, ws, capsys, monkeypatch):
    monkeypatch.setattr(shell, "bwrap_path", lambda: None)
    script = write_script(tmp_path, 'RUN "true"\n')
    assert tiss("run", script, "--workspace", ws, "--sandbox", "workspace") == 2
    assert "apt-get install bubblewrap" in capsys.readouterr().err


@pytest.mark.skipif(shell.bwrap_path() is None, reason="bubblewrap (bwrap) is not installed")
def test_sandbox_run_writes_workspace_only(tmp_path, ws, capsys):
    script = write_script(
        tmp_path,
        'RUN "echo in > inside.txt; echo x > /var/tmp/tiss-sandbox-escape.txt"\n'
        'ASSERT LAST_RUN.EXIT_CODE != 0\nASSERT FILE "inside.txt" EXISTS\n',
    )
    code = tiss("run", script, "--workspace", ws, "--sandbox", "workspace")
    out = capsys.readouterr().out
    assert code == 0, out
    assert not Path("/var/tmp/tiss-sandbox-escape.txt").exists()


def test_unusable_model_spec_is_a_usage_error(tmp_path, ws, capsys):
    script = write_script(tmp_path, 'LOG "x"\n')
    assert tiss("run", script, "--workspace", ws, "--model", str(tmp_path / "no-checkpoint")) == 2
    assert "no-checkpoint" in capsys.readouterr().err


def _read_until(fd, marker, timeout=20.0):
    import select

    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                seen += os.read(fd, 4096)
            except OSError:
                break
    return seen.decode(errors="replace")


@pytest.mark.parametrize("answer, code", [("y", 0), ("n", 1)])
def test_review_on_a_terminal_asks_and_records_the_answer(tmp_path, ws, answer, code):
    import pty

    script = write_script(
        tmp_path,
        'STEP "gate" {\n  REQUEST_REVIEW "deploy to prod?"\n  LOG "comment={{ LAST_REVIEW.COMMENT }}"\n'
        '  PAUSE "press enter"\n}\n',
    )
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "run", script, "--workspace", str(ws)],
        stdin=slave, stdout=subprocess.PIPE, stderr=slave, text=True,
    )
    os.close(slave)
    try:
        assert "Approve?" in _read_until(master, b"Approve?")
        os.write(master, f"{answer}\n".encode())
        assert "Comment" in _read_until(master, b"Comment")
        os.write(master, b"all good\n")
        if answer == "y":
            assert "Press Enter" in _read_until(master, b"Press Enter")
            os.write(master, b"\n")
        out, _ = proc.communicate(timeout=20)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, out
    if answer == "y":
        assert "comment=all good" in out
    else:
        assert "review rejected" in out and "all good" in out


def test_ctrl_c_during_parallel_kills_every_child_command(tmp_path, ws, dead):
    script = write_script(
        tmp_path,
        'PARALLEL {\n  RUN "sleep 60 & echo $! > a.pid; wait"\n  RUN "sleep 60 & echo $! > b.pid; wait"\n}\n'
        'TEARDOWN { WRITE "teardown.txt" "ran" }\n',
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "run", script, "--workspace", str(ws)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while not ((ws / "a.pid").exists() and (ws / "b.pid").exists()) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, out + err
    assert (ws / "teardown.txt").read_text() == "ran"
    for name in ("a.pid", "b.pid"):
        assert dead(int((ws / name).read_text()))


def test_second_interrupt_during_teardown_stops_it(tmp_path, ws, dead):
    script = write_script(
        tmp_path,
        'STEP "long" {\n  RUN "echo $$ > main.pid; sleep 60"\n}\n'
        'TEARDOWN {\n  RUN "echo $$ > td.pid; sleep 60"\n  WRITE "after.txt" "x"\n}\n',
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "run", script, "--workspace", str(ws)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    for name in ("main.pid", "td.pid"):
        deadline = time.monotonic() + 20
        while not (ws / name).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (ws / name).exists(), proc.communicate(timeout=5)
        time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err and not (ws / "after.txt").exists()
    assert dead(int((ws / "td.pid").read_text()))

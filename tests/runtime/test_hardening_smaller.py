"""Regression tests for issue 19, part two: unexpected exceptions, TEARDOWN and signals, the
smaller points (fmt on links and read-only files, control characters in syntax errors, --trace
and stdout that cannot be written, durations too large)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hardening_support import REPO, tiss
from runtime import cli, values


def _script(directory: Path, source: str, name: str = "s.tiss") -> Path:
    path = directory / name
    path.write_text(source)
    return path


@pytest.fixture
def ws(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    return root


# -- 8. an unexpected exception fails its step; TEARDOWN, trace and report stay complete ----------

def test_an_unexpected_exception_is_a_positioned_internal_error(tmp_path, ws, capsys, monkeypatch):
    def broken(left, right):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(values, "contains", broken)
    trace = tmp_path / "t.jsonl"
    script = _script(tmp_path, (
        'STEP "a" {\n  ASSERT "x" CONTAINS "y"\n}\nSTEP "b" { LOG "never" }\n'
        'TEARDOWN { WRITE "teardown.txt" "ran" }\n'
    ))
    code = cli.main(["run", str(script), "--workspace", str(ws), "--trace", str(trace), "--report", "json"])
    captured = capsys.readouterr()
    assert code == 1
    assert "Traceback" not in captured.err
    report = json.loads(captured.out)
    assert report["status"] == "failed" and report["failure"]["kind"] == "InternalError"
    assert (report["failure"]["line"], report["failure"]["column"]) == (2, 3)
    assert "ZeroDivisionError: a bug" in report["failure"]["message"]
    assert [s["status"] for s in report["steps"]] == ["failed", "skipped", "passed"]
    assert (ws / "teardown.txt").read_text() == "ran"
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    ends = [e for e in events if e["event"] == "step_end" and e["description"] == "a"]
    assert ends and ends[0]["status"] == "failed"
    assert events[-1]["event"] == "run_end" and events[-1]["exit_code"] == 1


def test_a_deeply_nested_regex_is_a_clear_failure_even_inside_try(tmp_path, ws, capsys):
    pattern = "(" * 1000 + "a" + ")" * 1000
    script = _script(tmp_path, (
        f'TRY {{ ASSERT "a" MATCHES "{pattern}" }} CATCH {{ LOG "kind={{{{ LAST_ERROR.KIND }}}}" }}\n'
        f'STEP "s" {{ ASSERT "a" MATCHES "{pattern}" }}\n'
    ))
    assert cli.main(["run", str(script), "--workspace", str(ws)]) == 1
    out = capsys.readouterr().out
    assert "| kind=InvalidRegex" in out
    assert "s.tiss:2:" in out and "is nested too deeply" in out


def test_a_var_that_is_not_utf8_is_a_usage_error(tmp_path, ws):
    script = _script(tmp_path, 'WRITE "v.txt" "{{ x }}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("TISS_")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run([sys.executable, "-m", "runtime", "run", str(script), "--workspace", str(ws),
                           "--var", b"x=a\xffb"], capture_output=True, env=env)
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "Traceback" not in err
    assert "--var x: the value is not valid UTF-8 (byte 0xff at offset 1)" in err
    assert not (ws / "v.txt").exists()


# -- TEARDOWN stopped by a second signal does not claim it ran -------------------------------------

def test_a_teardown_stopped_by_a_second_signal_says_so(tmp_path, ws):
    script = _script(tmp_path, (
        'STEP "a" { RUN "sleep 30" }\n'
        'TEARDOWN {\n  WRITE "teardown-started" "x"\n  RUN "sleep 30"\n  WRITE "teardown-done" "x"\n}\n'
    ))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TISS_")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.Popen([sys.executable, "-m", "runtime", "run", str(script), "--workspace", str(ws)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 15
    while not (ws / "teardown-started").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, out + err
    assert not (ws / "teardown-done").exists()
    assert "TEARDOWN ran" not in out
    assert "interrupted again during TEARDOWN: it was stopped before it finished" in out


# -- --trace and stdout that cannot be written ------------------------------------------------------

def test_trace_to_a_full_device_is_a_message_not_a_traceback(tmp_path, ws):
    if not os.path.exists("/dev/full"):
        pytest.skip("/dev/full is Linux-only")
    script = _script(tmp_path, 'STEP "a" { LOG "hello" }\n')
    proc = tiss("run", str(script), "--workspace", str(ws), "--trace", "/dev/full")
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 2
    assert "cannot write the trace file /dev/full: No space left on device" in proc.stderr
    assert "the run's own status was 0" in proc.stderr


@pytest.mark.parametrize("how", ["closed", "full"])
def test_stdout_closed_or_full_does_not_stop_the_run(tmp_path, ws, how):
    script = _script(tmp_path, 'STEP "a" { LOG "hello" }\nTEARDOWN { WRITE "t.txt" "ran" }\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("TISS_")}
    env["PYTHONPATH"] = str(REPO)
    argv = [sys.executable, "-m", "runtime", "run", str(script), "--workspace", str(ws)]
    if how == "closed":
        proc = subprocess.run(["sh", "-c", 'exec "$@" >&-', "sh", *argv], capture_output=False,
                              stderr=subprocess.PIPE, env=env, text=True)
    else:
        if not os.path.exists("/dev/full"):
            pytest.skip("/dev/full is Linux-only")
        with open("/dev/full", "w") as full:
            proc = subprocess.run(argv, stdout=full, stderr=subprocess.PIPE, env=env, text=True)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0
    assert (ws / "t.txt").read_text() == "ran"


def test_trace_that_is_a_fifo_without_reader_or_the_script_is_refused(tmp_path, ws, capsys):
    script = _script(tmp_path, 'WRITE "x" "y"\n')
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    started = time.monotonic()
    assert cli.main(["run", str(script), "--workspace", str(ws), "--trace", str(fifo)]) == 2
    assert time.monotonic() - started < 5
    assert "is a FIFO that no process is reading" in capsys.readouterr().err
    assert cli.main(["run", str(script), "--workspace", str(ws), "--trace", str(script)]) == 2
    assert "is the script itself" in capsys.readouterr().err
    assert script.read_text() == 'WRITE "x" "y"\n' and not (ws / "x").exists()


# -- durations too large -------------------------------------------------------------------------

def test_a_timeout_too_large_says_so(tmp_path, ws, capsys):
    script = _script(tmp_path, '@timeout 1e400\nRUN "true"\n')
    assert cli.main(["run", str(script), "--workspace", str(ws)]) == 1
    out = capsys.readouterr().out
    assert "is too large" in out and "zero or more" not in out
    assert cli.main(["run", str(script), "--workspace", str(ws), "--timeout", "1e400"]) == 2
    assert "--timeout inf is too large" in capsys.readouterr().err


# -- tiss fmt on links and read-only files --------------------------------------------------------

UNFORMATTED = 'STEP   "a"   {\nLOG "x"\n}\n'


def test_fmt_formats_a_symlinks_target_and_keeps_the_link(tmp_path, capsys):
    target = tmp_path / "real.tiss"
    target.write_text(UNFORMATTED)
    link = tmp_path / "link.tiss"
    link.symlink_to(target)
    assert cli.main(["fmt", str(link)]) == 0
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() != UNFORMATTED and target.read_text().startswith('STEP "a" {')


def test_fmt_refuses_a_read_only_file_and_keeps_owner_and_group(tmp_path, capsys):
    readonly = tmp_path / "ro.tiss"
    readonly.write_text(UNFORMATTED)
    os.chmod(readonly, 0o444)
    assert cli.main(["fmt", str(readonly)]) == 2
    assert "is read-only; tiss fmt leaves it as it is" in capsys.readouterr().err
    assert readonly.read_text() == UNFORMATTED
    if os.geteuid() == 0:  # only root can give a file another group to keep
        grouped = tmp_path / "g.tiss"
        grouped.write_text(UNFORMATTED)
        os.chown(grouped, 65534, 65534)
        assert cli.main(["fmt", str(grouped)]) == 0
        info = os.stat(grouped)
        assert (info.st_uid, info.st_gid) == (65534, 65534)
        assert grouped.read_text() != UNFORMATTED


# -- control characters in syntax errors -----------------------------------------------------------

def test_syntax_errors_escape_control_characters_of_the_source_line(tmp_path, capsys):
    bad = tmp_path / "bad.tiss"
    bad.write_bytes(b'LOG "x"\nSTEP \x1b[2J\x1b]0;owned\x07 {\n')
    assert cli.main(["check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err
    assert "\\x1b[2J" in err

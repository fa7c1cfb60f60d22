"""Regression tests for issue 19: what an adversarial pass got through. Each test reproduces one
hole (it failed before its fix); the sandbox, key and process-tree tests run as root and as an
unprivileged user (`setpriv` to nobody when the suite runs as root, as CI does)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hardening_support import (
    NOBODY,
    Hostile,
    answer,
    chat,
    flood_body,
    flood_headers,
    shared_dir,
    tiss,
    trickle_body,
    trickle_headers,
    users,
)
from runtime import cli, secret
from runtime.shell import bwrap_path, run_command

KEY = "sk-hardening-0123456789abcdefXYZ"


@pytest.fixture(autouse=True)
def _fresh_secrets():
    secret._reset_for_tests()
    yield
    secret._reset_for_tests()


def _script(directory: Path, source: str, name: str = "s.tiss") -> Path:
    path = directory / name
    path.write_text(source)
    os.chmod(path, 0o644)
    return path


def _workspace(base: Path, uid: int | None) -> Path:
    ws = base / "ws"
    ws.mkdir()
    if uid is not None:
        os.chown(ws, uid, uid)
    return ws


def _bwrap_runs(uid: int | None) -> str | None:
    """Why bubblewrap cannot make its sandbox here for `uid`, or None when it can."""
    if bwrap_path() is None:
        return "bubblewrap is not installed (CI installs it)"
    base = shared_dir(uid)
    ws = _workspace(base, uid)
    script = _script(base, 'RUN "true"\nASSERT LAST_RUN.EXIT_CODE == 0\n')
    os.chmod(base, 0o755)
    probe = tiss("run", str(script), "--workspace", str(ws), "--sandbox", "workspace", uid=uid)
    if probe.returncode != 0:
        return f"bubblewrap cannot create its sandbox here: {probe.stdout.strip()} {probe.stderr.strip()}"
    return None


# -- 1. the sandbox, as root and as an unprivileged user ------------------------------------

@pytest.mark.parametrize("uid", users())
def test_sandbox_drops_capabilities_and_hides_the_host(uid):
    reason = _bwrap_runs(uid)
    if reason:
        pytest.skip(reason)
    base = shared_dir(uid)
    ws = _workspace(base, uid)
    # A host Unix socket in a world-writable directory, and a host file the sandbox must not touch.
    sock_dir = Path("/var/tmp") if os.access("/var/tmp", os.W_OK) else base
    sock_path = sock_dir / f"tiss-hard-{os.getpid()}.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sock_path))
    os.chmod(sock_path, 0o777)
    listener.listen(1)
    marker = base / "host-marker"
    system_python = shutil.which("python3", path="/usr/bin:/bin:/usr/local/bin") or "python3"
    try:
        script = _script(base, (
            'RUN "grep CapEff /proc/self/status"\nLOG "caps={{ LAST_RUN.STDOUT }}"\n'
            f'RUN "mount -o remount,rw,bind / 2>&1; touch {marker} 2>&1; echo rc=$?"\n'
            'LOG "remount={{ LAST_RUN.STDOUT }}"\n'
            'RUN "umount -l /proc 2>&1; echo rc=$?"\nLOG "umount={{ LAST_RUN.STDOUT }}"\n'
            'RUN "cat /proc/*/environ 2>/dev/null | tr \'\\\\0\' \'\\\\n\' | grep -c sk-hardening || true"\n'
            'LOG "environ={{ LAST_RUN.STDOUT }}"\n'
            'RUN "ls /run /var/run /home 2>&1 | head -3; ls -d /sys/fs/cgroup 2>&1"\n'
            'LOG "hidden={{ LAST_RUN.STDOUT }}"\n'
            f'RUN "{system_python} -c \\"import socket; s=socket.socket(socket.AF_UNIX); '
            f's.connect(\'{sock_path}\'); print(\'connected\')\\" 2>&1 | tail -1"\n'
            'LOG "socket={{ LAST_RUN.STDOUT }}"\n'
            'RUN "echo ok > inside.txt"\n'
        ))
        os.chmod(base, 0o755)
        proc = tiss("run", str(script), "--workspace", str(ws), "--sandbox", "workspace",
                    uid=uid, env={"TISS_API_KEY": KEY})
    finally:
        listener.close()
        sock_path.unlink()
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "caps=CapEff:\t0000000000000000" in out
    assert not marker.exists()
    assert "remount=" in out and "rc=0" not in out.split("remount=")[1].split("\n")[0]
    assert "umount=" in out and "rc=0" not in out.split("umount=")[1].split("\n")[0]
    assert "environ=0" in out  # neither tiss's environment nor any host process is visible
    hidden = out.split("hidden=")[1].split("socket=")[0]
    for path in ("/run", "/var/run", "/home", "/sys/fs/cgroup"):
        assert f"cannot access '{path}': No such file or directory" in hidden, hidden
    assert "connected" not in out.split("socket=")[1].split("\n")[0]
    if system_python != "python3":  # the probe ran: the socket is simply not there
        assert "No such file or directory" in out.split("socket=")[1].split("\n")[0]
    assert (ws / "inside.txt").read_text() == "ok\n"
    assert KEY not in out + proc.stderr


# -- 2. the key goes only to the origin the user configured ---------------------------------

def test_script_model_on_another_origin_gets_no_key(tmp_path, capsys, monkeypatch):
    mine = Hostile(lambda h: answer(h, chat("http://127.0.0.1:%d/v1" % elsewhere.server.server_address[1])))
    elsewhere = Hostile(lambda h: answer(h, chat("from elsewhere")))
    try:
        monkeypatch.setenv("TISS_API_KEY", KEY)
        ws = tmp_path / "ws"
        ws.mkdir()
        source = (
            'PROMPT_AGENT "where next?" INTO url\n'
            '@model "{{ url }}"\nPROMPT_AGENT "built at run time"\n'
            f'@model "{elsewhere.url}"\nPROMPT_AGENT "static"\n'
            f'@model "{mine.url}/"\nPROMPT_AGENT "same origin"\n'
        )
        script = _script(tmp_path, source)
        assert cli.main(["run", str(script), "--workspace", str(ws), "--model", mine.url]) == 0
        assert [r["headers"].get("authorization") for r in mine.requests] == [f"Bearer {KEY}"] * 2
        assert len(elsewhere.requests) == 2
        assert all("authorization" not in r["headers"] for r in elsewhere.requests)
        capsys.readouterr()
        # The dry run names every endpoint and says which one gets the key.
        monkeypatch.setenv("TISS_API_KEY", KEY)  # tiss took it out of the environment
        assert cli.main(["run", str(script), "--workspace", str(ws), "--model", mine.url, "--dry-run"]) == 0
        out = capsys.readouterr().out
        assert f"--model {mine.url} (gets TISS_API_KEY)" in out
        assert f'line 4: @model "{elsewhere.url}" (no API key: another origin than --model)' in out
        assert 'line 2: @model "{{ url }}" (computed at run time' in out
        assert cli.main(["check", str(script)]) == 0
        err = capsys.readouterr().err
        assert f"s.tiss:4:1: note: @model calls {elsewhere.url}" in err
    finally:
        mine.close()
        elsewhere.close()


# -- 3. no RUN can read the key from tiss's environment ---------------------------------------

@pytest.mark.parametrize("uid", users())
def test_a_run_cannot_read_the_key_from_its_parent(uid):
    base = shared_dir(uid)
    ws = _workspace(base, uid)
    script = _script(base, (
        'RUN "tr \'\\\\0\' \'\\\\n\' < /proc/$PPID/environ | grep -c TISS_API_KEY=sk || true"\n'
        'LOG "parent={{ LAST_RUN.STDOUT }}"\n'
        'RUN "cat /proc/[0-9]*/environ 2>/dev/null | tr \'\\\\0\' \'\\\\n\' | grep -c sk-hardening || true"\n'
        'LOG "any={{ LAST_RUN.STDOUT }}"\n'
    ))
    os.chmod(base, 0o755)
    proc = tiss("run", str(script), "--workspace", str(ws), uid=uid, env={"TISS_API_KEY": KEY})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| parent=0" in proc.stdout and "| any=0" in proc.stdout


# -- 4. redaction before truncation, in every output -------------------------------------------

def test_a_key_straddling_a_cut_is_never_printed_even_in_part(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TISS_API_KEY", KEY)

    def echo_auth_error(handler):
        auth = handler.headers["Authorization"]
        answer(handler, json.dumps({"error": {"message": "x" * 285 + auth}}).encode(), 400)

    def malformed(handler):
        answer(handler, b"<" * 180 + handler.headers["Authorization"].encode() + b">")

    def key_in_answer(handler):
        answer(handler, chat("the key is " + handler.headers["Authorization"] + " " + "y" * 5000))

    for behave in (echo_auth_error, malformed, key_in_answer):
        server = Hostile(behave)
        monkeypatch.setenv("TISS_API_KEY", KEY)  # each tiss takes it out of the environment
        try:
            ws = tmp_path / behave.__name__
            ws.mkdir()
            trace = tmp_path / f"{behave.__name__}.jsonl"
            script = _script(tmp_path, (
                'STEP "ask" {\n  PROMPT_AGENT "hi" INTO a\n  LOG "{{ a }}"\n'
                '  RUN "printf %s \\"{{ a }}\\" | tail -c 4100"\n  ASSERT a == "no"\n}\n'
            ))
            code = cli.main(["run", str(script), "--workspace", str(ws), "--model", server.url,
                             "--trace", str(trace), "--report", "json"])
            assert code == 1
            captured = capsys.readouterr()
            written = captured.out + captured.err + trace.read_text()
            assert server.requests, behave.__name__
            for start in range(len(KEY) - 8):  # not the key, nor any 8 characters of it
                at = written.find(KEY[start:start + 8])
                assert at < 0, (behave.__name__, written[max(0, at - 3000):at + 400])
            assert "[redact" in written  # what was redacted may itself be cut
        finally:
            server.close()


# -- 5. the workspace root is held, not reopened by path --------------------------------------

def test_a_workspace_swapped_for_a_symlink_is_not_followed(tmp_path, capsys):
    ws = tmp_path / "ws"
    ws.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "victim").write_text("keep")
    script = _script(tmp_path, (
        f'RUN "cd .. && mv ws ws.old && ln -s {elsewhere} ws"\n'
        'TRY { WRITE "victim" "owned" } CATCH { LOG "write: {{ LAST_ERROR.MESSAGE }}" }\n'
        'TRY { DELETE "victim" } CATCH { LOG "delete: {{ LAST_ERROR.MESSAGE }}" }\n'
        'TRY { RUN "echo owned > victim2" } CATCH { LOG "run: {{ LAST_ERROR.MESSAGE }}" }\n'
    ))
    assert cli.main(["run", str(script), "--workspace", str(ws)]) == 0
    out = capsys.readouterr().out
    assert (elsewhere / "victim").read_text() == "keep" and sorted(os.listdir(elsewhere)) == ["victim"]
    for what in ("write", "delete", "run"):
        assert f"| {what}: the workspace '{ws}' was moved or replaced since the run began" in out


# -- 6. WRITE never keeps setuid / setgid bits --------------------------------------------------

def test_write_drops_setuid_and_setgid(tmp_path, capsys):
    ws = tmp_path / "ws"
    ws.mkdir()
    target = ws / "tool"
    target.write_text("#!/bin/sh\n")
    os.chmod(target, 0o6755)
    script = _script(tmp_path, 'WRITE "tool" "new content"\n')
    assert cli.main(["run", str(script), "--workspace", str(ws)]) == 0
    mode = stat.S_IMODE(os.stat(target).st_mode)
    assert mode == 0o755 and target.read_text() == "new content"


# -- 7. HTTP deadlines and cancellation ----------------------------------------------------------

@pytest.mark.parametrize("behave", [trickle_body, trickle_headers], ids=["body", "headers"])
def test_a_trickling_server_cannot_outrun_the_timeout(tmp_path, capsys, behave):
    server = Hostile(behave)
    try:
        ws = tmp_path / "ws"
        ws.mkdir()
        script = _script(tmp_path, '@timeout "1s"\nSTEP "ask" { PROMPT_AGENT "hi" }\n')
        started = time.monotonic()
        code = cli.main(["run", str(script), "--workspace", str(ws), "--model", server.url])
        elapsed = time.monotonic() - started
        assert code == 1 and elapsed < 4, elapsed
        assert "did not answer within 1s" in capsys.readouterr().out
    finally:
        server.close()


def test_execution_time_budget_bounds_a_trickling_call(tmp_path, capsys):
    server = Hostile(trickle_body)
    try:
        ws = tmp_path / "ws"
        ws.mkdir()
        script = _script(tmp_path, 'SET_BUDGET EXECUTION_TIME = "1s"\nSTEP "ask" { PROMPT_AGENT "hi" }\n')
        started = time.monotonic()
        assert cli.main(["run", str(script), "--workspace", str(ws), "--model", server.url]) == 1
        assert time.monotonic() - started < 4
    finally:
        server.close()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_model_call_in_parallel_is_cancelled_by_a_signal(tmp_path, signum):
    server = Hostile(lambda h: (time.sleep(30), answer(h, chat("late"))))
    try:
        ws = tmp_path / "ws"
        ws.mkdir()
        script = _script(tmp_path, (
            'PARALLEL {\n  PROMPT_AGENT "slow"\n  RUN "sleep 30"\n}\n'
            'TEARDOWN { WRITE "teardown.txt" "ran" }\n'
        ))
        env = {k: v for k, v in os.environ.items() if not k.startswith("TISS_")}
        env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
        proc = subprocess.Popen(
            [sys.executable, "-m", "runtime", "run", str(script), "--workspace", str(ws),
             "--model", server.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )
        deadline = time.monotonic() + 20
        while not server.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.requests, "the model call never started"
        time.sleep(0.3)
        sent = time.monotonic()
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=15)
        assert time.monotonic() - sent < 5, "the model call held the run after the signal"
        assert proc.returncode == 130, out.decode() + err.decode()
        assert (ws / "teardown.txt").read_text() == "ran"
    finally:
        server.close()


@pytest.mark.parametrize("behave, message", [
    (flood_body, "sent a reply over 64 MiB"),
    (flood_headers, "failed mid-reply: got more than 100 headers"),
], ids=["body", "headers"])
def test_a_flooding_server_is_cut_off(tmp_path, capsys, behave, message):
    server = Hostile(behave)
    try:
        ws = tmp_path / "ws"
        ws.mkdir()
        script = _script(tmp_path, '@timeout "20s"\nSTEP "ask" { PROMPT_AGENT "hi" }\n')
        started = time.monotonic()
        code = cli.main(["run", str(script), "--workspace", str(ws), "--model", server.url])
        assert code == 1 and time.monotonic() - started < 15
        assert message in capsys.readouterr().out
    finally:
        server.close()


@pytest.mark.parametrize("body, message", [
    (b"[" * 200000 + b"]" * 200000, "JSON nested too deeply"),
    (b'{"choices": [{"message": {"content": "a\\ud800b"}}]}', None),
])
def test_hostile_json_is_a_clear_failure_or_a_clean_answer(tmp_path, capsys, body, message):
    server = Hostile(lambda h: answer(h, body))
    try:
        ws = tmp_path / "ws"
        ws.mkdir()
        script = _script(tmp_path, 'STEP "ask" {\n  PROMPT_AGENT "hi" INTO a\n  WRITE "a.txt" "{{ a }}"\n}\n')
        code = cli.main(["run", str(script), "--workspace", str(ws), "--model", server.url])
        out = capsys.readouterr().out
        if message:
            assert code == 1 and message in out
        else:
            assert code == 0, out
            assert (ws / "a.txt").read_text() == "a\ufffdb"
    finally:
        server.close()


# -- 9. nothing a RUN starts outlives it -------------------------------------------------------

_ESCAPE = r"""
import os, sys, time
try:
    os.setsid()
except PermissionError:  # the re-executed copy below already leads its session
    pass
how = sys.argv[2] if len(sys.argv) > 2 else ""
if how == "nodump":
    import ctypes
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # non-dumpable: its environ cannot be read
if how == "noenv":  # again, with an empty environment: no marker left to find it by
    os.execve(sys.executable, [sys.executable, sys.argv[0], sys.argv[1], "env-cleared"], {})
time.sleep(1.0)  # until the RUN's shell has exited and the sweep has looked
for _ in range(300):  # then fork away, letting each parent exit
    if os.fork():
        os._exit(0)
open(sys.argv[1], "w").write("escaped")
"""


def _modes() -> list:
    modes = [pytest.param("subreaper", id="subreaper")]
    if os.geteuid() == 0:
        modes.append(pytest.param("cgroup", id="cgroup"))
    return modes


@pytest.mark.parametrize("mode", _modes())
@pytest.mark.parametrize("uid", users())
def test_background_processes_that_fork_away_are_killed(mode, uid):
    env = {"TISS_KILL_TREE": mode}
    if mode == "cgroup":
        mode_here = subprocess.run(
            [sys.executable, "-c", "from runtime.shell import tree_mode; print(tree_mode())"],
            capture_output=True, text=True, env={**os.environ, **env},
        ).stdout.strip()
        if uid is not None or mode_here != "cgroup":
            pytest.skip("no writable cgroup v2 with cgroup.kill for this user here (the "
                        "subreaper case covers it)")
    base = shared_dir(uid)
    ws = _workspace(base, uid)
    escape = base / "escape.py"
    escape.write_text(_ESCAPE)
    os.chmod(escape, 0o644)
    flag = base / "flag"
    python = sys.executable if uid is None else (
        shutil.which("python3", path="/usr/bin:/bin:/usr/local/bin") or sys.executable)
    if uid is not None:
        os.chmod(base, 0o777)
    script = _script(base, (
        f'RUN "{python} {escape} {flag} & {python} {escape} {flag}.2 nodump & '
        f'{python} {escape} {flag}.3 noenv & sleep 0.6"\n'
        'LOG "done"\n'
    ))
    os.chmod(base, 0o777)
    proc = tiss("run", str(script), "--workspace", str(ws), uid=uid, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    deadline = time.monotonic() + 5  # an escaper writes its flag about a second after the RUN
    while time.monotonic() < deadline:
        escaped = [p.name for p in base.iterdir() if p.name.startswith("flag")]
        assert not escaped, f"{escaped} written after the RUN ended"
        time.sleep(0.1)


def test_run_command_kills_a_setsid_grandchild_on_timeout(tmp_path):
    flag = tmp_path / "late"
    result = run_command(f"setsid sh -c 'sleep 1; echo x > {flag}' & sleep 5", cwd=str(tmp_path), timeout=0.3)
    assert result.timed_out
    time.sleep(1.5)
    assert not flag.exists()


def test_root_without_user_namespaces_still_gets_a_sandbox_without_capabilities(tmp_path, monkeypatch):
    """Where a container forbids user namespaces, root's sandbox drops every capability all the
    same (bubblewrap runs privileged then)."""
    from runtime import shell

    if os.geteuid() != 0:
        pytest.skip("the fallback is for root only; other users always use a user namespace")
    if bwrap_path() is None:
        pytest.skip("bubblewrap is not installed (CI installs it)")
    monkeypatch.setattr(shell, "_userns_works", lambda bwrap: False)
    assert "--unshare-user" not in shell.sandbox_argv(str(tmp_path))
    outside = tmp_path / "outside"
    outside.mkdir()
    ws = tmp_path / "ws"
    ws.mkdir()
    result = run_command(
        f"grep CapEff /proc/self/status; mount -o remount,rw,bind / 2>&1; echo rc=$?; "
        f"umount -l /proc 2>&1; echo rc=$?; touch {outside}/x 2>&1; echo ok > inside",
        cwd=str(ws), sandbox="workspace",
    )
    assert "CapEff:\t0000000000000000" in result.stdout, result.stdout + result.stderr
    assert "rc=0" not in result.stdout
    assert list(outside.iterdir()) == [] and (ws / "inside").read_text() == "ok\n"

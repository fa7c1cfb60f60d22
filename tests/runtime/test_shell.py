"""The RUN machinery: process groups, timeouts, bounded capture, cancellation, sandbox."""

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import pytest

from runtime import shell
from runtime.errors import CommandError, SandboxUnavailable
from runtime.shell import run_command


def test_captures_both_streams_and_exit_code(tmp_path):
    result = run_command("echo out; echo err >&2; exit 3", cwd=str(tmp_path))
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert not result.timed_out and not result.stdout_truncated


def test_runs_in_cwd_with_stdin_from_devnull(tmp_path):
    result = run_command("pwd; cat; echo after", cwd=str(tmp_path))
    assert result.stdout == f"{tmp_path}\nafter\n"


def test_own_process_group(tmp_path):
    result = run_command("ps -o pgid= -p $$; ps -o sid= -p $$", cwd=str(tmp_path))
    pgid, sid = (int(x) for x in result.stdout.split())
    assert pgid != os.getpgid(0) and pgid == sid


def test_api_key_is_not_passed_to_commands(tmp_path, monkeypatch):
    monkeypatch.setenv("TISS_API_KEY", "sk-secret")
    assert run_command('echo "[$TISS_API_KEY]"', cwd=str(tmp_path)).stdout == "[]\n"


def test_timeout_kills_whole_group_and_leaves_nothing(tmp_path, dead):
    marker = tmp_path / "pid"
    started = time.monotonic()
    result = run_command(
        f"sh -c 'echo $$ > {marker}; sleep 30' & sleep 30; echo never", cwd=str(tmp_path), timeout=0.5
    )
    elapsed = time.monotonic() - started
    assert result.timed_out and result.exit_code == 137 and "never" not in result.stdout
    assert elapsed < 10  # the command sleeps 30 s; generous for a loaded machine
    assert dead(int(marker.read_text()))


def test_background_children_do_not_outlive_the_command(tmp_path, dead):
    marker = tmp_path / "pid"
    started = time.monotonic()
    result = run_command(f"sh -c 'echo $$ > {marker}; exec sleep 30' & sleep 0.2; echo done", cwd=str(tmp_path))
    assert result.stdout == "done\n" and result.exit_code == 0
    assert time.monotonic() - started < 10  # vs 30 s if the child were waited for
    assert dead(int(marker.read_text()))


def test_cancel_event_kills_command(tmp_path):
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    result = run_command("sleep 30", cwd=str(tmp_path), cancel=cancel)
    assert result.cancelled and time.monotonic() - started < 10


def test_output_is_capped_and_marked_truncated(tmp_path):
    result = run_command("head -c 5000 /dev/zero | tr '\\0' a; head -c 10 /dev/zero >&2", cwd=str(tmp_path), cap=1000)
    assert result.stdout == "a" * 1000 and result.stdout_truncated
    assert len(result.stderr) == 10 and not result.stderr_truncated


def test_undecodable_output_is_replaced(tmp_path):
    result = run_command("printf 'ok\\377\\n'", cwd=str(tmp_path))
    assert result.stdout == "ok\ufffd\n"


def test_flood_of_hundreds_of_megabytes_stays_in_bounded_memory(tmp_path):
    # A child interpreter floods 400 MB through both pipes with the default 10 MiB cap and
    # reports how much its peak RSS grew; without the cap it would grow by ~800 MB.
    code = textwrap.dedent(
        f"""
        import resource, json
        from runtime.shell import run_command
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        r = run_command("yes flood | head -c 200000000 & yes flood | head -c 200000000 >&2; wait",
                        cwd={str(tmp_path)!r})
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({{"grew_kib": after - before, "out": len(r.stdout), "err": len(r.stderr),
                          "t": [r.stdout_truncated, r.stderr_truncated]}}))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    import json

    report = json.loads(proc.stdout)
    assert report["out"] == report["err"] == shell.DEFAULT_CAP
    assert report["t"] == [True, True]
    # two 10 MiB captures plus decoding copies; far below the 400 MB that went through
    assert report["grew_kib"] < 80 * 1024, report


def test_shell_choice_and_missing_shell(tmp_path):
    if os.path.exists("/bin/bash"):
        assert run_command("echo ${BASH_VERSION:+bash}", cwd=str(tmp_path), shell="bash").stdout == "bash\n"
    with pytest.raises(CommandError, match="@shell"):
        run_command("true", cwd=str(tmp_path), shell="no-such-shell-xyz")


def test_sandbox_missing_bwrap_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(shell, "bwrap_path", lambda: None)
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        run_command("true", cwd=str(tmp_path), sandbox="workspace")


@pytest.mark.skipif(shell.bwrap_path() is None, reason="bubblewrap (bwrap) is not installed")
def test_sandbox_confines_writes_tmp_and_network(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    outside_dir = tempfile.mkdtemp(dir="/var/tmp")  # outside both the workspace and /tmp
    outside = os.path.join(outside_dir, "outside.txt")
    (tmp_path / "host-only").write_text("x")  # in the host /tmp, not the sandbox's private one
    try:
        result = run_command(
            f"echo in > inside.txt; (echo x > {outside}) 2>/dev/null; echo w=$?;"
            f" test -e {tmp_path / 'host-only'}; echo tmp=$?;"
            " tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '",
            cwd=str(ws),
            sandbox="workspace",
        )
        if result.exit_code != 0 and "bwrap" in result.stderr:
            pytest.skip(f"bubblewrap cannot create namespaces here: {result.stderr.strip()}")
        lines = result.stdout.split()
        assert (ws / "inside.txt").read_text() == "in\n"
        assert not os.path.exists(outside) and lines[0] != "w=0", result
        assert lines[1] == "tmp=1"  # a private /tmp
        assert lines[2:] == ["lo"]  # no network but loopback
    finally:
        shutil.rmtree(outside_dir)


def test_processes_that_leave_the_group_are_killed_too(tmp_path, dead):
    # setsid puts a child in a new session (and group): the group kill misses it, the
    # TISS_RUN_ID marker in its environment does not. The second holds stdout open.
    started = time.monotonic()
    result = run_command(
        "setsid sh -c 'echo $$ > a.pid; exec sleep 30' >/dev/null 2>&1 &"
        " setsid sh -c 'echo $$ > b.pid; exec sleep 30' &"
        " while [ ! -s a.pid ] || [ ! -s b.pid ]; do sleep 0.01; done; echo done",
        cwd=str(tmp_path),
    )
    assert result.stdout == "done\n" and result.exit_code == 0
    assert time.monotonic() - started < 5  # not held up by the orphan keeping the pipe open
    for name in ("a.pid", "b.pid"):
        assert dead(int((tmp_path / name).read_text()))


def test_marker_is_per_run_and_parallel_runs_do_not_kill_each_other(tmp_path):
    # Two commands at once: when the short one ends, the long one (another marker) lives on.
    results = {}

    def long_run():
        results["long"] = run_command("sleep 0.6; echo alive", cwd=str(tmp_path))

    worker = threading.Thread(target=long_run)
    worker.start()
    time.sleep(0.1)
    assert run_command('echo "$TISS_RUN_ID"', cwd=str(tmp_path)).stdout.strip() != ""
    worker.join()
    assert results["long"].stdout == "alive\n" and results["long"].exit_code == 0

"""`tiss run` as pytest users expect it (issue 18): output tails, -v/-q, exit statuses in step
lines, @strict/--strict, several scripts, -k, -x, unknown directives and mistyped flags.
Everything goes through the CLI (`cli.main` or a subprocess)."""

import subprocess
import sys
import time

import pytest

from runtime import cli


@pytest.fixture
def ws(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    return root


def script(tmp_path, text, name="script.tiss"):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


def tiss(*argv):
    return cli.main([str(a) for a in argv])


# --- what a failed step shows ------------------------------------------------------------------

def test_a_failed_step_shows_the_tails_of_stdout_and_stderr(tmp_path, ws, capsys):
    path = script(tmp_path, 'STEP "tests" {\n  RUN "for i in 1 2 3; do echo collected $i; done; '
                            'echo E: boom >&2; exit 1"\n  ASSERT LAST_RUN.EXIT_CODE == 0\n}\n')
    assert tiss("run", path, "--workspace", ws) == 1
    out = capsys.readouterr().out
    assert ("  stdout of the last command (tail):\n    collected 1\n    collected 2\n    collected 3\n"
            "  stderr of the last command (tail):\n    E: boom\n") in out


def test_only_stdout_when_the_command_wrote_no_stderr(tmp_path, ws, capsys):
    path = script(tmp_path, 'RUN "echo FAILED test_x.py::test_y"\nASSERT LAST_RUN.EXIT_CODE == 1\n')
    assert tiss("run", path, "--workspace", ws, "--report", "json") == 1
    captured = capsys.readouterr()
    assert "stdout of the last command (tail):\n    FAILED test_x.py::test_y" in captured.err
    assert "stderr of the last command" not in captured.err
    import json

    failure = json.loads(captured.out)["failure"]
    assert failure["stdout_tail"] == "FAILED test_x.py::test_y" and failure["stderr_tail"] is None


def test_a_step_line_shows_the_exit_status_of_its_failing_runs(tmp_path, ws, capsys):
    path = script(tmp_path, 'STEP "probe" {\n  RUN "exit 3"\n  LOG "{{ LAST_RUN.EXIT_CODE }}"\n}\n'
                            'STEP "two" {\n  RUN "exit 1"\n  RUN "exit 2"\n  RUN "true"\n}\n'
                            'STEP "fine" {\n  RUN "true"\n}\n')
    assert tiss("run", path, "--workspace", ws) == 0
    out = capsys.readouterr().out
    assert "[  OK  ] probe (" in out and "ms; RUN exited 3)\n" in out
    assert "; 2 RUNs exited non-zero: 1, 2)\n" in out
    fine = next(line for line in out.splitlines() if line.startswith("[  OK  ] fine"))
    assert "exited" not in fine


# --- -q and -v ---------------------------------------------------------------------------------

def test_quiet_prints_only_failures_and_the_summary(tmp_path, ws, capsys):
    path = script(tmp_path, 'STEP "a" {\n  LOG "noise"\n}\nSTEP "b" {\n  ASSERT 1 == 2\n}\nSTEP "c" { LOG "x" }\n')
    assert tiss("run", path, "--workspace", ws, "-q") == 1
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "[FAILED] b" + out.split("[FAILED] b", 1)[1].splitlines()[0],
        "         assertion failed: 1 == 2 (left is 1, right is 2)",
        f"{path}:5:3: error: assertion failed: 1 == 2 (left is 1, right is 2)",
        "      ASSERT 1 == 2",
        "      ^",
        out.splitlines()[-1],
    ]
    assert out.splitlines()[-1].startswith("FAILED: 1 passed, 1 failed, 1 skipped in ")
    assert tiss("run", path, "--workspace", ws, "-q", "-k", "a") == 0
    assert capsys.readouterr().out.startswith("PASSED: 1 passed, 2 deselected in ")


def test_verbose_streams_each_runs_output_as_it_arrives(tmp_path, ws):
    """The command prints a line, then waits for a file the test writes only after it has seen
    that line on tiss's stdout: without streaming the run could never end."""
    path = script(tmp_path, 'STEP "wait" {\n  RUN "echo first; echo warn >&2; '
                            'while [ ! -e go ]; do sleep 0.05; done; echo second"\n}\n')
    proc = subprocess.Popen([sys.executable, "-m", "runtime", "run", path, "--workspace", str(ws), "-v"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            seen.append(line)
            if line.strip() == "> first" or not line:
                break
        assert seen[-1] == "         > first\n", seen
        (ws / "go").write_text("")
        # Read on through the same buffered reader: communicate() would skip what it holds.
        rest = proc.stdout.read()
        err = proc.stderr.read()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    out = "".join(seen) + rest
    assert "        2> warn\n" in out and "         > second\n" in out
    assert out.index("> second") < out.index("[  OK  ] wait")


def test_verbose_and_quiet_exclude_each_other(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        tiss("run", script(tmp_path, 'LOG "x"\n'), "-v", "-q")
    assert exit_.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


# --- @strict and --strict ----------------------------------------------------------------------

STRICT = '@strict true\nSTEP "build" {\n  RUN "echo compiling; exit 4"\n  LOG "went on"\n}\nSTEP "after" { LOG "x" }\n'


def test_strict_fails_the_step_at_an_unchecked_failing_run(tmp_path, ws, capsys):
    path = script(tmp_path, STRICT)
    assert tiss("run", path, "--workspace", ws) == 1
    out = capsys.readouterr().out
    assert "[FAILED] build (" in out and "; RUN exited 4)" in out and "went on" not in out
    assert f"{path}:3:3: error: RUN exited with status 4 (@strict: a failing command fails its step)" in out
    assert '\n      RUN "echo compiling; exit 4"\n      ^\n' in out
    assert "stdout of the last command (tail):\n    compiling" in out
    assert "[ SKIP ] after" in out


@pytest.mark.parametrize("following", [
    "ASSERT LAST_RUN.EXIT_CODE == 4",
    'IF LAST_RUN.EXIT_CODE != 0 {\n    LOG "handled"\n  }',
    'LOG "status {{ LAST_RUN.EXIT_CODE }}"',
])
def test_strict_lets_a_run_go_when_the_next_statement_reads_its_status(tmp_path, ws, capsys, following):
    path = script(tmp_path, f'@strict\nSTEP "s" {{\n  RUN "exit 4"\n  {following}\n}}\n')
    assert tiss("run", path, "--workspace", ws) == 0, capsys.readouterr().out


def test_strict_flag_and_directive_off(tmp_path, ws, capsys):
    plain = script(tmp_path, 'STEP "s" {\n  RUN "false"\n  LOG "on"\n}\n', "plain.tiss")
    assert tiss("run", plain, "--workspace", ws) == 0
    capsys.readouterr()
    assert tiss("run", plain, "--workspace", ws, "--strict") == 1
    assert "RUN exited with status 1 (--strict: a failing command fails its step)" in capsys.readouterr().out
    off = script(tmp_path, '@strict false\nSTEP "s" {\n  RUN "false"\n  LOG "on"\n}\n', "off.tiss")
    assert tiss("run", off, "--workspace", ws) == 0
    capsys.readouterr()
    caught = script(tmp_path, '@strict\nTRY {\n  RUN "exit 9"\n} CATCH {\n  LOG "{{ LAST_ERROR.MESSAGE }}"\n}\n', "t.tiss")
    assert tiss("run", caught, "--workspace", ws) == 0
    assert "RUN exited with status 9" in capsys.readouterr().out
    bad = script(tmp_path, '@strict "yes"\nLOG "x"\n', "bad.tiss")
    assert tiss("run", bad, "--workspace", ws) == 1
    assert "@strict must be true or false" in capsys.readouterr().out


def test_check_warns_about_run_results_never_checked(tmp_path, capsys):
    path = script(tmp_path, 'STEP "s" {\n  RUN "make"\n  RUN "make test"\n  ASSERT LAST_RUN.EXIT_CODE == 0\n}\n')
    assert tiss("check", path) == 1
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert f"{path}:2:3: warning: T104 the result of this RUN is never checked" in out
    assert ":3:3:" not in out  # the second RUN is checked by the ASSERT after it
    strict = script(tmp_path, '@strict\nRUN "make"\n', "strict.tiss")
    assert tiss("check", strict) == 0  # under @strict a failing RUN fails by itself


# --- several scripts, -x, -k --------------------------------------------------------------------

def test_several_scripts_one_summary_and_the_worst_status(tmp_path, ws, capsys):
    good = script(tmp_path, 'STEP "g" { LOG "x" }\n', "good.tiss")
    bad = script(tmp_path, 'STEP "b" {\n  ASSERT 1 == 2\n}\n', "bad.tiss")
    assert tiss("run", good, bad, good, "--workspace", ws) == 1
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("== ")] == [f"== {good}", f"== {bad}", f"== {good}"]
    assert f"{bad}:2:3: error: assertion failed" in out
    assert out.splitlines()[-1].startswith("FAILED: 2 passed, 1 failed in 3 scripts in ")
    assert out.count("FAILED: ") == 1  # one summary
    assert tiss("run", good, good, "--workspace", ws) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("PASSED: 2 passed in 2 scripts in ")


def test_x_stops_after_the_first_script_that_fails(tmp_path, ws, capsys):
    bad = script(tmp_path, 'STEP "b" {\n  ASSERT false\n}\n', "a_bad.tiss")
    good = script(tmp_path, 'STEP "g" { WRITE "ran.txt" "x" }\n', "b_good.tiss")
    assert tiss("run", bad, good, "--workspace", ws, "-x") == 1
    out = capsys.readouterr().out
    assert f"not run (-x): {good}" in out and not (ws / "ran.txt").exists()
    assert tiss("run", bad, good, "--workspace", ws) == 1  # without -x every script runs
    assert (ws / "ran.txt").exists()


def test_a_directory_runs_every_script_under_it_sorted(tmp_path, ws, capsys):
    folder = tmp_path / "suite"
    script(folder, 'LOG "b"\n', "b.tiss")
    script(folder, 'LOG "a"\n', "a.tiss")
    script(folder, 'LOG "nested"\n', "sub/c.tiss")
    script(folder, 'ASSERT false\n', ".hidden/x.tiss")
    (folder / "notes.txt").write_text("not a script")
    assert tiss("run", folder, "--workspace", ws, "--report", "json") == 0
    import json

    document = json.loads(capsys.readouterr().out)
    assert [s["file"] for s in document["scripts"]] == [
        str(folder / "a.tiss"), str(folder / "b.tiss"), str(folder / "sub" / "c.tiss")]
    assert document["status"] == "passed" and document["exit_code"] == 0 and document["not_run"] == []


def test_an_invalid_script_among_several_runs_nothing(tmp_path, ws, capsys):
    good = script(tmp_path, 'WRITE "ran.txt" "x"\n', "good.tiss")
    bad = script(tmp_path, 'STEP "x" {\n', "bad.tiss")
    assert tiss("run", good, bad, "--workspace", ws) == 2
    assert f"{bad}:" in capsys.readouterr().err and not (ws / "ran.txt").exists()


def test_k_selects_steps_by_description(tmp_path, ws, capsys):
    path = script(tmp_path, 'SETUP { WRITE "setup.txt" "x" }\n'
                            'STEP "build the tool" { WRITE "build.txt" "x" }\n'
                            'STEP "Test quickly" { WRITE "quick.txt" "x" }\n'
                            'STEP "test slowly" { WRITE "slow.txt" "x" }\n'
                            'STEP "outer" {\n  STEP "inner test" { WRITE "inner.txt" "x" }\n'
                            '  STEP "inner other" { WRITE "other.txt" "x" }\n}\n')
    assert tiss("run", path, "--workspace", ws, "-k", "test and not slow") == 0
    out = capsys.readouterr().out
    written = sorted(p.name for p in ws.iterdir())
    assert written == ["inner.txt", "quick.txt", "setup.txt"]
    assert "build the tool" not in out and "[ RUN  ] outer" in out
    assert out.splitlines()[-1].startswith("PASSED: 4 passed, 3 deselected in ")
    assert tiss("run", path, "--workspace", ws, "-k", "OUTER") == 0  # a selected step's body runs whole
    assert (ws / "other.txt").exists()


def test_k_words_side_by_side_are_a_phrase_and_match_interpolated_descriptions(tmp_path, ws, capsys):
    path = script(tmp_path, 'FOR x IN ["a", "b"] {\n  STEP "item {{ x }}" { WRITE "{{ x }}.txt" "x" }\n}\n'
                            'STEP "Write  a greeting" { WRITE "greeting.txt" "x" }\n')
    assert tiss("run", path, "--workspace", ws, "-k", "item b or write a GREETING") == 0
    assert sorted(p.name for p in ws.iterdir()) == ["b.txt", "greeting.txt"]
    assert capsys.readouterr().out.splitlines()[-1].startswith("PASSED: 2 passed, 1 deselected in ")


def test_a_k_pattern_that_is_not_an_expression_is_a_usage_error(tmp_path, ws, capsys):
    path = script(tmp_path, 'STEP "a" { LOG "x" }\n')
    assert tiss("run", path, "--workspace", ws, "-k", "a and") == 2
    assert "-k 'a and': expected a word" in capsys.readouterr().err
    assert tiss("run", path, "--workspace", ws, "-k", "(a or b") == 2
    assert "a '(' is never closed" in capsys.readouterr().err
    assert tiss("run", path, "--workspace", ws, "-k", "a)") == 2
    assert "unexpected ')'" in capsys.readouterr().err


# --- unknown directives and mistyped flags --------------------------------------------------------

def test_an_unknown_directive_is_warned_about_as_check_does(tmp_path, ws, capsys):
    path = script(tmp_path, '@timout "5s"\nSTEP "s" { LOG "x" }\n')
    assert tiss("run", path, "--workspace", ws) == 0
    run_err = capsys.readouterr().err
    assert f"{path}:1:1: warning: T101 unknown directive @timout; did you mean '@timeout'?" in run_err
    assert tiss("check", path) == 1
    captured = capsys.readouterr()
    check_out = captured.out + captured.err
    assert run_err.splitlines()[0] in check_out  # the same finding, word for word


def test_a_mistyped_flag_shows_the_subcommands_usage_and_the_nearest_flag(tmp_path):
    path = script(tmp_path, 'LOG "x"\n')
    proc = subprocess.run([sys.executable, "-m", "runtime", "run", path, "--worksapce", "d"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: tiss run ")
    assert proc.stderr.rstrip().endswith(
        "tiss run: error: unrecognized arguments: --worksapce d; did you mean --workspace?")
    proc = subprocess.run([sys.executable, "-m", "runtime", "run", path, "--junit-xlm", "f"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "did you mean --junit-xml?" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "runtime", "run", path, "--zzz"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.rstrip().endswith("unrecognized arguments: --zzz")
    proc = subprocess.run([sys.executable, "-m", "runtime", "--bogus"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith("usage: tiss [-h]")


def test_the_run_help_documents_the_new_flags(capsys):
    with pytest.raises(SystemExit):
        tiss("run", "--help")
    out = capsys.readouterr().out
    for flag in ("-v, --verbose", "-q, --quiet", "-k PATTERN", "-x, --exitfirst", "--strict",
                 "--junit-xml FILE"):
        assert flag in out, flag


def test_ctrl_c_stops_the_scripts_after_the_one_it_interrupts(tmp_path, ws):
    import signal

    first = script(tmp_path, 'STEP "long" {\n  RUN "touch started; sleep 60"\n}\n', "a.tiss")
    second = script(tmp_path, 'WRITE "second.txt" "ran"\n', "b.tiss")
    proc = subprocess.Popen([sys.executable, "-m", "runtime", "run", first, second, "--workspace", str(ws)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 20
    while not (ws / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, out + err
    assert f"not run (interrupted): {second}" in out and not (ws / "second.txt").exists()
    assert out.splitlines()[-1].startswith("INTERRUPTED: 1 interrupted in ")


def test_a_header_requirement_this_run_lacks_is_said_before_the_run(tmp_path, ws, capsys):
    needs_echo = script(tmp_path, '# An example.\n# requires: model echo\nLOG "x"\n', "e.tiss")
    assert tiss("run", needs_echo, "--workspace", ws, "--model", "echo") == 0
    assert "note:" not in capsys.readouterr().err
    assert tiss("run", needs_echo, "--workspace", ws, "--dry-run") == 0
    assert (f"{needs_echo}: note: its header says `requires: model echo`: its checks expect the echo "
            "backend's answers; run it with --model echo") in capsys.readouterr().err
    asks = script(tmp_path, '# requires: terminal\nLOG "x"\n', "t.tiss")
    assert tiss("run", asks, "--workspace", ws) == 0  # pytest's stdin is not a terminal
    assert "it asks a human; run it in a terminal, or pass --yes" in capsys.readouterr().err
    assert tiss("run", asks, "--workspace", ws, "--yes") == 0
    assert "note:" not in capsys.readouterr().err

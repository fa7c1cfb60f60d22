"""`tiss run` against what a careless or hostile script (or user) does: every user error is a
clear message with a position and a next step, never a traceback; nothing leaves the workspace."""

import os
import subprocess
import sys

import pytest

from runtime import cli


@pytest.fixture
def ws(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    return root


def tiss_run(tmp_path, ws, source, *flags, name="script.tiss"):
    """Run `source` (str, or bytes written as they are) in-process; an unexpected exception fails
    the test on its own, which is what a traceback would be for a user."""
    script = tmp_path / name
    script.write_bytes(source if isinstance(source, bytes) else source.encode("utf-8"))
    return cli.main(["run", str(script), "--workspace", str(ws), *map(str, flags)])


def test_bom_and_crlf_script_runs(tmp_path, ws, capsys):
    source = '\ufeffTASK "crlf"\r\nSTEP "a" {\r\n  RUN "printf hi"\r\n  ASSERT LAST_RUN.STDOUT == "hi"\r\n}\r\n'
    assert tiss_run(tmp_path, ws, source) == 0, capsys.readouterr().out


@pytest.mark.parametrize("source", ["", "\n\n", "# only a comment\n", 'TASK "only a task"\n'])
def test_scripts_with_nothing_to_do_pass(tmp_path, ws, capsys, source):
    assert tiss_run(tmp_path, ws, source) == 0
    assert "PASSED: no steps" in capsys.readouterr().out


def test_script_not_utf8_is_positioned(tmp_path, ws, capsys):
    assert tiss_run(tmp_path, ws, b'LOG "ok"\nLOG "\xff"\n') == 2
    assert "script.tiss:2:6: error: the file is not valid UTF-8" in capsys.readouterr().err


def test_script_is_a_directory_or_missing(tmp_path, ws, capsys):
    assert cli.main(["run", str(ws)]) == 2  # a directory runs its scripts: here there are none
    assert "is a directory with no *.tiss scripts in it" in capsys.readouterr().err
    assert cli.main(["run", str(ws / "missing.tiss")]) == 2
    assert "cannot read script" in capsys.readouterr().err


@pytest.mark.parametrize(
    "var, expected",
    [("x=", "v=[]"), ("x=a=b", "v=[a=b]"), ("x= spaced ", "v=[ spaced ]"), ("x=ünï", "v=[ünï]")],
)
def test_var_values_are_taken_verbatim(tmp_path, ws, capsys, var, expected):
    assert tiss_run(tmp_path, ws, 'LOG "v=[{{ x }}]"\n', "--var", var) == 0
    assert expected in capsys.readouterr().out


@pytest.mark.parametrize(
    "var, message",
    [
        ("x", "--var expects NAME=VALUE"),
        ("=1", "--var expects NAME=VALUE"),
        ("1a=2", "--var expects NAME=VALUE"),
        ("a.b=1", "--var expects NAME=VALUE"),
        ("LAST_RUN=3", "LAST_RUN is a built-in reference"),
        ("WORKSPACE=/", "WORKSPACE is a built-in reference"),
    ],
)
def test_bad_var_is_a_usage_error(tmp_path, ws, capsys, var, message):
    assert tiss_run(tmp_path, ws, 'LOG "x"\n', "--var", var) == 2
    err = capsys.readouterr().err
    assert err.startswith("tiss: error: ") and message in err


def test_var_wins_over_nothing_but_script_var_overrides_it(tmp_path, ws, capsys):
    assert tiss_run(tmp_path, ws, 'LOG "{{ n }}"\nVAR n = 2\nLOG "{{ n }}"\n', "--var", "n=1") == 0
    out = capsys.readouterr().out
    assert out.index("| 1") < out.index("| 2")


def test_workspace_that_is_a_file_or_missing(tmp_path, capsys):
    script = tmp_path / "s.tiss"
    script.write_text('LOG "x"\n')
    assert cli.main(["run", str(script), "--workspace", str(script)]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert cli.main(["run", str(script), "--workspace", str(tmp_path / "no such")]) == 2
    assert "does not exist; create it first (mkdir -p '" in capsys.readouterr().err


@pytest.mark.parametrize(
    "statement, message",
    [
        ('READ "bin" AS b', "cannot READ 'bin': it is not UTF-8 text (byte 0xff at offset 1)"),
        ('READ "dir" AS b', "cannot READ 'dir': it is a directory"),
        ('READ "." AS b', "cannot READ '.': it is a directory"),
        ('WRITE "dir" "x"', "cannot WRITE 'dir': it is a directory"),
        ('WRITE "new/" "x"', "cannot WRITE 'new/': a path ending in '/' names a directory"),
        ('WRITE "bin/x" "x"', "'bin/x' goes through 'bin', which is a file, not a directory"),
        ('MKDIR "bin"', "cannot MKDIR 'bin': a file of that name exists"),
        ('DELETE "dir/.."', "cannot DELETE 'dir/..': it is the workspace itself"),
        ('DELETE "out"', None),  # the link itself goes, the target stays
        ('READ "out/secret" AS s', "path 'out/secret' leads out of the workspace through a symlink"),
        ('WRITE "../x" "x"', "path '../x' climbs out of the workspace with '..'"),
        ('READ "/etc/hostname" AS h', "path '/etc/hostname' is outside the workspace"),
    ],
)
def test_file_statement_errors_are_positioned(tmp_path, ws, capsys, statement, message):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    (ws / "bin").write_bytes(b"a\xffb")
    (ws / "dir").mkdir()
    (ws / "dir" / "keep").write_text("k")
    os.symlink(outside, ws / "out")
    code = tiss_run(tmp_path, ws, f'STEP "s" {{\n  {statement}\n}}\n')
    out = capsys.readouterr().out
    if message is None:
        assert code == 0 and not os.path.lexists(ws / "out")
    else:
        assert code == 1
        assert f"script.tiss:2:3: error: {message}" in out
        assert f"    {statement}\n      ^" in out
    assert sorted(os.listdir(outside)) == ["secret"] and (outside / "secret").read_text() == "s"
    assert (ws / "dir" / "keep").exists()


def test_unicode_and_odd_file_names_round_trip(tmp_path, ws, capsys):
    source = (
        'WRITE "ünï cødé/日本 語.txt" "x"\nWRITE "-rf" "y"\nWRITE "a\\nb" "z"\nWRITE " lead" "w"\n'
        'READ "ünï cødé/日本 語.txt" AS v\nASSERT v == "x"\nASSERT FILE "-rf" EXISTS\n'
        'DELETE "ünï cødé" RECURSIVE\n'
    )
    assert tiss_run(tmp_path, ws, source) == 0, capsys.readouterr().out
    assert sorted(os.listdir(ws)) == [" lead", "-rf", "a\nb"]


def test_large_heredoc_is_written_exactly(tmp_path, ws, capsys):
    body = "".join(f"line {i} {{not interpolated}} \\n\n" for i in range(2000))
    source = f"WRITE 'big.txt' <<'EOF'\n{body}EOF\nREAD 'big.txt' AS b\nASSERT b CONTAINS 'line 1999'\n"
    assert tiss_run(tmp_path, ws, source) == 0, capsys.readouterr().out
    assert (ws / "big.txt").read_text() == body


def test_closed_stdout_does_not_stop_the_run_or_print_a_traceback(tmp_path, ws):
    script = tmp_path / "s.tiss"
    script.write_text(
        'STEP "a" { RUN "seq 1 20000" }\nSTEP "b" { LOG "{{ LAST_RUN.STDOUT }}" }\n'
        'TEARDOWN { WRITE "teardown.txt" "ran" }\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "run", str(script), "--workspace", str(ws)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    proc.stdout.readline()
    proc.stdout.close()  # as `tiss run s.tiss | head -1` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, err
    assert "Traceback" not in err and "Broken pipe" not in err
    assert (ws / "teardown.txt").read_text() == "ran"


def test_commands_closing_stdout_early_and_forking_are_fine(tmp_path, ws, capsys):
    source = (
        'RUN "exec 1>&- 2>&-; sleep 0.2; echo done > f"\nASSERT LAST_RUN.EXIT_CODE == 0\n'
        'READ "f" AS f\nASSERT f == "done\\n"\n'
        'RUN "sleep 30 & echo started"\nASSERT LAST_RUN.STDOUT == "started"\n'
    )
    assert tiss_run(tmp_path, ws, source) == 0, capsys.readouterr().out


@pytest.mark.parametrize("value, taken", [("true", "yes"), ("false", "no"), ("", "no"), ("0", "yes"), ("off", "yes")])
def test_var_true_and_false_are_booleans(tmp_path, ws, capsys, value, taken):
    source = 'IF flag { LOG "yes" } ELSE { LOG "no" }\nLOG "[{{ flag }}]"\n'
    assert tiss_run(tmp_path, ws, source, "--var", f"flag={value}") == 0
    out = capsys.readouterr().out
    assert f"| {taken}\n" in out and f"| [{value}]\n" in out
    if value in ("true", "false"):
        assert tiss_run(tmp_path, ws, f"ASSERT flag == {value}\n", "--var", f"flag={value}") == 0


def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch):
    from runtime.report import use_colour

    class Terminal:
        def isatty(self):
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use_colour(Terminal()) is True
    monkeypatch.setenv("NO_COLOR", "1")
    assert use_colour(Terminal()) is False
    monkeypatch.delenv("NO_COLOR")
    assert use_colour(__import__("io").StringIO()) is False


def test_a_command_that_removes_the_workspace(tmp_path, ws, capsys):
    source = 'TRY {\n  RUN "true"\n  RUN "rm -rf \\"$PWD\\""\n  RUN "true"\n} CATCH { LOG "{{ LAST_ERROR.MESSAGE }}" }\nWRITE "x" "y"\n'
    assert tiss_run(tmp_path, ws, source) == 1
    out = capsys.readouterr().out
    assert f"the workspace '{ws}' no longer exists (did a command remove it?)" in out
    assert f"script.tiss:6:1: error: the workspace '{ws}' cannot be opened" in out


def test_control_characters_from_commands_cannot_drive_the_terminal(tmp_path, ws, capsys):
    source = (
        'RUN "printf \'a\\\\033[2Jb\\\\rc\\\\007\'"\nLOG "{{ LAST_RUN.STDOUT }}"\n'
        'STEP "{{ LAST_RUN.STDOUT }}" {\n  ASSERT LAST_RUN.STDOUT == "x"\n}\n'
    )
    trace = tmp_path / "t.jsonl"
    assert tiss_run(tmp_path, ws, source, "--trace", trace) == 1
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out and "\x07" not in out
    assert "| a\\x1b[2Jb\\x0dc\\x07" in out and "[ RUN  ] a\\x1b[2Jb\\x0dc\\x07" in out
    assert "\\u001b[2J" in trace.read_text()  # the trace keeps the text exactly (JSON-escaped)


def test_failure_in_a_bom_crlf_script_quotes_the_line_exactly(tmp_path, ws, capsys):
    assert tiss_run(tmp_path, ws, "\ufeffASSERT 1 == 2\r\n") == 1
    out = capsys.readouterr().out
    assert "script.tiss:1:1: error: assertion failed: 1 == 2 (left is 1, right is 2)\n    ASSERT 1 == 2\n    ^" in out
    assert "\ufeff" not in out and "\r" not in out

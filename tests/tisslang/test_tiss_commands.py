"""`tiss parse`, `tiss check`, `tiss fmt`: output, exit codes, atomic in-place writes."""

import json
import os
import subprocess
import sys

from runtime import cli

GOOD = 'TASK "t"\nSTEP "s" {\n    RUN "echo hi"\n    ASSERT LAST_RUN.EXIT_CODE == 0\n}\n'
UGLY = 'TASK "t"\nSTEP "s" { RUN "echo hi"; ASSERT LAST_RUN.EXIT_CODE==0 }\n'


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_parse_prints_json(tmp_path, capsys):
    path = write(tmp_path, "a.tiss", GOOD)
    assert cli.main(["parse", path, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["type"] == "Program"
    assert [s["type"] for s in data["body"]] == ["Task", "Step"]
    assert data["body"][1]["body"][1]["condition"]["op"] == "=="


def test_parse_prints_the_tree(tmp_path, capsys):
    assert cli.main(["parse", write(tmp_path, "a.tiss", GOOD)]) == 0
    assert "Run(command=String(parts=('echo hi',)))" in capsys.readouterr().out


def test_parse_syntax_error_exits_2_with_caret(tmp_path, capsys):
    path = write(tmp_path, "bad.tiss", 'STEP "s" {\n')
    assert cli.main(["parse", path]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{path}:1:10: error: this block is never closed")
    assert err.splitlines()[-1].strip() == "^"


def test_check_exit_codes(tmp_path, capsys):
    good = write(tmp_path, "good.tiss", GOOD)
    warn = write(tmp_path, "warn.tiss", '@nope 1\nLOG "{{ x }}"\n')
    bad = write(tmp_path, "bad.tiss", "}\n")
    assert cli.main(["check", good]) == 0
    assert cli.main(["check", good, warn]) == 1
    err = capsys.readouterr().err
    assert f"{warn}:1:1: warning: T101 unknown directive @nope" in err
    assert f"{warn}:2:6: error: T001 undefined variable 'x'" in err
    assert cli.main(["check", warn, bad]) == 2
    assert f"{bad}:1:1: error: stray }}" in capsys.readouterr().err
    assert cli.main(["check", "--var", "x=1", write(tmp_path, "v.tiss", 'LOG "{{ x }}"\n')]) == 0
    assert cli.main(["check", str(tmp_path / "missing.tiss")]) == 2


def test_fmt_check_diff_and_in_place(tmp_path, capsys):
    ugly = write(tmp_path, "ugly.tiss", UGLY)
    good = write(tmp_path, "good.tiss", GOOD)
    os.chmod(ugly, 0o640)
    assert cli.main(["fmt", "--check", good]) == 0
    assert cli.main(["fmt", "--check", ugly, good]) == 1
    assert f"would reformat {ugly}" in capsys.readouterr().err
    assert cli.main(["fmt", "--diff", ugly]) == 1
    diff = capsys.readouterr().out
    assert diff.startswith(f"--- {ugly} (original)\n+++ {ugly} (formatted)\n")
    assert "+    ASSERT LAST_RUN.EXIT_CODE == 0\n" in diff
    assert open(ugly, encoding="utf-8").read() == UGLY  # --check and --diff change nothing
    assert cli.main(["fmt", ugly]) == 0
    assert open(ugly, encoding="utf-8").read() == GOOD
    assert os.stat(ugly).st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.tiss", "ugly.tiss"]  # no temp left
    assert cli.main(["fmt", "--check", ugly]) == 0


def test_fmt_leaves_an_invalid_file_alone(tmp_path, capsys):
    bad = write(tmp_path, "bad.tiss", 'RUN "x\n')
    assert cli.main(["fmt", bad]) == 2
    assert open(bad, encoding="utf-8").read() == 'RUN "x\n'
    assert "unterminated string" in capsys.readouterr().err


def test_fmt_reports_a_formatter_bug_without_a_traceback(tmp_path, capsys, monkeypatch):
    from tisslang import commands
    from tisslang.formatter import FormatError

    def broken(program):
        raise FormatError("no spelling for this tree")

    monkeypatch.setattr(commands, "format_program", broken)
    path = write(tmp_path, "a.tiss", UGLY)
    assert cli.main(["fmt", path]) == 2
    assert open(path, encoding="utf-8").read() == UGLY
    assert capsys.readouterr().err == (
        f"tiss: error: cannot format {path}: no spelling for this tree; the file is left as it "
        "was (this is a bug in tiss fmt, please report it)\n1 file could not be formatted\n")


def test_fmt_that_cannot_write_says_so(tmp_path, capsys, monkeypatch):
    from tisslang import commands

    def full_disk(path, text):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(commands, "write_atomic", full_disk)
    path = write(tmp_path, "a.tiss", UGLY)
    assert cli.main(["fmt", path]) == 2
    assert open(path, encoding="utf-8").read() == UGLY
    assert capsys.readouterr().err == (
        f"tiss: error: cannot write {path}: No space left on device; the file is left as it was\n"
        "1 file could not be formatted\n")


def test_the_installed_command_runs(tmp_path):
    path = write(tmp_path, "a.tiss", GOOD)
    out = subprocess.run([sys.executable, "-m", "runtime", "check", path],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_parse_into_a_closed_pipe_is_quiet(tmp_path):
    big = write(tmp_path, "big.tiss", "".join(f'RUN "echo {i}"\n' for i in range(3000)))
    proc = subprocess.run(f'"{sys.executable}" -m runtime parse --json "{big}" | head -c 10',
                          shell=True, capture_output=True, text=True)
    assert proc.stdout == '{\n  "type"'
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


def test_write_atomic_gives_a_new_file_open_s_mode_and_keeps_an_old_file_s(tmp_path):
    from tisslang import commands

    umask = os.umask(0o022)
    try:
        new = tmp_path / "new.tiss"
        commands.write_atomic(new, 'LOG "x"\n')
        assert new.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
        old = tmp_path / "old.tiss"
        old.write_text("x")
        old.chmod(0o600)
        commands.write_atomic(old, 'LOG "y"\n')
        assert old.stat().st_mode & 0o777 == 0o600 and old.read_text() == 'LOG "y"\n'
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    finally:
        os.umask(umask)

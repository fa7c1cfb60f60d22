"""What `tiss run` prints, the small things issue 18 saw: no `| ` lines with a trailing space,
each caught failure said once, the dry-run TEARDOWN heading, a JSON error object for an invalid
script with `--report json`, and `--help` naming the default model. Through `runtime.cli.main`."""

import json

import pytest

from runtime import cli


def run(tmp_path, capsys, source, *flags):
    script = tmp_path / "s.tiss"
    script.write_text(source, encoding="utf-8")
    code = cli.main(["run", str(script), "--workspace", str(tmp_path), *flags])
    return code, capsys.readouterr()


def test_log_lines_have_no_trailing_space(tmp_path, capsys):
    code, out = run(tmp_path, capsys, 'STEP "a" {\n    LOG "one\\n\\nthree"\n'
                                      '    RUN "printf \'x\\n\\ny\\n\'"\n    LOG "{{ LAST_RUN.STDOUT }}"\n}\n')
    assert code == 0
    lines = out.out.splitlines()
    assert [line.strip() for line in lines if "|" in line] == ["| one", "|", "| three", "| x", "|", "| y"]
    assert not [line for line in lines if line != line.rstrip()]


def test_each_failure_is_said_once(tmp_path, capsys):
    code, out = run(tmp_path, capsys, 'STEP "a" {\n    TRY {\n        RETRY 2 {\n'
                                      '            ASSERT false\n        }\n    } CATCH {\n'
                                      '        LOG "handled"\n    }\n}\n'
                                      'STEP "b" {\n    TRY {\n        STEP "inner" {\n'
                                      '            ASSERT 1 == 2\n        }\n    } CATCH {\n'
                                      '        LOG "c2"\n    }\n}\n')
    assert code == 0
    text = out.out
    # RETRY's first attempt is an attempt, the TRY catches the last one.
    assert "attempt 1 of 2 failed: assertion failed: false" in text
    assert text.count("caught: assertion failed: false") == 1
    # The inner STEP's failure is printed under it; the TRY says it caught it without repeating.
    assert text.count("assertion failed: 1 == 2") == 1
    assert "caught: the failure above, by the TRY at line 11" in text


def test_dry_run_teardown_heading(tmp_path, capsys):
    code, out = run(tmp_path, capsys, 'TASK "t"\nTEARDOWN "Clean up" {\n    RUN "true"\n}\n'
                                      'TEARDOWN {\n    RUN "true"\n}\n', "--dry-run")
    assert code == 0
    assert '   2  TEARDOWN "Clean up" (runs last, always)' in out.out.splitlines()
    assert "   5  TEARDOWN (runs last, always)" in out.out.splitlines()


def test_report_json_prints_an_error_object_for_an_invalid_script(tmp_path, capsys):
    code, out = run(tmp_path, capsys, 'STEP "a" {\n    RUN "x" extra\n}\n', "--report", "json")
    assert code == 2
    document = json.loads(out.out)
    assert document["status"] == "invalid" and document["exit_code"] == 2
    error = document["error"]
    assert error["kind"] == "TissSyntaxError" and error["file"].endswith("s.tiss")
    assert (error["line"], error["column"]) == (2, 13)
    assert "error:" in out.err  # the human message stays on stderr
    assert cli.main(["run", str(tmp_path / "missing.tiss"), "--report", "json"]) == 2
    missing = json.loads(capsys.readouterr().out)
    assert missing["error"]["message"].startswith("cannot read script")


@pytest.mark.parametrize("command", ["run", "repl"])
def test_help_names_the_shipped_model_as_the_default(command, capsys):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    assert "else the model shipped in the package" in " ".join(capsys.readouterr().out.split())

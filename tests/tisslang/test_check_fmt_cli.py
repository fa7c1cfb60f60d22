"""`tiss check` and `tiss fmt` as ruff users expect them: directories and `.` by default, rule
codes with --select/--ignore and `# tiss: ignore[...]`, carets, json and GitHub output, summaries.
All through the CLI (`runtime.cli.main`)."""

import json
import re
from pathlib import Path

import pytest

import tisslang
from runtime import cli
from tisslang.checker import RULES

# One script per rule that produces exactly that finding.
SNIPPETS = {
    "T001": 'LOG "{{ x }}"\n',
    "T002": 'LOG "{{ LAST_RUN.EXITCODE }}"\n',
    "T003": "VAR LAST_RUN = 1\n",
    "T004": 'LOG "{{ RUN }}"\n',
    "T005": 'FOR x IN [1] {\n    LOG "a"\n}\nLOG "{{ x }}"\n',
    "T006": "SET_BUDGET FOO = 1\n",
    "T007": 'SET_BUDGET TOKENS = "many"\n',
    "T008": 'PARALLEL {\n    STEP "a" {\n        VAR a = 1\n    }\n    STEP "b" {\n'
            '        VAR a = 2\n    }\n}\n',
    "T009": 'RETRY 0 {\n    LOG "a"\n}\n',
    "T010": 'RETRY 2 DELAY "soon" {\n    LOG "a"\n}\n',
    "T011": 'FOR x IN "abc" {\n    LOG "a"\n}\n',
    "T101": "@nope 1\n",
    "T102": 'ASSERT false\nLOG "a"\n',
    "T103": 'WRITE "f" <<EOF\n{{ not closed\nEOF\n',
    "T104": 'STEP "s" {\n    RUN "make"\n}\n',
}
CLEAN = 'TASK "t"\nSTEP "s" {\n    RUN "echo hi"\n    ASSERT LAST_RUN.EXIT_CODE == 0\n}\n'
UGLY = 'TASK "t"\nSTEP "s" { RUN "echo hi"; ASSERT LAST_RUN.EXIT_CODE==0 }\n'


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.mark.parametrize("code", sorted(SNIPPETS))
def test_every_rule_has_a_script_that_produces_it(code):
    assert [d.code for d in tisslang.check(tisslang.parse(SNIPPETS[code]))] == [code]


def test_every_rule_is_covered_by_a_snippet():
    assert sorted(SNIPPETS) == sorted(RULES)


def test_every_code_is_documented_and_the_docs_list_no_other():
    doc = (Path(__file__).parents[2] / "docs" / "tisslang.md").read_text(encoding="utf-8")
    section = doc.split("### Rule codes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(T\d{3})` \| (error|warning) \| (.+?) \|$", section, re.M)
    assert rows == [(r.code, r.severity, r.name) for r in RULES.values()]
    # T0xx are errors and T1xx warnings, as the docs say.
    assert all((r.severity == "error") == r.code.startswith("T0") for r in RULES.values())


def test_no_argument_checks_the_current_directory_recursively(tmp_path, monkeypatch, capsys):
    tree(tmp_path, {"a.tiss": SNIPPETS["T001"], "sub/deeper/b.tiss": SNIPPETS["T101"],
                    "sub/notes.txt": "}", ".hidden/c.tiss": "}\n", "venv/d.tiss": "}\n"})
    monkeypatch.chdir(tmp_path)
    assert cli.main(["check"]) == 1
    err = capsys.readouterr().err
    assert "a.tiss:1:6: error: T001 undefined variable 'x'" in err
    assert "sub/deeper/b.tiss:1:1: warning: T101 unknown directive @nope" in err
    assert ".hidden" not in err and "venv" not in err  # skipped, as ruff skips them
    assert err.splitlines()[-1] == "Found 2 problems (1 error, 1 warning) in 2 files"
    assert cli.main(["check", "sub"]) == 1  # a directory argument
    assert capsys.readouterr().err.splitlines()[-1] == "Found 1 problem (1 warning) in 1 file"


def test_clean_files_say_all_checks_passed(tmp_path, capsys):
    tree(tmp_path, {"a.tiss": CLEAN, "b/c.tiss": CLEAN})
    assert cli.main(["check", str(tmp_path)]) == 0
    assert capsys.readouterr().err == "All checks passed!\n"


def test_an_empty_directory_is_not_an_error(tmp_path, capsys):
    assert cli.main(["check", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert f"no .tiss files under {tmp_path}" in err and "All checks passed!" in err


def test_each_finding_has_its_source_line_and_a_caret(tmp_path, capsys):
    path = tree(tmp_path, {"a.tiss": 'STEP "s" {\n\tLOG "{{ nope }}"\n}\n'}) / "a.tiss"
    assert cli.main(["check", str(path)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith(f"{path}:2:7: error: T001 undefined variable 'nope'")
    assert lines[1] == '    \tLOG "{{ nope }}"'
    assert lines[2] == "    \t     ^"  # the tab kept, so the caret stands under the {{
    assert lines[3] == "Found 1 problem (1 error) in 1 file"


def test_a_syntax_error_counts_as_an_error_and_exits_2(tmp_path, capsys):
    tree(tmp_path, {"bad.tiss": "}\n", "warn.tiss": SNIPPETS["T102"]})
    assert cli.main(["check", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'bad.tiss'}:1:1: error: stray }}" in err
    assert err.splitlines()[-1] == "Found 2 problems (1 error, 1 warning) in 2 files"


def test_select_and_ignore_take_codes_and_prefixes(tmp_path, capsys):
    path = str(tree(tmp_path, {"a.tiss": SNIPPETS["T001"] + SNIPPETS["T101"]
                               + SNIPPETS["T006"]}) / "a.tiss")
    assert cli.main(["check", "--select", "T101", path]) == 1
    assert re.findall(r": (T\d+) ", capsys.readouterr().err) == ["T101"]
    assert cli.main(["check", "--select", "T0", path]) == 1
    assert re.findall(r": (T\d+) ", capsys.readouterr().err) == ["T001", "T006"]
    assert cli.main(["check", "--ignore", "T001,t006", path]) == 1  # lists, any case
    assert re.findall(r": (T\d+) ", capsys.readouterr().err) == ["T101"]
    assert cli.main(["check", "--ignore", "T001", "--ignore", "T1", "--ignore", "T006", path]) == 0
    assert capsys.readouterr().err == "All checks passed!\n"


def test_an_unknown_code_is_a_usage_error_with_a_suggestion(tmp_path, capsys):
    path = str(tree(tmp_path, {"a.tiss": CLEAN}) / "a.tiss")
    assert cli.main(["check", "--select", "T9", path]) == 2
    assert capsys.readouterr().err == (
        "tiss: error: --select T9: no rule has this code; did you mean T009? (the rules are "
        "listed in docs/tisslang.md, 'Rule codes')\n")
    with pytest.raises(SystemExit) as exit_:  # argparse's own message and status
        cli.main(["check", "--output-format", "xml", path])
    assert exit_.value.code == 2 and "invalid choice: 'xml'" in capsys.readouterr().err


def test_inline_suppression_silences_only_its_line_and_codes(tmp_path, capsys):
    source = ('LOG "{{ a }}"  # tiss: ignore[T001]\n'
              'LOG "{{ b }}"  # tiss: ignore[T101]\n'
              'LOG "{{ c }} {{ LAST_RUN.NOPE }}"  # tiss: ignore[T001, T002]\n'
              '@nope 1  # tiss: ignore\n'
              'LOG "{{ d }}"\n')
    path = str(tree(tmp_path, {"a.tiss": source}) / "a.tiss")
    assert cli.main(["check", path]) == 1
    found = re.findall(r":(\d+):\d+: \w+: (T\d+) ", capsys.readouterr().err)
    assert found == [("2", "T001"), ("5", "T001")]
    # The language server uses the same checker, so the same lines are silenced there.
    assert [(d.line, d.code) for d in tisslang.check(tisslang.parse(source))] == [
        (2, "T001"), (5, "T001")]


def test_json_output(tmp_path, capsys):
    tree(tmp_path, {"a.tiss": SNIPPETS["T001"], "b.tiss": "}\n"})
    assert cli.main(["check", "--output-format", "json", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data[0] == {"file": str(tmp_path / "a.tiss"), "line": 1, "column": 6,
                       "severity": "error", "code": "T001", "rule": "undefined variable",
                       "message": data[0]["message"]}
    assert data[0]["message"].startswith("undefined variable 'x'")
    assert data[1]["code"] is None and data[1]["rule"] == "syntax error"
    assert data[1]["message"].startswith("stray }")
    assert captured.err == ""  # stdout is the JSON and nothing else
    assert cli.main(["check", "--output-format", "json", str(tmp_path / "a.tiss"),
                     "--ignore", "T001"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_github_annotations_line_by_line(tmp_path, capsys):
    tree(tmp_path, {"a.tiss": SNIPPETS["T001"] + "@nope 1\n", "we,ird:name.tiss": "}\n",
                    "ok.tiss": CLEAN})
    assert cli.main(["check", "--output-format", "github", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    a, weird = tmp_path / "a.tiss", str(tmp_path / "we,ird:name.tiss")
    weird = weird.replace(":", "%3A").replace(",", "%2C")
    lines = captured.out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"::error file={a},line=1,col=6,title=T001::T001 undefined "
                               "variable 'x': nothing in this script sets it")
    assert ",title=" not in lines[0].split("::", 2)[2]
    assert lines[1].startswith(f"::warning file={a},line=2,col=1,title=T101::T101 unknown "
                               "directive @nope")
    # A path's ',' and ':' are escaped so the runner reads the properties right.
    assert lines[2] == (f"::error file={weird},line=1,col=1,title=syntax error::stray }}: there "
                        "is no open block here to close")
    for line in lines:  # every line one well-formed command
        assert re.fullmatch(r"::(error|warning) file=[^,]+,line=\d+,col=\d+,title=[^,:]+::.+", line)
    assert captured.err == "Found 3 problems (2 errors, 1 warning) in 2 files\n"


def test_github_message_escaping(capsys):
    from tisslang.commands import _github, _Problem

    line = _github(_Problem("a.tiss", 3, 4, "warning", "50% done\nnext", "T102", None))
    assert line == "::warning file=a.tiss,line=3,col=4,title=T102::T102 50%25 done%0Anext"


def test_fmt_takes_directories_and_dot_and_prints_a_summary(tmp_path, monkeypatch, capsys):
    tree(tmp_path, {"a.tiss": UGLY, "b.tiss": CLEAN, "sub/c.tiss": UGLY, "sub/d.tiss": CLEAN,
                    "sub/e.tiss": CLEAN, ".git/x.tiss": UGLY})
    monkeypatch.chdir(tmp_path)
    assert cli.main(["fmt", "--check"]) == 1
    err = capsys.readouterr().err
    assert "would reformat a.tiss" in err and "would reformat sub/c.tiss" in err
    assert err.splitlines()[-1] == "2 files would be reformatted, 3 files already formatted"
    assert cli.main(["fmt"]) == 0
    assert capsys.readouterr().err.splitlines()[-1] == "2 files reformatted, 3 files left unchanged"
    assert (tmp_path / "sub" / "c.tiss").read_text(encoding="utf-8") == CLEAN
    assert (tmp_path / ".git" / "x.tiss").read_text(encoding="utf-8") == UGLY  # never entered
    assert cli.main(["fmt", "sub"]) == 0
    assert capsys.readouterr().err == "3 files left unchanged\n"
    (tmp_path / "sub" / "bad.tiss").write_text("}\n", encoding="utf-8")
    assert cli.main(["fmt", "sub/c.tiss", "sub/bad.tiss"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "1 file left unchanged, 1 file could not be formatted")

"""`tiss run --junit-xml FILE`, checked with the standard library against the JUnit schema CI
systems read (Jenkins' junit-10.xsd, which GitLab, GitHub reporters, Azure and CircleCI accept):
its elements, their attributes and types, the counts, then each field of each testcase."""

import os
import xml.etree.ElementTree as ET

import pytest

from runtime import cli

# The schema, element by element: allowed attributes, required ones, allowed children.
SCHEMA = {
    "testsuites": ({"name", "time", "tests", "failures", "disabled", "errors"}, set(), {"testsuite"}),
    "testsuite": ({"name", "tests", "failures", "errors", "group", "time", "disabled", "skipped", "timestamp",
                   "hostname", "id", "package", "file", "log", "url", "version"}, {"name", "tests"},
                  {"properties", "testcase", "system-out", "system-err", "testsuite"}),
    "testcase": ({"name", "assertions", "time", "classname", "status", "class", "file", "line", "log",
                  "group", "url"}, {"name"}, {"skipped", "error", "failure", "system-out", "system-err"}),
    "failure": ({"message", "type"}, set(), set()),
    "error": ({"message", "type"}, set(), set()),
    "skipped": ({"message"}, set(), set()),
    "system-out": (set(), set(), set()),
    "system-err": (set(), set(), set()),
}
INTEGERS = {"tests", "failures", "errors", "skipped", "disabled", "line"}


def validate(element):
    allowed, required, children = SCHEMA[element.tag]
    assert set(element.attrib) <= allowed, (element.tag, set(element.attrib) - allowed)
    assert required <= set(element.attrib), (element.tag, required - set(element.attrib))
    for name, value in element.attrib.items():
        if name in INTEGERS:
            assert value.isdigit(), (element.tag, name, value)
        elif name == "time":
            assert float(value) >= 0
    for child in element:
        assert child.tag in children, (element.tag, child.tag)
        validate(child)
    if element.tag == "testcase":  # at most one outcome element per testcase
        assert sum(1 for c in element if c.tag in ("failure", "error", "skipped")) <= 1
    if element.tag in ("testsuites", "testsuite"):
        cases = list(element.iter("testcase"))
        assert int(element.get("tests")) == len(cases)
        for attr, tag in (("failures", "failure"), ("errors", "error"), ("skipped", "skipped")):
            if attr in element.attrib:
                assert int(element.get(attr)) == sum(1 for c in cases if c.find(tag) is not None)


@pytest.fixture
def ws(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    return root


def run_junit(tmp_path, ws, scripts, *flags):
    paths = []
    for name, text in scripts.items():
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        paths.append(str(path))
    out = tmp_path / "report.xml"
    code = cli.main(["run", *paths, "--workspace", str(ws), "--junit-xml", str(out), *flags])
    root = ET.parse(out).getroot()
    validate(root)
    return code, root, paths


DEMO = ('TASK "demo"\nSTEP "greet" {\n  RUN "echo hello"\n  ASSERT LAST_RUN.STDOUT == "hello"\n'
        '  LOG "said hello"\n}\nSTEP "check" {\n  RUN "echo collected 3 items; echo oops >&2; exit 3"\n'
        '  ASSERT LAST_RUN.EXIT_CODE == 0\n}\nSTEP "later" { LOG "never" }\nTEARDOWN { LOG "cleaning up" }\n')


def test_each_step_is_a_testcase_with_its_outcome_position_and_output(tmp_path, ws, capsys):
    code, root, (path,) = run_junit(tmp_path, ws, {"demo.tiss": DEMO})
    assert code == 1
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("3", "1", "0")
    assert root.get("skipped") is None  # not an attribute of testsuites in the schema
    (suite,) = root
    assert suite.get("name") == path and suite.get("hostname") and "T" in suite.get("timestamp")
    greet, check, later = suite.findall("testcase")
    classname = ".".join(part for part in os.path.splitext(path)[0].split(os.sep) if part)
    for case, name, line in ((greet, "greet", "2"), (check, "check", "7"), (later, "later", "11")):
        assert case.get("name") == name and case.get("line") == line and case.get("file") == path
        assert case.get("classname") == classname
    assert list(greet.find("system-out").text.splitlines()) == ["$ echo hello", "hello", "said hello"]
    assert greet.find("failure") is None and greet.find("skipped") is None
    failure = check.find("failure")
    assert failure.get("type") == "AssertionFailed"
    assert failure.get("message") == "assertion failed: LAST_RUN.EXIT_CODE == 0 (left is 3, right is 0)"
    assert failure.text.splitlines() == [
        f"{path}:9:3: error: assertion failed: LAST_RUN.EXIT_CODE == 0 (left is 3, right is 0)",
        "      ASSERT LAST_RUN.EXIT_CODE == 0",
        "stdout of the last command (tail):",
        "    collected 3 items",
        "stderr of the last command (tail):",
        "    oops",
    ]
    assert "collected 3 items" in check.find("system-out").text
    assert check.find("system-err").text == "oops\n"
    assert later.find("skipped").get("message") == "not run: an earlier failure stopped the script"
    assert float(greet.get("time")) > 0 and later.get("time") == "0.000"


def test_several_scripts_are_several_testsuites_and_nested_steps_are_named_by_their_path(tmp_path, ws, capsys):
    scripts = {
        "a.tiss": 'STEP "outer" {\n  STEP "inner" { LOG "x" }\n}\n',
        "b.tiss": 'STEP "caught" {\n  TRY {\n    STEP "fails" {\n      ASSERT 1 == 2\n    }\n  } CATCH {\n'
                  '    LOG "handled"\n  }\n}\nCHOOSE {\n  OPTION "first" {\n    ASSERT false\n  }\n'
                  '  OPTION "second" { LOG "ok" }\n}\n',
        "c.tiss": 'ASSERT 1 == 2\nSTEP "never" { LOG "x" }\n',
    }
    code, root, (a, b, c) = run_junit(tmp_path, ws, scripts)
    assert code == 1
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == [a, b, c]
    assert [t.get("name") for t in suites[0]] == ["outer", "outer / inner"]
    cases = {t.get("name"): t for t in suites[1]}
    assert set(cases) == {"caught", "caught / fails", "OPTION first", "OPTION second"}
    # A failure TRY caught does not fail its testcase; it is noted in its output.
    assert cases["caught / fails"].find("failure") is None
    assert "failed, and a TRY caught it: assertion failed: 1 == 2" in cases["caught / fails"].find("system-out").text
    assert "CHOOSE went on to the next option" in cases["OPTION first"].find("skipped").get("message")
    assert suites[1].get("failures") == "0"
    # A failure outside any step is a testcase of its own, so CI sees why the run failed.
    names = [t.get("name") for t in suites[2]]
    assert names == ["never", "(outside any step)"]
    outside = suites[2].findall("testcase")[1].find("failure")
    assert outside.get("message") == "assertion failed: 1 == 2 (left is 1, right is 2)"
    assert outside.text.startswith(f"{c}:1:1: error: ")
    assert root.get("tests") == str(2 + 4 + 2) and root.get("failures") == "1"


def test_deselected_steps_are_left_out_and_the_file_is_replaced_atomically(tmp_path, ws, capsys):
    out = tmp_path / "report.xml"
    out.write_text("old")
    code, root, _ = run_junit(tmp_path, ws, {"k.tiss": 'STEP "build" { LOG "b" }\nSTEP "test" { LOG "t" }\n'},
                              "-k", "test")
    assert code == 0
    assert [t.get("name") for t in root.iter("testcase")] == ["test"]
    assert sorted(os.listdir(tmp_path)) == ["k.tiss", "report.xml", "ws"]  # no temporary left behind


def test_text_xml_cannot_hold_is_escaped_and_the_script_cannot_be_the_report(tmp_path, ws, capsys):
    code, root, (path,) = run_junit(tmp_path, ws, {"e.tiss": 'STEP "ctl" {\n  RUN "printf \'a\\\\033[31mb\\\\n\'"\n}\n'})
    assert code == 0
    assert "a\\x1b[31mb" in next(root.iter("system-out")).text
    assert cli.main(["run", path, "--workspace", str(ws), "--junit-xml", path]) == 2
    assert "is the script itself" in capsys.readouterr().err
    assert cli.main(["run", path, "--workspace", str(ws), "--junit-xml", str(tmp_path / "no" / "dir.xml")]) == 2
    assert "cannot write the JUnit XML file" in capsys.readouterr().err

"""How failures stop a run: the failing step, skipped steps, TEARDOWN, positions, safety."""

import os

import pytest

from runtime.result import FAILED, PASSED, SKIPPED


SCRIPT = '''TASK "failing"
SETUP {
  WRITE "setup.txt" "s"
}
STEP "first" {
  LOG "one"
}
STEP "second" {
  RUN "echo boom >&2; exit 1"
  ASSERT LAST_RUN.EXIT_CODE == 0
  LOG "never"
}
STEP "third" {
  STEP "nested" { LOG "never" }
}
TEARDOWN {
  WRITE "teardown.txt" "ran after {{ LAST_RUN.EXIT_CODE }}"
}
'''


def test_failure_skips_later_steps_and_teardown_runs(run):
    result = run(SCRIPT)
    assert result.status == FAILED and result.exit_code == 1
    statuses = [(s.kind, s.description, s.status) for s in result.all_steps()]
    assert statuses == [
        ("setup", "setup", PASSED),
        ("step", "first", PASSED),
        ("step", "second", FAILED),
        ("step", "third", SKIPPED),
        ("step", "nested", SKIPPED),
        ("teardown", "teardown", PASSED),
    ]
    failure = result.failure
    assert (failure.file, failure.line, failure.column) == ("test.tiss", 10, 3)
    assert failure.message == "assertion failed: LAST_RUN.EXIT_CODE == 0 (left is 1, right is 0)"
    assert failure.stderr_tail == "boom"
    assert failure.source_line == "  ASSERT LAST_RUN.EXIT_CODE == 0"
    assert (run.root / "teardown.txt").read_text() == "ran after 1"
    assert result.logs == ["one"]


def test_failure_in_nested_step_fails_parents_and_skips_siblings(run):
    result = run('STEP "outer" {\n  STEP "a" { ASSERT false }\n  STEP "b" { LOG "x" }\n}\n')
    outer = result.steps[0]
    assert outer.status == FAILED
    assert [c.status for c in outer.children] == [FAILED, SKIPPED]
    assert outer.failure is outer.children[0].failure


def test_teardown_runs_even_when_failure_precedes_it_and_its_failure_is_reported(run):
    result = run('STEP "ok" { LOG "x" }\nTEARDOWN { ASSERT 1 == 2 }\n')
    assert result.status == FAILED
    assert result.teardown_failures and result.teardown_failures[0].line == 2


def test_top_level_failure_outside_steps(run):
    result = run('LOG "a"\nREAD "missing.txt" AS x\nSTEP "later" { LOG "b" }\n')
    assert result.status == FAILED
    assert result.failure.kind == "PathError" and result.failure.line == 2
    assert "no such file" in result.failure.message
    assert [s.status for s in result.steps] == [SKIPPED]


@pytest.mark.parametrize(
    "statement",
    [
        'WRITE "../escape.txt" "x"',
        'WRITE "/tmp/escape-{{ WORKSPACE }}.txt" "x"',
        'READ "/etc/hostname" AS h',
        'MKDIR "../newdir"',
        'DELETE "."',
        'DELETE "link/secret"',
        'WRITE "link/new.txt" "x"',
        'READ "link/secret" AS s',
        'ASSERT FILE "link/secret" EXISTS',
    ],
)
def test_escape_routes_are_refused_in_scripts(run, tmp_path, statement):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    os.symlink(outside, run.root / "link")
    result = run(f'STEP "escape" {{\n  {statement}\n}}\n')
    assert result.status == FAILED
    assert result.failure.kind == "PathError" and result.failure.line == 2
    assert sorted(os.listdir(outside)) == ["secret"]
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "newdir").exists()
    assert run.root.is_dir()


def test_nul_byte_in_path_is_refused(run):
    result = run('WRITE "a\\u0000b" "x"\n')
    assert result.failure.kind == "PathError" and "NUL" in result.failure.message


def test_timeout_leaves_no_process_behind(run, dead):
    result = run(
        'STEP "spawn" {\n  @timeout "500ms"\n  RUN "sleep 60 & echo $! > pid; sleep 60"\n}\n'
    )
    assert result.failure.kind == "Timeout"
    assert dead(int((run.root / "pid").read_text()))

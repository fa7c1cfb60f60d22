"""Each statement of TissLang (docs/tisslang.md §3) run through the interpreter, with its observable effect."""

import os

import pytest

from runtime.result import FAILED, PASSED, SKIPPED


def test_write_heredoc_keeps_blank_lines_and_interpolates(run):
    result = run(
        'VAR name = "world"\n'
        'STEP "w" {\n'
        '    WRITE "out/hello.txt" <<TEXT\n'
        '    Hello, {{ name }}!\n'
        '\n'
        '    bye\n'
        '    TEXT\n'
        "    WRITE 'raw.txt' <<'RAW'\n"
        '    {{ name }} stays\n'
        '    RAW\n'
        '    WRITE "s.txt" "one\\ntwo {{ name }}"\n'
        '}\n'
    )
    assert result.status == PASSED, result.failure
    assert (run.root / "out/hello.txt").read_text() == "Hello, world!\n\nbye\n"
    assert (run.root / "raw.txt").read_text() == "{{ name }} stays\n"
    assert (run.root / "s.txt").read_text() == "one\ntwo world"


def test_read_mkdir_delete(run):
    (run.root / "in.txt").write_text("data\n")
    result = run(
        'STEP "files" {\n'
        '  READ "in.txt" AS text\n'
        '  ASSERT text == "data\\n"\n'
        '  MKDIR "a/b/c"\n'
        '  ASSERT FILE "a/b/c" EXISTS\n'
        '  WRITE "a/b/c/f" "x"\n'
        '  DELETE "in.txt"\n'
        '  DELETE "a" RECURSIVE\n'
        '  ASSERT NOT FILE "a" EXISTS\n'
        '}\n'
    )
    assert result.status == PASSED, result.failure
    assert run.vars["text"] == "data\n"
    assert sorted(os.listdir(run.root)) == []


def test_delete_nonempty_without_recursive_fails_with_hint(run):
    result = run('STEP "d" {\n  MKDIR "t/u"\n  DELETE "t"\n}\n')
    assert result.status == FAILED
    assert "RECURSIVE" in result.failure.message and result.failure.line == 3
    assert (run.root / "t/u").is_dir()


def test_run_sets_last_run_fields(run):
    result = run(
        'STEP "r" {\n'
        '  RUN "printf \'out\\n\\n\'; echo err >&2; exit 4"\n'
        '  ASSERT LAST_RUN.EXIT_CODE == 4\n'
        '  ASSERT LAST_RUN.STDOUT == "out"\n'
        '  ASSERT LAST_RUN.STDERR == "err"\n'
        '  ASSERT LAST_RUN.TIMED_OUT == false\n'
        '  ASSERT LAST_RUN.EXECUTION_TIME >= 0\n'
        '  ASSERT LAST_RUN.COMMAND CONTAINS "exit 4"\n'
        '}\n'
    )
    assert result.status == PASSED, result.failure


def test_run_non_zero_exit_does_not_fail_by_itself(run):
    result = run('STEP "r" { RUN "exit 3" }\n')
    assert result.status == PASSED


def test_run_happens_in_the_workspace(run):
    result = run('STEP "r" {\n  RUN "pwd"\n  ASSERT LAST_RUN.STDOUT == "{{ WORKSPACE }}"\n}\n')
    assert result.status == PASSED, result.failure
    assert run.last["LAST_RUN"]["STDOUT"] == str(run.root)


def test_var_values_and_interpolation_render_json(run):
    result = run(
        'VAR n = 3\n'
        'VAR items = [1, "two", true]\n'
        'VAR obj = {a: 1, "b c": [1, 2]}\n'
        'VAR copy = obj.a\n'
        'LOG "n={{ n }} items={{ items }} obj={{ obj }} a={{ obj.a }}"\n'
    )
    assert result.status == PASSED, result.failure
    assert run.vars["copy"] == 1
    assert result.logs == ['n=3 items=[1, "two", true] obj={"a": 1, "b c": [1, 2]} a=1']


def test_escaped_brace_is_literal(run):
    result = run('LOG "\\{{ not a ref }}"\n')
    assert result.status == PASSED, result.failure
    assert result.logs == ["{{ not a ref }}"]


def test_builtins_task_step_workspace(run):
    result = run(
        'TASK "the task"\n'
        'STEP "outer" {\n'
        '  LOG "{{ TASK.DESCRIPTION }} / {{ STEP.DESCRIPTION }}"\n'
        '  STEP "inner" { LOG "{{ STEP.DESCRIPTION }} in {{ WORKSPACE }}" }\n'
        '}\n'
    )
    assert result.status == PASSED, result.failure
    assert result.logs == ["the task / outer", f"inner in {run.root}"]
    assert result.task == "the task"


def test_if_else_if_else(run):
    source = (
        'IF x == 1 {{\n  LOG "one"\n}} ELSE IF x == 2 {{\n  LOG "two"\n}} ELSE {{\n  LOG "other"\n}}\n'
    )
    for value, expected in (("1", "one"), ("2", "two"), ("9", "other")):
        result = run(source.format(), variables={"x": value})
        assert result.logs == [expected]


def test_if_then_keyword_and_bare_value_truthiness(run):
    result = run(
        'VAR empty = ""\nVAR full = "x"\n'
        'IF empty THEN { LOG "wrong" } ELSE { LOG "empty is false" }\n'
        'IF full { LOG "full is true" }\n'
    )
    assert result.logs == ["empty is false", "full is true"]


def test_try_catch_sets_last_error_and_goes_on(run):
    result = run(
        'STEP "t" {\n'
        '  TRY {\n'
        '    ASSERT 1 == 2\n'
        '    LOG "not reached"\n'
        '  } CATCH {\n'
        '    LOG "{{ LAST_ERROR.KIND }} at {{ LAST_ERROR.LINE }}: {{ LAST_ERROR.MESSAGE }}"\n'
        '  }\n'
        '  LOG "after"\n'
        '}\n'
    )
    assert result.status == PASSED, result.failure
    assert result.logs == [
        "AssertionFailed at 3: assertion failed: 1 == 2 (left is 1, right is 2)",
        "after",
    ]


def test_try_without_catch_swallows(run):
    result = run('TRY { READ "missing" AS x }\nLOG "{{ LAST_ERROR.KIND }}"\n')
    assert result.status == PASSED
    assert result.logs == ["PathError"]


def test_try_catching_a_step_marks_it_caught(run):
    result = run('TRY {\n  STEP "bad" { ASSERT false }\n}\nSTEP "next" { LOG "ok" }\n')
    assert result.status == PASSED and result.exit_code == 0
    bad, nxt = result.steps
    assert bad.status == FAILED and bad.caught and nxt.status == PASSED
    from runtime.report import format_summary

    assert format_summary(result).startswith("PASSED: 1 passed, 1 failed (all caught by TRY) in ")


def test_directive_scope_is_block_and_nested_blocks(run):
    result = run(
        'STEP "a" {\n'
        '  @shell "bash"\n'
        '  RUN "echo ${BASH_VERSION:+bash}"\n'
        '  LOG "{{ LAST_RUN.STDOUT }}"\n'
        '  STEP "nested" {\n'
        '    RUN "echo ${BASH_VERSION:+bash}"\n'
        '    LOG "{{ LAST_RUN.STDOUT }}"\n'
        '  }\n'
        '}\n'
        'STEP "b" {\n'
        '  RUN "echo ${BASH_VERSION:+bash}"\n'
        '  LOG "[{{ LAST_RUN.STDOUT }}]"\n'
        '}\n'
    )
    assert result.status == PASSED, result.failure
    assert result.logs == ["bash", "bash", "[]"]


def test_timeout_directive_kills_and_fails(run):
    result = run('STEP "slow" {\n  @timeout "300ms"\n  RUN "sleep 20"\n}\nSTEP "after" { LOG "x" }\n')
    assert result.status == FAILED
    assert result.failure.kind == "Timeout" and result.failure.line == 3
    assert "@timeout" in result.failure.message
    assert run.last["LAST_RUN"]["TIMED_OUT"] is True
    assert [s.status for s in result.steps] == [FAILED, SKIPPED]


def test_cli_timeout_option_applies(run):
    result = run('RUN "sleep 20"\n', timeout=0.3)
    assert result.failure.kind == "Timeout" and "--timeout" in result.failure.message


def test_log_goes_to_events(run):
    run('STEP "s" { LOG "hello {{ WORKSPACE }}" }\n')
    logs = run.events.named("log")
    assert logs[0]["message"] == f"hello {run.root}" and logs[0]["step"] == "s"


def test_var_cannot_overwrite_builtin(run):
    result = run('VAR LAST_RUN = 1\n')
    assert result.failure.kind == "ReservedName"


def test_request_review_and_pause_with_yes(run):
    result = run('REQUEST_REVIEW "ship it?"\nASSERT LAST_REVIEW.APPROVED == true\nPAUSE "look"\n')
    assert result.status == PASSED, result.failure


def test_unhandled_node_is_a_positioned_error(tmp_path):
    from dataclasses import dataclass

    from runtime.session import Session
    from tisslang import ast

    @dataclass(frozen=True)
    class Teleport(ast.Node):
        target: str

    program = ast.Program(body=(ast.Step(ast.String.of("s"), (Teleport("mars", line=4, column=7),), line=3, column=1),))
    result = Session(tmp_path).run(program, file="x.tiss")
    assert result.failure.kind == "Unsupported"
    assert (result.failure.line, result.failure.column) == (4, 7)
    assert "Teleport" in result.failure.message


def test_step_descriptions_interpolate(run):
    result = run('VAR n = 2\nSTEP "part {{ n }}" {\n  VAR m = 3\n  STEP "inner {{ m }}" { LOG "{{ STEP.DESCRIPTION }}" }\n}\n')
    assert result.status == PASSED, result.failure
    assert [s.description for s in result.all_steps()] == ["part 2", "inner 3"]
    assert result.logs == ["inner 3"]


@pytest.mark.parametrize(
    "directive, message",
    [
        ('@timeout "abc"', '@timeout must be a duration like 30, "30s", "5m" or "500ms", got \'abc\''),
        ('@timeout "-5s"', "@timeout must be a duration"),
        ("@timeout 0", "@timeout must be more than zero seconds, got 0"),
        ('@shell ""', "@shell must name a shell program"),
        ("@shell 3", "@shell must name a shell program"),
        ('@choose "random"', '@choose must be "cheapest" or "first", got "random"'),
    ],
)
def test_bad_directive_values_fail_where_they_are_written(run, directive, message):
    result = run(f'STEP "s" {{\n  LOG "before"\n  {directive}\n  RUN "true"\n}}\n')
    assert result.status == FAILED and result.logs == ["before"]
    assert message in result.failure.message
    assert (result.failure.line, result.failure.column) == (3, 3)
    assert "LAST_RUN" not in run.last  # the RUN after it never started


def test_missing_shell_is_a_clear_failure(run):
    result = run('@shell "no-such-shell-xyz"\nSTEP "s" {\n  RUN "true"\n}\n')
    assert result.failure.kind == "CommandError" and result.failure.line == 3
    assert result.failure.message == "shell 'no-such-shell-xyz' was not found; check the @shell directive"

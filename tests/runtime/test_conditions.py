"""ASSERT and IF conditions: every operator of docs/tisslang.md §5, the comparison rules, and their errors."""

import pytest
from hypothesis import given, settings, strategies as st

from runtime import values
from runtime.result import FAILED, PASSED


@pytest.mark.parametrize(
    "condition",
    [
        "1 == 1", "1 != 2", "1 < 2", "2 <= 2", "3 > 2", "3 >= 3",
        '"abc" CONTAINS "b"', '"abc" NOT CONTAINS "z"',
        '"v1.2.3" MATCHES "^v\\\\d+\\\\.\\\\d+"', '"" IS_EMPTY', '"x" IS_NOT_EMPTY',
        "list CONTAINS 2", 'obj CONTAINS "k"', "emptylist IS_EMPTY",
        'FILE "here.txt" EXISTS', 'NOT FILE "nothere.txt" EXISTS',
        "1 == 1 AND 2 == 2", "1 == 2 OR 2 == 2", "NOT 1 == 2", "NOT (1 == 2 AND 1 == 1)",
        '"10" > 9', '"2.50" == 2.5', 'num == "3"', "true == true", '"b" > "a"', '"10" > "9"',
        '"1.0" == "1"', '"007" == 7', '"1.10" == "1.1"', '"abc" != "ABC"',
        "[1, 2] == [1, 2]",
    ],
)
def test_true_conditions_pass(run, condition):
    (run.root / "here.txt").write_text("x")
    source = (
        'VAR list = [1, 2, 3]\nVAR obj = {k: 1}\nVAR emptylist = []\nVAR num = 3\n'
        f"ASSERT {condition}\n"
    )
    result = run(source)
    assert result.status == PASSED, result.failure


@pytest.mark.parametrize(
    "condition, detail",
    [
        ("1 == 2", "left is 1, right is 2"),
        ('"abc" CONTAINS "z"', '"abc" does not contain "z"'),
        ('"abc" NOT CONTAINS "b"', '"abc" contains "b"'),
        ('"abc" MATCHES "^b"', '"abc" does not match "^b"'),
        ('"x" IS_EMPTY', 'the value is "x"'),
        ('FILE "nope" EXISTS', '"nope" does not exist in the workspace'),
        ("1 == 1 AND 2 == 3", "left is 2, right is 3"),
    ],
)
def test_false_assert_names_condition_and_values(run, condition, detail):
    result = run(f'STEP "s" {{\n    ASSERT {condition}\n}}\n')
    assert result.status == FAILED
    failure = result.failure
    assert failure.kind == "AssertionFailed"
    assert (failure.line, failure.column) == (2, 5)
    assert failure.message == f"assertion failed: {condition} ({detail})"
    assert failure.source_line == f"    ASSERT {condition}"


def test_numeric_stdout_compares_with_number(run):
    result = run('RUN "echo 3"\nASSERT LAST_RUN.STDOUT == 3\nASSERT LAST_RUN.STDOUT < 10\n')
    assert result.status == PASSED, result.failure


def test_type_mismatch_names_line_and_both_values(run):
    result = run('VAR s = "abc"\nSTEP "x" {\n  ASSERT s > 3\n}\n')
    failure = result.failure
    assert failure.kind == "TypeMismatch"
    assert (failure.line, failure.column) == (3, 10)
    assert failure.message == 'cannot compare string "abc" > number 3'


def test_boolean_and_string_do_not_compare(run):
    result = run('ASSERT true == "true"\n')
    assert result.failure.kind == "TypeMismatch"
    assert 'boolean true == string "true"' in result.failure.message


def test_undefined_variable_is_positioned_with_hint(run):
    result = run('VAR greeting = "hi"\nSTEP "s" {\n  LOG "say {{ greting }}"\n}\n')
    failure = result.failure
    assert failure.kind == "UndefinedReference"
    assert failure.line == 3 and failure.column > 3
    assert "greting" in failure.message and "did you mean greeting?" in failure.message


def test_builtin_not_set_yet(run):
    result = run('ASSERT LAST_RUN.EXIT_CODE == 0\n')
    assert result.failure.kind == "UndefinedReference"
    assert result.failure.message == (
        "undefined reference LAST_RUN.EXIT_CODE: LAST_RUN is not set, no RUN has run yet"
    )


def test_missing_field_lists_fields(run):
    result = run('RUN "true"\nLOG "{{ LAST_RUN.EXITCODE }}"\n')
    assert "no field EXITCODE" in result.failure.message and "EXIT_CODE" in result.failure.message


def test_invalid_regex_is_a_failure_not_a_traceback(run):
    result = run('ASSERT "a" MATCHES "("\n')
    assert result.failure.kind == "InvalidRegex" and result.failure.line == 1


def test_file_exists_refuses_escapes(run):
    result = run('ASSERT NOT FILE "../x" EXISTS\n')
    assert result.failure.kind == "PathError" and "climbs out" in result.failure.message


# -- the comparison rules themselves, against Python's own arithmetic -------------------------

numbers = st.one_of(st.integers(-10**6, 10**6), st.floats(-1e6, 1e6, allow_nan=False))


@settings(max_examples=200, deadline=None)
@given(numbers, numbers, st.sampled_from(["==", "!=", "<", "<=", ">", ">="]))
def test_numeric_strings_compare_like_numbers(a, b, op):
    expected = {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
    assert values.compare(op, a, b) is expected
    assert values.compare(op, repr(a), b) is expected
    assert values.compare(op, a, f" {a!r}\n" if False else repr(b)) is expected


@settings(max_examples=100, deadline=None)
@given(st.text(), st.text())
def test_string_equality_is_exact_and_contains_is_substring(a, b):
    numeric = values.as_number(a) is not None and values.as_number(b) is not None
    expected = values.as_number(a) == values.as_number(b) if numeric else a == b
    assert values.compare("==", a, b) is expected
    assert values.contains(a, b) is (b in a)


@settings(max_examples=200, deadline=None)
@given(st.one_of(numbers.map(repr), st.text(max_size=4)), st.one_of(numbers.map(repr), st.text(max_size=4)))
def test_equality_agrees_with_ordering(a, b):
    # One rule for every operator: == holds exactly when both <= and >= hold.
    assert values.compare("==", a, b) is (values.compare("<=", a, b) and values.compare(">=", a, b))
    assert values.compare("!=", a, b) is not values.compare("==", a, b)


def test_two_numeric_strings_compare_as_numbers_for_every_operator(run):
    result = run(
        'VAR a = "1.0"\nVAR b = "1"\nASSERT a == b AND a <= b AND a >= b AND NOT a != b\n'
        'ASSERT "10" > "9" AND " 3\\n" == "3" AND "abc" != "ABC" AND "b" > "a"\n'
        'ASSERT ["1.0", "x"] CONTAINS "1"\n'
    )
    assert result.status == PASSED, result.failure


def test_render_is_json_for_containers():
    assert values.render([1, "a", None, {"k": False}]) == '[1, "a", null, {"k": false}]'
    assert values.render(True) == "true" and values.render(2.5) == "2.5"


def test_contains_on_a_number_says_what_it_needs(run):
    result = run('VAR x = 3\nASSERT x CONTAINS 1\n')
    assert result.failure.kind == "TypeMismatch" and (result.failure.line, result.failure.column) == (2, 8)
    assert result.failure.message == "CONTAINS needs a string, list or object on its left, got number 3"

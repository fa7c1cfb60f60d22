"""`--dry-run` plans show each statement as source text, with the parentheses its meaning needs."""

import tisslang
from runtime.plan import format_plan


def test_conditions_keep_their_grouping_and_strings_their_escapes():
    program = tisslang.parse(
        'VAR a = true\nVAR b = false\n'
        'ASSERT NOT (a OR b)\n'
        'IF (a OR b) AND NOT a {\n    LOG "tab\\there {{ a }}"\n}\n'
    )
    plan = format_plan(program)
    assert "ASSERT NOT (a OR b)" in plan
    assert "IF (a OR b) AND NOT a" in plan
    assert 'LOG "tab\\there {{ a }}"' in plan
    # What the plan shows parses back to the same condition.
    assert tisslang.parse("ASSERT NOT (a OR b)").body[0] == program.body[2]

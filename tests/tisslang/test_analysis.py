"""tisslang.analysis: tolerant parsing, variable sites, node_at and the built-in docs."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

from hypothesis import event, given, settings
from hypothesis.errors import InvalidArgument
from hypothesis import strategies as st
from tiss_strategies import programs

import tisslang
from tisslang import ast, checker
from tisslang.analysis import BUILTIN_DOCS, node_at, parse_tolerant, reparse, variable_sites

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.tiss"))
TEXTS = [p.read_text(encoding="utf-8") for p in EXAMPLES]


def test_a_valid_script_parses_whole():
    outcome = parse_tolerant('STEP "a" {\n    RUN "x"\n}\n')
    assert outcome.error is None and outcome.partial is None
    assert outcome.best == tisslang.parse('STEP "a" {\n    RUN "x"\n}\n')


def test_what_parsed_before_a_syntax_error_is_kept():
    source = 'VAR a = 1\nSTEP "one" {\n    RUN "x"\n    ASSERT ==\n}\nSTEP "two" { RUN "y" }\n'
    outcome = parse_tolerant(source)
    assert outcome.program is None
    assert (outcome.error.line, outcome.error.column) == (4, 12)
    assert outcome.partial_lines == 3
    assert outcome.partial == tisslang.parse('VAR a = 1\nSTEP "one" {\n    RUN "x"\n}\n')


def test_an_unclosed_heredoc_keeps_the_lines_above_it():
    outcome = parse_tolerant('RUN "a"\nWRITE "f" <<EOF\nbody\n')
    assert outcome.error.message.startswith("heredoc <<EOF is never closed")
    assert outcome.partial == tisslang.parse('RUN "a"\n')


def test_nothing_parsed_gives_no_partial_tree():
    outcome = parse_tolerant("RUNN x\n")
    assert outcome.error is not None and outcome.best is None


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(TEXTS), st.integers(0, 10_000), st.text(max_size=8))
def test_any_cut_and_splice_of_an_example_never_raises(text, cut, junk):
    cut %= len(text) + 1
    source = text[:cut] + junk + text[cut:]
    outcome = parse_tolerant(source)
    assert (outcome.program is None) == (outcome.error is not None)
    if outcome.partial is not None:
        assert all(stmt.line <= outcome.partial_lines for stmt in outcome.partial.body)


def _site_texts(source: str):
    program = tisslang.parse(source)
    lines = source.split("\n")
    for site in variable_sites(program, lines):
        assert site.line == site.end_line
        yield site, lines[site.line - 1][site.column - 1:site.end_column - 1]


def test_every_variable_site_spans_exactly_its_name():
    for text in TEXTS + ['VAR  x = 1\nREAD "f" AS y\nPROMPT_AGENT "p" INTO z\n'
                         'LOG "{{x}} {{ y }} \\{ {{   z }}"\nWRITE "o" <<E\n  {{ x }}\n  E\n']:
        for site, written in _site_texts(text):
            assert written == site.name


def test_definitions_and_references_are_told_apart():
    sites = list(_site_texts('VAR x = 1\nASSERT x == 1\nREAD "f" AS x\n'))
    assert [(s.definition, s.line, s.column) for s, _ in sites] == [
        (True, 1, 5), (False, 2, 8), (True, 3, 13)]


def test_node_at_finds_the_innermost_node():
    program = tisslang.parse('ASSERT LAST_RUN.EXIT_CODE == 0\n')
    assert isinstance(node_at(program, 1, 8), ast.Ref)
    assert isinstance(node_at(program, 1, 1), ast.Assert)
    assert node_at(program, 1, 3) is None


def test_builtin_docs_describe_exactly_the_checkers_builtins():
    assert set(BUILTIN_DOCS) == set(checker.BUILTINS)
    for name, fields in checker.BUILTINS.items():
        what, docs = BUILTIN_DOCS[name]
        assert what and set(docs) == set(fields), name
        assert all(docs.values())


def test_node_at_agrees_with_a_walk_of_every_node():
    for text in TEXTS:
        program = tisslang.parse(text)
        innermost: dict[tuple[int, int], ast.Node] = {}
        for node in tisslang.walk(program):
            if node is program:
                continue
            key = (node.line, node.column)
            other = innermost.get(key)
            if other is None or (node.end_line, node.end_column) <= (other.end_line, other.end_column):
                innermost[key] = node
        for (line, column), node in innermost.items():
            assert node_at(program, line, column) is node, (line, column)


# --- reparse: typing within lines ------------------------------------------------------------

NESTED = '''\
#TISS! a=b
TASK "t" {
    @model "echo"  # a comment
    VAR n = [1, {k: "v"}]
    STEP "outer" {
        IF n CONTAINS 1 THEN {
            RUN "echo {{ n }}"   # trailing
        } ELSE IF false {
            LOG "x"
        }
        # between
        ELSE {
            TRY {
                WRITE "f" <<EOF
                body {{ n }} IF {
                EOF
            } CATCH {
                LOG "{{ LAST_ERROR.MESSAGE }}"
            }
        }
        CHOOSE {
            OPTION "a" { RUN "a" }
            STEP "b" {
                RUN "b"; RUN "c"
            }
        }
    }
}
'''
PIECES = ["", " ", "x", "1", '"', "'", "{", "}", "<<EOF", "EOF", "#", "RUN", "STEP", "ELSE",
          "{{ n }}", "\\", "[", "]", "TASK", "SETUP", ";", "==", "OPTION", "=", "\t"]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(TEXTS + [NESTED]), st.data())
def test_reparse_gives_exactly_what_a_full_parse_gives(text, data):
    lines = text.split("\n")
    new_lines = list(lines)
    for _ in range(data.draw(st.integers(1, 2))):
        i = data.draw(st.integers(0, len(lines) - 1))
        line = new_lines[i]
        a = data.draw(st.integers(0, len(line)))
        b = data.draw(st.integers(a, min(len(line), a + 4)))
        new_lines[i] = line[:a] + data.draw(st.sampled_from(PIECES)) + line[b:]
    old = tisslang.parse(text)
    _same_as_a_full_parse(old, lines, new_lines)


def test_reparse_of_a_string_edit_in_a_nested_step():
    lines = NESTED.split("\n")
    new = list(lines)
    new[6] = new[6].replace("echo", "printf")
    fast = reparse(tisslang.parse(NESTED), lines, new)
    assert fast is not None and _exact(fast) == _exact(tisslang.parse("\n".join(new)))


def test_reparse_declines_what_it_cannot_do_exactly():
    lines = NESTED.split("\n")
    program = tisslang.parse(NESTED)
    header = ["#TISS! a=c"] + lines[1:]
    assert reparse(program, lines, header) is None  # the header line
    shared = list(lines)
    shared[23] = shared[23].replace('"c"', '"d"')  # RUN "b"; RUN "c": no statement owns it alone
    fast = reparse(program, lines, shared)  # ... so the STEP around them is parsed again
    assert fast is not None and _exact(fast) == _exact(tisslang.parse("\n".join(shared)))


def _exact(tree: ast.Program):
    """What a reparse must reproduce: every field, position and comment (to_json) and every
    field kept out of equality (positions again, If.else_line, Try.catch_line), node by node."""
    return tree.to_json(), [
        (type(node).__name__, *(getattr(node, f.name) for f in dataclasses.fields(node)
                                if not f.compare))
        for node in tisslang.walk(tree)]


def _same_as_a_full_parse(old: ast.Program, lines: list[str], new_lines: list[str]):
    """reparse against a full parse of the new lines; the reparsed tree (or None)."""
    before = _exact(old)
    fast = reparse(old, lines, new_lines)
    assert _exact(old) == before  # the old tree is never changed
    try:
        full = tisslang.parse("\n".join(new_lines))
    except tisslang.TissSyntaxError:
        assert fast is None
        _event("the new text does not parse")
        return None
    _event("reparsed" if fast is not None else "declined (a full parse)")
    if fast is not None:
        assert _exact(fast) == _exact(full)
        assert tisslang.format(fast) == tisslang.format(full)  # layout (ELSE / CATCH lines) too
    return fast


def _event(what: str) -> None:
    """Counted by hypothesis (``--hypothesis-show-statistics``) inside a property test."""
    try:
        event(what)
    except InvalidArgument:  # not inside a hypothesis test
        pass


# --- reparse: lines added and removed -------------------------------------------------------

# Every node type, every statement and block form, heredocs (raw, interpolating, empty), lists and
# objects over several lines, comments in every kind of place, and a header.
EVERY = '''\
#TISS! Language=Shell Mode=test
# a comment under the header
TASK "every construct" {
    VAR first = 1  # after the first statement
    @timeout "30s"
    @quiet
    SETUP "prepare" {
        MKDIR "build/{{ first }}"
    }

    # a comment line between statements
    VAR nested = [
        1, 2.5, -3e2, true, false,   # inside a list
        {name: "n", "quoted key": [x.0, {deep: LAST_RUN.STDOUT}]},
        "a {{ first }} b"
    ]
    VAR empty = {}
    SET_BUDGET TOKENS = 1000
    STEP "write" {
        WRITE "plain.txt" "one {{ nested.0 }} two\\n"
        WRITE "raw.sh" <<'SH'
        #!/bin/sh
        echo {{ not_interpolated }} # not a comment
        SH
        WRITE "cooked.txt" <<EOF
          indented {{ first }} and {{ nested.1 }}

        last line
        EOF
        WRITE "empty.txt" <<E
        E
        READ "plain.txt" AS content
        PROMPT_AGENT "summarise {{ content }}" INTO summary
        PROMPT_AGENT "no answer kept"
    }
    IF first == 1 AND NOT (summary IS_EMPTY OR content IS_NOT_EMPTY) THEN {
        LOG "one"
    } ELSE IF content CONTAINS "x" {
        LOG "contains"   # trailing
    }
    # between the brace and ELSE
    ELSE {
        ASSERT content NOT CONTAINS 'y' AND content MATCHES "^o"
        ASSERT FILE "plain.txt" EXISTS
        ASSERT LENGTH nested > 2
        ASSERT true
    }
    TRY {
        RUN "false"
    }
    # before CATCH
    CATCH {
        LOG "{{ LAST_ERROR.MESSAGE }}"
    }
    TRY { RUN "no catch" }
    CHOOSE {
        OPTION "a" { RUN "a" }
        STEP "b" {
            RUN "b"; RUN "c"
        }
    }
    FOR item IN nested {
        LOG "{{ item }}"
    }
    FOR path IN FILES "*.txt" { DELETE "{{ path }}" }
    FOR row IN LINES content {
        RETRY 3 DELAY "1s" {
            RUN "echo {{ row }}"
        }
        RETRY 2 { PAUSE "again" }
    }
    PARALLEL {
        RUN "a"
        RUN "b"
    }
    ESTIMATE_COST {
        PROMPT_AGENT "cost?"
    }
    REQUEST_REVIEW "look at {{ summary }}"
    TEARDOWN {
        DELETE "build" RECURSIVE
        DELETE "tmp"
    }
}
# the end
'''
NODE_TYPES = {cls for cls in vars(ast).values()
              if inspect.isclass(cls) and issubclass(cls, ast.Node) and cls is not ast.Node}


def test_the_sample_holds_every_node_type():
    assert {type(node) for node in tisslang.walk(tisslang.parse(EVERY))} == NODE_TYPES


def test_a_line_added_near_the_top_moves_every_later_node():
    lines = EVERY.split("\n")
    at = lines.index("    VAR first = 1  # after the first statement") + 1
    program = tisslang.parse(EVERY)
    for added in ([""], ["    "], ['    LOG "new"'], ["", "    # two lines"]):
        new_lines = lines[:at] + added + lines[at:]
        fast = _same_as_a_full_parse(program, lines, new_lines)
        assert fast is not None
        moved = {type(node) for node in tisslang.walk(fast) if node.line > at + 1}
        assert moved == NODE_TYPES - {ast.Program, ast.Task}  # all but those holding the edit
        # What lies above the edit is shared with the old tree, not copied (a new statement
        # after the VAR is parsed alone and spliced into the TASK's block).
        assert fast.comments[0] is program.comments[0]
        assert fast.body[0].description is program.body[0].description
        assert fast.body[0].body[0] is program.body[0].body[0]
        # ... and the line removed again gives the old tree back.
        back = reparse(fast, new_lines, lines)
        assert back is not None and _exact(back) == _exact(program)


def test_enter_and_backspace_inside_a_statement_parse_only_that_statement():
    lines = EVERY.split("\n")
    program = tisslang.parse(EVERY)
    log = lines.index('        LOG "contains"   # trailing')
    split = lines[:log] + ['        LOG "con', 'tains"   # trailing'] + lines[log + 1:]
    assert reparse(program, lines, split) is None  # a string broken in two: not a statement
    cut = lines.index("        last line")  # a heredoc body line removed and one added
    below = ['        LOG "contains"', "        # below"]  # a comment line added after it
    for new_lines in (lines[:cut] + lines[cut + 1:],
                      lines[:cut] + ["", "          new"] + lines[cut:],
                      lines[:log] + below + lines[log + 1:]):
        assert _same_as_a_full_parse(program, lines, new_lines) is not None
    nested = lines.index("        1, 2.5, -3e2, true, false,   # inside a list")
    two = lines[nested].split("#")[0] + lines[nested + 1].lstrip()  # a list's lines joined
    joined = lines[:nested] + [two] + lines[nested + 2:]
    split = lines[:nested] + ["        1,", "        2.5, -3e2, true, false,"] + lines[nested + 1:]
    for new_lines in (joined, split, lines[:nested] + lines[nested + 1:]):
        assert _same_as_a_full_parse(program, lines, new_lines) is not None


def test_an_edit_in_an_option_parses_its_choose_again():
    lines = EVERY.split("\n")
    program = tisslang.parse(EVERY)
    choose = lines.index("    CHOOSE {")
    option = lines.index('        OPTION "a" { RUN "a" }')
    for new_lines in (lines[:choose + 1] + ["        "] + lines[choose + 1:],  # Enter after `{`
                      lines[:option] + ['        OPTION "a" { RUN "b" }'] + lines[option + 1:],
                      lines[:option] + lines[option + 1:]):
        fast = _same_as_a_full_parse(program, lines, new_lines)
        assert fast is not None  # an OPTION never parses alone: its CHOOSE is parsed again
        # ... and only that: the statements before it are the old tree's.
        assert fast.body[0].body[0] is program.body[0].body[0]


def test_reparse_declines_line_edits_it_cannot_do_exactly():
    lines = EVERY.split("\n")
    program = tisslang.parse(EVERY)
    assert reparse(program, lines, [""] + lines) is None  # above the header
    # A comment line above the TASK or after it: lines between top-level statements, parsed
    # alone (nothing) and spliced in.
    for new_lines in (lines[:1] + ["# new"] + lines[1:], lines[:-1] + ["# new"] + lines[-1:]):
        assert _same_as_a_full_parse(program, lines, new_lines) is not None
    closing = lines.index("        EOF")
    unclosed = lines[:closing] + lines[closing + 1:]
    assert reparse(program, lines, unclosed) is None  # a heredoc left open
    brace = lines.index("    }", lines.index("    SETUP \"prepare\" {"))
    # the SETUP's closing brace removed: the TASK would close there; no statement parses alone
    assert reparse(program, lines, lines[:brace] + lines[brace + 1:]) is None


def test_reparse_keeps_the_depth_limit():
    depth = 99
    lines = ['STEP "s" {'] * depth + ['RUN "x"'] + ["}"] * depth
    program = tisslang.parse("\n".join(lines))
    at = depth  # the RUN, at depth 100
    deeper = lines[:at] + ['STEP "x" {', 'RUN "y" }'] + lines[at + 1:]  # depth 101
    assert _same_as_a_full_parse(program, lines, deeper) is None
    same = lines[:at] + ['STEP "x" {', '}'] + lines[at + 1:]  # depth 100
    assert _same_as_a_full_parse(program, lines, same) is not None


def test_every_line_edit_of_the_samples_gives_what_a_full_parse_gives():
    """Enter after each line (with and without a new statement), each line removed, split,
    joined with the next and repeated: each result equals a full parse."""
    done = declined = 0
    for text in (EVERY, NESTED):
        lines = text.split("\n")
        program = tisslang.parse(text)
        for i, line in enumerate(lines):
            indent = line[:len(line) - len(line.lstrip())]
            half = len(line) // 2
            edits = [lines[:i + 1] + [indent] + lines[i + 1:],
                     lines[:i + 1] + [indent + 'LOG "new"'] + lines[i + 1:],
                     lines[:i] + lines[i + 1:],
                     lines[:i] + [line[:half], indent + line[half:]] + lines[i + 1:],
                     lines[:i] + [line + " " + lines[i + 1].lstrip()] + lines[i + 2:]
                     if i + 1 < len(lines) else None,
                     lines[:i + 1] + [line] + lines[i + 1:]]
            for new_lines in edits:
                if new_lines is None or len(new_lines) == 0:
                    continue
                fast = _same_as_a_full_parse(program, lines, new_lines)
                done += fast is not None
                declined += fast is None
    print(f"{done} reparsed, {declined} declined")
    assert done > 400 and declined > 0, (done, declined)


HARMLESS = ["", "    ", "        # a comment", '        LOG "new"', '    RUN "x"  # and a comment']
LINE_POOL = ["", "    ", '        LOG "new"', "    # a comment", "}", "    } ELSE {", "} CATCH {",
             'RUN "x"', "EOF", '    WRITE "f" <<EOF', '        STEP "s" {', "    ]", "1,", "ELSE",
             "#TISS! a=b", '    VAR v = [', "        {{ n }}", "        OPTION \"o\" {"]


@st.composite
def commented_programs(draw):
    """A generated program as the formatter writes it, with comments added at line ends and
    on lines of their own (kept only where the result still parses)."""
    text = tisslang.format(draw(programs()))
    lines = text.split("\n")
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        if draw(st.booleans()):
            lines[i] = lines[i] + "  # end"
        else:
            lines.insert(i, "    # own line")
    commented = "\n".join(lines)
    try:
        tisslang.parse(commented)
    except tisslang.TissSyntaxError:
        return text
    return commented


@st.composite
def line_edits(draw, lines: list[str]) -> list[str]:
    """Lines added, removed, replaced, split (Enter) or joined (Backspace at a line start)."""
    def some(low: int, high: int) -> list[str]:
        source = st.sampled_from(HARMLESS) | st.sampled_from(LINE_POOL) | st.sampled_from(lines)
        return draw(st.lists(source, min_size=low, max_size=high))

    new = list(lines)
    i = draw(st.integers(0, len(lines) - 1))
    j = draw(st.integers(i, min(len(lines), i + 4)))
    kind = draw(st.sampled_from(["insert", "delete", "replace", "split", "join"]))
    if kind == "insert":
        new[i:i] = some(1, 3)
    elif kind == "delete":
        del new[i:max(j, i + 1)]
    elif kind == "replace":
        new[i:j] = some(0, 3)
    elif kind == "split":
        cut = draw(st.integers(0, len(new[i])))
        indent = draw(st.sampled_from(["", "    ", "        "]))
        new[i:i + 1] = [new[i][:cut], indent + new[i][cut:]]
    elif i + 1 < len(new):
        new[i:i + 2] = [new[i] + draw(st.sampled_from(["", " "])) + new[i + 1].lstrip()]
    return new or [""]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(TEXTS + [NESTED, EVERY]) | commented_programs(), st.data())
def test_reparse_after_lines_added_or_removed_gives_exactly_what_a_full_parse_gives(text, data):
    lines = text.split("\n")
    new_lines = data.draw(line_edits(lines))
    if data.draw(st.booleans()):  # and sometimes an edit within a line as well
        i = data.draw(st.integers(0, len(new_lines) - 1))
        a = data.draw(st.integers(0, len(new_lines[i])))
        new_lines[i] = new_lines[i][:a] + data.draw(st.sampled_from(PIECES)) + new_lines[i][a:]
    _same_as_a_full_parse(tisslang.parse(text), lines, new_lines)


# --- reparse: whole statements added, removed or repeated between the statements of a block ---

MANY_STEPS = "#TISS! Language=Shell\nTASK \"many\" {\n    @timeout \"30s\"\n    SETUP {\n" \
    "        RUN \"prepare\"\n    }\n" + "".join(
        f'    STEP "s{k}" {{\n        RUN "echo {k}"\n'
        f'        IF {k} > 1 THEN {{\n            LOG "big"  # {k}\n        }}\n'
        f'        FOR x IN [1,\n                  2] {{\n'
        f'            LOG "{{{{ x }}}}"\n        }}\n'
        f'    }}\n' + ("    # between steps\n\n" if k % 3 == 0 else "")
        for k in range(12)) + "    TEARDOWN { RUN \"clean\" }\n}\n# the end\n"
# Statements (and lines that are not) to type between statements; each is indented as the
# statement it is put next to.
NEW_STATEMENTS = [
    ['LOG "new"'], ["# a comment"], [""], ['RUN "a"; RUN "b"'],
    ['STEP "new" {', '    RUN "x"', "}"], ['IF a == 1 { LOG "y" } ELSE { LOG "z" }'],
    ["WRITE \"f\" <<EOF", "    body {{ a }}", "EOF"], ['VAR v = [1,', '    {k: "v"}]'],
    ['TRY {', '    RUN "t"', '}', '# c', 'CATCH { LOG "c" }'], ["@quiet"],
    ['SETUP { RUN "s" }'], ['TEARDOWN {', '}'], ['TASK "second" { }'], ['OPTION "o" { }'],
    ['ELSE { LOG "e" }'], ['CATCH { LOG "c" }'], ["}"], ['STEP "open" {'], ["<<EOF"],
    ['CHOOSE { OPTION "a" { } }'],
]


def _whole_statements(program: ast.Program, lines: list[str]):
    """Every statement of every block (the top level too) that owns its lines whole, with the
    depth of its block."""
    stack = [(program, 0)]
    while stack:
        node, depth = stack.pop()
        for _, body in tisslang.statements.blocks(node):
            for stmt in body:
                before = lines[stmt.line - 1][:stmt.column - 1]
                after = lines[stmt.end_line - 1][stmt.end_column - 1:].strip()
                if not before.strip() and (not after or after.startswith("#")):
                    yield stmt, depth
                stack.append((stmt, depth + 1))


@st.composite
def statement_edits(draw, text: str) -> list[str]:
    """A whole statement removed, repeated, or a new one (or something that is not one) typed
    before or after a whole statement, at any depth."""
    lines = text.split("\n")
    program = tisslang.parse(text)
    found = sorted(_whole_statements(program, lines), key=lambda pair: pair[0].line)
    if not found:
        return lines
    stmt, _ = draw(st.sampled_from(found))
    indent = lines[stmt.line - 1][:stmt.column - 1]
    own = lines[stmt.line - 1:stmt.end_line]
    kind = draw(st.sampled_from(["before", "after", "delete", "duplicate"]))
    if kind == "delete":
        return lines[:stmt.line - 1] + lines[stmt.end_line:]
    if kind == "duplicate":
        return lines[:stmt.end_line] + own + lines[stmt.end_line:]
    other, _ = draw(st.sampled_from(found))
    new = draw(st.sampled_from(NEW_STATEMENTS + [lines[other.line - 1:other.end_line]]))
    new = [indent + line if line and line is not lines[other.line - 1] else line
           for line in new]
    at = stmt.line - 1 if kind == "before" else stmt.end_line
    return lines[:at] + new + lines[at:]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(TEXTS + [NESTED, EVERY, MANY_STEPS]) | commented_programs(), st.data())
def test_reparse_of_whole_statements_added_or_removed_gives_what_a_full_parse_gives(text, data):
    lines = text.split("\n")
    new_lines = data.draw(statement_edits(text))
    if data.draw(st.integers(0, 3)) == 0:  # and sometimes a second one next to the first
        again = "\n".join(new_lines)
        try:
            tisslang.parse(again)
        except tisslang.TissSyntaxError:
            pass
        else:
            new_lines = data.draw(statement_edits(again))
    _same_as_a_full_parse(tisslang.parse(text), lines, new_lines)


def test_every_statement_added_or_removed_between_statements_is_reparsed_exactly():
    """Each whole statement of the samples removed and repeated, and each new statement put
    before and after it: every result equals a full parse, and those that parse are all
    reparsed (none gives up), statements outside the block involved shared with the old tree."""
    done = 0
    for text in (EVERY, NESTED, MANY_STEPS):
        lines = text.split("\n")
        program = tisslang.parse(text)
        for stmt, _ in _whole_statements(program, lines):
            if type(stmt) is ast.Task:
                continue  # the TASK removed or repeated: never reparsed
            indent = lines[stmt.line - 1][:stmt.column - 1]
            edits = [lines[:stmt.line - 1] + lines[stmt.end_line:],
                     lines[:stmt.end_line] + lines[stmt.line - 1:stmt.end_line]
                     + lines[stmt.end_line:]]
            for new in (['LOG "new"'], ['STEP "n" {', '    RUN "x"', "}"], ["# c", ""]):
                new = [indent + line for line in new]
                edits.append(lines[:stmt.line - 1] + new + lines[stmt.line - 1:])
                edits.append(lines[:stmt.end_line] + new + lines[stmt.end_line:])
            for new_lines in edits:
                try:
                    tisslang.parse("\n".join(new_lines))
                except tisslang.TissSyntaxError:
                    assert reparse(program, lines, new_lines) is None
                    continue
                fast = _same_as_a_full_parse(program, lines, new_lines)
                assert fast is not None, (stmt, new_lines)
                done += 1
    assert done > 500, done


def _steps_and_lines():
    lines = MANY_STEPS.split("\n")
    program = tisslang.parse(MANY_STEPS)
    steps = [stmt for stmt in program.body[0].body if type(stmt) is ast.Step]
    return lines, program, steps


def test_a_new_step_between_two_steps_is_parsed_alone_not_the_task():
    lines, program, steps = _steps_and_lines()
    at = steps[1].end_line  # after the second STEP's closing brace
    new_lines = lines[:at] + ['    STEP "new" {', '        RUN "x"', "    }"] + lines[at:]
    fast = _same_as_a_full_parse(program, lines, new_lines)
    assert fast is not None
    task, old_task = fast.body[0], program.body[0]
    assert [type(s).__name__ for s in task.body].count("Step") == len(steps) + 1
    # The statements above it are the old tree's (the TASK was not parsed again).
    assert task.body[:4] == old_task.body[:4]
    assert all(a is b for a, b in zip(task.body[:4], old_task.body[:4]))
    assert task.body[-1].line == old_task.body[-1].line + 3


def test_a_whole_step_removed_and_a_log_before_a_closing_brace():
    lines, program, steps = _steps_and_lines()
    removed = lines[:steps[2].line - 1] + lines[steps[2].end_line:]
    fast = _same_as_a_full_parse(program, lines, removed)
    assert fast is not None and fast.body[0].body[2] is program.body[0].body[2]
    # Back again: the STEP typed in where it was gives the old tree.
    back = reparse(fast, removed, lines)
    assert back is not None and _exact(back) == _exact(program)
    # A LOG at the end of a block, right before its `}`: the STEP's, the IF's, the TASK's.
    for brace in (steps[0].end_line, steps[0].body[1].end_line, program.body[0].end_line):
        indent = lines[brace - 1][:len(lines[brace - 1]) - len(lines[brace - 1].lstrip())]
        new_lines = lines[:brace - 1] + [indent + '    LOG "last"'] + lines[brace - 1:]
        fast = _same_as_a_full_parse(program, lines, new_lines)
        assert fast is not None
        assert fast.body[0].body[0] is program.body[0].body[0]


def test_statements_between_statements_that_do_not_parse_alone_are_declined():
    """What parses differently alone than in its place: the between-statements path gives up
    (and reparse's one-statement path or a full parse does it), never a wrong tree."""
    from tisslang.analysis import _reparse_between

    lines, program, steps = _steps_and_lines()
    if_ = steps[0].body[1]  # IF ... THEN { LOG } without ELSE
    log = steps[0].body[0]  # RUN "echo 0"
    setup = program.body[0].body[1]

    def between(new_lines):
        n_old = len(lines)
        p = next(k for k, (a, b) in enumerate(zip(lines, new_lines)) if a != b)
        s = next(k for k, (a, b) in enumerate(zip(reversed(lines), reversed(new_lines)))
                 if a != b or k >= min(len(lines), len(new_lines)) - p)
        return _reparse_between(program, lines, new_lines, p + 1, n_old - s,
                                len(new_lines) - n_old, "<string>")

    cases = {
        # an ELSE line after an IF: it belongs to the IF, which a fragment alone cannot say
        "else": lines[:if_.end_line] + ['        ELSE { LOG "e" }'] + lines[if_.end_line:],
        # not whole statements: a block opened in the new lines and closed by old ones
        "open": lines[:log.end_line] + ['        STEP "open" {'] + lines[log.end_line:]
        + ["}"],
        # SETUP moved from the TASK into a STEP: a full parse rejects it there
        "setup": lines[:setup.line - 1] + lines[setup.end_line:log.end_line]
        + lines[setup.line - 1:setup.end_line] + lines[log.end_line:],
        # a second TASK after the first
        "task": lines[:-2] + ['TASK "two" { }'] + lines[-2:],
    }
    for what, new_lines in cases.items():
        assert between(new_lines) is None, what
        _same_as_a_full_parse(program, lines, new_lines)
    assert reparse(program, lines, cases["setup"]) is None
    assert reparse(program, lines, cases["task"]) is None
    every = EVERY.split("\n")
    whole = tisslang.parse(EVERY)
    # A CATCH line after a TRY that had none: it belongs to the TRY.
    bare = every.index('    TRY { RUN "no catch" }')
    caught = every[:bare + 1] + ['    CATCH { LOG "c" }'] + every[bare + 1:]
    assert _reparse_between(whole, every, caught, bare + 2, bare + 1, 1, "<s>") is None
    _same_as_a_full_parse(whole, every, caught)
    # An OPTION between the options of a CHOOSE: only the CHOOSE around it parses it.
    option = every.index('        OPTION "a" { RUN "a" }')
    # A STEP there is an option too, never the STEP it is alone: the CHOOSE is parsed again.
    for typed in ('        OPTION "b" { }', '        STEP "b" { RUN "b" }'):
        more = every[:option + 1] + [typed] + every[option + 1:]
        fast = _same_as_a_full_parse(whole, every, more)
        assert fast is not None and fast.body[0].body[0] is whole.body[0].body[0]
    # A statement after a block closed on its last statement's line, before the ELSE / CATCH
    # on the next line: outside that block (and a syntax error there), not at its end.
    for text in ('IF a == 1 { LOG "x" }\nELSE { LOG "y" }\n', 'TRY { RUN "x" }\nCATCH { }\n'):
        two = text.split("\n")
        third = two[:1] + ['LOG "new"'] + two[1:]
        assert reparse(tisslang.parse(text), two, third) is None
        assert _same_as_a_full_parse(tisslang.parse(text), two, third) is None
    # ... while a SETUP typed directly in the TASK is fine there.
    typed = lines[:log.line - 2] + ['    SETUP "more" { }'] + lines[log.line - 2:]
    assert _same_as_a_full_parse(program, lines, typed) is not None

"""check()'s rules that depend on where things stand: scoped names (a FOR's loop variable, RETRY's
ATTEMPT), PARALLEL children's setters (T008) and the RUNs whose result nothing reads (T104).

The checker gathers all of that in one pass over the statements; here a plain reference, written
the obvious way (a recursive walk per rule, the rest of the block scanned again for each RUN),
says what it must find on scripts built from a few names, so that set, read, loop and block
statements meet often.
"""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tisslang import ast, check, format, parse, statements

NAMES = ("a", "b", "x")


def codes(source, **kwargs):
    return [(d.line, d.column, d.code) for d in check(parse(source), **kwargs)]


def test_a_loop_value_reads_the_outer_name_and_the_body_the_loop_variable():
    source = ('FOR x IN x.items {\n  LOG "{{ x }}"\n}\nLOG "{{ x }}"\n'
              'RETRY 2 DELAY "{{ ATTEMPT }}" {\n  LOG "{{ ATTEMPT }}"\n}\n')
    found = codes(source)
    # x.items (line 1) and the x after the loop (line 4): x exists only inside the FOR's block;
    # ATTEMPT in the DELAY is outside the RETRY's block, as is everything after it.
    assert found == [(1, 10, "T005"), (4, 6, "T005"), (5, 16, "T005")]
    message = check(parse(source))[0].message
    assert message.startswith("'x' is the loop variable of the FOR at line 1:")


def test_scoped_names_nest_and_the_first_binder_is_named():
    source = ('STEP "s" {\n  FOR x IN [1] {\n    RETRY 2 {\n      FOR y IN [x] {\n'
              '        LOG "{{ x }} {{ y }} {{ ATTEMPT }}"\n      }\n    }\n  }\n}\n'
              'FOR y IN [2] {\n  LOG "{{ y }}"\n}\nLOG "{{ y }}"\n')
    found = check(parse(source))
    assert [(d.line, d.code) for d in found] == [(13, "T005")]
    assert "FOR at line 4" in found[0].message  # the first FOR binding y, not the one at line 10


def test_a_variable_set_anywhere_is_known_everywhere_but_a_loop_variable_is_not():
    source = 'LOG "{{ x }}"\nFOR x IN [1] {\n  VAR y = x\n}\nLOG "{{ y }} {{ x }}"\nVAR x = 2\n'
    # VAR x (line 6) sets x for the whole script, so no reference to x is reported.
    assert codes(source) == []


def test_parallel_children_count_setters_under_nested_blocks_and_nested_parallels():
    source = ('PARALLEL {\n  STEP "a" {\n    IF true {\n      VAR x = 1\n    }\n  }\n'
              '  STEP "b" {\n    PARALLEL {\n      STEP "c" {\n        READ "f" AS x\n      }\n'
              '      STEP "d" {\n        PROMPT_AGENT "p" INTO x\n      }\n    }\n  }\n}\n')
    # The outer PARALLEL: "b" sets x (first at line 10) as "a" does; the inner one: "d" as "c".
    assert [(line, code) for line, _, code in codes(source)] == [(10, "T008"), (13, "T008")]


def test_a_run_is_checked_by_what_follows_the_blocks_around_it():
    source = ('STEP "s" {\n  TRY {\n    IF true {\n      RETRY 2 {\n        RUN "a"\n      }\n'
              '    }\n  } CATCH {\n    RUN "b"\n  }\n  LOG "{{ LAST_RUN.STDOUT }}"\n}\n'
              'STEP "t" {\n  FOR i IN [1] {\n    RUN "c"\n  }\n  RUN "d"\n'
              '  ASSERT LAST_RUN.EXIT_CODE == 0\n}\n')
    # RUN "c" is replaced by RUN "d" before anything reads LAST_RUN.
    assert [(line, code) for line, _, code in codes(source)] == [(15, "T104")]


def test_many_blocks_each_with_its_own_runs():
    # Hundreds of blocks, most of them done with before the last ones are met: what the scan
    # remembers about a finished block must not be taken for a later one's.
    steps = "".join(f'STEP "s{i}" {{\n  RUN "a"\n  ASSERT LAST_RUN.EXIT_CODE == 0\n}}\n'
                    for i in range(300))
    tail = ('STEP "last" {\n  IF true {\n    CHOOSE {\n      OPTION "o" {\n        RUN "b"\n'
            '      }\n    }\n  }\n}\n')
    source = steps + tail
    assert [(line, code) for line, _, code in codes(source)] == [(300 * 4 + 5, "T104")]


# --- the reference ----------------------------------------------------------------------------


def _target(node):
    spec = statements.BY_NODE.get(type(node))
    for name in spec.sets if spec else ():
        if name not in spec.scoped_sets and getattr(node, name) is not None:
            return getattr(node, name)
    return None


def _scoped(node):
    spec = statements.BY_NODE.get(type(node))
    if spec is None:
        return ()
    return tuple(getattr(node, n) for n in spec.scoped_sets) + spec.scoped_builtins


def _refs(node, bound, out):
    """Every reference under ``node`` with the scoped names bound where it stands."""
    if isinstance(node, ast.Ref):
        out.append((node, bound))
        return
    spec = statements.BY_NODE.get(type(node))
    for name in ast.field_names(type(node)):
        inner = bound | set(_scoped(node)) if spec and name in spec.block_fields else bound
        value = getattr(node, name)
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, ast.Node):
                _refs(item, inner, out)


def _reads_last_run(node):
    return any(isinstance(n, ast.Ref) and n.parts[0] == "LAST_RUN" for n in statements.walk(node))


def _holds_run(node):
    return any(isinstance(n, ast.Run) for n in statements.walk(node))


def _unchecked(body, after, out):
    for index, stmt in enumerate(body):
        rest = body[index + 1:] + after
        decisive = [s for s in rest if _reads_last_run(s) or _holds_run(s)]
        if isinstance(stmt, ast.Run) and not (decisive and _reads_last_run(decisive[0])):
            out.append((stmt.line, stmt.column, "T104"))
        flows_on = isinstance(stmt, (ast.If, ast.Try, ast.Retry, ast.For, ast.Choose,
                                     ast.EstimateCost))
        for _, inner in statements.blocks(stmt):
            bodies = ([b for option in inner for _, b in statements.blocks(option)]
                      if isinstance(stmt, ast.Choose) else [inner])
            for block in bodies:
                _unchecked(block, rest if flows_on else (), out)


def reference(program):
    """(line, column, code) of every T001, T005, T008 and T104 finding, sorted."""
    nodes = list(statements.walk(program))
    defined = {_target(n) for n in nodes} | {"LAST_RUN"}
    binders = {}
    for node in nodes:
        for name in _scoped(node):
            binders.setdefault(name, node)
    out = []
    refs = []
    _refs(program, frozenset(), refs)
    for ref, bound in refs:
        head = ref.parts[0]
        if head not in defined and head not in bound:
            out.append((ref.line, ref.column, "T005" if head in binders else "T001"))
    for node in nodes:
        if isinstance(node, ast.Parallel):
            first = {}
            for child in node.body:
                mine = {}
                for inner in statements.walk(child):
                    if _target(inner) is not None:
                        mine.setdefault(_target(inner), inner)
                for name, setter in mine.items():
                    if name in first:
                        out.append((setter.line, setter.column, "T008"))
                    else:
                        first[name] = setter
    _unchecked(program.body, (), out)
    return sorted(out)


# --- scripts from a few names -----------------------------------------------------------------

names = st.sampled_from(NAMES)
refs = st.one_of(names.map(lambda n: ast.Ref((n,))), st.just(ast.Ref(("ATTEMPT",))),
                 st.just(ast.Ref(("LAST_RUN", "EXIT_CODE"))))
texts = st.lists(refs | st.just("t"), max_size=2).map(lambda parts: ast.String(tuple(parts)))
simple = st.one_of(
    st.builds(ast.Var, names, refs),
    st.builds(ast.Read, st.just(ast.String.of("f")), names),
    st.builds(ast.PromptAgent, st.just(ast.String.of("p")), st.none() | names),
    st.builds(ast.Log, texts),
    st.builds(ast.Run, texts),
    st.builds(ast.Run, texts),
    st.builds(ast.Assert, st.builds(ast.Compare, refs, st.just("=="), st.just(ast.Number(0)))),
)


def _blocks(inner):
    body = st.lists(inner, max_size=3).map(tuple)
    steps = st.lists(st.builds(ast.Step, st.just(ast.String.of("s")), body), max_size=3).map(tuple)
    options = st.lists(st.builds(ast.Option, st.just(ast.String.of("o")), body), max_size=2)
    return st.one_of(
        st.builds(ast.Step, st.just(ast.String.of("s")), body),
        st.builds(ast.If, st.builds(ast.Compare, refs, st.just("=="), st.just(ast.Number(1))),
                  body, body),
        st.builds(ast.Try, body, st.none() | body),
        st.builds(ast.Parallel, steps),
        st.builds(ast.Choose, options.map(tuple)),
        st.builds(ast.EstimateCost, body),
        st.builds(ast.Retry, st.just(2), st.none() | texts, body),
        st.builds(ast.For, names, st.just("value"), st.lists(refs, max_size=2).map(
            lambda items: ast.ListValue(tuple(items))) | refs, body),
    )


scripts = st.lists(st.recursive(simple, _blocks, max_leaves=12), max_size=6).map(
    lambda body: ast.Program({}, tuple(body)))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scripts)
def test_scoping_parallel_and_unchecked_runs_match_the_reference(tree):
    program = parse(format(tree))  # positions, so each finding says where it is
    found = sorted((d.line, d.column, d.code) for d in check(program)
                   if d.code in ("T001", "T005", "T008", "T104"))
    assert found == reference(program)

"""Hypothesis strategies that build TissLang trees the formatter can spell (any valid program)."""

from hypothesis import strategies as st

from tisslang import ast
from tisslang.formatter import _RESERVED
from tisslang.strings import INTERPOLATION, merge_parts

identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,7}", fullmatch=True).filter(
    lambda s: s not in _RESERVED)
# A root name, then object keys or list indexes (`answer.files.0`).
refs = st.tuples(identifiers, st.lists(identifiers | st.from_regex(r"[0-9]{1,3}", fullmatch=True),
                                       max_size=2)).map(lambda t: ast.Ref((t[0], *t[1])))
# Any text without lone surrogates: quotes, backslashes, braces, newlines, controls, emoji.
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12) | st.sampled_from(
    ["{{", "}}", "\\", '"', "'", "\\{", "{{ x }}", "#", "<<EOF", "\n", "\t", "\r"])


@st.composite
def strings(draw, allow_refs=True):
    parts = draw(st.lists(texts | refs if allow_refs else texts, max_size=4))
    return ast.String(merge_parts(parts))


numbers = st.one_of(
    st.integers(min_value=-10**12, max_value=10**12),
    st.floats(allow_nan=False, allow_infinity=False),
).map(ast.Number)
booleans = st.booleans().map(ast.Boolean)
scalars = st.one_of(strings(), numbers, booleans, refs)

values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda items: ast.ListValue(tuple(items))),
        st.dictionaries(st.text(st.characters(blacklist_categories=("Cs",)), max_size=5), inner,
                        max_size=3).map(lambda d: ast.ObjectValue(tuple(d.items()))),
    ),
    max_leaves=6,
)
operands = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3).map(lambda items: ast.ListValue(tuple(items))),
    max_leaves=3,
)


def _conditions(inner):
    two_or_more = st.lists(inner, min_size=2, max_size=3).map(tuple)
    return st.one_of(
        st.builds(ast.Compare, inner, st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), inner),
        st.builds(ast.Contains, inner, inner, st.booleans()),
        st.builds(ast.Matches, inner, inner),
        st.builds(ast.IsEmpty, inner, st.booleans()),
        st.builds(ast.FileExists, inner),
        st.builds(ast.Length, inner),
        st.builds(ast.Not, inner),
        two_or_more.map(ast.And),
        two_or_more.map(ast.Or),
    )


conditions = st.recursive(operands, _conditions, max_leaves=6)


@st.composite
def heredoc_writes(draw):
    raw = draw(st.booleans())
    delimiter = draw(identifiers)
    line_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"),
                        max_size=10)
    lines = draw(st.lists(line_text, max_size=4))
    lines = [ln for ln in lines if ln.strip() != delimiter]
    if raw:
        content = ast.String.of("".join(ln + "\n" for ln in lines))
    else:
        parts = []
        for ln in lines:
            if INTERPOLATION.search(ln):
                ln = ln.replace("{", "(")
            parts.append(ln)
            if draw(st.booleans()):
                parts.append(draw(refs))
            parts.append("\n")
        content = ast.String(merge_parts(parts))
    return ast.Write(draw(strings()), content, delimiter, raw)


simple_statements = st.one_of(
    st.builds(ast.Run, strings()),
    st.builds(ast.Write, strings(), strings(), st.none(), st.just(False)),
    heredoc_writes(),
    st.builds(ast.Read, strings(), identifiers),
    st.builds(ast.Assert, conditions),
    st.builds(ast.PromptAgent, strings(), st.none() | identifiers),
    st.builds(ast.Var, identifiers, values),
    st.builds(ast.Log, strings()),
    st.builds(ast.SetBudget, identifiers.filter(lambda n: n != "TOKEN_COUNT"), values),
    st.builds(ast.RequestReview, strings()),
    st.builds(ast.Pause, strings()),
    st.builds(ast.Mkdir, strings()),
    st.builds(ast.Delete, strings(), st.booleans()),
    st.builds(ast.Directive, identifiers, st.none() | values),
)


def _blocks(inner):
    body = st.lists(inner, max_size=3).map(tuple)
    return st.one_of(
        st.builds(ast.Step, strings(), body),
        st.builds(ast.If, conditions, body, body),
        st.builds(ast.Try, body, st.none() | body),
        st.builds(ast.Parallel, body),
        st.builds(ast.Choose, st.lists(st.builds(ast.Option, strings(), body), max_size=2).map(tuple)),
        st.builds(ast.EstimateCost, body),
        st.builds(ast.Retry, numbers.map(lambda n: n.value), st.none() | strings(), body),
        st.builds(ast.For, identifiers, st.just("value"), values, body),
        st.builds(ast.For, identifiers, st.just("lines"), values, body),
        st.builds(ast.For, identifiers, st.just("files"), strings(), body),
    )


statements = st.recursive(simple_statements, _blocks, max_leaves=8)


@st.composite
def programs(draw):
    body = list(draw(st.lists(statements, max_size=5)))
    if draw(st.booleans()):
        task_body = draw(st.none() | st.lists(statements, max_size=2).map(tuple))
        body.insert(0, ast.Task(draw(strings()), task_body))
    if draw(st.booleans()):
        body.append(ast.Setup(draw(st.none() | strings()), tuple(draw(st.lists(statements, max_size=2)))))
    if draw(st.booleans()):
        body.append(ast.Teardown(draw(st.none() | strings()), tuple(draw(st.lists(statements, max_size=2)))))
    header = draw(st.dictionaries(identifiers, st.from_regex(r"[A-Za-z0-9_.-]{0,6}", fullmatch=True),
                                  max_size=2))
    return ast.Program(header, tuple(body))

"""The Pygments lexer (`tisslang.pygments_lexer`, entry point `pygments.lexers`): found by name
and filename, lossless, no error tokens on the examples and the docs' ```tiss blocks, and in
agreement with the REPL's scanner about what every token is."""

from __future__ import annotations

import bisect
import re
import subprocess
import sys
from pathlib import Path

import pytest

pygments = pytest.importorskip("pygments", reason="Pygments is optional (the dev extra has it)")
from pygments.token import Comment, Error, Keyword, Name, Number, Operator, String  # noqa: E402

from runtime.repl import scan  # noqa: E402
from tisslang.pygments_lexer import TissLangLexer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.tiss"))
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```(?:tiss|tisslang)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _doc_blocks() -> list[tuple[str, str]]:
    blocks = []
    for path in DOCS:
        for i, m in enumerate(_FENCE.finditer(path.read_text(encoding="utf-8"))):
            blocks.append((f"{path.name}#{i}", m.group(1)))
    return blocks


def test_the_entry_point_finds_it_by_name_and_filename():
    from pygments.lexers import get_lexer_by_name, get_lexer_for_filename

    for alias in ("tisslang", "tiss"):
        assert type(get_lexer_by_name(alias)).__name__ == "TissLangLexer"
    assert type(get_lexer_for_filename("build.tiss")).__name__ == "TissLangLexer"


def test_pygmentize_highlights_a_script():
    out = subprocess.run([sys.executable, "-m", "pygments", "-l", "tisslang", "-f", "html",
                          str(EXAMPLES[0])], capture_output=True, text=True, check=True).stdout
    assert '<span class="k">TASK</span>' in out or '<span class="k">STEP</span>' in out


def test_import_tisslang_does_not_import_pygments():
    code = "import sys, tisslang; print('pygments' in sys.modules, 'tisslang.pygments_lexer' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# What each REPL scanner token kind may be in Pygments terms.
EXPECTED = {
    scan.KEYWORD: (Keyword, Operator.Word),
    scan.DIRECTIVE: (Name.Decorator,),
    scan.BUILTIN: (Name.Builtin, Name.Constant),
    scan.STRING: (String.Double, String.Single, String.Escape),  # scan splits \\u00e9 after \\u
    scan.ESCAPE: (String.Escape, Error),
    scan.INTERPOLATION: (String.Interpol,),
    scan.HEREDOC_MARK: (Operator, String.Delimiter),
    scan.HEREDOC_BODY: (String.Heredoc, String.Interpol),
    scan.HEREDOC_END: (String.Delimiter,),
    scan.COMMENT: (Comment.Single,),
    scan.HEADER: (Comment.Special,),
    scan.NUMBER: (Number,),
    scan.BOOLEAN: (Keyword.Constant,),
    scan.OPERATOR: (Operator,),
    scan.NAME: (Name.Variable, Name.Attribute),
}


def _check(text: str, where: str) -> None:
    tokens = list(TissLangLexer().get_tokens_unprocessed(text))
    assert "".join(v for _, _, v in tokens) == text, f"{where}: the lexer lost text"
    errors = [(i, v) for i, tok, v in tokens if tok in Error]
    assert not errors, f"{where}: error tokens {errors[:5]}"
    starts = [i for i, _, _ in tokens]
    for token in scan.scan(text).tokens:
        wanted = EXPECTED.get(token.kind)
        if wanted is None:
            continue
        if token.kind == scan.BUILTIN and token.start and text[token.start - 1] == ".":
            wanted = (Name.Attribute,)  # a budget name used as a field: LAST_ESTIMATE.TOKENS
        for offset in range(token.start, token.end):
            if text[offset].isspace() and token.kind in (scan.HEREDOC_END, scan.HEREDOC_BODY):
                continue  # the scanner's token takes the indentation in; Pygments says whitespace
            _, kind, _ = tokens[bisect.bisect_right(starts, offset) - 1]
            assert any(kind in w for w in wanted), (
                f"{where}@{offset}: scanner {token.kind} {token.text!r}, Pygments {kind}")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_lexes_like_the_scanner_sees_it(path):
    _check(path.read_text(encoding="utf-8"), path.name)


def test_the_docs_code_blocks_lex_cleanly():
    blocks = _doc_blocks()
    assert len(blocks) >= 5
    for where, text in blocks:
        _check(text, where)


def test_heredoc_bodies_are_text_and_raw_ones_never_interpolate():
    text = ('WRITE "a" <<PY\n    IF x { RUN "y" } # no\n    {{ name }}\n    PY\n'
            "WRITE 'b' <<'RAW'\n{{ name }}\nRAW\nSTEP \"s\" { }\n")
    tokens = [(tok, v) for _, tok, v in TissLangLexer().get_tokens_unprocessed(text)]
    assert (String.Heredoc, '    IF x { RUN "y" } # no') in tokens
    assert (String.Interpol, "{{ name }}") in tokens
    assert (String.Heredoc, "{{ name }}") in tokens  # in the raw body
    assert (String.Delimiter, "RAW") in tokens
    assert (Keyword, "STEP") in tokens  # code again after the body

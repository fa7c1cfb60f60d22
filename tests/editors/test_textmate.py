"""The VS Code extension's TextMate grammar, tokenized by VS Code's own engine (vscode-textmate
with vscode-oniguruma, run by node) on every example script and a sample of every construct.

The REPL's scanner (runtime/repl/scan.py) is the independent reference: every token it finds must
carry the matching TextMate scope, and no heredoc body line may be coloured as code. Where node
or the npm packages are missing (`npm ci` in editors/vscode) the node tests skip with the reason;
the check that the grammar is generated from the language's tables always runs.
"""

from __future__ import annotations

import bisect
import importlib.util
import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from runtime.repl import scan

ROOT = Path(__file__).resolve().parents[2]
VSCODE = ROOT / "editors" / "vscode"
EXAMPLES = sorted((ROOT / "examples").glob("*.tiss"))


def _load_builder():
    spec = importlib.util.spec_from_file_location("build_grammar", VSCODE / "build_grammar.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_grammar_is_generated_from_the_language_tables():
    builder = _load_builder()
    committed = (VSCODE / "syntaxes" / "tisslang.tmLanguage.json").read_text(encoding="utf-8")
    assert committed == builder.render(), "run python editors/vscode/build_grammar.py"


def _tokenize(paths: list[Path]) -> dict[str, list[list[dict]]]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed; the TextMate grammar test needs it")
    if not (VSCODE / "node_modules" / "vscode-textmate").is_dir() or \
            not (VSCODE / "node_modules" / "vscode-oniguruma").is_dir():
        pytest.skip("vscode-textmate / vscode-oniguruma are not installed: run npm ci in editors/vscode")
    result = subprocess.run([node, str(VSCODE / "test" / "tokenize.js"), *map(str, paths)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _scopes_at(lines_tokens: list[list[dict]], line: int, column: int) -> list[str]:
    for token in lines_tokens[line]:
        if token["start"] <= column < token["end"]:
            return token["scopes"]
    raise AssertionError(f"no TextMate token at {line}:{column}")


# What the REPL scanner's token kinds must be in TextMate terms (a prefix of one of the scopes).
EXPECTED = {
    scan.KEYWORD: ("keyword.control.tisslang", "keyword.operator.word.tisslang"),
    scan.DIRECTIVE: ("keyword.other.directive",),
    scan.BUILTIN: ("support.variable.builtin.tisslang", "support.constant.budget.tisslang"),
    scan.STRING: ("string.quoted.",),
    scan.ESCAPE: ("constant.character.escape.tisslang", "invalid.illegal.escape.tisslang"),
    scan.INTERPOLATION: ("meta.interpolation.tisslang",),
    scan.HEREDOC_MARK: ("keyword.operator.heredoc.tisslang", "keyword.control.heredoc.tisslang",
                        "punctuation.definition.string"),
    scan.HEREDOC_BODY: ("string.unquoted.heredoc",),
    scan.HEREDOC_END: ("keyword.control.heredoc.end.tisslang",),
    scan.COMMENT: ("comment.line.number-sign.tisslang",),
    scan.HEADER: ("comment.line.header.tisslang",),
    scan.NUMBER: ("constant.numeric.tisslang",),
    scan.BOOLEAN: ("constant.language.boolean.tisslang",),
    scan.OPERATOR: ("keyword.operator.comparison.tisslang", "keyword.operator.assignment.tisslang"),
    scan.NAME: ("variable.other.",),
}
CODE_SCOPES = ("keyword.", "support.", "constant.numeric", "constant.language", "variable.other.tisslang")


def _agree(text: str, lines_tokens: list[list[dict]], where: str) -> int:
    """Check every scanner token against the TextMate scopes; the number of tokens checked."""
    lines = text.split("\n")
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    checked = 0
    for token in scan.scan(text).tokens:
        wanted = EXPECTED.get(token.kind)
        if wanted is None or token.end <= token.start:
            continue
        if token.kind == scan.BUILTIN and token.start and text[token.start - 1] == ".":
            # The scanner colours budget names anywhere; after a dot they are fields
            # (LAST_ESTIMATE.TOKENS), which the grammar says.
            wanted = ("variable.other.property.tisslang",)
        line = bisect.bisect_right(starts, token.start) - 1
        for column in range(token.start - starts[line], token.end - starts[line]):
            scopes = _scopes_at(lines_tokens, line, column)
            assert any(s.startswith(w) for s in scopes for w in wanted), (
                f"{where}:{line + 1}:{column + 1}: {token.kind} {token.text!r} has scopes {scopes}")
            if token.kind == scan.HEREDOC_BODY:
                assert not any(s.startswith(CODE_SCOPES) for s in scopes), (
                    f"{where}:{line + 1}: heredoc body coloured as code: {scopes}")
        checked += 1
    return checked


def test_every_example_script_gets_the_scopes_the_scanner_expects():
    tokens = _tokenize(EXAMPLES)
    total = 0
    for path in EXAMPLES:
        text = path.read_text(encoding="utf-8")
        total += _agree(text, tokens[str(path)], path.name)
    assert total > 300  # the examples hold a few hundred tokens; all of them were compared


SAMPLE = '''\
#TISS! Language=Python owner=me
# a comment
@model "echo"
@shoe 1
VAR name = "w\\u00e9rld {{ LAST_RUN.STDOUT }} \\{ \\q"
VAR items = [1, -2.5, true, {k: 'raw \\d {{ x }}'}]
SET_BUDGET TOKEN_COUNT = 10
STEP "s" {
    WRITE "a.py" <<PY
    def f(): return {"RUN": 1}  # IF THEN
    print("{{ name }}")
    PY
    WRITE "b.txt" <<'RAW'
    STEP {{ name }}
    RAW
    IF LAST_RUN.EXIT_CODE >= 0 AND name IS_NOT_EMPTY THEN {
        ASSERT FILE "a.py" EXISTS
    } ELSE {
        RUN "x" # trailing
    }
}
'''


def test_each_construct_gets_its_scope(tmp_path):
    sample = tmp_path / "sample.tiss"
    sample.write_text(SAMPLE, encoding="utf-8")
    lines_tokens = _tokenize([sample])[str(sample)]
    lines = SAMPLE.split("\n")
    _agree(SAMPLE, lines_tokens, "sample")

    def scope(line: int, needle: str, nth: int = 0) -> list[str]:
        column = -1
        for _ in range(nth + 1):
            column = lines[line].index(needle, column + 1)
        return _scopes_at(lines_tokens, line, column)

    assert "keyword.other.header.tisslang" in scope(0, "#TISS!")
    assert "variable.other.header-key.tisslang" in scope(0, "owner")
    assert "string.unquoted.header-value.tisslang" in scope(0, "Python")
    assert "comment.line.number-sign.tisslang" in scope(1, "a comment")
    assert "keyword.other.directive.tisslang" in scope(2, "@model")
    assert "keyword.other.directive.unknown.tisslang" in scope(3, "@shoe")
    assert "constant.character.escape.tisslang" in scope(4, "\\u00e9")
    assert "variable.other.interpolated.tisslang" in scope(4, "LAST_RUN")
    assert "punctuation.section.interpolation.begin.tisslang" in scope(4, "{{")
    assert "constant.character.escape.tisslang" in scope(4, "\\{")
    assert "invalid.illegal.escape.tisslang" in scope(4, "\\q")
    assert "constant.numeric.tisslang" in scope(5, "-2.5")
    assert "constant.language.boolean.tisslang" in scope(5, "true")
    raw = scope(5, "{{ x }}")  # single quotes never interpolate
    assert "string.quoted.single.tisslang" in raw and "meta.interpolation.tisslang" not in raw
    assert "support.constant.budget.tisslang" in scope(6, "TOKEN_COUNT")
    # Heredoc bodies are text, whatever they look like; an interpolating one shows {{ }}.
    body = scope(9, "RUN")
    assert "string.unquoted.heredoc.tisslang" in body and not any(s.startswith("keyword.") for s in body)
    assert "string.unquoted.heredoc.tisslang" in scope(9, "# IF THEN")
    assert "meta.interpolation.tisslang" in scope(10, "{{ name }}")
    assert "keyword.control.heredoc.end.tisslang" in scope(11, "PY")
    raw_body = scope(13, "{{ name }}")
    assert "string.unquoted.heredoc.raw.tisslang" in raw_body
    assert "meta.interpolation.tisslang" not in raw_body
    assert not any(s.startswith("keyword.") for s in scope(13, "STEP"))
    assert "keyword.control.tisslang" in scope(15, "IF")
    assert "variable.other.property.tisslang" in scope(15, "EXIT_CODE")
    assert "keyword.operator.comparison.tisslang" in scope(15, ">=")
    assert "keyword.operator.word.tisslang" in scope(15, "IS_NOT_EMPTY")
    assert "keyword.control.tisslang" in scope(15, "THEN")
    assert "keyword.operator.word.tisslang" in scope(16, "EXISTS")
    assert "keyword.control.tisslang" in scope(17, "ELSE")
    assert "comment.line.number-sign.tisslang" in scope(18, "trailing")


def test_the_extension_packages_with_vsce(tmp_path):
    node = shutil.which("node")
    vsce = VSCODE / "node_modules" / "@vscode" / "vsce" / "vsce"
    if node is None or not vsce.exists():
        pytest.skip("node or @vscode/vsce is not installed: run npm ci in editors/vscode")
    out = tmp_path / "tisslang.vsix"
    result = subprocess.run([node, str(vsce), "package", "--allow-missing-repository", "--out", str(out)],
                            cwd=VSCODE, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    names = set(zipfile.ZipFile(out).namelist())
    assert {"extension/package.json", "extension/extension.js", "extension/language-configuration.json",
            "extension/syntaxes/tisslang.tmLanguage.json"} <= names
    assert any(n.startswith("extension/node_modules/vscode-languageclient/") for n in names)
    assert not any("vscode-textmate" in n or "build_grammar" in n or "/test/" in n for n in names)

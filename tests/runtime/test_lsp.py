"""`tiss lsp` through a real client session: pytest-lsp starts the server as a subprocess and
talks LSP to it over stdio. One server serves the whole module (each test opens its own
documents); every answer is checked with exact positions and texts."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pygls", reason="the language server needs pygls (pip install 'quantatissu[lsp]')")
pytest_lsp = pytest.importorskip("pytest_lsp", reason="the LSP tests need pytest-lsp (the dev extra)")

from lsprotocol import types as t  # noqa: E402
from pytest_lsp import ClientServerConfig, LanguageClient  # noqa: E402

import tisslang  # noqa: E402
from runtime.lsp import features  # noqa: E402
from runtime.lsp.document import Analysis  # noqa: E402
from runtime.lsp.text import Text  # noqa: E402

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.tiss"))

CAPABILITIES = t.ClientCapabilities(
    text_document=t.TextDocumentClientCapabilities(
        document_symbol=t.DocumentSymbolClientCapabilities(hierarchical_document_symbol_support=True),
        completion=t.CompletionClientCapabilities(
            completion_item=t.ClientCompletionItemOptions(
                snippet_support=True, documentation_format=[t.MarkupKind.Markdown])),
        rename=t.RenameClientCapabilities(prepare_support=True),
        hover=t.HoverClientCapabilities(content_format=[t.MarkupKind.Markdown]),
        folding_range=t.FoldingRangeClientCapabilities(),
        semantic_tokens=t.SemanticTokensClientCapabilities(
            requests=t.ClientSemanticTokensRequestOptions(full=True),
            token_types=list(features.TOKEN_TYPES), token_modifiers=list(features.TOKEN_MODIFIERS),
            formats=[t.TokenFormat.Relative]),
    ),
)


@pytest_lsp.fixture(
    scope="module",
    config=ClientServerConfig(server_command=[sys.executable, "-m", "runtime", "lsp"]),
)
async def client(lsp_client: LanguageClient, tmp_path_factory):
    root = tmp_path_factory.mktemp("workspace")
    (root / "src").mkdir()
    (root / "src" / "main.py").write_text("print(1)\n")
    (root / "setup.cfg").write_text("")
    lsp_client.workspace_root = root
    await lsp_client.initialize_session(t.InitializeParams(
        capabilities=CAPABILITIES, root_uri=root.as_uri(),
        workspace_folders=[t.WorkspaceFolder(root.as_uri(), "workspace")]))
    yield
    await lsp_client.shutdown_session()


# --- helpers ----------------------------------------------------------------------------------

_counter = iter(range(10_000))


async def open_doc(client: LanguageClient, text: str, name: str | None = None) -> str:
    """Open a new document and wait for its first diagnostics."""
    name = name or f"doc{next(_counter)}.tiss"
    uri = (client.workspace_root / name).as_uri()
    client.text_document_did_open(t.DidOpenTextDocumentParams(
        t.TextDocumentItem(uri=uri, language_id="tisslang", version=1, text=text)))
    await wait_for(lambda: uri in client.diagnostics)
    return uri


async def wait_for(condition, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("timed out waiting for the server")
        await asyncio.sleep(0.02)


def doc_id(uri: str) -> t.TextDocumentIdentifier:
    return t.TextDocumentIdentifier(uri=uri)


def rng(r: t.Range) -> tuple[int, int, int, int]:
    return (r.start.line, r.start.character, r.end.line, r.end.character)


def diags(client, uri):
    return [(rng(d.range), d.severity, d.message) for d in client.diagnostics[uri]]


def apply_edits(text: str, edits) -> str:
    """Apply LSP text edits to text (what an editor does), via the server's own Text type."""
    doc = Text(text)
    for e in sorted(edits, key=lambda e: (e.range.start.line, e.range.start.character), reverse=True):
        doc = doc.apply((e.range.start.line, e.range.start.character),
                        (e.range.end.line, e.range.end.character), e.new_text)
    return doc.source


def no_internal_errors(client) -> bool:
    return not [m for m in client.log_messages if "internal error" in m.message]


# --- diagnostics ------------------------------------------------------------------------------

async def test_syntax_error_has_its_exact_range_and_the_friendly_message(client):
    uri = await open_doc(client, 'STEP "a" {\n    RUN "make\n}\n')
    assert diags(client, uri) == [(
        (1, 8, 1, 13), t.DiagnosticSeverity.Error,
        'unterminated string: close it with " on the same line (for text over several lines use '
        'a heredoc, WRITE "path" <<EOF)')]
    uri = await open_doc(client, 'STEP "a" {\n    RUNN "make"\n}\n')
    assert diags(client, uri) == [((1, 4, 1, 8), t.DiagnosticSeverity.Error,
                                   "unknown keyword 'RUNN'; did you mean 'RUN'?")]
    uri = await open_doc(client, 'STEP "a" {\n    RUN "x"\n')
    ((range_, _, message),) = diags(client, uri)
    assert range_ == (0, 9, 0, 10) and message.startswith("this block is never closed")


async def test_every_check_finding_with_its_range(client):
    source = ('@modle "echo"\n'
              'VAR LAST_RUN = 1\n'
              'SET_BUDGET TOKENS = "many"\n'
              'LOG "{{ missing }} and {{ LAST_RUN.EXITCODE }}"\n')
    uri = await open_doc(client, source)
    expected = [(rng(d.range), d.severity, d.message) for d in features.diagnostics(Analysis(Text(source)))]
    got = diags(client, uri)
    assert got == expected
    assert [(r, s) for r, s, _ in got] == [
        ((0, 0, 0, 6), t.DiagnosticSeverity.Warning),   # @modle
        ((1, 0, 1, 16), t.DiagnosticSeverity.Error),    # a built-in as a VAR target
        ((2, 20, 2, 26), t.DiagnosticSeverity.Error),   # TOKENS is a count
        ((3, 5, 3, 18), t.DiagnosticSeverity.Error),    # {{ missing }}
        ((3, 23, 3, 46), t.DiagnosticSeverity.Error),   # {{ LAST_RUN.EXITCODE }}
    ]
    # The same findings, in the same words, as `tiss check`.
    checked = tisslang.check(tisslang.parse(source))
    assert [m for _, _, m in got] == [d.message for d in checked]
    assert [(r[0] + 1, r[1] + 1) for r, _, _ in got] == [(d.line, d.column) for d in checked]
    # Each with its rule code, as `tiss check` prints it.
    assert [d.code for d in client.diagnostics[uri]] == [d.code for d in checked] == [
        "T101", "T003", "T007", "T001", "T002"]


async def test_positions_count_utf16_units_a_bom_and_crlf_line_ends(client):
    # The emoji is two UTF-16 units, so everything after it on its line moves one to the right.
    uri = await open_doc(client, 'VAR s = "\U0001f600"; LOG "{{ nope }}"\n')
    assert [r for r, _, _ in diags(client, uri)] == [(0, 19, 0, 29)]  # code points 18..28
    # A BOM is not part of the script for the parser, but the client counts it.
    uri = await open_doc(client, '\ufeffRUNN "x"\n')
    assert [r for r, _, _ in diags(client, uri)] == [(0, 1, 0, 5)]
    # \r\n line ends: the same lines; formatting rewrites the text whole (fmt writes \n).
    source = 'STEP "a" {\r\nRUN "x"\r\n}\r\nLOG "{{ nope }}"\r\n'
    uri = await open_doc(client, source)
    assert [r for r, _, _ in diags(client, uri)] == [(1, 0, 1, 7), (3, 5, 3, 15)]  # T104, T001
    edits = await client.text_document_formatting_async(t.DocumentFormattingParams(
        doc_id(uri), t.FormattingOptions(tab_size=4, insert_spaces=True)))
    assert [(rng(e.range), e.new_text) for e in edits] == [
        ((0, 0, 4, 0), 'STEP "a" {\n    RUN "x"\n}\nLOG "{{ nope }}"\n')]


async def test_examples_have_no_diagnostics(client):
    for path in EXAMPLES:
        uri = await open_doc(client, path.read_text(encoding="utf-8"), f"clean_{path.name}")
        assert list(client.diagnostics[uri]) == [], path.name


async def test_incremental_edits_update_the_diagnostics(client):
    uri = await open_doc(client, 'RUN "a"\nLOG "{{ x }} {{ LAST_RUN.EXIT_CODE }}"\n')
    assert [m for _, _, m in diags(client, uri)][0].startswith("undefined variable 'x'")
    # Insert a line that defines x, then break line 1, then repair it: three versions.
    changes = [
        (t.Range(t.Position(0, 0), t.Position(0, 0)), "VAR x = 1\n"),
        (t.Range(t.Position(1, 6), t.Position(1, 7)), ""),       # RUN "a  -> unterminated
        (t.Range(t.Position(1, 6), t.Position(1, 6)), '"'),      # RUN "a"  again
    ]
    expected_after = [
        [],
        [((1, 4, 1, 6), "unterminated string")],
        [],
    ]
    for version, ((range_, text), expected) in enumerate(zip(changes, expected_after), start=2):
        client.text_document_did_change(t.DidChangeTextDocumentParams(
            text_document=t.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[t.TextDocumentContentChangePartial(range=range_, text=text)]))
        want = [(r, m) for r, m in expected]
        await wait_for(lambda: [(rng(d.range), d.message[:len(m)]) for d, (_, m) in
                                zip(client.diagnostics[uri], want)] == want
                       and len(client.diagnostics[uri]) == len(want))
    edits = await client.text_document_formatting_async(t.DocumentFormattingParams(
        doc_id(uri), t.FormattingOptions(tab_size=4, insert_spaces=True)))
    assert not edits  # 'VAR x = 1\nRUN "a"\nLOG "{{ x }} {{ LAST_RUN.EXIT_CODE }}"\n' is already canonical


async def test_several_changes_in_one_notification_apply_in_order_and_a_full_change_replaces(client):
    uri = await open_doc(client, 'VAR a = 1\n')
    client.text_document_did_change(t.DidChangeTextDocumentParams(
        text_document=t.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[
            # Each range is in the text the change before it left.
            t.TextDocumentContentChangePartial(range=t.Range(t.Position(1, 0), t.Position(1, 0)),
                                               text='LOG "{{ later }}"\n'),
            t.TextDocumentContentChangePartial(range=t.Range(t.Position(1, 8), t.Position(1, 13)),
                                               text="x"),
        ]))
    await wait_for(lambda: [m for _, _, m in diags(client, uri)][:1] != []
                   and diags(client, uri)[0][2].startswith("undefined variable 'x'"))
    assert [r for r, _, _ in diags(client, uri)] == [(1, 5, 1, 12)]
    client.text_document_did_change(t.DidChangeTextDocumentParams(
        text_document=t.VersionedTextDocumentIdentifier(uri=uri, version=3),
        content_changes=[t.TextDocumentContentChangeWholeDocument(text='VAR x = 1\nLOG "{{ x }}"\n')]))
    await wait_for(lambda: list(client.diagnostics[uri]) == [])


# --- formatting -------------------------------------------------------------------------------

async def test_formatting_is_tiss_fmt_as_minimal_edits(client):
    source = 'STEP "a" {\nRUN  "x"\n    LOG "ok"\n}\n\n\n\nRUN "y"'
    uri = await open_doc(client, source)
    edits = await client.text_document_formatting_async(t.DocumentFormattingParams(
        doc_id(uri), t.FormattingOptions(tab_size=4, insert_spaces=True)))
    assert [(rng(e.range), e.new_text) for e in edits] == [
        ((1, 0, 2, 0), '    RUN "x"\n'),            # reindented
        ((5, 0, 7, 7), 'RUN "y"\n'),                # two of three blank lines go; final newline
    ]
    assert apply_edits(source, edits) == tisslang.format(tisslang.parse(source))


async def test_formatting_leaves_a_file_with_a_syntax_error_alone(client):
    uri = await open_doc(client, 'STEP "a" {\nRUN  "x\n}\n')
    edits = await client.text_document_formatting_async(t.DocumentFormattingParams(
        doc_id(uri), t.FormattingOptions(tab_size=4, insert_spaces=True)))
    assert not edits


async def test_formatting_every_example_round_trips(client):
    for path in EXAMPLES:
        messy = path.read_text(encoding="utf-8").replace("    ", "  ")
        uri = await open_doc(client, messy, f"messy_{path.name}")
        edits = await client.text_document_formatting_async(t.DocumentFormattingParams(
            doc_id(uri), t.FormattingOptions(tab_size=4, insert_spaces=True)))
        assert apply_edits(messy, edits) == tisslang.format(tisslang.parse(messy)), path.name


# --- completion -------------------------------------------------------------------------------

async def complete(client, uri, line, character):
    result = await client.text_document_completion_async(t.CompletionParams(
        doc_id(uri), t.Position(line, character)))
    items = result.items if isinstance(result, t.CompletionList) else result
    return items


async def test_completion_statement_keywords_and_block_snippets(client):
    uri = await open_doc(client, 'STEP "a" {\n    ST\n}\n')
    items = await complete(client, uri, 1, 6)
    assert [i.label for i in items] == ["STEP"]
    (step,) = items
    assert step.insert_text_format == t.InsertTextFormat.Snippet
    assert rng(step.text_edit.range) == (1, 4, 1, 6)
    assert step.text_edit.new_text.startswith('STEP "${1:')
    assert step.text_edit.new_text.endswith('" {\n\t$0\n}')
    items = await complete(client, uri, 1, 5)
    assert {"SETUP", "STEP", "SET_BUDGET"} <= {i.label for i in items}
    run = [i for i in await complete(client, uri, 1, 4) if i.label == "RUN"][0]
    assert run.insert_text_format in (None, t.InsertTextFormat.PlainText)  # not a block


async def test_completion_directives_after_at(client):
    uri = await open_doc(client, '@mo\n')
    items = await complete(client, uri, 0, 3)
    assert [(i.label, rng(i.text_edit.range)) for i in items] == [("@model", (0, 0, 0, 3))]
    uri = await open_doc(client, '@\n')
    labels = [i.label for i in await complete(client, uri, 0, 1)]
    assert labels[:3] == ["@persona", "@model", "@temperature"] and "@timeout" in labels


async def test_completion_variables_defined_above_the_cursor(client):
    source = 'VAR alpha = 1\nLOG "{{ a }}"\nVAR apple = 2\nASSERT a\n'
    uri = await open_doc(client, source)
    first = [i.label for i in await complete(client, uri, 1, 9)]
    assert "alpha" in first and "apple" not in first
    later = [(i.label, i.kind) for i in await complete(client, uri, 3, 8)]
    assert ("alpha", t.CompletionItemKind.Variable) in later
    assert ("apple", t.CompletionItemKind.Variable) in later


async def test_completion_builtin_fields_and_budget_names(client):
    uri = await open_doc(client, 'RUN "x"\nASSERT LAST_RUN.\nSET_BUDGET \n')
    items = await complete(client, uri, 1, 16)
    labels = [i.label for i in items]
    assert labels[:3] == ["EXIT_CODE", "STDOUT", "STDERR"]
    assert rng(items[0].text_edit.range) == (1, 16, 1, 16)
    assert items[0].detail == "LAST_RUN field"
    budgets = [i.label for i in await complete(client, uri, 2, 11)]
    assert budgets == ["EXECUTION_TIME", "API_CALLS", "TOKENS", "TOKEN_COUNT"]


async def test_completion_workspace_paths_in_path_strings(client):
    uri = await open_doc(client, 'READ "src/m" AS code\nLOG "s"\n')
    items = await complete(client, uri, 0, 11)
    assert [(i.label, rng(i.text_edit.range), i.kind) for i in items] == [
        ("main.py", (0, 10, 0, 11), t.CompletionItemKind.File)]
    top = [i.label for i in await complete(client, uri, 0, 6)]
    assert top == ["setup.cfg", "src/"]
    assert await complete(client, uri, 1, 6) == []  # LOG's string is not a path


async def test_completion_keeps_working_after_a_syntax_error(client):
    source = 'VAR early = 1\nSTEP "a" {\n    LOG "{{ e }}"\n    RUN "broken\n}\n'
    uri = await open_doc(client, source)
    assert client.diagnostics[uri]  # the syntax error
    assert "early" in [i.label for i in await complete(client, uri, 2, 13)]


# --- hover ------------------------------------------------------------------------------------

async def hover(client, uri, line, character):
    return await client.text_document_hover_async(t.HoverParams(doc_id(uri), t.Position(line, character)))


async def test_hover(client):
    source = ('@model "echo"\nVAR name = "x"\nSTEP "s" {\n    RUN "echo {{ name }}"\n'
              '    ASSERT LAST_RUN.EXIT_CODE == 0\n}\n')
    uri = await open_doc(client, source)
    step = await hover(client, uri, 2, 1)
    assert rng(step.range) == (2, 0, 2, 4)
    assert step.contents.value.startswith("**STEP**: ")
    assert "```tisslang\nSTEP " in step.contents.value
    model = await hover(client, uri, 0, 2)
    assert rng(model.range) == (0, 0, 0, 6) and model.contents.value.startswith("**@model**: ")
    variable = await hover(client, uri, 3, 18)
    assert variable.contents.value == '**name**: variable, set at line 2:\n```tisslang\nVAR name = "x"\n```'
    field = await hover(client, uri, 4, 20)
    assert rng(field.range) == (4, 20, 4, 29)
    assert field.contents.value == "**LAST_RUN.EXIT_CODE**: the command's exit status (128 + N when killed by signal N)"
    head = await hover(client, uri, 4, 12)
    assert head.contents.value.startswith("**LAST_RUN**: the last RUN")
    assert await hover(client, uri, 3, 0) is None  # indentation
    clause = await hover(client, await open_doc(client, 'READ "f" AS text\n'), 0, 10)
    assert clause.contents.value.startswith("**AS**: part of READ, which does this: ")


async def test_without_pygls_tiss_lsp_says_how_to_install_it():
    code = ("import sys; sys.modules['pygls'] = None\n"
            "from runtime.cli import main; sys.exit(main(['lsp']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr == ("tiss: error: the language server needs pygls; install it with "
                             "pip install 'quantatissu[lsp]'\n")


# --- outline, folding -------------------------------------------------------------------------

OUTLINE_SOURCE = '''\
TASK "Build" {
    SETUP {
        MKDIR "b"
    }
    STEP "outer" {
        IF true {
            STEP "inner" {
                RUN "x"
            }
        }
        CHOOSE {
            OPTION "fast" {
                RUN "a"
            }
        }
    }
    TEARDOWN "clean" {
        DELETE "b" RECURSIVE
    }
}
'''


def tree(symbols):
    return [(s.name, s.detail, rng(s.range), rng(s.selection_range), tree(s.children or []))
            for s in symbols]


async def test_document_symbols_are_an_outline_tree(client):
    uri = await open_doc(client, OUTLINE_SOURCE)
    symbols = await client.text_document_document_symbol_async(t.DocumentSymbolParams(doc_id(uri)))
    assert tree(symbols) == [
        ("Build", "TASK", (0, 0, 19, 1), (0, 5, 0, 12), [
            ("SETUP", "SETUP", (1, 4, 3, 5), (1, 4, 1, 9), []),
            ("outer", "STEP", (4, 4, 15, 5), (4, 9, 4, 16), [
                ("inner", "STEP", (6, 12, 8, 13), (6, 17, 6, 24), []),
                ("fast", "OPTION", (11, 12, 13, 13), (11, 19, 11, 25), []),
            ]),
            ("clean", "TEARDOWN", (16, 4, 18, 5), (16, 13, 16, 20), []),
        ]),
    ]


async def test_outline_from_what_parsed_before_a_syntax_error(client):
    source = 'STEP "one" {\n    RUN "a"\n}\nSTEP "two" {\n    RUN "b"\n    ASSERT ==\n}\n'
    uri = await open_doc(client, source)
    symbols = await client.text_document_document_symbol_async(t.DocumentSymbolParams(doc_id(uri)))
    assert [(s.name, rng(s.range)) for s in symbols] == [("one", (0, 0, 2, 1)), ("two", (3, 0, 4, 11))]


async def test_folding_ranges_for_blocks_heredocs_and_comment_runs(client):
    source = ('# one\n# two\nSTEP "a" {\n    WRITE "f" <<EOF\n    x\n    y\n    EOF\n'
              '    IF true {\n        RUN "a"\n    } ELSE {\n        RUN "b"\n    }\n}\n')
    uri = await open_doc(client, source)
    ranges = await client.text_document_folding_range_async(t.FoldingRangeParams(doc_id(uri)))
    assert [(r.start_line, r.end_line, r.kind) for r in ranges] == [
        (0, 1, t.FoldingRangeKind.Comment),
        (2, 11, t.FoldingRangeKind.Region),   # the STEP, up to the line before its }
        (3, 5, t.FoldingRangeKind.Region),    # the heredoc body, its EOF stays visible
        (7, 8, t.FoldingRangeKind.Region),    # IF ... up to } ELSE {
        (9, 10, t.FoldingRangeKind.Region),   # ELSE ...
    ]


# --- variables: definition, references, rename ------------------------------------------------

NAV_SOURCE = '''\
VAR target = "a"
READ "in.txt" AS text
STEP "s" {
    LOG "{{ target }} / {{text}}"
    WRITE "out" <<EOF
    {{ target }}
    EOF
    PROMPT_AGENT "again" INTO target
    ASSERT target CONTAINS "a"
}
'''


async def test_definition_and_references(client):
    uri = await open_doc(client, NAV_SOURCE)
    found = await client.text_document_definition_async(t.DefinitionParams(doc_id(uri), t.Position(8, 12)))
    assert [rng(loc.range) for loc in found] == [(0, 4, 0, 10), (7, 30, 7, 36)]
    refs = await client.text_document_references_async(t.ReferenceParams(
        context=t.ReferenceContext(include_declaration=True), text_document=doc_id(uri),
        position=t.Position(3, 12)))
    assert [rng(loc.range) for loc in refs] == [
        (0, 4, 0, 10), (3, 12, 3, 18), (5, 7, 5, 13), (7, 30, 7, 36), (8, 11, 8, 17)]
    refs = await client.text_document_references_async(t.ReferenceParams(
        context=t.ReferenceContext(include_declaration=False), text_document=doc_id(uri),
        position=t.Position(1, 18)))
    assert [rng(loc.range) for loc in refs] == [(3, 26, 3, 30)]
    nothing = await client.text_document_definition_async(t.DefinitionParams(doc_id(uri), t.Position(3, 5)))
    assert not nothing
    marks = await client.text_document_document_highlight_async(
        t.DocumentHighlightParams(doc_id(uri), t.Position(1, 19)))
    assert [(rng(h.range), h.kind) for h in marks] == [
        ((1, 17, 1, 21), t.DocumentHighlightKind.Write), ((3, 26, 3, 30), t.DocumentHighlightKind.Read)]


async def test_rename_a_variable_across_the_file(client):
    uri = await open_doc(client, NAV_SOURCE)
    prepared = await client.text_document_prepare_rename_async(
        t.PrepareRenameParams(doc_id(uri), t.Position(5, 9)))
    assert rng(prepared.range) == (5, 7, 5, 13) and prepared.placeholder == "target"
    edit = await client.text_document_rename_async(
        t.RenameParams(doc_id(uri), t.Position(0, 5), "goal"))
    renamed = apply_edits(NAV_SOURCE, edit.changes[uri])
    assert renamed == NAV_SOURCE.replace("target", "goal")
    with pytest.raises(Exception, match="keyword"):
        await client.text_document_rename_async(t.RenameParams(doc_id(uri), t.Position(0, 5), "STEP"))
    with pytest.raises(Exception, match="not a variable name"):
        await client.text_document_rename_async(t.RenameParams(doc_id(uri), t.Position(0, 5), "2x"))
    with pytest.raises(Exception, match="built-in"):
        await client.text_document_rename_async(t.RenameParams(doc_id(uri), t.Position(0, 5), "LAST_RUN"))
    assert await client.text_document_prepare_rename_async(
        t.PrepareRenameParams(doc_id(uri), t.Position(2, 1))) is None


# --- semantic tokens --------------------------------------------------------------------------

async def test_semantic_tokens_come_from_the_repl_scanner(client):
    source = '#TISS! a=b\n@model "echo" # c\nVAR n = 3\nRUN "x {{ n }}\\n"\nASSERT LAST_RUN.STDOUT == "é😀"\n'
    uri = await open_doc(client, source)
    result = await client.text_document_semantic_tokens_full_async(t.SemanticTokensParams(doc_id(uri)))
    decoded, line, start = [], 0, 0
    data = list(result.data)
    for i in range(0, len(data), 5):
        dl, ds, length, kind, mods = data[i:i + 5]
        line += dl
        start = start + ds if dl == 0 else ds
        names = [m for b, m in enumerate(features.TOKEN_MODIFIERS) if mods & (1 << b)]
        decoded.append((line, start, length, features.TOKEN_TYPES[kind], names))
    assert decoded == [
        (0, 0, 10, "comment", []),
        (1, 0, 6, "decorator", []),
        (1, 7, 1, "string", []), (1, 8, 4, "string", []), (1, 12, 1, "string", []),
        (1, 14, 3, "comment", []),
        (2, 0, 3, "keyword", []), (2, 4, 1, "variable", ["declaration"]),
        (2, 6, 1, "operator", []), (2, 8, 1, "number", []),
        (3, 0, 3, "keyword", []), (3, 4, 1, "string", []), (3, 5, 2, "string", []),
        (3, 7, 7, "macro", []), (3, 14, 2, "string", []), (3, 16, 1, "string", []),
        (4, 0, 6, "keyword", []), (4, 7, 8, "variable", ["defaultLibrary", "readonly"]),
        (4, 16, 6, "property", []), (4, 23, 2, "operator", []),
        # "é😀": the emoji is two UTF-16 units
        (4, 26, 1, "string", []), (4, 27, 3, "string", []), (4, 30, 1, "string", []),
    ]


def decode_tokens(data) -> list[tuple[int, int, int, int, int]]:
    decoded, line, start = [], 0, 0
    data = list(data)
    for i in range(0, len(data), 5):
        dl, ds, length, kind, mods = data[i:i + 5]
        line += dl
        start = start + ds if dl == 0 else ds
        decoded.append((line, start, length, kind, mods))
    return decoded


async def test_semantic_tokens_for_a_range_are_the_full_ones_there(client):
    random.seed(7)
    for path in EXAMPLES:
        text = path.read_text(encoding="utf-8")
        uri = await open_doc(client, text, f"range_{path.name}")
        lines = text.count("\n")
        ranges = [(0, lines)] + [tuple(sorted((random.randrange(lines), random.randrange(lines))))
                                 for _ in range(4)]
        got = []
        for first, last in ranges:  # before any full request: scanned from a statement start
            result = await client.text_document_semantic_tokens_range_async(t.SemanticTokensRangeParams(
                doc_id(uri), t.Range(t.Position(first, 0), t.Position(last, 10_000))))
            got.append(decode_tokens(result.data))
        full = decode_tokens((await client.text_document_semantic_tokens_full_async(
            t.SemanticTokensParams(doc_id(uri)))).data)
        for (first, last), tokens in zip(ranges, got):
            assert tokens == [tok for tok in full if first <= tok[0] <= last], (path.name, first, last)


# --- robustness -------------------------------------------------------------------------------

async def test_any_bytes_and_a_fuzz_of_edits_never_break_the_server(client):
    """Random incremental edits (seeded, bounded) with hostile text; at the end the server's
    diagnostics equal those computed locally for the client's copy of the text, so the server
    applied every edit exactly as the client did, and it never logged an internal error."""
    random.seed(16)
    pieces = ['STEP "s" {', "}", '"', "'", "<<EOF", "EOF", "{{ x }}", "\\", "\n", "\r\n", "\r",
              "VAR x = 1", "@model", "😀", "é", "\x00", "\x0c", "\u2028", "\ufeff", "\ud800", "IF", "ELSE",
              "[", "{", "#", "  ", "LAST_RUN.", "ASSERT", "==", "\t"]
    text = EXAMPLES[0].read_text(encoding="utf-8")
    uri = await open_doc(client, text)
    version = 1
    for _ in range(150):
        doc = Text(text)
        lines = len(doc.lines)
        a_line = random.randrange(lines + 1)
        b_line = min(lines, a_line + random.choice([0, 0, 1, 2]))
        a = (a_line, random.randrange(0, 12))
        b = (b_line, random.randrange(0, 12)) if b_line != a_line else (a_line, a[1] + random.randrange(0, 4))
        new = "".join(random.choice(pieces) for _ in range(random.randrange(0, 4)))
        # The client's copy, edited as an editor would (UTF-16 positions, clamped to lines).
        text = doc.apply(a, b, new).source
        version += 1
        client.text_document_did_change(t.DidChangeTextDocumentParams(
            text_document=t.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[t.TextDocumentContentChangePartial(
                range=t.Range(t.Position(*a), t.Position(*b)), text=new)]))
        if random.random() < 0.1:
            await client.text_document_semantic_tokens_full_async(t.SemanticTokensParams(doc_id(uri)))
            await client.text_document_document_symbol_async(t.DocumentSymbolParams(doc_id(uri)))
            await complete(client, uri, a[0], a[1])
            await hover(client, uri, a[0], a[1])
            await client.text_document_formatting_async(t.DocumentFormattingParams(
                doc_id(uri), t.FormattingOptions(tab_size=4, insert_spaces=True)))
    expected = [(rng(d.range), d.message) for d in features.diagnostics(Analysis(Text(text)))]
    await wait_for(lambda: [(rng(d.range), d.message) for d in client.diagnostics[uri]] == expected)
    assert no_internal_errors(client), [m.message for m in client.log_messages]


async def test_binary_garbage_is_just_a_syntax_error(client):
    garbage = bytes(range(256)).decode("latin-1") * 4 + "\udc80\U0001f600\ud83d"
    uri = await open_doc(client, garbage)
    assert len(client.diagnostics[uri]) == 1
    symbols = await client.text_document_document_symbol_async(t.DocumentSymbolParams(doc_id(uri)))
    assert symbols == []
    assert no_internal_errors(client)


# A second server with faults planted from outside (the test's own code, run before serving):
# hover always raises, and the first diagnostics run raises. The server must log each to the
# client with its traceback and go on serving.
FAULTY = """
import runtime.lsp.features as features, runtime.lsp.hover as hover
def broken_hover(*args, **kwargs):
    raise RuntimeError("planted hover fault")
hover.hover = broken_hover
real = features.diagnostics
calls = []
def diagnostics_failing_once(analysis):
    calls.append(1)
    if len(calls) == 1:
        raise RuntimeError("planted diagnostics fault")
    return real(analysis)
features.diagnostics = diagnostics_failing_once
from runtime.lsp.server import serve
serve()
"""


@pytest_lsp.fixture(
    scope="module",
    config=ClientServerConfig(server_command=[sys.executable, "-c", FAULTY]),
)
async def faulty(lsp_client: LanguageClient):
    await lsp_client.initialize_session(t.InitializeParams(capabilities=CAPABILITIES))
    yield
    await lsp_client.shutdown_session()


async def test_an_internal_error_is_logged_and_the_server_keeps_serving(faulty):
    uri = "file:///tmp/faulty.tiss"
    faulty.text_document_did_open(t.DidOpenTextDocumentParams(
        t.TextDocumentItem(uri=uri, language_id="tisslang", version=1, text='LOG "{{ x }}"\n')))
    await wait_for(lambda: any("planted diagnostics fault" in m.message for m in faulty.log_messages))
    assert await hover(faulty, uri, 0, 1) is None
    await wait_for(lambda: any("planted hover fault" in m.message for m in faulty.log_messages))
    logged = [m for m in faulty.log_messages if "planted" in m.message]
    assert all(m.type == t.MessageType.Error and "Traceback" in m.message for m in logged)
    # Still serving: the outline answers, and the next change gets its diagnostics.
    symbols = await faulty.text_document_document_symbol_async(t.DocumentSymbolParams(doc_id(uri)))
    assert symbols == [] or list(symbols) == []
    faulty.text_document_did_change(t.DidChangeTextDocumentParams(
        text_document=t.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[t.TextDocumentContentChangePartial(
            range=t.Range(t.Position(0, 0), t.Position(0, 0)), text="VAR x = 1\n")]))
    await wait_for(lambda: uri in faulty.diagnostics and list(faulty.diagnostics[uri]) == [])


async def test_a_big_file_being_checked_does_not_hold_up_other_answers(client):
    small = await open_doc(client, 'VAR name = 1\nLOG "{{ name }}"\n')
    big_text = 'STEP "big" {\n' + "\n".join(
        f'    RUN "echo {i}"\n    ASSERT LAST_RUN.EXIT_CODE == 0' for i in range(8000)) + "\n}\n"
    assert len(big_text) > 300_000
    big = (client.workspace_root / "big.tiss").as_uri()
    client.text_document_did_open(t.DidOpenTextDocumentParams(
        t.TextDocumentItem(uri=big, language_id="tisslang", version=1, text=big_text)))
    answer = await hover(client, small, 1, 9)
    assert answer.contents.value.startswith("**name**: variable")
    assert big not in client.diagnostics  # answered while the big file was still being checked
    await wait_for(lambda: big in client.diagnostics, timeout=60)
    assert list(client.diagnostics[big]) == []


async def test_an_edit_within_a_statement_is_parsed_again_alone_with_the_same_result():
    before = EXAMPLES[0].read_text(encoding="utf-8")
    lines = before.split("\n")
    target = next(i for i, line in enumerate(lines) if line.strip().startswith("ASSERT"))
    after = "\n".join(lines[:target] + [lines[target] + " AND nope"] + lines[target + 1:])
    previous = Analysis(Text(before))
    fast = Analysis(Text(after), previous=previous)
    full = Analysis(Text(after))
    assert fast.reparsed and not full.reparsed
    assert fast.program.to_json() == full.program.to_json()
    assert fast.findings == full.findings and fast.findings  # `nope` is undefined


@pytest_lsp.fixture(
    scope="module",
    config=ClientServerConfig(server_command=[sys.executable, "-m", "runtime", "lsp"]),
)
async def utf8_client(lsp_client: LanguageClient):
    capabilities = t.ClientCapabilities(
        general=t.GeneralClientCapabilities(position_encodings=[t.PositionEncodingKind.Utf8]),
        text_document=CAPABILITIES.text_document)
    result = await lsp_client.initialize_session(t.InitializeParams(capabilities=capabilities))
    assert result.capabilities.position_encoding == t.PositionEncodingKind.Utf8
    yield
    await lsp_client.shutdown_session()


async def test_a_client_that_counts_utf8_gets_utf8_positions(utf8_client):
    uri = "file:///tmp/utf8.tiss"
    utf8_client.text_document_did_open(t.DidOpenTextDocumentParams(t.TextDocumentItem(
        uri=uri, language_id="tisslang", version=1, text='VAR s = "é😀"; LOG "{{ nope }}"\n')))
    await wait_for(lambda: uri in utf8_client.diagnostics)
    # "é" is 2 bytes and the emoji 4: the interpolation starts at byte 23, not code point 19.
    assert [rng(d.range) for d in utf8_client.diagnostics[uri]] == [(0, 23, 0, 33)]
    # An edit in UTF-8 units lands where the client meant it: after the emoji, inside the string.
    utf8_client.text_document_did_change(t.DidChangeTextDocumentParams(
        text_document=t.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[t.TextDocumentContentChangePartial(
            range=t.Range(t.Position(0, 14), t.Position(0, 14)), text="!")]))
    await wait_for(lambda: [rng(d.range) for d in utf8_client.diagnostics[uri]] == [(0, 24, 0, 34)])
    edit = await utf8_client.text_document_rename_async(
        t.RenameParams(doc_id(uri), t.Position(0, 4), "text"))
    assert [rng(e.range) for e in edit.changes[uri]] == [(0, 4, 0, 5)]

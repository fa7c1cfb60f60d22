"""The REPL's reading half: tokenizer, completeness, highlighting, validator, completer, keys,
history, meta-command parsing. The prompt is driven with prompt_toolkit's pipe input."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from prompt_toolkit.validation import ValidationError

import tisslang
from runtime.repl import meta, scan as sc
from runtime.repl.completer import TissCompleter
from runtime.repl.history import history_path, open_history
from runtime.repl.lexer import style_lines
from runtime.repl.reader import create_prompt_session, read_entry as reader_read_entry
from runtime.repl.validator import EntryValidator, entry_ready

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.tiss"))


# -- tokenizer ----------------------------------------------------------------------------

def kinds(text):
    return [(t.kind, t.text) for t in sc.scan(text).tokens]


def test_tokens_of_a_statement_line():
    assert kinds('ASSERT LAST_RUN.EXIT_CODE >= -3 AND ok == true # done') == [
        ("keyword", "ASSERT"), ("builtin", "LAST_RUN"), ("punctuation", "."), ("name", "EXIT_CODE"),
        ("operator", ">="), ("number", "-3"), ("keyword", "AND"), ("name", "ok"),
        ("operator", "=="), ("boolean", "true"), ("comment", "# done"),
    ]
    # Numbers as the grammar reads them, exponent included.
    assert kinds("VAR x = [2.5e-3, -1E+2]") == [
        ("keyword", "VAR"), ("name", "x"), ("operator", "="), ("punctuation", "["),
        ("number", "2.5e-3"), ("punctuation", ","), ("number", "-1E+2"), ("punctuation", "]"),
    ]


def test_strings_escapes_and_interpolation():
    assert kinds(r'LOG "a \"{{ x }}\" \{{ y }}"') == [
        ("keyword", "LOG"), ("string", '"'), ("string", "a "), ("escape", r"\""),
        ("interpolation", "{{ x }}"), ("escape", r"\""), ("string", " "), ("escape", r"\{"),
        ("string", "{ y }}"), ("string", '"'),
    ]
    # Single-quoted strings are raw: no interpolation, backslashes kept except \' and \\.
    assert kinds(r"RUN 'a\d {{ x }} \''") == [
        ("keyword", "RUN"), ("string", "'"), ("string", r"a\d {{ x }} "), ("escape", r"\'"), ("string", "'"),
    ]


def test_heredoc_body_is_text_until_the_delimiter_line():
    source = 'WRITE "a.py" <<PY\n    if x: {\n    RUN "no" # not a comment\n    PY\nLOG "after"'
    assert kinds(source) == [
        ("keyword", "WRITE"), ("string", '"'), ("string", "a.py"), ("string", '"'),
        ("heredoc.mark", "<<PY"), ("heredoc.body", "    if x: {"),
        ("heredoc.body", '    RUN "no" # not a comment'), ("heredoc.end", "    PY"),
        ("keyword", "LOG"), ("string", '"'), ("string", "after"), ("string", '"'),
    ]
    raw = kinds("WRITE \"t\" <<'T'\n{{ kept }}\nT")
    assert ("heredoc.body", "{{ kept }}") in raw
    assert ("interpolation", "{{ kept }}") in kinds('WRITE "t" <<T\n{{ kept }}\nT')


def test_directives_header_and_errors():
    assert kinds('#TISS! Language=Python\n@persona "x"') == [
        ("header", "#TISS! Language=Python"), ("directive", "@persona"),
        ("string", '"'), ("string", "x"), ("string", '"'),
    ]
    assert kinds("VAR a = $") == [("keyword", "VAR"), ("name", "a"), ("operator", "="), ("error", "$")]


def test_scanner_keywords_are_the_grammars():
    # Independent of the scanner: every keyword literal in the Lark grammar must highlight as one.
    grammar = (Path(tisslang.__file__).parent / "tisslang.lark").read_text()
    literals = set(re.findall(r'"([A-Z][A-Z_]+)"', grammar))
    assert literals and literals <= sc.KEYWORDS


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('RUNIF{}[]()"\'\\#<@:=.\n x1ELSCTRYPAWOK_')), max_size=80))
def test_scanner_never_fails_and_tokens_tile_the_text(text):
    tokens = sc.scan(text).tokens
    position = 0
    for token in tokens:
        assert position <= token.start < token.end <= len(text)
        assert token.text == text[token.start:token.end]
        position = token.end
    # Highlighting keeps every character, line by line.
    assert ["".join(piece for _, piece in line) for line in style_lines(text)] == text.split("\n")


# -- completeness -------------------------------------------------------------------------

@pytest.mark.parametrize("text, complete", [
    ('RUN "ls"', True),
    ('STEP "a" {', False),
    ('STEP "a" {\n  RUN "ls"\n}', True),
    ('STEP "a" { STEP "b" {\n }', False),
    ('RUN "echo {"', True),  # a brace inside a string opens nothing
    ("# {", True),
    ('WRITE "a" <<EOF', False),
    ('WRITE "a" <<EOF\n}\n', False),
    ('WRITE "a" <<EOF\nbody\n  EOF', True),
    ('VAR xs = [1,\n2', False),
    # At the prompt ELSE / CATCH go on the closing line, so Enter after `}` runs the entry
    # (no extra Enter); only a pipe looks at the next line (see iter_entries).
    ('IF x { LOG "a" }', True),
    ('IF x {\n    LOG "a"\n}', True),
    ('IF x { LOG "a" }\n', True),
    ('IF x { LOG "a" } ELSE {', False),
    ('IF x { LOG "a" } ELSE { LOG "b" }', True),
    ('IF x { } ELSE IF y { }', True),
    ('TRY { RUN "a" }', True),
    ('TRY { RUN "a" } CATCH {\n', False),
    ('TRY { RUN "a" } CATCH { }', True),
    ('STEP "s" { IF x { } }', True),
    ('RUN "unterminated', True),  # complete, so the validator shows the error
    ("}", True),
    ("", False),
])
def test_is_complete(text, complete):
    assert sc.is_complete(text) is complete


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_completeness_agrees_with_the_parser_on_every_example_prefix(path):
    lines = path.read_text().split("\n")
    for cut in range(1, len(lines) + 1):
        prefix = "\n".join(lines[:cut])
        state = sc.scan(prefix).state
        try:
            tisslang.parse(prefix, path.name)
            parses = True
        except tisslang.TissError:
            parses = False
        if state.depth > 0 or state.open_heredoc is not None:
            assert not parses, f"{path.name}: open prefix of {cut} lines parsed"
        if parses:
            assert sc.is_complete(prefix) or not prefix.strip(), (path.name, cut)
    assert sc.is_complete(path.read_text().rstrip("\n") + "\n")


# -- validator ----------------------------------------------------------------------------

def test_validator_puts_the_cursor_on_the_syntax_error():
    text = 'STEP "s" {\n    RUN "ls" extra\n}'
    with pytest.raises(tisslang.TissSyntaxError) as parsed:
        tisslang.parse(text, "<repl>")
    with pytest.raises(ValidationError) as info:
        EntryValidator().validate(Document(text))
    document = Document(text)
    row, col = document.translate_index_to_position(info.value.cursor_position)
    assert (row + 1, col + 1) == (parsed.value.line, parsed.value.column)
    assert info.value.message.startswith(f"line {parsed.value.line}, column {parsed.value.column}: ")


def test_validator_checks_meta_commands_and_ast_arguments():
    EntryValidator().validate(Document(":vars"))
    EntryValidator().validate(Document('  :ast RUN "ls"'))
    with pytest.raises(ValidationError, match="did you mean :vars"):
        EntryValidator().validate(Document(":varz"))
    # The cursor goes where the fix is: after a misspelt name (Backspace mends it), on an
    # argument that does not belong, at the end where one is missing.
    for text, cursor in ((" :varz now", 6), (":vars now", 6), (":load  ", 5)):
        with pytest.raises(ValidationError) as info:
            EntryValidator().validate(Document(text))
        assert info.value.cursor_position == cursor, text
    with pytest.raises(ValidationError) as info:
        EntryValidator().validate(Document(':ast RUN "ls" extra'))
    assert info.value.cursor_position >= len(":ast ")


def test_entry_ready_for_meta_commands():
    assert entry_ready(":help") and entry_ready(":nonsense")
    assert not entry_ready(':ast STEP "x" {') and entry_ready(':ast STEP "x" {\n}')


# -- completer ------------------------------------------------------------------------------

def complete(text, variables=(), workspace=None):
    completer = TissCompleter(lambda: variables, (lambda: workspace) if workspace else Path.cwd)
    return [c.text for c in completer.get_completions(Document(text), CompleteEvent(completion_requested=True))]


def test_completes_statement_keywords_at_statement_start():
    assert complete("RE") == ["READ", "REQUEST_REVIEW", "RETRY"]
    assert complete('STEP "x" { PA') == ["PARALLEL", "PAUSE"]
    assert complete("  SET_B") == ["SET_BUDGET"]


def test_completes_directives_variables_builtins_and_fields():
    assert complete("@t") == ["@temperature", "@top_k", "@top_p", "@timeout"]
    assert complete("ASSERT gr", variables=["greeting", "grade", "other"]) == ["grade", "greeting"]
    assert complete("ASSERT LAST_RUN.ST") == ["STDOUT", "STDERR", "STDOUT_TRUNCATED", "STDERR_TRUNCATED"]
    assert complete("ASSERT x CON") == ["CONTAINS"]
    assert complete("SET_BUDGET TOK") == ["TOKENS", "TOKEN_COUNT"]
    assert complete('LOG "value: {{ LAST_P') == ["LAST_PROMPT"]
    assert complete('WRITE "f" <<T\nhello {{ na', variables=["name"]) == ["name"]


def test_completes_workspace_paths_only_in_path_strings(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.py").write_text("")
    (tmp_path / "setup.cfg").write_text("")
    (tmp_path / ".hidden").write_text("")
    assert complete('READ "s', workspace=tmp_path) == ["setup.cfg", "src/"]
    assert complete('DELETE "src/m', workspace=tmp_path) == ["main.py"]
    assert complete('WRITE "', workspace=tmp_path) == ["setup.cfg", "src/"]
    assert complete('MKDIR ".h', workspace=tmp_path) == [".hidden"]
    assert complete('LOG "s', workspace=tmp_path) == []  # not a path
    assert complete('WRITE "a" "s', workspace=tmp_path) == []  # the content, not the path
    assert complete('READ "../', workspace=tmp_path / "src") == []  # never outside the workspace
    assert complete('READ "/etc/pa', workspace=tmp_path) == []
    # FILE "path" EXISTS names a workspace path too; the other operand does not.
    assert complete('ASSERT NOT FILE "src/', workspace=tmp_path) == ["main.py"]
    assert complete('IF x == 1 AND FILE "se', workspace=tmp_path) == ["setup.cfg"]
    assert complete('ASSERT x CONTAINS "s', workspace=tmp_path) == []


def test_nothing_is_offered_in_comments_or_plain_text():
    assert complete("# RU") == []
    assert complete('RUN "echo RU') == []


# -- history and meta-commands --------------------------------------------------------------

def test_history_path_follows_xdg_state_home(tmp_path):
    assert history_path({"XDG_STATE_HOME": str(tmp_path)}) == tmp_path / "tiss" / "history"
    home = tmp_path / "home"
    assert history_path({"HOME": str(home)}) == home / ".local" / "state" / "tiss" / "history"
    # A relative XDG_STATE_HOME is invalid by the spec and ignored.
    assert history_path({"XDG_STATE_HOME": "rel", "HOME": str(home)}) == home / ".local" / "state" / "tiss" / "history"


def test_unwritable_history_falls_back_with_a_warning(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    history, warning = open_history(blocker / "tiss" / "history")
    assert not isinstance(history, FileHistory) and "history is not saved" in warning


def test_meta_command_parsing():
    assert meta.parse_meta(" :load  scripts/a.tiss ") == meta.MetaCommand("load", "scripts/a.tiss")
    assert meta.parse_meta(":q") == meta.MetaCommand("quit", "")
    assert meta.parse_meta(':ast\nRUN "x"') == meta.MetaCommand("ast", 'RUN "x"')
    with pytest.raises(meta.MetaCommandError, match=r":save needs FILE: :save FILE"):
        meta.parse_meta(":save")
    with pytest.raises(meta.MetaCommandError, match=r":reset takes no argument"):
        meta.parse_meta(":reset now")
    with pytest.raises(meta.MetaCommandError, match=r"unknown command :lod; did you mean :load\?"):
        meta.parse_meta(":lod x")


# -- the prompt, driven through a pipe -----------------------------------------------------

def read_entry(session, seconds=10.0):
    """`reader.read_entry` with a watchdog: a prompt that never accepts fails the test instead
    of hanging the suite (the buffer's text is in the message)."""
    app = session.app

    def give_up():
        if app.is_running and app.loop is not None:
            app.loop.call_soon_threadsafe(
                lambda: app.exit(exception=AssertionError(f"prompt still open with {session.default_buffer.text!r}"))
            )

    watchdog = threading.Timer(seconds, give_up)
    watchdog.start()
    try:
        return reader_read_entry(session)
    finally:
        watchdog.cancel()


@pytest.fixture
def prompt():
    with create_pipe_input() as pipe:
        def make(history=None):
            return create_prompt_session(TissCompleter(), history, input=pipe, output=DummyOutput())
        yield pipe, make


def test_enter_continues_an_open_block_with_indentation(prompt):
    pipe, make = prompt
    pipe.send_text('STEP "a" {\rLOG "x"\r}\r')
    assert read_entry(make()) == 'STEP "a" {\n    LOG "x"\n}'


def test_heredoc_entry_stays_open_until_its_delimiter(prompt):
    pipe, make = prompt
    pipe.send_text('WRITE "f" <<EOF\rline one\r\rEOF\r')
    assert read_entry(make()) == 'WRITE "f" <<EOF\nline one\n\nEOF'


def test_heredoc_body_keeps_its_own_indentation(prompt):
    pipe, make = prompt
    # In a heredoc `{` opens nothing and `}` closes nothing: no extra indent, no dedent.
    pipe.send_text('STEP "s" {\rWRITE "c.json" <<J\r{\r}\rJ\r}\r')
    assert read_entry(make()) == 'STEP "s" {\n    WRITE "c.json" <<J\n    {\n    }\n    J\n}'


def test_heredoc_lines_start_at_the_opener_indentation_so_the_body_is_what_was_typed(prompt):
    pipe, make = prompt
    # Extra indentation typed on one body line is not carried to the next (nor onto the
    # closing delimiter, which would strip it from every line or make `def` an error).
    pipe.send_text('STEP "s" {\rWRITE "a.py" <<PY\rdef f():\r    return 1\r\rPY\r}\r')
    entry = read_entry(make())
    assert entry == 'STEP "s" {\n    WRITE "a.py" <<PY\n    def f():\n        return 1\n    \n    PY\n}'
    write = tisslang.parse(entry).body[0].body[0]
    assert write.content.parts == ("def f():\n    return 1\n\n",)


def test_enter_after_the_closing_brace_of_an_if_or_try_runs_it_at_once(prompt):
    pipe, make = prompt
    pipe.send_text('IF true {\rLOG "a"\r}\r')
    assert read_entry(make()) == 'IF true {\n    LOG "a"\n}'
    pipe.send_text('IF true {\rLOG "a"\r} ELSE {\rLOG "b"\r}\r')
    assert read_entry(make()) == 'IF true {\n    LOG "a"\n} ELSE {\n    LOG "b"\n}'
    pipe.send_text('TRY { RUN "false" }\r')
    assert read_entry(make()) == 'TRY { RUN "false" }'


def test_invalid_entry_is_refused_with_the_cursor_on_the_error(prompt):
    pipe, make = prompt
    # Enter is refused and the cursor jumps to `extra`; the `#` typed next lands there,
    # commenting it out, and the second Enter submits.
    pipe.send_text('RUN "ls" extra\r#\r')
    assert read_entry(make()) == 'RUN "ls" #extra'


def test_after_a_refusal_enter_runs_the_fixed_entry_from_the_error(prompt):
    pipe, make = prompt
    # The cursor lands on `RUNN` (line 2); three Rights and Delete mend it, and the next Enter
    # submits although the cursor is mid-entry, instead of splitting the line.
    pipe.send_text('STEP "s" {\rRUNN "ls"\r}\r\x1b[C\x1b[C\x1b[C\x1b[3~\r')
    assert read_entry(make()) == 'STEP "s" {\n    RUN "ls"\n}'
    # While the entry still does not parse, Enter edits: here it splits the two statements
    # where the cursor was put, and then the entry parses and the next Enter submits it.
    pipe.send_text('STEP "s" {\rRUN "a" RUN "b"\r}\r\r\r')
    assert read_entry(make()) == 'STEP "s" {\n    RUN "a" \n    RUN "b"\n}'


def test_enter_mid_entry_edits_and_escape_enter_submits(prompt):
    pipe, make = prompt
    # Up and End move to the end of the first line; Enter there opens an indented line inside
    # the block (the entry continues), Esc Enter submits with the cursor mid-entry.
    pipe.send_text('STEP "a" {\r}\x1b[A\x1b[F\rLOG "x"\x1b\r')
    assert read_entry(make()) == 'STEP "a" {\n    LOG "x"\n}'


def test_enter_submits_a_one_line_entry_wherever_the_cursor_is(prompt):
    pipe, make = prompt
    pipe.send_text('VAR a = 1\x1b[H\r')  # Home, then Enter
    assert read_entry(make()) == "VAR a = 1"


def test_ctrl_c_clears_the_input_and_ctrl_d_ends(prompt):
    pipe, make = prompt
    pipe.send_text('RUN "never"\x03LOG "kept"\r')
    assert read_entry(make()) == 'LOG "kept"'
    pipe.send_text("\x04")
    assert read_entry(make()) is None


def test_history_persists_between_sessions(prompt, tmp_path):
    pipe, make = prompt
    path = tmp_path / "state" / "tiss" / "history"
    history, warning = open_history(path)
    assert warning is None
    pipe.send_text('VAR remembered = 1\r')
    assert read_entry(make(history)) == "VAR remembered = 1"
    assert "VAR remembered = 1" in path.read_text()
    again, _ = open_history(path)
    pipe.send_text("\x1b[A\r")  # Up recalls the last entry of the earlier session
    assert read_entry(make(again)) == "VAR remembered = 1"
    # Suggestions come from that history (computed in the background while typing, so they are
    # asked for directly here rather than raced against the piped keys).
    session = make(again)
    buffer = Buffer(history=again)
    buffer.text = "VAR rem"
    suggestion = session.auto_suggest.get_suggestion(buffer, buffer.document)
    assert suggestion is not None and suggestion.text == "embered = 1"

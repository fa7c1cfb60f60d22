"""``tisslang.lexer.FastLexer`` gives exactly Lark's tokens, positions and errors.

The parser lexes with ``FastLexer`` (built from Lark's own lexer); here every token stream it
makes is compared with the one Lark's ``BasicLexer`` makes from the same text: type, value and
all six positions, and, where the text does not lex, the same ``UnexpectedCharacters`` at the same
place with the same tokens before it."""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lark.exceptions import UnexpectedCharacters
from lark.lexer import BasicLexer, LexerThread

from tisslang.lexer import FastLexer
from tisslang.parser import _parser
from tisslang.source import prepare

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p for folder in ("examples", "tests") for p in (ROOT / folder).rglob("*.tiss"))

# Pieces that exercise every terminal and the places where they compete: keywords inside and
# beside names, separators with blanks and comments before ELSE/CATCH, strings with escapes,
# numbers, heredoc openers, and characters no terminal takes.
PIECES = ["TASK", "STEP", "RUN", "IF", "ELSE", "CATCH", "TRY", "NOT", "AND", "OR", "CONTAINS",
          "EXISTS", "FILE", "true", "false", "IN", "INTO", "ELSEWHERE", "RUNNER", "x", "a.b.0",
          "_x1", "LAST_RUN.EXIT_CODE", '"s"', '"a\\"b"', "'r'", '"{{ x }}"', '"unterminated',
          "12", "-3.5e2", "0.5", "@model", "@", "<<EOF", "<<'R'", "<<", "<", "<=", "==", "!=",
          ">", "=", ":", ",", "{", "}", "[", "]", "(", ")", " ", "  ", "\t", "\n", "\n\n", ";",
          "# note", "#", "$", "%", "é", "\u00a0", "\\", "."]


def lark_lexer() -> BasicLexer:
    lexer = _parser().parser.lexer
    assert isinstance(lexer, FastLexer)
    return lexer.basic


def tokens(lexer, text: str):
    out = []
    try:
        for tok in LexerThread.from_text(lexer, text).lex(None):
            out.append((tok.type, tok.value, tok.start_pos, tok.line, tok.column, tok.end_line,
                        tok.end_column, tok.end_pos))
    except UnexpectedCharacters as exc:
        last = exc.token_history[-1] if exc.token_history else None
        out.append(("error", exc.pos_in_stream, exc.line, exc.column, exc.char,
                    sorted(exc.allowed), last and (last.type, last.start_pos)))
    return out


def same_as_lark(text: str) -> list:
    fast = tokens(_parser().parser.lexer, text)
    assert fast == tokens(lark_lexer(), text)
    return fast


def test_the_parser_lexes_with_the_fast_lexer():
    # If a Lark upgrade changed the lexer's layout, FastLexer.wrap would quietly hand back
    # Lark's own lexer: correct, but 2x slower on big files. This says so.
    assert isinstance(_parser().parser.lexer, FastLexer)


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_script_in_the_repository_lexes_the_same(path):
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        prepared = prepare(text, str(path)).text
    except Exception:  # noqa: BLE001 - a heredoc error: lex the raw text instead
        prepared = text
    same_as_lark(prepared)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(PIECES) | st.text(max_size=3), max_size=40))
def test_any_text_lexes_the_same(pieces):
    same_as_lark("".join(pieces))


def test_errors_and_positions_match_on_known_cases():
    assert same_as_lark('RUN "x" $')[-1][:4] == ("error", 8, 1, 9)
    # ELSE takes the separators before it, and its position is where they start.
    else_ = [t for t in same_as_lark("IF x {\n}\n  ELSE {\n}\n") if t[0] == "ELSE"]
    assert else_ == [("ELSE", "\n  ELSE", 8, 2, 2, 3, 7, 15)]
    names = [t[0] for t in same_as_lark("ELSEWHERE ELSE RUNNER RUN x.RUN")]
    assert names == ["DOTTED", "ELSE", "DOTTED", "RUN", "DOTTED"]


def test_a_consumer_that_stops_early_leaves_the_state_at_its_last_token():
    thread = LexerThread.from_text(_parser().parser.lexer, 'RUN "a"\nLOG "b"\n')
    stream = thread.lex(None)
    first, second = next(stream), next(stream)
    stream.close()
    assert (first.type, second.type) == ("RUN", "STRING")
    assert thread.state.line_ctr.char_pos == second.end_pos == 7
    assert thread.state.last_token is second


def test_wrap_leaves_a_lexer_it_does_not_understand_alone():
    class Other:
        pass

    other = Other()
    assert FastLexer.wrap(other) is other

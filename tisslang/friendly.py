"""Turning Lark's parse failures into messages for people (``explain``).

Lark reports what token it met and which terminals it expected; this module recognises the
common mistakes from that (plus the token before, from the parser's value stack) and says what
to write instead: an unclosed block points at its ``{``, a stray ``}`` says no block is open, an
unknown keyword suggests the closest one, a missing ``AS``/``INTO`` name, an incomplete
expression, ``ELSE`` without ``IF``. Anything else gets "unexpected X; expected Y".
"""

from __future__ import annotations

import difflib

from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.lexer import LexerThread

from . import statements
from .errors import TissSyntaxError
from .source import Prepared

# The keyword lists are the statement table's (statements.py); grouped here by the help
# each group gets in a message.
STATEMENT_KEYWORDS = statements.BLOCK_STATEMENT_KEYWORDS
# FILE starts an operand (FILE "p" EXISTS), so it is not suggested for a misspelt operator.
OPERATOR_KEYWORDS = tuple(k for k in statements.EXPRESSION_KEYWORDS if k != "FILE") + ("THEN",)
KEYWORDS = statements.KEYWORDS
_KEYWORD_TYPES = frozenset(k.upper() for k in KEYWORDS)

_COMPARISON_TYPES = {"COMPOP", "CONTAINS", "MATCHES", "IS_EMPTY", "IS_NOT_EMPTY"}
_OPERAND_STARTS = {"STRING", "NUMBER", "DOTTED", "TRUE", "FALSE", "LSQB", "LPAR"}
_EXPRESSION_LEADS = {"ASSERT", "IF", "COMPOP", "AND", "OR", "NOT", "CONTAINS", "MATCHES", "FILE",
                     "LPAR"}
_NAME_EXAMPLES = {
    "AS": 'READ "path" AS name',
    "INTO": 'PROMPT_AGENT "prompt" INTO name',
    "VAR": "VAR name = value",
    "SET_BUDGET": "SET_BUDGET TOKENS = 1000",
}
_STRING_EXAMPLES = {
    "STEP": 'STEP "what it does" { ... }', "OPTION": 'OPTION "what it tries" { ... }',
    "TASK": 'TASK "what the script is for"', "RUN": 'RUN "make test"',
    "WRITE": 'WRITE "path" <<EOF', "READ": 'READ "path" AS name', "LOG": 'LOG "message"',
    "PROMPT_AGENT": 'PROMPT_AGENT "prompt" INTO name', "REQUEST_REVIEW": 'REQUEST_REVIEW "why"',
    "PAUSE": 'PAUSE "why"', "MKDIR": 'MKDIR "path"', "DELETE": 'DELETE "path"',
}
_DESCRIPTIONS = {
    "_SEP": "end of line", "$END": "end of file", "STRING": "a string",
    "NUMBER": "a number", "DOTTED": "a name",
    "DIRECTIVE": "a directive (@name)", "HEREDOC": "a heredoc (<<EOF)",
    "COMPOP": "a comparison (== != < <= > >=)", "LBRACE": "'{'", "RBRACE": "'}'",
    "LSQB": "'['", "RSQB": "']'", "LPAR": "'('", "RPAR": "')'", "EQUAL": "'='", "COMMA": "','",
    "COLON": "':'", "TRUE": "true", "FALSE": "false",
}


def describe(type_: str) -> str:
    return _DESCRIPTIONS.get(type_, type_)


def _describe_token(tok: Token) -> str:
    if tok.type in ("_SEP", "$END"):
        return describe(tok.type)
    if tok.type in ("ELSE", "CATCH"):
        return tok.type
    if tok.type == "STRING":  # already quoted; long ones shortened
        return tok.value if len(tok.value) <= 24 else tok.value[:20] + "..." + tok.value[0]
    return repr(tok.value)


def explain(exc: UnexpectedInput, prepared: Prepared, filename: str, parser: Lark) -> TissSyntaxError:
    lines = prepared.lines

    def at(line: int, column: int, message: str) -> TissSyntaxError:
        source_line = lines[line - 1] if 0 < line <= len(lines) else None
        return TissSyntaxError(filename, line, column, message, source_line=source_line)

    if isinstance(exc, UnexpectedCharacters):
        return at(exc.line, exc.column, _bad_character(prepared.text, exc.pos_in_stream))
    if not isinstance(exc, UnexpectedToken):  # pragma: no cover - LALR raises only these two
        return at(getattr(exc, "line", 1) or 1, getattr(exc, "column", 1) or 1, str(exc))

    tok: Token = exc.token
    expected = set(exc.expected)
    stack = getattr(exc.state, "value_stack", None) or []
    prev = stack[-1] if stack else None
    prev_type = prev.type if isinstance(prev, Token) else None

    if tok.type in ("ELSE", "CATCH"):
        line, column = tok.end_line, tok.end_column - len(tok.type)
        owner = "an IF" if tok.type == "ELSE" else "a TRY"
        return at(line, column, f"{tok.type} without {owner}: {tok.type} goes right after the "
                                f"closing }} of {owner} block")

    if tok.type == "COMPOP" and prepared.text.startswith("<<", tok.start_pos):
        return at(tok.line, tok.column, _bad_character(prepared.text, tok.start_pos))

    opened, misindented = _open_brackets(parser, prepared.text, tok)
    if tok.type == "$END" and opened:
        kind, line, column = opened[-1]
        if kind == "{" and misindented:
            # A `}` that closed a block at another block's indentation most likely belongs to
            # that other block: the block missing its `}` is the one it was taken from.
            line, column = misindented[0]
        if kind == "{":
            return at(line, column, f"this block is never closed: add a }} to close it (the "
                                    f"file ends at line {len(lines)})")
        return at(line, column, "this list is never closed: add a ]")
    if tok.type == "RBRACE" and not any(kind == "{" for kind, _, _ in opened):
        return at(tok.line, tok.column, "stray }: there is no open block here to close")

    if opened and opened[-1][0] == "[" and "RSQB" in expected and tok.type != "$END" \
            and not expected & _OPERAND_STARTS:
        # LALR merges lookaheads across contexts, so `expected` may list things a list cannot
        # hold here; the open `[` says where we are.
        return at(tok.line, tok.column, f"unexpected {_describe_token(tok)} in a list: separate "
                                        "the items with ',' and close the list with ']'")
    if prev_type in _NAME_EXAMPLES and "DOTTED" in expected:
        if tok.type in _KEYWORD_TYPES:
            return at(tok.line, tok.column, f"{tok.value!r} is a reserved keyword and cannot be "
                                            f"a variable name; choose another name")
        return at(tok.line, tok.column, f"missing variable name after {prev_type}: write "
                                        f"{_NAME_EXAMPLES[prev_type]}")
    if expected == {"AS"}:
        return at(tok.line, tok.column, "READ needs AS and a variable name: "
                                        'READ "path" AS name')
    if tok.type == "EQUAL":
        return at(tok.line, tok.column, "'=' sets a value (VAR name = value); compare with ==")
    if prev_type == "DOTTED" and "EQUAL" in expected and tok.type == "COMPOP":
        return at(tok.line, tok.column, f"use a single '=' to set a value, not {tok.value!r}")

    if "OPTION" in expected and tok.type not in ("OPTION", "STEP", "_SEP", "$END"):
        if tok.type == "DOTTED" and difflib.get_close_matches(tok.value.upper(), ["OPTION"], n=1):
            return at(tok.line, tok.column, f"unknown keyword {tok.value!r}; did you mean 'OPTION'?")
        return at(tok.line, tok.column, 'CHOOSE holds only options, each OPTION "what it tries" '
                                        "{ ... } (or STEP); put statements inside an option")
    if tok.type in _COMPARISON_TYPES and {"AND", "OR"} <= expected:
        return at(tok.line, tok.column, "comparisons do not chain: join two with AND "
                                        "(a < b AND b < c), or put one in parentheses")
    if {"DOTTED", "STRING", "RBRACE"} <= expected <= {"DOTTED", "STRING", "RBRACE", "_SEP"} \
            and tok.type in _KEYWORD_TYPES:
        return at(tok.line, tok.column, f"{tok.value!r} is a keyword; to use it as an object key "
                                        f'put it in quotes: "{tok.value}": value')

    if tok.type == "DOTTED" and expected & set(STATEMENT_KEYWORDS):
        return at(tok.line, tok.column, _unknown_keyword(tok.value, STATEMENT_KEYWORDS))
    if tok.type == "DOTTED" and expected & {"CONTAINS", "MATCHES", "COMPOP", "AND", "OR"}:
        return at(tok.line, tok.column, _unknown_keyword(tok.value, OPERATOR_KEYWORDS,
                                                         what="operator"))

    if expected & _OPERAND_STARTS and prev_type in _EXPRESSION_LEADS and \
            tok.type not in _OPERAND_STARTS:
        if prev_type in ("ASSERT", "IF"):
            message = (f"incomplete expression: {prev_type} needs a condition, as in "
                       f"{prev_type} LAST_RUN.EXIT_CODE == 0")
        else:
            message = f"incomplete expression: expected a value after {prev.value!r}"
        return at(tok.line, tok.column, message)
    if expected == {"EXISTS"}:
        return at(tok.line, tok.column, 'incomplete expression: write FILE "path" EXISTS')
    if prev_type == "EQUAL" or (expected >= {"STRING", "NUMBER", "LSQB"} and
                                prev_type in ("EQUAL", "DIRECTIVE")):
        return at(tok.line, tok.column, f"expected a value (a string, number, true/false, "
                                        f"list, object or name), found {_describe_token(tok)}")

    if tok.type == "DOTTED":
        words = [e for e in expected if e in _KEYWORD_TYPES]
        close = difflib.get_close_matches(tok.value.upper(), words, n=1, cutoff=0.6)
        if close:
            return at(tok.line, tok.column, f"unknown word {tok.value!r}; did you mean "
                                            f"{close[0]!r}?")
    if "LBRACE" in expected and tok.type in ("_SEP", "$END"):
        return at(tok.line, tok.column, "expected { to open a block on this line")
    if expected & set(STATEMENT_KEYWORDS) and tok.type not in _KEYWORD_TYPES:
        return at(tok.line, tok.column, f"expected a statement (a keyword such as RUN, STEP, "
                                        f"ASSERT or VAR), found {_describe_token(tok)}")
    if expected == {"STRING", "HEREDOC"}:
        return at(tok.line, tok.column, 'WRITE needs what to write after the path: a string '
                                        '(WRITE "path" "text") or a heredoc (WRITE "path" <<EOF)')
    if expected == {"STRING"} and prev_type:
        example = _STRING_EXAMPLES.get(prev_type)
        hint = f", as in {example}" if example else ""
        return at(tok.line, tok.column, f"{prev_type} needs a quoted string here{hint}")
    if "_SEP" in expected and expected & {"RBRACE", "$END"} and tok.type != "_SEP":
        return at(tok.line, tok.column, f"unexpected {_describe_token(tok)} after a complete "
                                        "statement: put one statement per line, or separate "
                                        "them with ;")
    wanted = sorted({describe(t) for t in expected if not t.startswith("__")})
    shown = ", ".join(wanted[:8]) + (", ..." if len(wanted) > 8 else "")
    return at(tok.line, tok.column, f"unexpected {_describe_token(tok)}; expected {shown}")


# Operators people spell as in other languages, and what TissLang writes instead.
_OPERATOR_SPELLINGS = {
    "IS": "IS_EMPTY or IS_NOT_EMPTY (one word)",
    "NOT_CONTAINS": "NOT CONTAINS (two words)",
    "IN": "CONTAINS, with the container first: list CONTAINS item",
}


def _unknown_keyword(word: str, candidates: tuple[str, ...], what: str = "keyword") -> str:
    if what == "operator" and word.upper() in _OPERATOR_SPELLINGS:
        return f"unknown operator {word!r}: write {_OPERATOR_SPELLINGS[word.upper()]}"
    if word.upper() in candidates:
        return f"unknown {what} {word!r}: keywords are uppercase, write {word.upper()!r}"
    close = difflib.get_close_matches(word.upper(), candidates, n=1, cutoff=0.6)
    if close:
        return f"unknown {what} {word!r}; did you mean {close[0]!r}?"
    if what == "keyword":
        return (f"unknown keyword {word!r}: a statement starts with a keyword such as RUN, STEP, "
                "ASSERT or VAR (see docs/tisslang.md)")
    return (f"unknown operator {word!r}: conditions use == != < <= > >=, CONTAINS, MATCHES, "
            "IS_EMPTY, IS_NOT_EMPTY, AND, OR, NOT")


def _bad_character(text: str, pos: int) -> str:
    ch = text[pos]
    if ch == '"':
        return ('unterminated string: close it with " on the same line (for text over several '
                "lines use a heredoc, WRITE \"path\" <<EOF)")
    if ch == "'":
        return "unterminated string: close it with ' on the same line"
    if text.startswith("<<", pos):
        return "a heredoc opens with <<NAME or <<'NAME' (a letter or _ right after <<)"
    if ch == "!":
        return "unexpected '!': did you mean != ?"
    if ch == "@":
        return 'a directive is @ and its name with no space between, as in @model "echo"'
    if ch in "&|":
        return f"unexpected {ch!r}: write AND / OR"
    if ch in "+*/%":
        return (f"unexpected {ch!r}: TissLang has no arithmetic; to join text, interpolate: "
                '"{{ a }}{{ b }}"')
    return f"unexpected character {ch!r}"


def _open_brackets(parser: Lark, text: str, stop: Token):
    """The ``{`` / ``[`` still open before ``stop``, innermost last, as (kind, line, column);
    and the ``{`` (line, column) whose ``}`` sits, alone on its line, at another indentation."""
    opened: list[tuple[str, int, int]] = []
    misindented: list[tuple[int, int]] = []
    lines = text.split("\n")
    stop_pos = stop.start_pos if stop.type != "$END" and stop.start_pos is not None else len(text)
    try:
        # The parser's own lexer: Lark.lex() would build (and validate) a new one every call.
        lexer = LexerThread.from_text(parser.parser.lexer, text)
        for tok in lexer.lex(None):
            if tok.start_pos >= stop_pos:
                break
            if tok.type in ("LBRACE", "LSQB"):
                opened.append((tok.value, tok.line, tok.column))
            elif tok.type in ("RBRACE", "RSQB") and opened:
                kind, line, column = opened.pop()
                closing = lines[tok.line - 1]
                if kind == "{" and tok.line != line and not closing[: tok.column - 1].strip() \
                        and _indent(closing) != _indent(lines[line - 1]):
                    misindented.append((line, column))
    except UnexpectedInput:
        pass
    return opened, misindented


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))

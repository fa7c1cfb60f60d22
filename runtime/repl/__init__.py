"""`tiss repl`: TissLang one entry at a time, in one persistent session.

Reading and running are separate, as in ptpython:

- reading: `scan.py` (a tolerant tokenizer), `lexer.py` (highlighting), `completer.py`,
  `validator.py` (cursor on the syntax error), `keys.py` (the key bindings factory),
  `history.py` (XDG state directory), `reader.py` (the prompt_toolkit session);
- running: `engine.py` (`Repl`: entries and meta-commands in a `Session`), `meta.py`
  (meta-command parsing);
- `main.py`: the subcommand, the interactive loop and the non-terminal (pipe) mode.
"""

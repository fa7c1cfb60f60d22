"""`tiss lsp`: a Language Server Protocol server for TissLang over stdin/stdout.

Diagnostics (the parser's syntax error and every `tiss check` finding, with exact ranges),
formatting (`tiss fmt` as minimal edits), completion, hover, outline, folding, go to definition,
references and rename of variables, and semantic tokens from the REPL's scanner. Built on pygls,
an optional extra: without it `tiss lsp` says how to install it.

    document.py   one document version analysed (parser, checker, scanner)
    features.py   the LSP answers computed from an analysis
    completion.py, hover.py, knowledge.py   completion and hover from the language's tables
    text.py       document text, edits and position encodings
    server.py     pygls wiring, debounced diagnostics, error isolation
"""

from __future__ import annotations

import sys

INSTALL_HINT = "pip install 'quantatissu[lsp]'"


def main() -> int:
    """Serve until the client exits; 2 with a one-line message when pygls is missing."""
    try:
        import pygls  # noqa: F401
        import lsprotocol  # noqa: F401
    except ImportError:
        print(f"tiss: error: the language server needs pygls; install it with {INSTALL_HINT}",
              file=sys.stderr)
        return 2
    from runtime.lsp.server import serve

    return serve()

"""TissLang: the language of QuantaTissu agent scripts.

This package parses TissLang source into typed AST nodes. It imports only the standard library
and lark, so other tools can embed it without pulling in the runtime or the model.
"""

LANGUAGE_VERSION = "1.0"

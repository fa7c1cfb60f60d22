"""The TissLang language server: pygls wiring, the document store, debounced diagnostics.

Every feature handler goes through ``_guarded``: an internal error is logged to the client
(``window/logMessage`` with the traceback) and the request gets an empty answer, so one bad
input never takes the server down. Analyses (parse and check) run in one worker thread, one per
document text, shared by the debounced diagnostics publisher and the requests that need it;
answers are computed from them in a second thread. So a large file being parsed stops neither
the reading of messages nor the answers about other files. Diagnostics are published only for the
text they were computed from.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import inspect
import logging
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.language_server import lsp_method
from pygls.uris import to_fs_path

import tisslang

from runtime.lsp import completion, features, hover
from runtime.lsp.document import Analysis
from runtime.lsp.text import Text, units_for

DEBOUNCE_SECONDS = 0.2
"""How long typing must pause before a change is analysed and its diagnostics published."""


class _Document:
    __slots__ = ("uri", "text", "version", "analysis", "pending", "future", "future_text", "base")

    def __init__(self, uri: str, text: Text, version: int | None) -> None:
        self.uri = uri
        self.text = text
        self.version = version
        self.analysis: Analysis | None = None  # of `text`, once computed
        self.pending: asyncio.Task | None = None  # the debounced publish
        self.future: asyncio.Future | None = None  # the analysis of `future_text`, running
        self.future_text: Text | None = None
        self.base: Analysis | None = None  # the newest analysis whose text parsed: reparse's base


class _Protocol(LanguageServerProtocol):
    """pygls's protocol without its own copy of open documents: ``TissServer.documents`` keeps
    them (see ``text.py`` for why); open, change and close go straight to our handlers."""

    def _to_handler(self, method: str, params):
        handler = self.fm.features.get(method)
        if handler is not None:
            yield handler, (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params: types.DidOpenTextDocumentParams):
        yield from self._to_handler(types.TEXT_DOCUMENT_DID_OPEN, params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams):
        yield from self._to_handler(types.TEXT_DOCUMENT_DID_CHANGE, params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params: types.DidCloseTextDocumentParams):
        yield from self._to_handler(types.TEXT_DOCUMENT_DID_CLOSE, params)


class TissServer(LanguageServer):
    def __init__(self) -> None:
        from runtime.cli import _version

        super().__init__("tiss-lsp", _version(), protocol_cls=_Protocol,
                         text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.documents: dict[str, _Document] = {}
        # Parsing and checking in one thread, answers in another: a question about one file
        # does not wait while a big one is parsed.
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tiss-analysis")
        self.answers = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tiss-answers")
        self._holds = 0  # publishes inside collector_held (all on the event loop's thread)
        self._resume_collector = False

    # --- documents ------------------------------------------------------------------------

    def units(self) -> Callable[[str], int]:
        encoding = self.workspace.position_encoding
        return units_for(getattr(encoding, "value", encoding))

    def analysis_future(self, doc: _Document) -> asyncio.Future:
        """The analysis of the document's current text, in the worker thread: one per text,
        shared by the diagnostics publisher and every request that needs it."""
        if doc.future is None or doc.future_text is not doc.text:
            doc.future_text = doc.text
            doc.future = asyncio.get_running_loop().run_in_executor(
                self.worker, _analyse, doc, doc.text)
        return doc.future

    async def compute(self, function: Callable, *args):
        """``function(*args)`` in the answers thread: every answer is computed there (on a big
        file one may walk the whole tree, or parse what came before a syntax error), so the
        server stays free to read messages meanwhile. The collector is held meanwhile, as for
        diagnostics: an answer about a big file (its semantic tokens) makes a hundred thousand
        objects, and each collection they would set off traverses every tree the server holds."""
        with self.collector_held():
            return await asyncio.get_running_loop().run_in_executor(self.answers, function, *args)

    async def analysis(self, uri: str) -> Analysis | None:
        """The analysis of the document as it is now (waiting for the worker if need be)."""
        doc = self.documents.get(uri)
        if doc is None:
            return None
        if doc.analysis is not None and doc.analysis.text is doc.text:
            return doc.analysis
        text = doc.text
        analysis = await self.analysis_future(doc)
        if doc.text is text:
            doc.analysis = analysis
        return analysis

    def log(self, message: str, kind: types.MessageType = types.MessageType.Error) -> None:
        try:
            self.window_log_message(types.LogMessageParams(type=kind, message=message))
        except Exception:  # noqa: BLE001 - the client went away; stderr is all that is left
            logging.getLogger(__name__).exception("could not log to the client")

    async def publish(self, uri: str, delay: float) -> None:
        """Analyse the document after ``delay`` seconds and publish its diagnostics."""
        try:
            if delay:
                await asyncio.sleep(delay)
            doc = self.documents.get(uri)
            if doc is None:
                return
            text, version = doc.text, doc.version
            with self.collector_held():
                analysis = await self.analysis_future(doc)
                if self.documents.get(uri) is not doc or doc.text is not text:
                    return  # edited again meanwhile: that edit publishes
                doc.analysis = analysis
                self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(
                    uri=uri, version=version, diagnostics=features.diagnostics(analysis)))
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - log it, keep serving
            self.log(f"tiss lsp: internal error while checking {uri}:\n{traceback.format_exc()}")

    @contextlib.contextmanager
    def collector_held(self):
        """Python's cyclic garbage collector off from the start of an analysis until its
        diagnostics are sent. A big file's analysis makes a few hundred thousand objects; each
        collection that would run meanwhile traverses them all and can free none (trees have no
        cycles), about a tenth of the time to diagnostics on a 1 MB script. Held, it runs once,
        after the user has the diagnostics. Publishes for several documents share one hold; a
        collector turned off by someone else stays off."""
        if self._holds == 0:
            self._resume_collector = gc.isenabled()
            gc.disable()
        self._holds += 1
        try:
            yield
        finally:
            self._holds -= 1
            if self._holds == 0 and self._resume_collector:
                gc.enable()

    def schedule(self, uri: str, delay: float) -> None:
        doc = self.documents[uri]
        if doc.pending is not None and not doc.pending.done():
            doc.pending.cancel()
        doc.pending = asyncio.get_running_loop().create_task(self.publish(uri, delay))


def _analyse(doc: _Document, text: Text) -> Analysis:
    """In the worker (one thread, so analyses finish in the order they were asked for)."""
    analysis = Analysis(text, _filename(doc.uri), previous=doc.base)
    if analysis.program is not None:
        doc.base = analysis
    return analysis


def _filename(uri: str) -> str:
    path = to_fs_path(uri)
    return path if path else uri


def _guarded(default: Any = None):
    """Run a handler; on an unexpected error log the traceback to the client and answer
    ``default``. Protocol errors (a refused rename) go back to the client as errors."""

    def wrap(handler):
        if inspect.iscoroutinefunction(handler):
            @functools.wraps(handler)
            async def run_async(ls: TissServer, params):
                try:
                    return await handler(ls, params)
                except JsonRpcException:
                    raise
                except Exception:  # noqa: BLE001 - one bad request must not end the server
                    ls.log(f"tiss lsp: internal error in {handler.__name__}:\n{traceback.format_exc()}")
                    return default

            return run_async

        @functools.wraps(handler)
        def run(ls: TissServer, params):
            try:
                return handler(ls, params)
            except JsonRpcException:
                raise
            except Exception:  # noqa: BLE001 - one bad request must not end the server
                ls.log(f"tiss lsp: internal error in {handler.__name__}:\n{traceback.format_exc()}")
                return default

        return run

    return wrap


def create_server() -> TissServer:
    server = TissServer()

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    @_guarded()
    def did_open(ls: TissServer, params: types.DidOpenTextDocumentParams) -> None:
        item = params.text_document
        ls.documents[item.uri] = _Document(item.uri, Text(item.text, ls.units()), item.version)
        ls.schedule(item.uri, 0)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    @_guarded()
    def did_change(ls: TissServer, params: types.DidChangeTextDocumentParams) -> None:
        uri = params.text_document.uri
        doc = ls.documents.get(uri)
        if doc is None:
            return
        text = doc.text
        for change in params.content_changes:
            if isinstance(change, types.TextDocumentContentChangePartial):
                start, end = change.range.start, change.range.end
                text = text.apply((start.line, start.character), (end.line, end.character),
                                  change.text)
            else:
                text = Text(change.text, ls.units())
        doc.text, doc.version, doc.analysis = text, params.text_document.version, None
        ls.schedule(uri, DEBOUNCE_SECONDS)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    @_guarded()
    def did_close(ls: TissServer, params: types.DidCloseTextDocumentParams) -> None:
        doc = ls.documents.pop(params.text_document.uri, None)
        if doc is not None and doc.pending is not None:
            doc.pending.cancel()
        ls.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=params.text_document.uri, diagnostics=[]))

    @server.feature(types.EXIT)
    def on_exit(ls: TissServer, *args) -> None:
        # Queued analyses are of no use any more; the running one ends with the process.
        ls.worker.shutdown(wait=False, cancel_futures=True)
        ls.answers.shutdown(wait=False, cancel_futures=True)

    @server.feature(types.TEXT_DOCUMENT_FORMATTING)
    @_guarded(default=[])
    async def formatting(ls: TissServer, params: types.DocumentFormattingParams):
        analysis = await ls.analysis(params.text_document.uri)
        return await ls.compute(features.formatting, analysis) if analysis else []

    @server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    @_guarded(default=[])
    async def document_symbol(ls: TissServer, params: types.DocumentSymbolParams):
        analysis = await ls.analysis(params.text_document.uri)
        if analysis is None:
            return []
        caps = ls.client_capabilities.text_document
        hierarchical = bool(caps and caps.document_symbol and
                            caps.document_symbol.hierarchical_document_symbol_support)
        return await ls.compute(features.document_symbols, analysis, params.text_document.uri,
                                hierarchical)

    @server.feature(types.TEXT_DOCUMENT_FOLDING_RANGE)
    @_guarded(default=[])
    async def folding_range(ls: TissServer, params: types.FoldingRangeParams):
        analysis = await ls.analysis(params.text_document.uri)
        return await ls.compute(features.folding_ranges, analysis) if analysis else []

    @server.feature(types.TEXT_DOCUMENT_SEMANTIC_TOKENS_FULL, features.LEGEND)
    @_guarded(default=types.SemanticTokens(data=[]))
    async def semantic_tokens(ls: TissServer, params: types.SemanticTokensParams):
        analysis = await ls.analysis(params.text_document.uri)
        if analysis is None:
            return types.SemanticTokens(data=[])
        return await ls.compute(features.semantic_tokens, analysis)

    @server.feature(types.TEXT_DOCUMENT_SEMANTIC_TOKENS_RANGE, features.LEGEND)
    @_guarded(default=types.SemanticTokens(data=[]))
    async def semantic_tokens_range(ls: TissServer, params: types.SemanticTokensRangeParams):
        analysis = await ls.analysis(params.text_document.uri)
        if analysis is None:
            return types.SemanticTokens(data=[])
        first = features.server_pos(analysis, params.range.start)[0]
        last = features.server_pos(analysis, params.range.end)[0]
        return await ls.compute(features.semantic_tokens, analysis, (first, last))

    @server.feature(types.TEXT_DOCUMENT_DEFINITION)
    @_guarded(default=[])
    async def definition(ls: TissServer, params: types.DefinitionParams):
        analysis = await ls.analysis(params.text_document.uri)
        if analysis is None:
            return []
        pos = features.server_pos(analysis, params.position)
        return await ls.compute(features.definition, analysis, params.text_document.uri, pos)

    @server.feature(types.TEXT_DOCUMENT_REFERENCES)
    @_guarded(default=[])
    async def references(ls: TissServer, params: types.ReferenceParams):
        analysis = await ls.analysis(params.text_document.uri)
        if analysis is None:
            return []
        pos = features.server_pos(analysis, params.position)
        return await ls.compute(features.references, analysis, params.text_document.uri, pos,
                                params.context.include_declaration)

    @server.feature(types.TEXT_DOCUMENT_DOCUMENT_HIGHLIGHT)
    @_guarded(default=[])
    async def document_highlight(ls: TissServer, params: types.DocumentHighlightParams):
        analysis = await ls.analysis(params.text_document.uri)
        if analysis is None:
            return []
        return await ls.compute(features.highlights, analysis,
                                features.server_pos(analysis, params.position))

    @server.feature(types.TEXT_DOCUMENT_PREPARE_RENAME)
    @_guarded()
    async def prepare_rename(ls: TissServer, params: types.PrepareRenameParams):
        analysis = await ls.analysis(params.text_document.uri)
        if analysis is None:
            return None
        return await ls.compute(features.prepare_rename, analysis,
                                features.server_pos(analysis, params.position))

    @server.feature(types.TEXT_DOCUMENT_RENAME, types.RenameOptions(prepare_provider=True))
    @_guarded()
    async def rename(ls: TissServer, params: types.RenameParams):
        analysis = await ls.analysis(params.text_document.uri)
        if analysis is None:
            return None
        pos = features.server_pos(analysis, params.position)
        try:
            return await ls.compute(features.rename, analysis, params.text_document.uri, pos,
                                    params.new_name)
        except features.RenameError as exc:
            raise JsonRpcInvalidParams(str(exc)) from None

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    @_guarded()
    async def on_hover(ls: TissServer, params: types.HoverParams):
        analysis = await ls.analysis(params.text_document.uri)
        if analysis is None:
            return None
        caps = ls.client_capabilities.text_document
        formats = caps.hover.content_format if caps and caps.hover else None
        markdown = formats is None or types.MarkupKind.Markdown in formats
        return await ls.compute(hover.hover, analysis, features.server_pos(analysis, params.position),
                                markdown)

    @server.feature(types.TEXT_DOCUMENT_COMPLETION,
                    types.CompletionOptions(trigger_characters=["@", ".", "/", '"', "{"]))
    @_guarded(default=[])
    async def on_completion(ls: TissServer, params: types.CompletionParams):
        uri = params.text_document.uri
        analysis = await ls.analysis(uri)
        if analysis is None:
            return []
        caps = ls.client_capabilities.text_document
        item_caps = caps.completion.completion_item if caps and caps.completion else None
        snippets = bool(item_caps and item_caps.snippet_support)
        markdown = bool(item_caps and item_caps.documentation_format and
                        types.MarkupKind.Markdown in item_caps.documentation_format)
        pos = features.server_pos(analysis, params.position)
        return await ls.compute(completion.complete, analysis, pos, _workspace_root(ls, uri),
                                snippets, markdown)

    return server


def _workspace_root(ls: TissServer, uri: str) -> Path:
    """The folder scripts run in for path completion: the workspace folder holding the file,
    else the file's own directory."""
    path = to_fs_path(uri)
    here = Path(path).parent if path else Path.cwd()
    for folder in (ls.workspace.folders or {}).values():
        root = to_fs_path(folder.uri)
        if root and (here == Path(root) or Path(root) in here.parents):
            return Path(root)
    if ls.workspace.root_path:
        root = Path(ls.workspace.root_path)
        if root == here or root in here.parents:
            return root
    return here


def serve() -> int:
    """Serve on stdin/stdout until the client says exit."""
    server = create_server()
    tisslang.parse("")  # the grammar's tables loaded now, not when the first file is opened
    # What start-up made (modules, the grammar's tables) lives as long as the server: out of the
    # collector's sight, so its full collections traverse only what the documents make.
    gc.collect()
    gc.freeze()
    server.start_io()
    return 0

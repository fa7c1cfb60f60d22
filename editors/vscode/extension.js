// The TissLang extension's client: starts `tiss lsp` (the setting tisslang.server.command) for
// .tiss files and connects VS Code to it over stdio. Highlighting works without the server
// (the TextMate grammar); diagnostics, formatting, completion, hover and the outline need it.
"use strict";
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const command = vscode.workspace.getConfiguration("tisslang").get("server.command", ["tiss", "lsp"]);
  const serverOptions = { command: command[0], args: command.slice(1) };
  const clientOptions = {
    documentSelector: [{ scheme: "file", language: "tisslang" }, { scheme: "untitled", language: "tisslang" }],
  };
  client = new LanguageClient("tisslang", "TissLang", serverOptions, clientOptions);
  client.start().catch((err) => {
    vscode.window.showErrorMessage(
      `TissLang: could not start "${command.join(" ")}" (${err.message || err}). ` +
      "Install the server with pip install 'quantatissu[lsp]' or set tisslang.server.command.");
  });
  context.subscriptions.push({ dispose: () => client && client.stop() });
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };

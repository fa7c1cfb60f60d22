-- TissLang for Neovim: start `tiss lsp` for every tisslang buffer.
--
--   require("tisslang").setup()                                   -- `tiss` on PATH
--   require("tisslang").setup({ cmd = { "/path/to/venv/bin/tiss", "lsp" } })
--
-- Uses vim.lsp.start (Neovim 0.8+) and falls back to start_client/buf_attach_client on 0.7.
local M = {}

local function root_dir(path)
  local found = vim.fs and vim.fs.find and vim.fs.find({ ".git", "pyproject.toml" }, { upward = true, path = path })[1]
  if found then
    return vim.fs.dirname(found)
  end
  return path
end

local clients = {}  -- 0.7: one client per root directory

function M.start(bufnr, opts)
  local file = vim.api.nvim_buf_get_name(bufnr)
  local dir = vim.fn.fnamemodify(file, ":p:h")
  local config = {
    name = "tisslang",
    cmd = opts.cmd or { "tiss", "lsp" },
    root_dir = opts.root_dir or root_dir(dir),
  }
  if vim.lsp.start then
    return vim.lsp.start(config, { bufnr = bufnr })
  end
  local id = clients[config.root_dir]
  if not id or not vim.lsp.get_client_by_id(id) then
    id = vim.lsp.start_client(config)
    clients[config.root_dir] = id
  end
  if id then
    vim.lsp.buf_attach_client(bufnr, id)
  end
  return id
end

function M.setup(opts)
  opts = opts or {}
  vim.api.nvim_create_autocmd("FileType", {
    pattern = "tisslang",
    callback = function(args) M.start(args.buf, opts) end,
  })
end

return M

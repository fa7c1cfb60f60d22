" TissLang: # comments, four-space blocks (what tiss fmt writes).
setlocal commentstring=#\ %s
setlocal expandtab shiftwidth=4 softtabstop=4
let b:undo_ftplugin = 'setlocal commentstring< expandtab< shiftwidth< softtabstop<'

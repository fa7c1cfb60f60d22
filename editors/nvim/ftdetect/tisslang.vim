" TissLang scripts: *.tiss, or any file whose first line is a #TISS! header.
autocmd BufRead,BufNewFile *.tiss setfiletype tisslang
autocmd BufRead,BufNewFile * if getline(1) =~# '^#TISS!' | setfiletype tisslang | endif

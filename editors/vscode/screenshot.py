"""Render a script as VS Code shows it, from the extension's TextMate grammar, to a PNG: the
picture in docs/editors.md. No VS Code needed: the tokens come from `test/tokenize.js` (VS Code's
own vscode-textmate engine), the colours from the Dark+ theme's rules for those scopes, and
Pillow draws the text in DejaVu Sans Mono.

    python editors/vscode/screenshot.py examples/build_and_test.tiss docs/images/highlighting.png
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

HERE = Path(__file__).resolve().parent
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
BACKGROUND = "#1e1e1e"
FOREGROUND = "#d4d4d4"
GUTTER = "#858585"
# Dark+ (VS Code's default dark theme): scope prefix -> colour. The most specific prefix of the
# innermost scope wins, as in a TextMate theme.
THEME = {
    "comment": "#6a9955",
    "string": "#ce9178",
    "constant.character.escape": "#d7ba7d",
    "invalid": "#f44747",
    "constant.numeric": "#b5cea8",
    "constant.language": "#569cd6",
    "keyword": "#569cd6",
    "keyword.control": "#c586c0",
    "keyword.operator": "#d4d4d4",
    "keyword.operator.word": "#569cd6",
    "keyword.other.directive": "#dcdcaa",
    "keyword.control.heredoc": "#c586c0",
    "keyword.operator.heredoc": "#c586c0",
    "support.variable": "#4fc1ff",
    "support.constant": "#4fc1ff",
    "variable": "#9cdcfe",
    "punctuation.section.interpolation": "#569cd6",
    "punctuation.definition.string": "#ce9178",
}


def colour(scopes: list[str]) -> str:
    for scope in reversed(scopes):
        best = ""
        for prefix in THEME:
            if (scope == prefix or scope.startswith(prefix + ".")) and len(prefix) > len(best):
                best = prefix
        if best:
            return THEME[best]
    return FOREGROUND


def render(script: Path, out: Path, scale: int = 2) -> None:
    result = subprocess.run(["node", str(HERE / "test" / "tokenize.js"), str(script)],
                            capture_output=True, text=True, check=True)
    lines_tokens = json.loads(result.stdout)[str(script)]
    lines = script.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    size = 13 * scale
    font = ImageFont.truetype(FONT, size)
    char_w = font.getlength("M")
    line_h = int(size * 1.45)
    gutter = int(char_w * 4)
    pad = 10 * scale
    width = int(pad * 2 + gutter + char_w * max(len(line) for line in lines))
    height = pad * 2 + line_h * len(lines)
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for number, line in enumerate(lines):
        y = pad + number * line_h
        draw.text((pad, y), f"{number + 1:>3}", font=font, fill=GUTTER)
        for token in lines_tokens[number]:
            piece = line[token["start"]:token["end"]]
            x = pad + gutter + char_w * token["start"]
            draw.text((x, y), piece, font=font, fill=colour(token["scopes"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    # A small palette keeps the PNG to a few tens of KB.
    image.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)


if __name__ == "__main__":
    render(Path(sys.argv[1]).resolve(), Path(sys.argv[2]))

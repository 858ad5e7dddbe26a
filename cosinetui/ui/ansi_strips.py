"""plotext's ANSI output as Textual strips, without the general-purpose detour.

plotext returns its figure as text with SGR colour codes. The ordinary route, rich's
``Text.from_ansi`` and Textual's conversion of that Text to Content and then to strips, took
about 6 ms of the 15 ms a plot rebuild costs at 120x40 (docs/performance.md): it parses every
code into spans, then wraps and justifies lines that are already exactly the plot's size.
plotext only ever writes a handful of distinct code runs, so here each run of codes is turned
into a rich Style once (by rich's own ANSI decoder, cached) and each line becomes one Strip
of (text, style) segments.
"""

from __future__ import annotations

import re
from functools import lru_cache

from rich.segment import Segment
from rich.style import Style as RichStyle
from rich.text import Text
from textual.css.styles import RulesMap
from textual.strip import Strip
from textual.style import Style
from textual.visual import RenderOptions, Visual

SGR = re.compile(r"((?:\x1b\[[0-9;]*m)+)")


RESET = "\x1b[0m"


@lru_cache(maxsize=256)
def sgr_style(codes: str) -> RichStyle | None:
    """The style a run of SGR codes (with no reset in it) sets, as rich's ANSI decoder reads it."""
    if not codes:
        return None
    spans = Text.from_ansi(codes + "x").spans
    return spans[-1].style if spans else None  # type: ignore[return-value]


def ansi_lines(ansi: str) -> list[list[Segment]]:
    """Each line of ``ansi`` as segments. Codes accumulate until a reset, as on a terminal;
    a line starts from no style (plotext resets at the end of every run)."""
    lines = []
    for line in ansi.removesuffix("\n").split("\n"):
        segments = []
        active = ""  # the codes in force since the last reset
        for index, part in enumerate(SGR.split(line)):
            if index % 2:
                reset = part.rfind(RESET)
                active = part[reset + len(RESET) :] if reset >= 0 else active + part
            elif part:
                segments.append(Segment(part, sgr_style(active)))
        lines.append(segments)
    return lines


class AnsiPicture(Visual):
    """A pre-rendered block of styled lines (a plot), drawn on the widget's own style."""

    def __init__(self, ansi: str) -> None:
        self.lines = ansi_lines(ansi)
        self.width = max((sum(len(s.text) for s in line) for line in self.lines), default=0)
        self._strips: tuple[int, RichStyle, list[Strip]] | None = None

    def __str__(self) -> str:
        return "\n".join("".join(s.text for s in line) for line in self.lines)

    def render_strips(
        self, width: int, height: int | None, style: Style, options: RenderOptions
    ) -> list[Strip]:
        base = style.rich_style
        cached = self._strips
        if cached is None or cached[0] != width or cached[1] != base:
            strips = [
                Strip([Segment(s.text, base + s.style if s.style else base) for s in line])
                .crop_extend(0, width, base)
                for line in self.lines
            ]
            cached = self._strips = (width, base, strips)
        strips = cached[2]
        return strips if height is None else strips[:height]

    def get_optimal_width(self, rules: RulesMap, container_width: int) -> int:
        return self.width

    def get_height(self, rules: RulesMap, width: int) -> int:
        return len(self.lines)

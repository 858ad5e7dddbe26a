"""The machine under the run: per GPU memory, utilisation and temperature, the run's peak
allocated memory; on a CPU-only run the trainer process's CPU and resident memory.

A one-line summary rides on the progress line at any size; the panel (a line per device) is
shown beside the warnings when the terminal is wide enough (the app toggles it).
"""

from __future__ import annotations

from textual.widgets import Label, Static

from cosinetui.events import SystemSample


def fmt_bytes(value: int | None) -> str:
    if value is None:
        return "-"
    for unit, scale in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("k", 1 << 10)):
        if value >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value}B"


def _pct(value: object) -> str:
    return f"{value:.0f}%" if isinstance(value, (int, float)) else "-%"


def gpu_line(gpu: dict, *, short: bool = False) -> str:
    mem = f"{fmt_bytes(gpu.get('mem_used'))}/{fmt_bytes(gpu.get('mem_total'))}"
    temp = gpu.get("temp")
    parts = [f"GPU{gpu.get('index', '?')}", _pct(gpu.get("util")), mem]
    if isinstance(temp, (int, float)):
        parts.append(f"{temp:.0f}°C")
    if not short and gpu.get("name"):
        parts.insert(1, str(gpu["name"])[:24])
    return " ".join(parts)


def brief(sample: SystemSample | None) -> str:
    """The one-line summary: the first GPU (and how many more), or the process's CPU and RSS."""
    if sample is None:
        return ""
    if sample.gpus:
        more = f" +{len(sample.gpus) - 1}" if len(sample.gpus) > 1 else ""
        return gpu_line(sample.gpus[0], short=True) + more
    return f"CPU {sample.cpu_percent:.0f}% RSS {fmt_bytes(sample.rss_bytes)}"


def panel_lines(sample: SystemSample | None) -> list[str]:
    if sample is None:
        return ["waiting for the first sample"]
    lines = [gpu_line(g) for g in sample.gpus]
    if sample.peak_allocated is not None:
        lines.append(f"run peak allocated {fmt_bytes(sample.peak_allocated)}")
    lines.append(f"trainer CPU {sample.cpu_percent:.0f}%  RSS {fmt_bytes(sample.rss_bytes)}")
    return lines


BRIEF_WIDTH = 28


class SystemBrief(Label):
    """The summary on the progress line; a fixed width, so an update needs no layout pass."""

    DEFAULT_CSS = f"""
    SystemBrief {{ width: {BRIEF_WIDTH}; padding: 0 0 0 1; color: $text-muted; }}
    """

    def show(self, sample: SystemSample | None) -> None:
        text = brief(sample)[: BRIEF_WIDTH - 1]
        if text != str(self.content):
            self.update(text, layout=False)


class SystemPanel(Static):
    """The panel: a line per GPU, the run's peak allocated memory, the trainer's CPU and RSS."""

    _lines: list[str] | None = None

    def show(self, sample: SystemSample | None) -> None:
        lines = panel_lines(sample)
        if lines == self._lines:
            return
        # A new sample changes numbers, not the line count: repaint without a layout pass.
        relayout = self._lines is None or len(lines) != len(self._lines)
        self._lines = lines
        self.update("\n".join(lines), layout=relayout)

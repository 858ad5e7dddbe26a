"""Short, fixed-width number formats for an 80-column dashboard."""

from __future__ import annotations

import math


def fmt_loss(value: float | None) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return "nan" if value != value else ("inf" if value > 0 else "-inf")
    if value == 0:
        return "0"
    if 1e-3 <= abs(value) < 1e4:
        return f"{value:.4g}"
    return f"{value:.2e}"


def fmt_lr(value: float | None) -> str:
    """``3.52e-2``: three significant digits, a short exponent."""
    if value is None or value != value:
        return "-"
    if value == 0:
        return "0"
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def fmt_tick(value: float) -> str:
    """A plot axis label: as short as the value allows."""
    if value == 0:
        return "0"
    if 1e-2 <= abs(value) < 1e4:
        return f"{value:.3g}"
    mantissa, exponent = f"{value:.1e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def fmt_duration(seconds: float | None) -> str:
    """``42s``, ``3:07``, ``1:02:03``; ``-`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}:{secs:02d}"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def fmt_rate(value: float) -> str:
    """Samples per second: ``950/s``, ``12.3k/s``, ``4.1M/s``."""
    if not value or not math.isfinite(value):
        return "-"
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g}{unit}/s"
    return f"{value:.3g}/s"


def fmt_number(value: float) -> str:
    """A form field's prefill: integers plainly, floats in their shortest exact repr."""
    if isinstance(value, int) or (
        isinstance(value, float) and value.is_integer() and abs(value) < 1e15
    ):
        return str(int(value))
    return repr(float(value))

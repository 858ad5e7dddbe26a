"""Small numeric helpers shared by the rules: formatting, medians, a curve's own noise."""

from __future__ import annotations

import math
from collections import deque


def finite(x: float | None) -> bool:
    return x is not None and not math.isnan(x) and not math.isinf(x)


def num(x: float) -> str:
    """A loss for a message: 3 significant digits at most, fewer for large values."""
    a = abs(x)
    if not math.isfinite(x):
        return str(x)
    if a >= 100:
        return f"{x:.3g}" if a >= 1e5 else f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 0.1:
        return f"{x:.2f}"
    return f"{x:.2g}"


def median(sorted_values: list[float]) -> float:
    n = len(sorted_values)
    mid = n // 2
    return sorted_values[mid] if n % 2 else (sorted_values[mid - 1] + sorted_values[mid]) / 2


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def relative_noise(values: deque[float] | list[float]) -> float:
    """Noise of a short series relative to its level, from second differences (which
    cancel a linear trend): a robust sigma of x[i] - 2x[i-1] + x[i-2] is sqrt(6) sigma."""
    if len(values) < 5:
        return 0.0
    v = list(values)
    d2 = sorted(abs(v[i] - 2 * v[i - 1] + v[i - 2]) for i in range(2, len(v)))
    level = median(sorted(v))
    return 1.4826 * median(d2) / math.sqrt(6) / level if level > 0 else 0.0


class Best:
    """Best value with patience, as ReduceLROnPlateau (mode=min, threshold_mode=rel), except
    that an improvement must also beat ``noise_k`` times the raw curve's own relative noise
    (the tracked value itself is usually the smoothed curve)."""

    def __init__(self, min_delta: float, noise_k: float, window: int = 8) -> None:
        self.min_delta, self.noise_k = min_delta, noise_k
        self.recent: deque[float] = deque(maxlen=window)
        self.value: float | None = None
        self.epoch = 0
        self.bad = 0

    def threshold(self) -> float:
        return max(self.min_delta, self.noise_k * relative_noise(self.recent))

    def update(self, value: float, epoch: int, raw: float) -> bool:
        self.recent.append(raw)
        if self.value is None or value < self.value * (1 - self.threshold()):
            self.value, self.epoch, self.bad = value, epoch, 0
            return True
        self.bad += 1
        return False

    def reset(self) -> None:
        self.value, self.bad = None, 0

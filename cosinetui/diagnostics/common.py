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
    """Noise of a short positive series relative to its level, from the second differences of
    its logarithm (they cancel an exponential trend, the usual shape of a loss curve): a robust
    sigma of y[i] - 2y[i-1] + y[i-2] is sqrt(6) sigma."""
    if len(values) < 5 or min(values) <= 0:
        return 0.0
    v = [math.log(x) for x in values]
    d2 = sorted(abs(v[i] - 2 * v[i - 1] + v[i - 2]) for i in range(2, len(v)))
    return 1.4826 * median(d2) / math.sqrt(6)


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


def falling(values: deque[float] | list[float], t: float = 2.0) -> bool:
    """Whether a short positive series falls significantly: the least-squares slope of its
    logarithm is below ``-t`` standard errors (its own scatter around the line), so a slow,
    steady improvement counts even when each step is smaller than the noise."""
    n = len(values)
    if n < 4 or min(values) <= 0:
        return False
    ys = [math.log(x) for x in values]
    mx, my = (n - 1) / 2, sum(ys) / n
    sxx = sum((i - mx) ** 2 for i in range(n))
    slope = sum((i - mx) * (y - my) for i, y in enumerate(ys)) / sxx
    resid = sum((y - my - slope * (i - mx)) ** 2 for i, y in enumerate(ys))
    se = math.sqrt(resid / (n - 2) / sxx) if resid > 0 else 0.0
    return slope < 0 and (se == 0.0 or slope / se < -t)

"""The cosine schedule as plain math: segments, the current step, the adjustments made.

`CosineSchedule` gives the LR as a function of the step alone and changes its future
(reanneal, retime, restart). It imports no torch, so that what only reads or previews a
schedule (the dashboard, `attach`, `show`) starts without it; `cosinetui.schedule`'s
`AdjustableCosineLR` drives an optimizer with one. See docs/schedule.md.
"""

from __future__ import annotations

import bisect
import inspect
import math
import numbers
import operator
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Adjustment", "CosineSchedule", "Segment", "STATE_VERSION"]

STATE_VERSION = 1
OPS = ("reanneal", "retime", "restart")
# An adjustment may not raise a group's LR past this multiple of the run's peak (its base
# LR) unless it says force=True: a typo such as 2**53 for a peak would only make the run NaN.
MAX_RAISE = 100.0
# A warmup replays torch's LinearLR recursion (bit-exact) for this many steps, keeping one
# value every _RAMP_STRIDE steps; past it the closed form (within a few ulps) takes over, so
# that no warmup length, however large a stored schedule claims, costs more time or memory.
_RAMP_EXACT = 1 << 20
_RAMP_STRIDE = 256
# Steps and lengths in a stored schedule: beyond this a step is no longer exact as a float.
MAX_STORED_STEP = 2**53


@dataclass(frozen=True)
class Segment:
    """One piece of the plan, in effect from `start` until the next segment starts.

    kind "cosine": ``floor + (peak - floor) * (1 + cos(pi * t / (phase + length))) / 2`` with
    ``t = step - start + phase``. Past its last step it continues the cosine
    (``after="periodic"``, torch's own curve), restarts with cycles ``T_mult`` times longer
    (``after="restart"``), or holds its floor (``after="hold"``). ``exact_start`` makes the
    value at ``t == 0`` the peak itself rather than the closed form (which can be off by an ulp).

    kind "warmup": torch's LinearLR recursion from ``peak * start_factor`` towards ``peak``.
    kind "linear": a straight ramp from ``ramp_from`` to ``peak``.
    For both ramps ``floor`` is the floor of the anneal that follows.
    """

    start: int
    length: int
    kind: str
    peak: tuple[float, ...]
    floor: tuple[float, ...]
    phase: int = 0
    after: str = "hold"
    t_mult: int = 1
    exact_start: bool = False
    start_factor: float | None = None
    ramp_from: tuple[float, ...] | None = None

    @property
    def end(self) -> int:
        return self.start + self.length

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("peak", "floor", "ramp_from"):
            if d[key] is not None:
                d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Segment:
        d = dict(d)
        for key in ("peak", "floor", "ramp_from"):
            if d.get(key) is not None:
                d[key] = tuple(float(x) for x in d[key])
        return cls(**d)


@dataclass(frozen=True)
class Adjustment:
    """An applied adjustment: the step it took effect at and the arguments it was given."""

    step: int
    op: str
    args: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "op": self.op, "args": dict(self.args)}


# -- validation -------------------------------------------------------------------------------


def _int(name: str, value: Any, minimum: int, what: str) -> int:
    """An integer >= minimum; an integral float from JSON (50.0) is accepted, 2.5 and bools are not."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer {what}, got {value!r}")
    if isinstance(value, numbers.Integral):
        value = operator.index(value)
    elif isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
        value = int(value)
    else:
        raise ValueError(f"{name} must be an integer {what}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer {what}, got {value!r}")
    return value


def _lr(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def _per_group(name: str, value: Any, n: int) -> tuple[float, ...]:
    """A scalar for every group, or one value per group."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{name} must be a number or a list of {n} numbers (one per group)")
        return tuple(_lr(f"{name}[{i}]", v) for i, v in enumerate(value))
    v = _lr(name, value)
    return (v,) * n


def check_floor(floor: tuple[float, ...], peak: tuple[float, ...], peak_name: str) -> None:
    """The floor of every group must lie in [0, its peak]: for a run as it starts (its
    eta_min against its LRs) and for every adjustment."""
    for i, (lo, hi) in enumerate(zip(floor, peak, strict=True)):
        if lo > hi:
            raise ValueError(
                f"eta_min must lie in [0, {peak_name}] for every group; "
                f"group {i} has eta_min {lo!r} above {peak_name} {hi!r}"
            )


# -- the pure schedule ------------------------------------------------------------------------


class CosineSchedule:
    """Per-group learning rates as a pure function of the step, plus live adjustments.

    ``step`` is the scheduler step the LRs currently in use belong to (torch's ``last_epoch``).
    """

    def __init__(
        self,
        base_lrs: list[float],
        T_max: int,
        eta_min: float = 0.0,
        *,
        warmup_steps: int = 0,
        warmup_start_factor: float = 1 / 3,
        restarts: bool = False,
        T_mult: int = 1,
        step: int = 0,
    ) -> None:
        if not base_lrs:
            raise ValueError("base_lrs must hold at least one learning rate")
        base = tuple(_lr(f"base_lrs[{i}]", b) for i, b in enumerate(base_lrs))
        T_max = _int("T_max", T_max, 1, ">= 1")
        eta_min = _lr("eta_min", eta_min)
        warmup_steps = _int("warmup_steps", warmup_steps, 0, f"in [0, T_max - 1 = {T_max - 1}]")
        if warmup_steps >= T_max:
            raise ValueError(
                f"warmup_steps must be an integer in [0, T_max - 1 = {T_max - 1}], got {warmup_steps}"
            )
        f = warmup_start_factor
        if isinstance(f, bool) or not isinstance(f, numbers.Real) or not 0 < f <= 1:
            raise ValueError(f"warmup_start_factor must be in (0, 1], got {f!r}")
        if not isinstance(restarts, bool):
            raise ValueError(f"restarts must be True or False, got {restarts!r}")
        T_mult = _int("T_mult", T_mult, 1, ">= 1")
        self.base_lrs: tuple[float, ...] = base
        self.config: dict[str, Any] = {
            "T_max": T_max,
            "eta_min": eta_min,
            "warmup_steps": warmup_steps,
            "warmup_start_factor": float(f),
            "restarts": restarts,
            "T_mult": T_mult,
        }
        floor = (eta_min,) * len(base)
        segments = []
        if warmup_steps:
            segments.append(Segment(0, warmup_steps, "warmup", base, floor, start_factor=float(f)))
        segments.append(
            Segment(
                warmup_steps,
                T_max - warmup_steps,
                "cosine",
                base,
                floor,
                after="restart" if restarts else "periodic",
                t_mult=T_mult,
                # torch's constructed LR is the base itself; after a warmup or in
                # CosineAnnealingWarmRestarts it is the closed form at 0.
                exact_start=not warmup_steps and not restarts,
            )
        )
        self._segments: list[Segment] = segments
        self.adjustments: list[Adjustment] = []
        self.step = _int("step", step, 0, ">= 0")
        self._ramp_cache: dict[int, list[list[float]]] = {}  # warmup values kept every _RAMP_STRIDE

    # -- reading --------------------------------------------------------------------------

    @property
    def n_groups(self) -> int:
        return len(self.base_lrs)

    @property
    def segments(self) -> tuple[Segment, ...]:
        return tuple(self._segments)

    @property
    def end_step(self) -> int:
        """Where the plan ends: the last segment's end (for restarts, the end of the cycle
        that holds the current step)."""
        return self._end_of(self._segments[-1], self.step)

    def _end_of(self, seg: Segment, step: int) -> int:
        """The last step of `seg` as seen from `step`: for restarts, its current cycle's end."""
        if seg.after != "restart" or step < seg.end:
            return seg.end
        begin, length = self._cycle(seg, step - seg.start)
        return seg.start + begin + length

    def _index_at(self, step: int) -> int:
        return bisect.bisect_right([s.start for s in self._segments], step) - 1

    def current_lrs(self) -> list[float]:
        return self.lr_at(self.step)

    def lr_at(self, step: int) -> list[float]:
        """The per-group LRs at scheduler step `step` (past or future)."""
        step = _int("step", step, 0, ">= 0")
        i = self._index_at(step)
        return self._value(i, step - self._segments[i].start)

    def curve(self, start: int, stop: int, group: int = 0) -> list[float]:
        """LRs of one group at steps start .. stop-1."""
        start = _int("start", start, 0, ">= 0")
        stop = _int("stop", stop, 0, ">= 0")
        if not 0 <= group < self.n_groups:
            raise ValueError(f"group must be in [0, {self.n_groups - 1}], got {group!r}")
        return [self.lr_at(s)[group] for s in range(start, stop)]

    @staticmethod
    def _cycle(seg: Segment, k: int) -> tuple[int, int]:
        """(start offset, length) of the restart cycle holding offset k, by integer sums
        (torch's step(epoch) uses a float log here and picks the wrong cycle at some bounds)."""
        length = seg.length
        if seg.t_mult == 1:
            return k - k % length, length
        begin = 0
        while k >= begin + length:
            begin += length
            length *= seg.t_mult
        return begin, length

    def _value(self, i: int, k: int) -> list[float]:
        seg = self._segments[i]
        if seg.kind == "cosine":
            if seg.after == "hold" and k >= seg.length:
                return list(seg.floor)
            t, period = k + seg.phase, seg.phase + seg.length
            if seg.after == "restart" and k >= seg.length:
                begin, period = self._cycle(seg, k)
                t = k - begin
            if t == 0 and seg.exact_start:
                return list(seg.peak)
            c = 1 + math.cos(math.pi * t / period)
            # The same expression, in the same order, as torch's closed form.
            return [lo + (hi - lo) * c / 2 for hi, lo in zip(seg.peak, seg.floor, strict=True)]
        if seg.kind == "linear":
            k = min(k, seg.length)
            assert seg.ramp_from is not None
            return [
                a + (b - a) * k / seg.length for a, b in zip(seg.ramp_from, seg.peak, strict=True)
            ]
        return self._warmup_value(i, min(k, seg.length))

    def _warmup_value(self, i: int, k: int) -> list[float]:
        """torch LinearLR's value at offset k, replayed with its own float operations from the
        nearest kept value (one kept every _RAMP_STRIDE steps, computed as far as asked)."""
        seg = self._segments[i]
        f, n = seg.start_factor, seg.length
        assert f is not None
        if k >= n:
            return list(seg.peak)
        if k > _RAMP_EXACT:
            return [p * (f + (1.0 - f) * k / n) for p in seg.peak]
        marks = self._ramp_cache.setdefault(i, [[p * f for p in seg.peak]])
        j = min(k // _RAMP_STRIDE, len(marks) - 1)
        at, lrs = j * _RAMP_STRIDE, marks[j]
        while at < k:
            at += 1
            m = 1.0 + (1.0 - f) / (n * f + (at - 1) * (1.0 - f))
            lrs = [lr * m for lr in lrs]
            if at == len(marks) * _RAMP_STRIDE:
                marks.append(lrs)
        return list(lrs)

    # -- adjustments ----------------------------------------------------------------------

    def _replace_from(self, cut: int, new: list[Segment], op: str, args: dict[str, Any]) -> None:
        kept = [s for s in self._segments if s.start < cut]
        self._segments = kept + new
        self._ramp_cache = {k: v for k, v in self._ramp_cache.items() if k < len(kept)}
        self.adjustments.append(Adjustment(self.step, op, args))

    def reanneal(
        self,
        steps: int | None = None,
        *,
        eta_min: Any = None,
        factor: float = 1.0,
        force: bool = False,
    ) -> None:
        """From factor x the current LR, cosine down to eta_min over `steps` more steps."""
        now = self.step
        i = self._index_at(now)
        cur_seg = self._segments[i]
        factor = _lr("factor", factor)
        if steps is None:
            end = self._end_of(cur_seg, now)
            if cur_seg.kind != "cosine" and i + 1 < len(self._segments):
                end = self._end_of(self._segments[i + 1], now)  # a ramp and its anneal are one plan
            left = end - now
            if left <= 0:
                raise ValueError(
                    f"steps: the current segment ended at step {cur_seg.end}, before step {now}; "
                    "give steps, an integer >= 1"
                )
            n = left
        else:
            n = _int("steps", steps, 1, ">= 1")
        floor = cur_seg.floor if eta_min is None else _per_group("eta_min", eta_min, self.n_groups)
        current = tuple(self.lr_at(now))
        peak = tuple(factor * lr for lr in current)
        self._check_raise(peak, current, "factor", f"factor {factor:g} x the current LR", force)
        check_floor(floor, peak, "factor x current LR")
        seg = Segment(now, n, "cosine", peak, floor, exact_start=True)
        args = {"steps": None if steps is None else n, "eta_min": _plain(eta_min), "factor": factor}
        self._replace_from(now, [seg], "reanneal", {**args, **({"force": True} if force else {})})

    def retime(self, T_max: int) -> None:
        """Follow the original peak and floor on a cosine that ends at step T_max."""
        now = self.step
        w = self.config["warmup_steps"]
        lowest = max(now, w)
        T_max = _int(
            "T_max",
            T_max,
            lowest + 1,
            f"> the current step {now}" + (f" and > warmup_steps {w}" if w > now else ""),
        )
        cut = max(now, w)  # inside the original warmup the ramp is kept
        seg = Segment(
            cut,
            T_max - cut,
            "cosine",
            self.base_lrs,
            (self.config["eta_min"],) * self.n_groups,
            phase=cut - w,
            exact_start=cut == 0,
        )
        self._replace_from(cut, [seg], "retime", {"T_max": T_max})

    def restart(
        self,
        *,
        steps: int | None = None,
        peak_lr: Any = None,
        eta_min: Any = None,
        warmup_steps: int = 0,
        force: bool = False,
    ) -> None:
        """A warm restart to peak_lr, with an optional linear warmup from the current LR;
        `steps` (default: the original T_max) includes the warmup."""
        now = self.step
        n = self.config["T_max"] if steps is None else _int("steps", steps, 1, ">= 1")
        w = _int("warmup_steps", warmup_steps, 0, f"in [0, steps - 1 = {n - 1}]")
        if w >= n:
            raise ValueError(
                f"warmup_steps must be an integer in [0, steps - 1 = {n - 1}], got {w}"
            )
        if peak_lr is None:
            peak = self.base_lrs
        elif isinstance(peak_lr, (list, tuple)):
            peak = _per_group("peak_lr", peak_lr, self.n_groups)
        else:
            p = _lr("peak_lr", peak_lr)
            b0 = self.base_lrs[0]
            if b0 == 0 and self.n_groups > 1:
                raise ValueError(
                    "peak_lr: group 0 has base LR 0, give a list with one peak per group"
                )
            peak = tuple(p * (b / b0) if b0 else p for b in self.base_lrs)
        self._check_raise(peak, tuple(self.lr_at(now)), "peak_lr", "peak_lr", force)
        if eta_min is None:
            floor = (self.config["eta_min"],) * self.n_groups
        else:
            floor = _per_group("eta_min", eta_min, self.n_groups)
        check_floor(floor, peak, "peak_lr")
        new = []
        if w:
            new.append(Segment(now, w, "linear", peak, floor, ramp_from=tuple(self.lr_at(now))))
        new.append(Segment(now + w, n - w, "cosine", peak, floor, exact_start=True))
        args = {
            "steps": None if steps is None else n,
            "peak_lr": _plain(peak_lr),
            "eta_min": _plain(eta_min),
            "warmup_steps": w,
        }
        if force:
            args["force"] = True
        self._replace_from(now, new, "restart", args)

    def _check_raise(
        self, peak: tuple[float, ...], current: tuple[float, ...], name: str, what: str, force: Any
    ) -> None:
        """Refuse raising any group's LR past MAX_RAISE x the run's peak, unless forced."""
        if not isinstance(force, bool):
            raise ValueError(f"force must be true or false, got {force!r}")
        if force:
            return
        for i, (p, base, now) in enumerate(zip(peak, self.base_lrs, current, strict=True)):
            if p > MAX_RAISE * base and p > now:
                raise ValueError(
                    f"{name}: {what} gives group {i} an LR of {p:.4g}, over {MAX_RAISE:g}x "
                    f"the run's peak {base:.4g}; give force=true to apply it anyway"
                )

    def apply(self, op: str, args: dict[str, Any] | None = None) -> None:
        """Call reanneal, retime or restart by name with keyword arguments."""
        if op not in OPS:
            raise ValueError(f"op must be one of {', '.join(OPS)}; got {op!r}")
        method = getattr(self, op)
        allowed = set(inspect.signature(method).parameters)
        unknown = set(args or {}) - allowed
        if unknown:
            raise ValueError(
                f"{op}: unknown argument(s) {sorted(unknown)}; accepted: {sorted(allowed)}"
            )
        method(**(args or {}))

    # -- state ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "step": self.step,
            "base_lrs": list(self.base_lrs),
            "config": dict(self.config),
            "segments": [s.to_dict() for s in self._segments],
            "adjustments": [a.to_dict() for a in self.adjustments],
            "last_lrs": self.lr_at(self.step),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CosineSchedule:
        version = state.get("version") if isinstance(state, dict) else None
        if version != STATE_VERSION:
            raise ValueError(
                f"unsupported schedule state version {version!r}; this cosinetui reads version {STATE_VERSION}"
            )
        try:
            c = state["config"]
            s = cls(
                state["base_lrs"],
                c["T_max"],
                c["eta_min"],
                warmup_steps=c["warmup_steps"],
                warmup_start_factor=c["warmup_start_factor"],
                restarts=c["restarts"],
                T_mult=c["T_mult"],
                step=state["step"],
            )
            if s.step > MAX_STORED_STEP:
                raise ValueError(f"step {s.step} is over {MAX_STORED_STEP}")
            s._segments = [Segment.from_dict(d) for d in state["segments"]]
            s.adjustments = [
                Adjustment(a["step"], a["op"], dict(a["args"])) for a in state["adjustments"]
            ]
        except (KeyError, TypeError, OverflowError) as exc:
            raise ValueError(f"malformed schedule state: {exc!r}") from exc
        if not s._segments or any(len(g.peak) != s.n_groups for g in s._segments):
            raise ValueError("malformed schedule state: segments do not match base_lrs")
        _check_stored_segments(s._segments, s.n_groups)
        return s


def _check_stored_segments(segments: list[Segment], n_groups: int) -> None:
    """A stored plan must be one this module could have made: the readers of a metrics log or
    checkpoint evaluate it, so nothing in it may raise later or cost more than its size."""

    def bad(why: str) -> ValueError:
        return ValueError(f"malformed schedule state: {why}")

    previous = -1
    for seg in segments:
        for name in ("start", "length", "phase", "t_mult"):
            v = getattr(seg, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_STORED_STEP:
                raise bad(f"segment {name} must be an integer in [0, 2**53], got {v!r}")
        if seg.start <= previous or (previous < 0 and seg.start != 0):
            raise bad("segments must start at 0 and in increasing order")
        previous = seg.start
        if seg.length < 1 or seg.t_mult < 1:
            raise bad("segment length and t_mult must be >= 1")
        if seg.kind not in ("cosine", "warmup", "linear") or seg.after not in ("hold", "periodic", "restart"):
            raise bad(f"unknown segment kind {seg.kind!r} or continuation {seg.after!r}")
        for name in ("peak", "floor", "ramp_from"):
            values = getattr(seg, name)
            if values is None and name == "ramp_from" and seg.kind != "linear":
                continue
            if values is None or len(values) != n_groups or not all(math.isfinite(v) for v in values):
                raise bad(f"segment {name} must hold {n_groups} finite numbers")
        f = seg.start_factor
        if seg.kind == "warmup" and (not isinstance(f, (int, float)) or not 0 < f <= 1):
            raise bad(f"warmup start_factor must be in (0, 1], got {f!r}")


def _plain(value: Any) -> Any:
    """An argument as JSON-ready data for the adjustment history."""
    if isinstance(value, (list, tuple)):
        return [float(v) for v in value]
    return None if value is None else float(value)

"""The schedule as the dashboard sees it: where it stands now, what each form field starts at,
and what an adjustment would do, computed on a copy (nothing here touches the trainer).

Steps are scheduler steps (epochs or batches, see ``Axis``). The schedule state in a History
is the one of the last change, so its ``step`` is stale; ``now`` comes from the History.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cosinetui.cosine import CosineSchedule
from cosinetui.history import History
from cosinetui.ui.format import fmt_lr, fmt_number
from cosinetui.ui.series import Axis, sample_steps

OPERATIONS = ("reanneal", "retime", "restart")


@dataclass(frozen=True)
class Field:
    """One argument of an operation, as a form field."""

    name: str
    label: str
    kind: type  # int or float
    help: str


FIELDS: dict[str, tuple[Field, ...]] = {
    "reanneal": (
        Field("steps", "steps", int, "steps from now to the floor"),
        Field("eta_min", "floor (eta_min)", float, "LR at the end"),
        Field("factor", "factor", float, "x the current LR to start from"),
    ),
    "retime": (Field("T_max", "end (T_max)", int, "step where the cosine ends"),),
    "restart": (
        Field("steps", "steps", int, "length, warmup included"),
        Field("peak_lr", "peak LR", float, "LR to restart at"),
        Field("eta_min", "floor (eta_min)", float, "LR at the end"),
        Field("warmup_steps", "warmup", int, "linear ramp steps"),
    ),
}

DESCRIPTIONS = {
    "reanneal": "Cosine from the current LR (x factor) down to the floor over steps.",
    "retime": "Keep peak and floor; stretch or shorten the cosine to end at T_max.",
    "restart": "Warm restart: back to the peak, then a new cosine over steps.",
}


def load(history: History) -> CosineSchedule | None:
    """The run's schedule moved to the current step, or None before the run started."""
    if history.schedule is None:
        return None
    schedule = CosineSchedule.from_state(history.schedule)
    schedule.step = max(schedule.step, Axis.of(history).sched_now(history))
    return schedule


@dataclass(frozen=True)
class Prefill:
    """A field's starting text; ``implicit`` when sending nothing means the same."""

    text: str
    implicit: bool


def prefills(schedule: CosineSchedule, axis: Axis) -> dict[str, dict[str, Prefill]]:
    """Each operation's fields, filled from the schedule as it stands at ``schedule.step``."""
    now = schedule.step
    seg = schedule.segments[-1]
    for candidate in schedule.segments:
        if candidate.start <= now:
            seg = candidate
    # What reanneal() itself defaults to: the rest of the current cosine, or of the current
    # cycle of a warm-restart schedule (whose segment's own end is its first cycle's).
    left_in_segment = schedule.reanneal_default_steps()
    left_in_run = max(axis.sched_end - now, 1)
    base = schedule.base_lrs[0]
    return {
        "reanneal": {
            "steps": Prefill(
                str(left_in_segment if left_in_segment > 0 else left_in_run), left_in_segment > 0
            ),
            "eta_min": Prefill(fmt_number(seg.floor[0]), True),
            "factor": Prefill("1", True),
        },
        "retime": {
            "T_max": Prefill(str(max(schedule.end_step, now + 1)), False),
        },
        "restart": {
            "steps": Prefill(str(left_in_run), False),
            "peak_lr": Prefill(fmt_number(base), True),
            "eta_min": Prefill(fmt_number(schedule.config["eta_min"]), True),
            "warmup_steps": Prefill("0", True),
        },
    }


def parse(field: Field, text: str) -> Any:
    """The text of a field as a number (None when blank); ValueError names the field.

    Only "is it a number" is checked here; ranges are the schedule's business.
    """
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{field.name} must be a number, got {text!r}") from None
    if field.kind is int and value.is_integer():
        return int(value)
    return value


def field_of(message: str, op: str) -> str | None:
    """Which field of ``op`` an error message is about (the schedule names the argument first)."""
    names = sorted((f.name for f in FIELDS[op]), key=len, reverse=True)
    for name in names:
        if message.startswith(name):
            return name
    return None


@dataclass(frozen=True)
class Check:
    args: dict[str, Any]
    errors: dict[str, str]  # field name (or "" for the whole form) -> message
    preview: CosineSchedule | None  # the schedule after the change, when valid
    warning: str = ""  # a valid change worth a second look (it raises the LR a lot)
    ceiling: float | None = None  # the LR the warning is about (the run's peak or the current LR)

    @property
    def ok(self) -> bool:
        return not self.errors and self.preview is not None


# A change that takes the LR to this many times the current one is called out (unless it is a
# warm restart to no more than the run's peak: going back up is what a restart is for).
RAISE_FACTOR = 2.0


def raise_warning(
    schedule: CosineSchedule, new: CosineSchedule, op: str, stop: int
) -> tuple[str, float | None]:
    """(message, ceiling) when ``new`` takes group 0's LR above the run's peak, or (except a
    restart) to RAISE_FACTOR x the current LR or more, anywhere from now to ``stop``."""
    now = schedule.step
    current = schedule.lr_at(now)[0]
    peak = schedule.base_lrs[0]
    _, lrs = planned(new, now, max(stop, now + 1), 200)
    top = max(lrs, default=current)
    if top > peak * (1 + 1e-9):
        return (
            f"raises the LR to {fmt_lr(top)}, {top / peak:.3g}x the run's peak ({fmt_lr(peak)})",
            peak,
        )
    if op != "restart" and current > 0 and top >= RAISE_FACTOR * current:
        return (
            f"raises the LR {top / current:.3g}x, from {fmt_lr(current)} to {fmt_lr(top)}",
            current,
        )
    return "", None


def check(schedule: CosineSchedule, op: str, texts: dict[str, str], implicit: set[str]) -> Check:
    """Parse the fields and try the operation on a copy of the schedule.

    ``implicit`` names fields left at a prefill that the operation's default reproduces; they
    are not sent, so that per-group values the form cannot show stay as they are.
    """
    errors: dict[str, str] = {}
    args: dict[str, Any] = {}
    for field in FIELDS[op]:
        try:
            value = parse(field, texts.get(field.name, ""))
        except ValueError as exc:
            errors[field.name] = str(exc)
            continue
        if value is not None and field.name not in implicit:
            args[field.name] = value
    if op == "retime" and "T_max" not in args and "T_max" not in errors:
        errors["T_max"] = "T_max is required"
    if errors:
        return Check(args, errors, None)
    preview = copy(schedule)
    try:
        preview.apply(op, args)
    except ValueError as exc:
        message = str(exc)
        return Check(args, {field_of(message, op) or "": message}, None)
    stop = max(schedule.end_step, preview.end_step, schedule.step + 1)
    warning, ceiling = raise_warning(schedule, preview, op, stop)
    return Check(args, {}, preview, warning, ceiling)


@dataclass(frozen=True)
class RestartPlan:
    """What the warm-restart key would send, and how to ask for it."""

    command: dict[str, Any] | None  # AdjustSchedule("restart", args) as its op and args
    question: str
    error: str = ""
    check: Check | None = None


def restart_plan(schedule: CosineSchedule, axis: Axis) -> RestartPlan:
    """A warm restart with the form's defaults: back to the base LR over the rest of the run."""
    fills = prefills(schedule, axis)["restart"]
    texts = {name: fill.text for name, fill in fills.items()}
    implicit = {name for name, fill in fills.items() if fill.implicit}
    result = check(schedule, "restart", texts, implicit)
    if not result.ok:
        return RestartPlan(None, "", next(iter(result.errors.values())))
    steps = result.args.get("steps", schedule.config["T_max"])
    question = (
        f"LR back to {fmt_lr(schedule.base_lrs[0])}, then a cosine down to "
        f"{fmt_lr(schedule.config['eta_min'])} over {steps} steps "
        f"({'epochs' if axis.interval == 'epoch' else 'batches'}). "
        "Press a for other values."
    )
    return RestartPlan({"op": "restart", "args": dict(result.args)}, question, check=result)


def copy(schedule: CosineSchedule) -> CosineSchedule:
    clone = CosineSchedule.from_state(schedule.state_dict())
    clone.step = schedule.step
    return clone


def horizon(schedule: CosineSchedule, axis: Axis) -> int:
    """The last scheduler step worth plotting: the run's end, or the plan's if later."""
    end = axis.sched_end
    if schedule.end_step > schedule.step:
        end = max(end, schedule.end_step)
    return max(end, schedule.step + 1)


def planned(
    schedule: CosineSchedule, start: int, stop: int, points: int
) -> tuple[list[float], list[float]]:
    """(scheduler steps, group-0 LRs) sampled over [start, stop], corners kept sharp."""
    corners = [s.start for s in schedule.segments] + [s.end for s in schedule.segments]
    steps = sample_steps(start, stop, points, corners)
    return [float(s) for s in steps], [schedule.lr_at(s)[0] for s in steps]

"""Event and command types: small frozen dataclasses with a JSON round trip.

Events flow from the trainer to every consumer (UI, metrics log, headless printer, attached
clients); commands flow the other way and are applied by the trainer at a batch boundary.
Each type has a stable ``type`` tag, which is the ``"type"`` field of its JSON object in the
metrics log (docs/run-format.md). Non-finite floats are written as ``null`` so every line is
strict JSON; readers turn ``null`` losses back into NaN.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class RunStarted:
    """A run began (or resumed). ``schedule`` is the scheduler's JSON state."""

    type: ClassVar[str] = "run_started"
    run_name: str
    run_dir: str
    device: str
    torch_version: str
    param_count: int
    epochs: int
    steps_per_epoch: int  # batches per training epoch, 0 when the loader has no len()
    interval: str  # "epoch" or "batch": what one scheduler step is
    schedule: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    start_epoch: int = 0  # first epoch this process trains (0-based); > 0 after a resume
    global_step: int = 0  # batches in the checkpoint this process started from
    time: float = 0.0
    world_size: int = 1  # processes training together (DDP ranks)
    backend: str | None = None  # torch.distributed backend ("nccl", "gloo"); None for one process
    # What trains: "experiment" (cosinetui's own loop) or "track" (the user's loop through
    # cosinetui.track() or a Lightning/Transformers callback), whose length is the script's.
    loop: str = "experiment"


@dataclass(frozen=True)
class BatchChunk:
    """Per-batch training losses and LRs (group 0), sent in chunks, never one per batch.

    ``first_step`` is the global batch index (0-based, counted across epochs) of ``losses[0]``.
    A NaN in ``losses`` is a non-finite batch loss. ``scalars`` holds other per-batch values
    by name (``grad_norm`` with ``max_grad_norm``, values a loop logs itself), each list
    aligned with ``losses``: NaN where a batch did not record that name.
    """

    type: ClassVar[str] = "batches"
    epoch: int  # 1-based epoch these batches belong to
    first_step: int
    losses: tuple[float, ...]
    lrs: tuple[float, ...]
    batches_in_epoch: int = 0  # batches done in this epoch after the chunk
    scalars: dict[str, list[float]] = field(default_factory=dict)


@dataclass(frozen=True)
class EpochEnd:
    type: ClassVar[str] = "epoch"
    epoch: int  # 1-based
    train_loss: float
    val_loss: float | None = None  # None: no validation (or, in a converted log, NaN)
    lr: float = math.nan  # group 0's LR during the epoch's last batch; NaN if not recorded
    seconds: float = 0.0
    samples_per_s: float = 0.0
    step: int = 0  # global batches trained when the epoch ended
    metrics: dict[str, float] = field(default_factory=dict)  # validation metrics
    # Epoch means of the per-batch scalars (BatchChunk.scalars), by the same names.
    train_metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ScheduleChanged:
    """An adjustment took effect at scheduler step ``step``."""

    type: ClassVar[str] = "schedule"
    step: int
    op: str  # "reanneal", "retime" or "restart"
    args: dict[str, Any]
    schedule: dict[str, Any]  # the scheduler's JSON state after the change
    lrs: tuple[float, ...] = ()  # the optimizer's LRs right after the change


@dataclass(frozen=True)
class CommandRefused:
    type: ClassVar[str] = "refused"
    command: dict[str, Any]
    reason: str


@dataclass(frozen=True)
class Paused:
    type: ClassVar[str] = "paused"
    epoch: int
    step: int
    reason: str = "user"  # "user", "nan", "signal"


@dataclass(frozen=True)
class Resumed:
    type: ClassVar[str] = "resumed"
    epoch: int
    step: int


@dataclass(frozen=True)
class CheckpointWritten:
    type: ClassVar[str] = "checkpoint"
    path: str
    epoch: int  # completed epochs contained in the checkpoint
    step: int
    reason: str = "epoch"  # "epoch", "user", "pause", "stop", "failure", "signal", "finished"


@dataclass(frozen=True)
class Alert:
    type: ClassVar[str] = "alert"
    kind: str  # overfitting, instability, nan, divergence, plateau, schedule
    severity: str  # info, warning, critical
    epoch: int
    message: str
    suggestion: str = ""
    step: int | None = None
    action: dict[str, Any] | None = None  # a command (as JSON) that applies the suggestion
    key: str = ""  # stable identity of the episode, so updates replace, not repeat


@dataclass(frozen=True)
class Finished:
    type: ClassVar[str] = "finished"
    epoch: int
    step: int
    reason: str = "completed"  # "completed", "stopped", "signal", "nan"
    best_val_loss: float | None = None


@dataclass(frozen=True)
class Failed:
    type: ClassVar[str] = "failed"
    epoch: int
    step: int
    error: str
    traceback: str = ""


@dataclass(frozen=True)
class SystemSample:
    """The machine as the trainer process sees it, about once a second.

    Live only: sent to the dashboard beside the run's events but never written to the
    metrics log, numbered, or fed to the history (it describes the moment, not the run).
    ``gpus`` holds one object per device: index, name, mem_used, mem_total (bytes),
    util (percent) and temp (degrees C), each null when NVML cannot tell.
    """

    type: ClassVar[str] = "system"
    time: float
    cpu_percent: float  # the trainer process's CPU, 100 = one core busy
    rss_bytes: int  # the trainer process's resident memory
    gpus: tuple[dict[str, Any], ...] = ()
    peak_allocated: int | None = None  # torch's peak allocated bytes on the run's CUDA device


Event = (
    RunStarted
    | BatchChunk
    | EpochEnd
    | ScheduleChanged
    | CommandRefused
    | Paused
    | Resumed
    | CheckpointWritten
    | Alert
    | Finished
    | Failed
    | SystemSample
)

# --------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class Pause:
    type: ClassVar[str] = "pause"


@dataclass(frozen=True)
class Resume:
    type: ClassVar[str] = "resume"


@dataclass(frozen=True)
class Stop:
    type: ClassVar[str] = "stop"
    reason: str = "stopped"


@dataclass(frozen=True)
class AdjustSchedule:
    """One AdjustableCosineLR operation with its keyword arguments."""

    type: ClassVar[str] = "adjust"
    op: str  # "reanneal", "retime" or "restart"
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SaveCheckpoint:
    type: ClassVar[str] = "save_checkpoint"


Command = Pause | Resume | Stop | AdjustSchedule | SaveCheckpoint

# --------------------------------------------------------------------------- JSON

EVENT_TYPES: dict[str, type] = {
    cls.type: cls
    for cls in (
        RunStarted,
        BatchChunk,
        EpochEnd,
        ScheduleChanged,
        CommandRefused,
        Paused,
        Resumed,
        CheckpointWritten,
        Alert,
        Finished,
        Failed,
        SystemSample,
    )
}
COMMAND_TYPES: dict[str, type] = {
    cls.type: cls for cls in (Pause, Resume, Stop, AdjustSchedule, SaveCheckpoint)
}

# Fields whose JSON null means "not a number" rather than "absent".
_NAN_FIELDS = {"train_loss", "lr"}
# Optional fields left out of the JSON when empty, so logs without them keep their old shape.
_OMIT_EMPTY = {"scalars", "train_metrics"}


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def to_json(obj: Event | Command) -> dict[str, Any]:
    """A JSON-ready dict: ``{"type": ..., **fields}`` with non-finite floats as None."""
    out: dict[str, Any] = {"type": obj.type}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.name in _OMIT_EMPTY and not value:
            continue
        out[f.name] = _clean(value)
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# What a JSON value must be for a field, by the field's annotation; anything else is refused,
# so that a mistyped line (a converted log, a hand-edited file) is skipped, not trusted.
_CHECKS: dict[str, tuple[Any, str]] = {
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "int | None": (
        lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)),
        "an integer or null",
    ),
    "float": (_is_number, "a number"),
    "float | None": (lambda v: v is None or _is_number(v), "a number or null"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "dict[str, Any]": (lambda v: isinstance(v, dict), "an object"),
    "dict[str, Any] | None": (lambda v: v is None or isinstance(v, dict), "an object or null"),
    "dict[str, float]": (
        lambda v: isinstance(v, dict) and all(x is None or _is_number(x) for x in v.values()),
        "an object of numbers",
    ),
    "tuple[dict[str, Any], ...]": (
        lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v),
        "a list of objects",
    ),
    "tuple[float, ...]": (
        lambda v: isinstance(v, list) and all(x is None or _is_number(x) for x in v),
        "a list of numbers",
    ),
    "dict[str, list[float]]": (
        lambda v: isinstance(v, dict)
        and all(isinstance(xs, list) and all(x is None or _is_number(x) for x in xs) for xs in v.values()),
        "an object of lists of numbers",
    ),
}


def _nan_list(values: Any) -> list[float]:
    return [math.nan if v is None else float(v) for v in values]


def _build(cls: type, data: dict[str, Any]) -> Any:
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        check, expected = _CHECKS.get(str(f.type), (None, ""))
        if check is not None and not check(value) and not (value is None and f.name in _NAN_FIELDS):
            got = "null" if value is None else type(value).__name__
            raise TypeError(f"{f.name} must be {expected}, got {got}")
        if f.name in ("losses", "lrs"):
            value = tuple(math.nan if v is None else float(v) for v in value or ())
        elif f.name == "gpus":
            value = tuple(value)
        elif f.name in _NAN_FIELDS and value is None:
            value = math.nan
        elif f.name in ("metrics", "train_metrics") and isinstance(value, dict):
            value = {k: math.nan if v is None else v for k, v in value.items()}
        elif f.name == "scalars":
            value = {k: _nan_list(v) for k, v in value.items()}
            n = len(data.get("losses") or ())
            for name, xs in value.items():
                if len(xs) != n:
                    raise TypeError(f"scalars[{name!r}] has {len(xs)} values for {n} losses")
        kwargs[f.name] = value
    return cls(**kwargs)


def from_json(data: dict[str, Any]) -> Event:
    """Rebuild an event from its JSON dict; unknown keys are ignored (forward compatible).

    Raises ValueError for a missing or unknown ``type`` or missing required fields.
    """
    cls = EVENT_TYPES.get(data.get("type"))  # type: ignore[arg-type]
    if cls is None:
        raise ValueError(f"unknown event type {data.get('type')!r}")
    try:
        return _build(cls, data)
    except TypeError as exc:
        raise ValueError(f"bad {data['type']!r} event: {exc}") from None


def command_from_json(data: dict[str, Any]) -> Command:
    cls = COMMAND_TYPES.get(data.get("type"))  # type: ignore[arg-type]
    if cls is None:
        raise ValueError(f"unknown command type {data.get('type')!r}")
    try:
        cmd = _build(cls, data)
    except TypeError as exc:
        raise ValueError(f"bad {data['type']!r} command: {exc}") from None
    if isinstance(cmd, AdjustSchedule):
        if cmd.op not in ("reanneal", "retime", "restart"):
            raise ValueError(f"unknown schedule operation {cmd.op!r}")
        if not isinstance(cmd.args, dict):
            raise ValueError("adjust args must be an object")
    return cmd

"""What a user supplies (model, data, loss, optimizer, epochs, schedule) and how it is loaded.

A minimal experiment file::

    import torch
    from cosinetui import Experiment

    def experiment():
        model = torch.nn.Linear(10, 2)
        data = [(torch.randn(32, 10), torch.randint(0, 2, (32,))) for _ in range(20)]
        return Experiment(model=model, train_data=data[:16], val_data=data[16:], epochs=5)
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import random
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
Metric = Callable[[torch.Tensor, torch.Tensor], "torch.Tensor | float"]


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Top-1 accuracy of class scores against integer targets (a 0-dim tensor, no host sync)."""
    return (outputs.argmax(dim=-1) == targets).float().mean()


@dataclass
class Experiment:
    """A training job. Only ``model`` and ``train_data`` are required.

    ``train_step(model, batch)`` replaces the default handling of (input, target) batches; it
    returns the loss, a ``(loss, outputs)`` pair (or nanoGPT's ``(logits, loss)``), or a dict
    with a ``"loss"`` key whose other single-number entries are recorded as per-batch scalars.
    ``eval_step(model, batch) -> loss | (loss, outputs, targets)`` does the same for
    validation. Batches are moved to the run's device before either is called. ``warmup``
    counts scheduler steps (epochs, or optimizer steps with ``interval="batch"``).

    ``accumulate=k`` sums the gradients of k batches (each loss divided by k) before one
    optimizer and scheduler step. ``max_grad_norm`` clips the gradients' total norm before each
    step and records the norm. ``max_steps`` ends the run after that many optimizer steps.
    """

    model: nn.Module
    train_data: Iterable[Any]
    val_data: Iterable[Any] | None = None
    loss_fn: Callable[..., torch.Tensor] = field(default_factory=nn.CrossEntropyLoss)
    # An Optimizer over the model's parameters, or a factory params -> Optimizer (one
    # optimizer per run, e.g. for each rank); default: SGD(lr, momentum=0.9).
    optimizer: torch.optim.Optimizer | OptimizerFactory | None = None
    lr: float | None = None  # peak LR; default 0.1 for the default SGD, else the factory's
    epochs: int = 10
    eta_min: float = 0.0
    warmup: int = 0
    warmup_start_factor: float = 1 / 3
    restarts: bool = False
    T_mult: int = 1
    cycle: int | None = None  # with restarts: first cycle's length in scheduler steps (default: the run)
    interval: str = "epoch"  # one scheduler step per "epoch" or per "batch"
    metrics: Mapping[str, Metric] = field(default_factory=dict)
    train_step: Callable[[nn.Module, Any], torch.Tensor] | None = None
    eval_step: Callable[[nn.Module, Any], Any] | None = None
    seed: int | None = 0
    name: str = "experiment"
    max_grad_norm: float | None = None  # clip the gradients' total L2 norm to this (inf: record only)
    accumulate: int = 1  # batches whose gradients make one optimizer step
    max_steps: int | None = None  # optimizer steps in the run; then epochs are passes until then

    @property
    def steps_per_pass(self) -> int:
        """Optimizer steps in one pass over train_data; 0 when it has no len()."""
        try:
            batches = len(self.train_data)  # type: ignore[arg-type]
        except TypeError:
            return 0
        return -(-batches // self.accumulate) if isinstance(self.accumulate, int) and self.accumulate > 0 else 0

    def planned_epochs(self) -> int:
        """Epochs the run will train: ``epochs``, or with ``max_steps`` the passes it needs
        (``epochs`` when train_data has no len(), as the count shown while training)."""
        if self.max_steps is None:
            return self.epochs
        per_pass = self.steps_per_pass
        return -(-self.max_steps // per_pass) if per_pass else self.epochs

    def validate(self) -> None:
        """Raise ExperimentError naming the field and what it accepts."""
        if not isinstance(self.model, nn.Module):
            raise ExperimentError(f"model must be a torch.nn.Module, got {type(self.model).__name__}")
        if not _iterable(self.train_data):
            raise ExperimentError("train_data must be a DataLoader or an iterable of batches")
        if self.val_data is not None and not _iterable(self.val_data):
            raise ExperimentError("val_data must be a DataLoader, an iterable of batches, or None")
        if not isinstance(self.epochs, int) or isinstance(self.epochs, bool) or self.epochs < 1:
            raise ExperimentError(f"epochs must be a positive integer, got {self.epochs!r}")
        if self.lr is not None and not (_finite(self.lr) and self.lr > 0):
            raise ExperimentError(f"lr must be a positive number, got {self.lr!r}")
        if not (_finite(self.eta_min) and self.eta_min >= 0):
            raise ExperimentError(f"eta_min must be a number >= 0, got {self.eta_min!r}")
        if self.interval not in ("epoch", "batch"):
            raise ExperimentError(f"interval must be 'epoch' or 'batch', got {self.interval!r}")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise ExperimentError(f"warmup must be an integer >= 0, got {self.warmup!r}")
        if not isinstance(self.T_mult, int) or self.T_mult < 1:
            raise ExperimentError(f"T_mult must be an integer >= 1, got {self.T_mult!r}")
        if self.cycle is not None and (not isinstance(self.cycle, int) or self.cycle < 1):
            raise ExperimentError(f"cycle must be a positive integer, got {self.cycle!r}")
        if self.seed is not None and (
            not isinstance(self.seed, int) or not -(2**63) <= self.seed < 2**64
        ):
            raise ExperimentError(f"seed must be an integer in [-2**63, 2**64) or None, got {self.seed!r}")
        if (
            not isinstance(self.name, str)
            or not self.name.strip()
            or self.name in (".", "..")
            or any(c in self.name for c in "/\\\0")
        ):
            # The name becomes a directory under runs/: a separator would write elsewhere.
            raise ExperimentError(f"name must be a non-empty name without / or \\, got {self.name!r}")
        if self.max_grad_norm is not None and not (
            isinstance(self.max_grad_norm, (int, float)) and not isinstance(self.max_grad_norm, bool)
            and self.max_grad_norm > 0
        ):
            raise ExperimentError(
                f"max_grad_norm must be a number > 0 (inf: record the norm only), got {self.max_grad_norm!r}"
            )
        if not isinstance(self.accumulate, int) or isinstance(self.accumulate, bool) or self.accumulate < 1:
            raise ExperimentError(f"accumulate must be an integer >= 1, got {self.accumulate!r}")
        if self.max_steps is not None and (
            not isinstance(self.max_steps, int) or isinstance(self.max_steps, bool) or self.max_steps < 1
        ):
            raise ExperimentError(f"max_steps must be a positive integer or None, got {self.max_steps!r}")
        if self.optimizer is not None and not (
            isinstance(self.optimizer, torch.optim.Optimizer) or callable(self.optimizer)
        ):
            raise ExperimentError(
                "optimizer must be a torch.optim.Optimizer over the model's parameters or a "
                f"factory params -> Optimizer, got {type(self.optimizer).__name__}"
            )
        for name, fn in self.metrics.items():
            if not callable(fn):
                raise ExperimentError(f"metric {name!r} must be callable(outputs, targets)")
        self.schedule_length()

    def check_floor(self, optimizer: torch.optim.Optimizer) -> None:
        """eta_min must not exceed any group's peak LR: the check live adjustments make too."""
        from cosinetui.cosine import check_floor

        peaks = tuple(float(g["lr"]) for g in optimizer.param_groups)
        try:
            check_floor((float(self.eta_min),) * len(peaks), peaks, "the peak LR")
        except ValueError as exc:
            raise ExperimentError(str(exc)) from None

    def schedule_length(self) -> int:
        """T_max of the run's schedule in scheduler steps; ExperimentError if it cannot be.

        With ``interval="batch"`` a scheduler step is an optimizer step: ``max_steps``, or
        ``epochs`` times the optimizer steps of a pass (batches / ``accumulate``, rounded up).
        """
        if self.interval == "batch" and self.max_steps is not None:
            total = self.max_steps
        elif self.interval == "batch":
            per_epoch = self.steps_per_pass
            if not per_epoch:
                raise ExperimentError(
                    "interval='batch' needs train_data with a len() (batches per epoch), or max_steps"
                )
            total = self.epochs * per_epoch
        else:
            total = self.planned_epochs()
        t_max = self.cycle if self.restarts and self.cycle else total
        if t_max <= self.warmup:
            raise ExperimentError(
                f"warmup ({self.warmup} steps) must be shorter than the schedule ({t_max} steps)"
            )
        return t_max

    def with_overrides(self, **overrides: Any) -> Experiment:
        """A copy with the non-None overrides applied (command-line options)."""
        known = {f.name for f in fields(self)}
        changes = {k: v for k, v in overrides.items() if v is not None and k in known}
        return replace(self, **changes)

    def make_optimizer(self) -> torch.optim.Optimizer:
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.optimizer is None:
            return torch.optim.SGD(params, lr=self.lr or 0.1, momentum=0.9)
        if isinstance(self.optimizer, torch.optim.Optimizer):
            opt = self._given_optimizer(self.optimizer)
        else:
            try:
                opt = self.optimizer(params)
            except Exception as exc:
                raise ExperimentError(
                    f"the optimizer factory raised {type(exc).__name__}: {exc} (optimizer takes "
                    "an Optimizer over model.parameters() or a factory params -> Optimizer)"
                ) from exc
        if not isinstance(opt, torch.optim.Optimizer):
            raise ExperimentError(
                f"optimizer must be a factory params -> torch.optim.Optimizer, got {type(opt).__name__}"
            )
        if self.lr is not None:
            # An explicit lr sets group 0's LR; other groups keep their ratio to it.
            scale = self.lr / opt.param_groups[0]["lr"]
            for group in opt.param_groups:
                group["lr"] *= scale
        return opt


    def _given_optimizer(self, opt: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """An optimizer the user built, as torch's own schedulers take it. It must hold the
        model's parameters only. Its groups' LRs as given are the peaks each time it is used:
        a scheduler built on it earlier moved ``lr`` and kept the peak in ``initial_lr``, as
        torch's schedulers do."""
        own = {id(p) for p in self.model.parameters()}
        if any(id(p) not in own for group in opt.param_groups for p in group["params"]):
            raise ExperimentError(
                "the optimizer holds parameters that are not the model's: build it over "
                "model.parameters() (or pass a factory, params -> Optimizer)"
            )
        for group in opt.param_groups:
            group["lr"] = group.pop("initial_lr", group["lr"])
        return opt


class ExperimentError(Exception):
    """An experiment that cannot be loaded or used; the message says why and what is expected."""


def _iterable(obj: Any) -> bool:
    return hasattr(obj, "__iter__")


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


EXPECTED = "a function taking no arguments that returns cosinetui.Experiment(model=..., train_data=...)"


def load_experiment(target: str, entry: str = "experiment", seed: int | None = None) -> Experiment:
    """Load ``path/to/file.py`` (calling its ``entry``) or ``package.module:function``.

    The function runs with the run's seed applied (see ``build_seeded``): ``seed`` when given
    (``--seed``), else the ``seed`` of the Experiment it returns. Every failure raises
    ExperimentError naming the target and the problem; the original exception is chained for
    ``--debug``.
    """
    if target.endswith(".py") or "/" in target or Path(target).is_file():
        module = _import_file(Path(target))
        where = target
    else:
        mod_name, _, func = target.partition(":")
        entry = func or entry
        try:
            module = importlib.import_module(mod_name)
        except ImportError as exc:
            raise ExperimentError(f"{target}: cannot import module {mod_name!r}: {exc}") from exc
        except Exception as exc:
            raise ExperimentError(f"{target}: importing it raised {type(exc).__name__}: {exc}") from exc
        where = mod_name
    factory = getattr(module, entry, None)
    if factory is None:
        raise ExperimentError(f"{where}: no function {entry!r}; expected {EXPECTED}")
    if not callable(factory):
        raise ExperimentError(f"{where}: {entry!r} is not callable; expected {EXPECTED}")
    exp = build_seeded(lambda: _call(factory, where, entry), seed)
    try:
        exp.validate()
    except ExperimentError as exc:
        raise ExperimentError(f"{where}: {exc}") from None
    return exp


DEFAULT_SEED = 0  # Experiment's default seed


def build_seeded(factory: Callable[[], Experiment], seed: int | None = None) -> Experiment:
    """Call ``factory`` with torch's and Python's RNGs seeded by the run's seed.

    The run's seed is ``seed`` when given (``--seed``), else the returned Experiment's own
    ``seed``. The model is built inside the factory, before that field can be read: the
    factory runs under ``DEFAULT_SEED`` first and, when the Experiment asks for another seed
    (or ``None``: no seeding), runs once more under it, and that second Experiment is the one
    used. A given ``seed`` reaches the Experiment's field through ``with_overrides`` (the
    command line's other options do the same), so training is seeded with it too.
    """
    seed_everything(DEFAULT_SEED if seed is None else seed)
    exp = factory()
    if seed is None and exp.seed != DEFAULT_SEED:
        wanted = exp.seed
        if isinstance(wanted, int) and not isinstance(wanted, bool):
            seed_everything(wanted)
        elif wanted is None:
            torch.seed()  # fresh, unrepeatable weights, as a script that never seeds gets
            random.seed()
        else:
            return exp  # a bad seed: validate() names it
        exp = factory()
    return exp


def _call(factory: Callable[[], Any], where: str, entry: str) -> Experiment:
    try:
        exp = factory()
    except Exception as exc:
        raise ExperimentError(f"{where}: {entry}() raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(exp, Experiment):
        raise ExperimentError(
            f"{where}: {entry}() returned {type(exp).__name__}; expected cosinetui.Experiment"
        )
    return exp


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _import_file(path: Path) -> Any:
    if not path.is_file():
        raise ExperimentError(f"{path}: no such file")
    name = f"cosinetui_user_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ExperimentError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    # Let the file import its neighbours, as `python file.py` would.
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise ExperimentError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from exc
    except Exception as exc:
        raise ExperimentError(f"{path}: importing it raised {type(exc).__name__}: {exc}") from exc
    return module

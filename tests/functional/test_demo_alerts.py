"""Real short trainings of the demos: the right warnings appear, and none on a healthy run.

Loading seeds torch before the demo builds its model, so each run is repeatable.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cosinetui.demos import builtin
from cosinetui.diagnostics import format_alerts
from cosinetui.events import Alert
from cosinetui.experiment import Experiment, load_experiment
from cosinetui.trainer import Trainer, TrainerOptions

DEMOS = Path(__file__).resolve().parents[2] / "demos"
HALVE_LR = {"type": "adjust", "op": "reanneal", "args": {"factor": 0.5}}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def load(name: str, seed: int = 0, **overrides: object) -> Experiment:
    return load_experiment(str(DEMOS / f"{name}.py"), seed=seed).with_overrides(**overrides)


def train(exp: Experiment, tmp_path: Path) -> list[Alert]:
    trainer = Trainer(exp, TrainerOptions(run_dir=tmp_path / "run", device="cpu"))
    trainer.run()
    assert trainer.history.state == "finished", trainer.history.end
    return list(trainer.history.alerts.values())


def test_overfit_demo_raises_overfitting(tmp_path: Path) -> None:
    alerts = train(load("overfit"), tmp_path)
    kinds = {a.kind for a in alerts}
    assert "overfitting" in kinds, format_alerts(alerts)
    assert not kinds & {"nan", "divergence"}, format_alerts(alerts)
    over = next(a for a in alerts if a.kind == "overfitting")
    assert "gap" in over.message and "no val improvement for" in over.message
    assert over.action is not None and over.action["op"] == "reanneal"


def test_lr_too_high_demo_raises_divergence_or_instability(tmp_path: Path) -> None:
    # Seed 1: the network dies in epoch 3 and sticks at chance level, as the demo describes.
    alerts = train(load("lr_too_high", seed=1, epochs=6), tmp_path)
    found = [a for a in alerts if a.kind in ("divergence", "instability")]
    assert any(a.kind == "divergence" and a.epoch <= 3 for a in found), format_alerts(alerts)
    assert all(a.action == HALVE_LR for a in found)
    assert "overfitting" not in {a.kind for a in alerts}


def test_healthy_builtin_demo_raises_nothing(tmp_path: Path) -> None:
    alerts = train(builtin(epochs=12, train_size=4000, width=64), tmp_path)
    assert alerts == [], format_alerts(alerts)


def test_warm_restarts_demo_raises_nothing(tmp_path: Path) -> None:
    alerts = train(load("warm_restarts", epochs=12), tmp_path)
    assert alerts == [], format_alerts(alerts)


def test_lr_too_high_demo_keeps_its_promise_as_the_cli_runs_it(tmp_path: Path) -> None:
    # The demo's own settings (the CLI's seed 0, its 12 epochs, hence its schedule), stopped
    # as soon as the promised epoch is past: its docstring's epoch is the one tested.
    import re

    promised = int(re.search(r"appears\s+by\s+epoch (\d+)", _doc("lr_too_high")).group(1))
    exp = load("lr_too_high")
    trainer: Trainer

    def stop_when_seen(event: object) -> None:
        from cosinetui.events import EpochEnd, Stop

        if (isinstance(event, Alert) and event.kind == "divergence") or (
            isinstance(event, EpochEnd) and event.epoch >= promised
        ):
            trainer.send(Stop("seen"))

    trainer = Trainer(exp, TrainerOptions(run_dir=tmp_path / "run", device="cpu"), [stop_when_seen])
    trainer.run()
    alerts = list(trainer.history.alerts.values())
    found = [a for a in alerts if a.kind == "divergence"]
    assert found and found[0].epoch <= promised, format_alerts(alerts)
    assert found[0].action == HALVE_LR


def _doc(name: str) -> str:
    import ast

    return ast.get_docstring(ast.parse((DEMOS / f"{name}.py").read_text())) or ""

"""Logs other tools wrote, read by `show` and `diagnose`; runs exported for them and read back.

Event files come from torch's SummaryWriter (read back by TensorBoard's own reader), the
metrics.csv from Lightning's CSVLogger through a real Trainer.fit; both hold an overfitting
curve that diagnose must flag.
"""

from __future__ import annotations

import json
import math
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cosinetui.cli import main
from cosinetui.events import BatchChunk, EpochEnd, Finished, RunStarted
from cosinetui.schedule import CosineSchedule
from cosinetui.store import MetricsLog


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


def overfitting_curve(epochs: int = 20, per_epoch: int = 10):
    """(per-step train losses, per-epoch val losses): train falls, val turns up after 10."""
    train = [0.02 + 2.0 * math.exp(-(s + 1) / (4 * per_epoch)) for s in range(epochs * per_epoch)]
    val = [0.5 + 1.8 * math.exp(-(e + 1) / 3) if e < 10 else 0.56 * 1.06 ** (e - 9) for e in range(epochs)]
    return train, val


@pytest.fixture(scope="module")
def tb_log(tmp_path_factory) -> Path:
    pytest.importorskip("tensorboard", reason="the tensorboard extra reads and writes event files")
    from torch.utils.tensorboard import SummaryWriter

    root = tmp_path_factory.mktemp("tb")
    train, val = overfitting_curve()
    with SummaryWriter(log_dir=str(root / "run1")) as writer:
        for step, loss in enumerate(train):
            writer.add_scalar("train/loss", loss, step)
            writer.add_scalar("lr", 0.05 * (1 + math.cos(math.pi * step / len(train))), step)
        for e, loss in enumerate(val):
            writer.add_scalar("val/loss", loss, 10 * e + 9)  # at the step of the epoch's last batch
            writer.add_histogram("weights", np.linspace(-1, 1, 50) * (e + 1), 10 * e + 9)  # skipped
        writer.add_text("notes", "not a scalar", 0)
    return root


def test_diagnose_flags_overfitting_in_a_tensorboard_log(tb_log: Path):
    result = cli("diagnose", str(tb_log), "--json")  # the one run below it is found
    assert result.exit_code == 0, result.output
    assert "overfitting" in [a["kind"] for a in json.loads(result.output)]
    event_file = next((tb_log / "run1").glob("events.out.tfevents.*"))
    direct = cli("diagnose", str(event_file), "--json")
    assert direct.output == result.output


def test_list_tags_and_named_tags(tb_log: Path):
    result = cli("diagnose", str(tb_log / "run1"), "--list-tags")
    assert result.exit_code == 0
    lines = {line.split()[0]: line for line in result.output.splitlines()[1:]}
    assert "train loss (per step)" in lines["train/loss"]
    assert "val loss" in lines["val/loss"] and "learning rate" in lines["lr"]
    assert "200" in lines["train/loss"]
    # Naming the val loss as the train loss is obeyed (and then nothing overfits).
    named = cli("diagnose", str(tb_log / "run1"), "--train", "val/loss", "--val", "train/loss", "--json")
    assert "overfitting" not in [a["kind"] for a in json.loads(named.output)]
    missing = cli("diagnose", str(tb_log / "run1"), "--val", "nope")
    assert missing.exit_code == 2 and "no scalar tag 'nope'" in missing.output


def test_several_runs_below_a_directory_must_be_named(tb_log: Path, tmp_path: Path):
    import shutil

    for name in ("a", "b"):
        shutil.copytree(tb_log / "run1", tmp_path / name)
    result = cli("diagnose", str(tmp_path))
    assert result.exit_code == 2 and "holds 2 runs" in result.output
    assert str(tmp_path / "a") in result.output


def _record(payload: bytes, length: int | None = None) -> bytes:
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    header = struct.pack("<Q", len(payload) if length is None else length)
    return (
        header + struct.pack("<I", masked_crc32c(header)) + payload
        + struct.pack("<I", masked_crc32c(payload))
    )


@pytest.mark.parametrize("damage", ["truncated", "hostile length"])
def test_damaged_event_file_reads_what_is_whole(tb_log: Path, tmp_path: Path, damage: str):
    event_file = next((tb_log / "run1").glob("events.out.tfevents.*"))
    copy = tmp_path / event_file.name
    data = event_file.read_bytes()
    if damage == "truncated":
        copy.write_bytes(data + _record(b"x" * 100)[:60])
    else:
        # A valid header claiming 2**40 bytes: never read, never allocated.
        copy.write_bytes(data + _record(b"", length=2**40))
    result = cli("diagnose", str(copy))
    assert result.exit_code == 0
    assert "truncated record" in result.output and "overfitting" in result.output


def test_missing_tensorboard_extra_is_named(tb_log: Path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard.backend.event_processing.event_file_loader", None)
    result = cli("diagnose", str(tb_log / "run1"))
    assert result.exit_code == 2
    assert "pip install 'cosinetui[tensorboard]'" in result.output


@pytest.fixture(scope="module")
def lightning_csv(tmp_path_factory) -> Path:
    L = pytest.importorskip("lightning", reason="the lightning extra writes metrics.csv")
    import torch
    from lightning.pytorch.callbacks import LearningRateMonitor
    from lightning.pytorch.loggers import CSVLogger

    class Regressor(L.LightningModule):
        """A wide net on 32 noisy samples: it learns the noise, so val turns up."""

        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(8, 128), torch.nn.Tanh(), torch.nn.Linear(128, 1))

        def training_step(self, batch, _):
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.log("train_loss", loss, on_step=True, on_epoch=True)
            return loss

        def validation_step(self, batch, _):
            x, y = batch
            self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

        def configure_optimizers(self):
            opt = torch.optim.Adam(self.parameters(), lr=0.01)
            return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(opt, 15)}

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(8, 1, generator=gen)

    def data(n: int):
        x = torch.randn(n, 8, generator=gen)
        return torch.utils.data.TensorDataset(x, x @ w * 0.3 + torch.randn(n, 1, generator=gen))

    root = tmp_path_factory.mktemp("lightning")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = L.Trainer(
            max_epochs=15, logger=CSVLogger(str(root)), log_every_n_steps=1, accelerator="cpu",
            enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
            callbacks=[LearningRateMonitor()], num_sanity_val_steps=0,
        )
        trainer.fit(Regressor(), torch.utils.data.DataLoader(data(32), batch_size=8),
                    torch.utils.data.DataLoader(data(64), batch_size=64))
    finally:
        torch.set_num_threads(threads)
    return root / "lightning_logs" / "version_0" / "metrics.csv"


def test_diagnose_flags_overfitting_in_a_lightning_csv(lightning_csv: Path):
    result = cli("diagnose", str(lightning_csv), "--json")
    assert result.exit_code == 0, result.output
    assert "overfitting" in [a["kind"] for a in json.loads(result.output)]
    tags = cli("diagnose", str(lightning_csv.parent), "--list-tags").output
    assert "train loss (per step)" in tags and "train loss (per epoch)" in tags and "lr-Adam" in tags


def test_lightning_csv_becomes_batches_and_epochs(lightning_csv: Path):
    from cosinetui.history import History
    from cosinetui.readers import read_run

    history = History.from_events(read_run(lightning_csv).events)
    assert history.epochs_done == 15 and history.step == 15 * 4
    assert [e.step for e in history.epochs][:3] == [4, 8, 12]
    assert history.epochs[0].lr == pytest.approx(0.01) and history.epochs[-1].lr < 0.001
    assert all(e.val_loss is not None for e in history.epochs)


# --------------------------------------------------------------------------- export


def scripted_run(run_dir: Path) -> Path:
    """A run with batch-level trouble (spikes, a NaN) and an overfitting val curve."""
    run_dir.mkdir()
    log = MetricsLog(run_dir / "metrics.jsonl")
    sched = CosineSchedule([0.1], T_max=20, eta_min=1e-3)
    log.write(RunStarted(run_dir.name, str(run_dir), "cpu", "2.x", 10, 20, 50, "epoch", sched.state_dict()))
    train, val = overfitting_curve(20, 50)
    for e in range(20):
        losses = list(train[e * 50 : (e + 1) * 50])
        if e in (4, 5):
            for i in range(0, 50, 9):
                losses[i] *= 6.0  # spikes
        if e == 6:
            losses[7] = math.nan
        lr = sched.lr_at(e)[0]
        log.write(BatchChunk(e + 1, e * 50, tuple(losses), (lr,) * 50, 50))
        log.write(EpochEnd(e + 1, sum(x for x in losses if x == x) / 50, val[e], lr, 1.0, 400.0,
                           (e + 1) * 50, {"acc": 0.5 + e / 100}))
    log.write(Finished(20, 1000, best_val_loss=min(val)))
    log.close()
    return run_dir


def test_tensorboard_export_round_trips_the_alerts(tmp_path: Path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra writes event files")
    run = scripted_run(tmp_path / "run")
    result = cli("export", str(run), "--format", "tensorboard")
    assert result.exit_code == 0, result.output
    out = run / "export"
    assert f"tensorboard --logdir {out}" in result.output
    before = json.loads(cli("diagnose", str(run), "--json").output)
    after = json.loads(cli("diagnose", str(out), "--json").output)
    assert {"overfitting", "nan", "instability"} <= {a["kind"] for a in before}
    assert after == before
    # The alerts are in the export as text, and the export reads as the run did.
    from cosinetui.history import History
    from cosinetui.readers import read_run, read_scalars

    texts = read_scalars(out).texts["alerts"]
    assert any("overfitting" in text for _, text in texts)
    a = History.from_events(read_run(run).events)
    b = History.from_events(read_run(out).events)
    assert list(a.losses)[:300] == list(b.losses)[:300] and list(a.lrs) == list(b.lrs)
    assert [e.val_loss for e in a.epochs] == [e.val_loss for e in b.epochs]
    assert [(e.seconds, e.metrics, e.lr, e.step) for e in a.epochs] == [
        (e.seconds, e.metrics, e.lr, e.step) for e in b.epochs]
    assert a.run.epochs == b.run.epochs and a.state == b.state == "finished"
    again = cli("export", str(run), "--format", "tensorboard")
    assert again.exit_code == 2 and "already holds TensorBoard event files" in again.output


def test_csv_export(tmp_path: Path):
    run = scripted_run(tmp_path / "run")
    out = tmp_path / "csv"
    result = cli("export", str(run), "--format", "csv", "--out", str(out), "--batches")
    assert result.exit_code == 0, result.output
    import csv

    epochs = list(csv.DictReader((out / "epochs.csv").open()))
    batches = list(csv.DictReader((out / "batches.csv").open()))
    assert len(epochs) == 20 and len(batches) == 1000
    assert epochs[0]["epoch"] == "1" and epochs[0]["step"] == "50" and "acc" in epochs[0]
    assert batches[307]["loss"] == "nan" and batches[307]["epoch"] == "7"
    # The per-epoch CSV reads back (epoch records only) and gives the epoch-level alerts.
    before = {a["kind"] for a in json.loads(cli("diagnose", str(run), "--json").output)}
    after = {a["kind"] for a in json.loads(cli("diagnose", str(out / "epochs.csv"), "--json").output)}
    assert "overfitting" in after and after <= before


# --------------------------------------------------------------------------- ls


def test_ls_shows_last_alert_and_age_and_sorts(tmp_path: Path, monkeypatch):
    import os
    import time

    from cosinetui.events import Alert

    root = tmp_path / "runs"
    root.mkdir()
    old = scripted_run(root / "old")
    new = scripted_run(root / "new")
    log = MetricsLog(new / "metrics.jsonl")
    log.write(Alert("overfitting", "warning", 12, "val rose", key="overfitting:12"))
    log.close()
    now = time.time()
    os.utime(old / "metrics.jsonl", (now - 3 * 3600, now - 3 * 3600))
    monkeypatch.chdir(tmp_path)
    result = cli("ls")
    assert result.exit_code == 0, result.output
    header, first, second = result.output.splitlines()
    assert "LAST ALERT" in header and "AGE" in header
    assert "warning overfitting" in first and str(Path("runs/new")) in first
    assert " 3h " in second and "finished" in second
    by_name = cli("ls", "--sort", "name").output.splitlines()
    assert "runs/new" in by_name[1] and "runs/old" in by_name[2]
    assert cli("ls", "--sort", "age").output.splitlines()[1] == first


# --------------------------------------------------------------------------- show


def test_show_opens_a_tensorboard_log_in_the_dashboard(tb_log: Path):
    from cosinetui.readers import read_run
    from cosinetui.session import ReplaySession
    from cosinetui.ui.app import CosineApp
    from tests.functional.conftest_ui import pilot_test

    app = CosineApp(ReplaySession(read_run(tb_log).events))

    @pilot_test
    async def check() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            app.poll()
            await pilot.pause()
            assert app.epoch_table.row_count == 20
            assert app.loss_plot.builds >= 1 and app.lr_plot.builds >= 1
            assert app.history.alerts == {}  # nothing was recorded; the plots and table show

    check()


def test_show_several_runs_needs_a_terminal(tb_log: Path, lightning_csv: Path):
    result = cli("show", str(tb_log), str(lightning_csv))
    assert result.exit_code == 2 and "show needs a terminal" in result.output
    tags = cli("show", str(tb_log), str(lightning_csv), "--list-tags")
    assert tags.exit_code == 0 and tags.output.count("TAG") == 2


def test_a_log_with_only_a_val_loss(tmp_path: Path):
    log = tmp_path / "metrics.csv"
    rows = [(0, 9, 1.0), (1, 19, 0.8), (2, 29, 0.85), (3, 39, 0.9), (4, 49, 1.0)]
    log.write_text("epoch,step,val_loss\n" + "".join(f"{e},{s},{v}\n" for e, s, v in rows))
    result = cli("diagnose", str(log), "--json")
    assert result.exit_code == 0, result.output
    assert "nan" not in [a["kind"] for a in json.loads(result.output)]  # missing is not NaN


def test_a_messy_csv_reads_what_it_can(tmp_path: Path):
    log = tmp_path / "metrics.csv"
    log.write_text(
        "epoch,step,train_loss,val_loss\n"
        "0,0,1.0,\n"
        "0,x,2.0,\n"  # no integer step: skipped with a warning
        "0,1,abc,\n"  # not a number: that cell is empty
        "0,1,0.9,1.1,extra\n"
        "1,2,0.8,\n"
        "1,3,0.7,1.0\n"
    )
    result = cli("diagnose", str(log))
    assert result.exit_code == 0, result.output
    assert "metrics.csv:3: skipped: no integer step" in result.output
    from cosinetui.history import History
    from cosinetui.readers import read_run

    history = History.from_events(read_run(log).events)
    assert history.epochs_done == 2 and list(history.losses) == [1.0, 0.9, 0.8, 0.7]
    assert [e.val_loss for e in history.epochs] == [1.1, 1.0]

"""The Lightning and Hugging Face Transformers callbacks on real (tiny, CPU) runs, steered over
the control socket: pause, a schedule adjustment, resume, stop."""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path

import pytest
import torch

from cosinetui import store
from cosinetui.events import (
    AdjustSchedule,
    BatchChunk,
    CheckpointWritten,
    EpochEnd,
    Failed,
    Finished,
    Pause,
    Paused,
    Resume,
    Resumed,
    ScheduleChanged,
    Stop,
)
from cosinetui.remote import AttachedSession

TIMEOUT = 120.0


@pytest.fixture
def short_dir():
    root = Path(tempfile.mkdtemp(dir="/tmp", prefix="ct-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def await_event(session, kind):
    while True:
        event = session.next_event(TIMEOUT)
        assert event is not None, f"no {kind.__name__} within {TIMEOUT}s"
        if isinstance(event, kind):
            return event


def steer(run_dir: Path, started: threading.Event, outcome: dict) -> list:
    """Pause, adjust (a restart to a low peak), resume, then stop; returns what was seen."""
    assert started.wait(TIMEOUT), "training never started"
    assert "error" not in outcome, outcome.get("error")
    session = AttachedSession(run_dir)
    session.start()
    try:
        session.send(Pause())
        paused = await_event(session, Paused)
        assert await_event(session, CheckpointWritten).reason == "pause"
        session.send(AdjustSchedule("restart", {"steps": 500, "peak_lr": 1e-4}))
        changed = await_event(session, ScheduleChanged)
        session.send(Resume())
        resumed = await_event(session, Resumed)
        assert resumed.step == paused.step  # nothing trained while paused
        # A callback may record the step it paused after only once it is logged (the
        # Transformers Trainer logs after on_step_end): look at the batches trained later.
        later: list[float] = []
        while len(later) < 2:
            chunk = await_event(session, BatchChunk)
            later += [lr for i, lr in enumerate(chunk.lrs, chunk.first_step) if i > paused.step]
        chunk = later
        session.send(Stop())
        end = await_event(session, Finished)
    finally:
        session.close()
    return [changed, chunk, end]


def run_in_thread(fit) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def body():
        try:
            fit()
            outcome["returned"] = True
        except BaseException as exc:  # noqa: BLE001 - asserted by the test
            outcome["error"] = exc

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, outcome


# --------------------------------------------------------------------------- Lightning


def test_lightning_callback_pause_adjust_stop(short_dir):
    L = pytest.importorskip("lightning", reason="the lightning extra is not installed")
    from cosinetui.integrations.lightning import CosineTUICallback
    from cosinetui.schedule import AdjustableCosineLR

    started = threading.Event()

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.log("train_loss", loss, on_step=True, on_epoch=True)
            started.set()
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))
            self.log("val_mae", (self.net(x) - y).abs().mean())

        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.05)
            sched = AdjustableCosineLR(opt, T_max=1000 * 4)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    torch.manual_seed(0)
    x = torch.randn(32, 4)
    data = torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True))
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    callback = CosineTUICallback(run_dir=short_dir / "pl", name="pl", lines=False)
    trainer = L.Trainer(max_epochs=1000, callbacks=[callback], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                        num_sanity_val_steps=0)
    thread, outcome = run_in_thread(lambda: trainer.fit(Module(), loader, loader))
    changed, chunk, end = steer(short_dir / "pl", started, outcome)
    thread.join(TIMEOUT)
    assert outcome.get("returned"), outcome.get("error")
    assert trainer.should_stop and trainer.current_epoch < 1000
    assert changed.lrs[0] == pytest.approx(1e-4)
    assert max(chunk) <= 1e-4 + 1e-12  # Lightning steps the adjusted scheduler
    assert end.reason == "stopped"
    events = store.read_log(short_dir / "pl").events
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    assert epochs and epochs[0].val_loss is not None and "val_mae" in epochs[0].metrics
    assert "train_loss" not in epochs[0].metrics
    assert isinstance(events[-1], Finished)
    assert (short_dir / "pl" / store.CHECKPOINT).exists()


def test_lightning_callback_records_a_failure(short_dir):
    L = pytest.importorskip("lightning", reason="the lightning extra is not installed")
    from cosinetui.integrations.lightning import CosineTUICallback

    class Broken(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(2, 1)

        def training_step(self, batch, batch_idx):
            if batch_idx == 2:
                raise RuntimeError("broken step")
            return self.net(batch[0]).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(16, 2)), batch_size=4)
    trainer = L.Trainer(max_epochs=2, callbacks=[CosineTUICallback(run_dir=short_dir / "f", lines=False)],
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
    with pytest.raises(RuntimeError, match="broken step"):
        trainer.fit(Broken(), loader)
    last = store.read_log(short_dir / "f").events[-1]
    assert isinstance(last, Failed) and "broken step" in last.error


# --------------------------------------------------------------------------- Transformers


def tiny_gpt2_trainer(out_dir: Path, epochs: int, callback, **args):
    transformers = pytest.importorskip("transformers", reason="the transformers extra is not installed")
    pytest.importorskip("accelerate", reason="transformers.Trainer needs accelerate")
    from cosinetui.schedule import AdjustableCosineLR

    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=32, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    model = transformers.GPT2LMHeadModel(config)  # random weights: nothing is downloaded
    g = torch.Generator().manual_seed(1)
    rows = [torch.randint(0, 32, (12,), generator=g) for _ in range(16)]
    train = [{"input_ids": r, "labels": r} for r in rows[:12]]
    val = [{"input_ids": r, "labels": r} for r in rows[12:]]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = AdjustableCosineLR(opt, T_max=epochs * 3)
    training_args = transformers.TrainingArguments(
        output_dir=str(out_dir / "hf"), num_train_epochs=epochs, per_device_train_batch_size=4,
        per_device_eval_batch_size=4, logging_steps=1, eval_strategy="epoch", save_strategy="no",
        report_to=[], use_cpu=True, disable_tqdm=True, **args,
    )
    return transformers.Trainer(model=model, args=training_args, train_dataset=train, eval_dataset=val,
                                optimizers=(opt, sched), callbacks=[callback])


def test_transformers_callback_pause_adjust_stop(short_dir):
    pytest.importorskip("transformers", reason="the transformers extra is not installed")
    from cosinetui.integrations.transformers import CosineTUICallback

    started = threading.Event()
    callback = CosineTUICallback(run_dir=short_dir / "hf-run", name="hf", lines=False)

    from transformers import TrainerCallback

    class Started(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            started.set()

    trainer = tiny_gpt2_trainer(short_dir, 1000, callback)
    trainer.add_callback(Started())
    thread, outcome = run_in_thread(trainer.train)
    changed, chunk, end = steer(short_dir / "hf-run", started, outcome)
    thread.join(TIMEOUT)
    assert outcome.get("returned"), outcome.get("error")
    assert trainer.state.global_step < 1000 * 3
    assert changed.lrs[0] == pytest.approx(1e-4)
    assert max(chunk) <= 1e-4 + 1e-12  # the Trainer steps the adjusted scheduler
    assert end.reason == "stopped"
    events = store.read_log(short_dir / "hf-run").events
    batches = [e for e in events if isinstance(e, BatchChunk)]
    steps = sum(len(b.losses) for b in batches)
    assert steps == end.step  # one loss per optimizer step (logging_steps=1)
    assert isinstance(events[-1], Finished)


def test_transformers_callback_records_epochs_with_eval_loss(short_dir):
    pytest.importorskip("transformers", reason="the transformers extra is not installed")
    from cosinetui.integrations.transformers import CosineTUICallback

    trainer = tiny_gpt2_trainer(short_dir, 2, CosineTUICallback(run_dir=short_dir / "hf2", lines=False))
    trainer.train()
    events = store.read_log(short_dir / "hf2").events
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    assert [e.epoch for e in epochs] == [1, 2]
    assert all(e.val_loss is not None and e.step == 3 * e.epoch for e in epochs)
    first = events[0]
    assert first.steps_per_epoch == 3 and first.epochs == 2 and first.schedule
    assert isinstance(events[-1], Finished) and events[-1].reason == "completed"

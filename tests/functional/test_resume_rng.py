"""Mid-epoch resume is exact when the batches themselves draw from the global RNG."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cosinetui import Experiment
from cosinetui.events import BatchChunk, EpochEnd, Finished, Stop
from cosinetui.trainer import Trainer, TrainerOptions


class RandomBlocks:
    """nanoGPT's get_batch as a loader: every batch samples random windows of a token
    stream with torch.randint on the global generator."""

    def __init__(self, batches: int = 6, block: int = 8, batch_size: int = 4) -> None:
        self.tokens = torch.arange(200) % 13
        self.batches, self.block, self.batch_size = batches, block, batch_size

    def __len__(self) -> int:
        return self.batches

    def __iter__(self):
        for _ in range(self.batches):
            ix = torch.randint(len(self.tokens) - self.block - 1, (self.batch_size,))
            x = torch.stack([self.tokens[i : i + self.block] for i in ix])
            y = torch.stack([self.tokens[i + 1 : i + 1 + self.block] for i in ix])
            yield x, y


class NoisyDataset(Dataset):
    """An augmentation in __getitem__ that adds torch.randn noise (DataLoader, no workers)."""

    def __init__(self, n: int = 48) -> None:
        g = torch.Generator().manual_seed(3)
        self.x = torch.randn(n, 8, generator=g)
        self.y = (self.x[:, 0] > 0).long()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i] + 0.1 * torch.randn(8), self.y[i]


def _lm_experiment(step) -> Experiment:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(13, 16), nn.Dropout(0.1), nn.Linear(16, 13))
    return Experiment(
        model=model,
        train_data=RandomBlocks(),
        lr=0.05,
        epochs=3,
        seed=0,
        train_step=step,
    )


def _lm_step(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())


def _noisy_experiment(step) -> Experiment:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 2))
    return Experiment(
        model=model,
        train_data=DataLoader(NoisyDataset(), batch_size=8, shuffle=True, num_workers=0),
        val_data=DataLoader(NoisyDataset(16), batch_size=8),
        lr=0.1,
        epochs=3,
        seed=0,
        train_step=step,
    )


def _noisy_step(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


def _run(make, loss, run_dir, stop_after=None, resume=False):
    box: list = []
    calls = {"n": 0}

    def step(model, batch):
        calls["n"] += 1
        if calls["n"] == stop_after:
            box[0].send(Stop())  # applied before the next batch is fetched
        return loss(model, batch)

    events: list = []
    trainer = Trainer(make(step), TrainerOptions(run_dir=run_dir, resume=resume), listeners=[events.append])
    box.append(trainer)
    trainer.run()
    return events


def _losses(events) -> dict[int, float]:
    return {
        c.first_step + i: v for c in events if isinstance(c, BatchChunk) for i, v in enumerate(c.losses)
    }


@pytest.mark.parametrize(
    ("make", "loss"),
    [(_lm_experiment, _lm_step), (_noisy_experiment, _noisy_step)],
    ids=["randint-blocks", "randn-augmentation"],
)
def test_mid_epoch_resume_draws_the_same_batches(tmp_path, make, loss):
    straight = _run(make, loss, tmp_path / "a")
    assert isinstance(straight[-1], Finished) and straight[-1].reason == "completed"
    stopped = _run(make, loss, tmp_path / "b", stop_after=8)  # epoch 2 of 6-batch epochs
    assert stopped[-1].reason == "stopped" and stopped[-1].step == 8
    resumed = _run(make, loss, tmp_path / "b", resume=True)
    assert resumed[-1].reason == "completed"
    full, again = _losses(straight), _losses(resumed)
    assert sorted(again) == list(range(8, 18))
    assert [again[s] for s in sorted(again)] == [full[s] for s in sorted(again)]
    ends = {e.epoch: e for e in straight if isinstance(e, EpochEnd)}
    for e in resumed:
        if isinstance(e, EpochEnd):
            assert (e.train_loss, e.val_loss) == (ends[e.epoch].train_loss, ends[e.epoch].val_loss)

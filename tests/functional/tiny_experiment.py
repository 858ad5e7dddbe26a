"""A tiny real experiment for tests: a small MLP on seeded random data, shuffled, with dropout."""

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cosinetui import Experiment
from cosinetui.experiment import accuracy


def data(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return TensorDataset(x, y)


def experiment(epochs: int = 4, batches: int = 8, **kwargs) -> Experiment:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 2))
    options = dict(
        name="tiny",
        model=model,
        train_data=DataLoader(data(16 * batches, 1), batch_size=16, shuffle=True),
        val_data=DataLoader(data(64, 2), batch_size=32),
        lr=0.1,
        epochs=epochs,
        metrics={"acc": accuracy},
        seed=0,
    )
    options.update(kwargs)
    return Experiment(**options)

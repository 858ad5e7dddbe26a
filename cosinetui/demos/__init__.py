"""Built-in experiments: real training on data generated deterministically (no download)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cosinetui.experiment import Experiment, accuracy


def spirals(n: int, arms: int = 5, noise: float = 0.25, seed: int = 0) -> TensorDataset:
    """``n`` 2-D points on ``arms`` interleaved spiral arms, labelled by arm.

    The arms overlap near the centre and the noise blurs them, so a classifier cannot reach
    zero validation loss: the curves flatten like a real task's do.
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, arms, (n,), generator=g)
    radius = torch.rand(n, generator=g) * 3.0 + 0.1
    angle = labels * (2 * math.pi / arms) + radius * 1.6
    points = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)
    points += torch.randn(n, 2, generator=g) * noise * (0.4 + radius[:, None] / 3)
    return TensorDataset(points, labels)


def mlp(width: int = 256, depth: int = 3, classes: int = 5, dropout: float = 0.0) -> nn.Module:
    layers: list[nn.Module] = []
    inputs = 2
    for _ in range(depth):
        layers += [nn.Linear(inputs, width), nn.SiLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        inputs = width
    layers.append(nn.Linear(inputs, classes))
    return nn.Sequential(*layers)


def builtin(epochs: int = 20, train_size: int = 48_000, width: int = 384) -> Experiment:
    """The demo behind a bare `cosinetui`: a 5-arm spiral classifier, about a minute on 2 CPU cores."""
    train = spirals(train_size, seed=1)
    val = spirals(max(train_size // 8, 500), seed=2)
    return Experiment(
        name="spirals",
        model=mlp(width),
        train_data=DataLoader(train, batch_size=64, shuffle=True),
        val_data=DataLoader(val, batch_size=500),
        lr=0.05,
        eta_min=5e-4,
        warmup=2,
        epochs=epochs,
        metrics={"acc": accuracy},
        seed=0,
    )

"""Overfitting: a wide network trained with Adam on 96 points, no regularisation.

    cosinetui run demos/overfit.py

What you should see: train loss falls smoothly towards zero while val loss bottoms out after a
dozen epochs and then climbs; an "overfitting" warning appears within a few epochs of val's best,
with the gap and how long val has not improved.
"""

import torch
from torch.utils.data import DataLoader

from cosinetui import Experiment
from cosinetui.demos import mlp, spirals
from cosinetui.experiment import accuracy


def experiment() -> Experiment:
    return Experiment(
        name="overfit",
        model=mlp(width=256, depth=3),
        train_data=DataLoader(spirals(96, seed=1, noise=0.35), batch_size=16, shuffle=True),
        val_data=DataLoader(spirals(2000, seed=2, noise=0.35), batch_size=500),
        optimizer=lambda params: torch.optim.Adam(params, lr=3e-3),
        epochs=40,
        metrics={"acc": accuracy},
        seed=0,
    )

"""Template: copy this file and put your own model and data in.

    cosinetui run demos/template.py

What you should see: train and val loss falling together and flattening, the LR following one
cosine from 0.1 down to 0.001 over 20 epochs, and no warnings.
"""

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cosinetui import Experiment
from cosinetui.experiment import accuracy


def make_data(n: int, seed: int) -> TensorDataset:
    # Replace with your dataset. Here: 20 features, 4 classes, a learnable rule plus noise.
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 20, generator=g)
    w = torch.randn(20, 4, generator=torch.Generator().manual_seed(0))
    y = (x @ w + 0.5 * torch.randn(n, 4, generator=g)).argmax(dim=1)
    return TensorDataset(x, y)


def experiment() -> Experiment:
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 4))
    return Experiment(
        name="template",
        model=model,
        train_data=DataLoader(make_data(16384, 1), batch_size=128, shuffle=True),
        val_data=DataLoader(make_data(1024, 2), batch_size=256),
        loss_fn=nn.CrossEntropyLoss(),
        # Any optimizer: a function from parameters to a torch.optim.Optimizer.
        optimizer=lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9),
        epochs=20,
        eta_min=1e-3,
        metrics={"acc": accuracy},
        seed=0,  # the model's initial weights and the training's randomness
        # max_grad_norm=1.0,  # clip before each step; the norm shows with `g`
        # accumulate=4,       # one optimizer step per 4 batches
        # max_steps=5000,     # end after this many optimizer steps instead of `epochs`
    )

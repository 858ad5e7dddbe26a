"""Experiments for the benchmarks, also usable with the CLI:

    cosinetui run benchmarks/experiments.py --entry mid --headless --device cpu

``mid``: an MLP whose batch takes about 5-8 ms on one CPU thread; ``small``: about 1 ms, where
any per-batch cost of the monitor shows most. Data are pre-built tensors (a list of batches),
so that a data loader's own cost does not hide the trainer's.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from cosinetui import Experiment

SIZES = {
    # name: (inputs, width, batch size, batches per epoch)
    "small": (64, 160, 64, 400),
    "mid": (256, 512, 192, 80),
    "large": (512, 1024, 256, 40),
}


def build(name: str, epochs: int = 5, device: str = "cpu") -> Experiment:
    inputs, width, batch, batches = SIZES[name]
    g = torch.Generator().manual_seed(1)
    data = [
        (torch.randn(batch, inputs, generator=g), torch.randint(0, 10, (batch,), generator=g))
        for _ in range(batches)
    ]
    if device != "cpu":
        data = [(x.to(device), y.to(device)) for x, y in data]
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(inputs, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10)
    )
    return Experiment(name=f"bench-{name}", model=model, train_data=data, epochs=epochs, lr=0.05, seed=0)


def bare_rate(exp: Experiment, epochs: int, device: str = "cpu") -> float:
    """Samples/s of an ordinary PyTorch loop over ``exp``: SGD with momentum, torch's cosine
    schedule per epoch, the epoch's loss summed on the device and read once per epoch. The
    first epoch (warm-up) is left out."""
    model = exp.model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=exp.lr, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    loss_fn = nn.CrossEntropyLoss()
    samples = seconds = 0.0
    for epoch in range(epochs):
        model.train()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        total = torch.zeros((), device=device)
        n = 0
        for x, y in exp.train_data:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            total += loss.detach() * len(x)
            n += len(x)
        _ = total.item() / n
        sched.step()
        if epoch:
            seconds += time.perf_counter() - start
            samples += n
    return samples / seconds


def small() -> Experiment:
    return build("small")


def mid() -> Experiment:
    return build("mid")


def large() -> Experiment:
    return build("large")

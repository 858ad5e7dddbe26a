"""A tiny experiment for multi-rank tests: each rank records, per batch, its rank, step and
optimizer LR (through the optimizer factory, no hook in cosinetui), in a file named by the
COSINETUI_TEST_TRACE environment variable, with a checksum of the weights it trains with;
COSINETUI_TEST_BATCH_SLEEP slows each batch; rank 1's loss is NaN at COSINETUI_TEST_NAN_STEP;
COSINETUI_TEST_ACCUMULATE sets accumulate."""

import math
import os
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cosinetui import Experiment


def data(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return TensorDataset(x, y)


def val_batches():
    ds = data(50, 2)  # 50 samples in 7 batches: uneven shards
    return [(ds.tensors[0][i : i + 8], ds.tensors[1][i : i + 8]) for i in range(0, 50, 8)]


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))


def experiment() -> Experiment:
    optimizers = []
    trace = os.environ.get("COSINETUI_TEST_TRACE")
    pause = float(os.environ.get("COSINETUI_TEST_BATCH_SLEEP", "0"))
    epochs = int(os.environ.get("COSINETUI_TEST_EPOCHS", "2"))
    nan_step = int(os.environ.get("COSINETUI_TEST_NAN_STEP", "-1"))
    out = None
    step = 0

    def make_optimizer(params):
        optimizers.append(torch.optim.SGD(params, lr=0.1))
        return optimizers[-1]

    def train_step(m, batch):
        nonlocal out, step
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        if trace:
            if out is None:
                out = open(f"{trace}.{rank}", "a", buffering=1)  # noqa: SIM115 - lives with the run
                with open(f"{trace}.pid.{rank}", "w") as fh:
                    fh.write(str(os.getpid()))
            checksum = sum(p.detach().double().sum().item() for p in m.parameters())
            sync = int(getattr(m, "require_backward_grad_sync", True))  # DDP's all-reduce this batch
            out.write(f"{optimizers[-1].param_groups[0]['lr']!r} {checksum!r} {sync}\n")
        if pause:
            time.sleep(pause)
        loss = nn.functional.cross_entropy(m(batch[0]), batch[1])
        step += 1
        return loss * math.nan if step - 1 == nan_step and rank == 1 else loss

    return Experiment(
        name="ddp",
        model=model(),
        train_data=DataLoader(data(16 * 10, 1), batch_size=16, shuffle=True),  # 10 batches
        val_data=val_batches(),
        optimizer=make_optimizer,
        train_step=train_step,
        interval="batch",
        epochs=epochs,
        seed=0,
        accumulate=int(os.environ.get("COSINETUI_TEST_ACCUMULATE", "1")),
    )

"""Warm restarts (SGDR): the LR anneals over 4 epochs, then 8, then 16, restarting to its peak.

    cosinetui run demos/warm_restarts.py

What you should see: a saw-tooth of cosines in the LR plot (cycles of 4, 8 and 16 epochs), a
small loss bump after each restart that is NOT flagged as instability, and a lower loss at the
end of each cycle than at the end of the one before.
"""

from torch.utils.data import DataLoader

from cosinetui import Experiment
from cosinetui.demos import mlp, spirals
from cosinetui.experiment import accuracy


def experiment() -> Experiment:
    return Experiment(
        name="warm-restarts",
        model=mlp(width=128, depth=3),
        train_data=DataLoader(spirals(8000, seed=1), batch_size=64, shuffle=True),
        val_data=DataLoader(spirals(2000, seed=2), batch_size=500),
        lr=0.1,
        eta_min=1e-3,
        restarts=True,
        cycle=4,
        T_mult=2,
        epochs=28,
        metrics={"acc": accuracy},
        seed=0,
    )

"""A learning rate too high: SGD at 0.35 with momentum 0.9 (0.1 trains well).

    cosinetui run demos/lr_too_high.py

What you should see: the loss drops over the first epochs, then jumps back up and stays above
its best for several epochs while the cosine brings the LR down. A "divergence" warning appears
by epoch 5 with the evidence, offering to halve the LR (press h). The loss recovers only late,
once the schedule itself has lowered the LR. (The exact epoch depends on the machine and on
torch's thread count: a run this unstable amplifies rounding differences.) At 0.8 the same run
produces NaN losses within the first epoch (try `--lr 0.8`).
"""

from torch.utils.data import DataLoader

from cosinetui import Experiment
from cosinetui.demos import mlp, spirals


def experiment() -> Experiment:
    return Experiment(
        name="lr-too-high",
        model=mlp(width=128, depth=3),
        train_data=DataLoader(spirals(4000, seed=1), batch_size=32, shuffle=True),
        val_data=DataLoader(spirals(1000, seed=2), batch_size=500),
        lr=0.35,
        epochs=12,
        seed=0,
    )

"""A long headless run keeps its memory flat: nothing holds on to the events it has emitted.

The batch work is replaced by a constant loss (no model, no backward) so that 100k steps take
seconds; everything else (the loop, events, metrics log, diagnostics, the headless printer)
is the real thing. The history of batch losses and LRs is kept on purpose (16 bytes a step,
docs/usage.md), so the bound allows for it.
"""

from __future__ import annotations

import gc
import sys

import pytest
from torch import nn

from cosinetui import Experiment
from cosinetui.headless import Printer
from cosinetui.session import TrainerSession
from cosinetui.stepper import Stepper
from cosinetui.trainer import TrainerOptions

STEPS = 100_000
WARM = 10_000


class Blank:
    """STEPS empty batches a run over one epoch."""

    def __len__(self) -> int:
        return STEPS

    def __iter__(self):
        for _ in range(STEPS):
            yield ()


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_headless_memory_stays_flat_over_100k_steps(tmp_path, monkeypatch):
    seen: dict[int, tuple[int, int]] = {}
    steps = {"n": 0}

    def constant_loss(self, batch, step):
        steps["n"] += 1
        if steps["n"] in (WARM, STEPS):
            gc.collect()
            seen[steps["n"]] = (_rss(), sys.getallocatedblocks())
        return 1.0 + steps["n"] * 1e-9, {}  # a new float each step, as real losses are

    monkeypatch.setattr(Stepper, "train", constant_loss)
    exp = Experiment(model=nn.Linear(1, 1), train_data=Blank(), epochs=1)
    session = TrainerSession(exp, TrainerOptions(run_dir=tmp_path, checkpoint_every=0))
    lines: list[str] = []
    session.trainer.listeners.append(Printer(lines.append))
    session.run_here()  # as a headless run trains
    assert lines[-1].startswith("finished (completed)")
    (rss0, blocks0), (rss1, blocks1) = seen[WARM], seen[STEPS]
    span = STEPS - WARM
    # No per-step Python objects survive (a queue of batch chunks nobody reads holds a float
    # object for every step).
    assert blocks1 - blocks0 < 20_000, f"{blocks1 - blocks0} more memory blocks after {span} steps"
    # The per-step history (loss and LR arrays for the plots, the diagnostics' per-batch
    # arrays) is a few tens of bytes a step, in flat arrays; allow the allocator its slack.
    grew = (rss1 - rss0) / span
    assert grew < 96, f"RSS grew {grew:.1f} bytes a step"
    assert session.drain() == []

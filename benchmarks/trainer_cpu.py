"""The trainer's own CPU cost per batch, in one process: the model of ddp_overhead.py (width
320, batch 64, 200 batches an epoch, 4 epochs, the first left out) trained by a bare loop and
by cosinetui's Trainer, alternating, CPU time per batch (``time.process_time``).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/trainer_cpu.py --rounds 7
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _util import machine  # noqa: E402
from torch import nn  # noqa: E402

from cosinetui import Experiment  # noqa: E402
from cosinetui.events import EpochEnd  # noqa: E402
from cosinetui.trainer import Trainer, TrainerOptions  # noqa: E402

WIDTH, BATCH, BATCHES, EPOCHS = 320, 64, 200, 4


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.ReLU(), nn.Linear(WIDTH, WIDTH), nn.ReLU(), nn.Linear(WIDTH, 10))


def make_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(BATCH, WIDTH, generator=g), torch.randint(0, 10, (BATCH,), generator=g))
            for _ in range(BATCHES)]


def bare(batches) -> float:
    model = build_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    per_batch = []
    for _ in range(EPOCHS):
        start = time.process_time()
        total = torch.zeros(())
        for x, y in batches:
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            total += loss.detach()
        total.item()
        per_batch.append((time.process_time() - start) / BATCHES)
    return statistics.median(per_batch[1:])


def with_trainer(batches) -> float:
    exp = Experiment(model=build_model(), train_data=batches, epochs=EPOCHS, lr=0.01, seed=0)
    per_batch: list[float] = []
    last: list[float] = []

    def on_event(event) -> None:
        if isinstance(event, EpochEnd):
            now = time.process_time()
            if last:
                per_batch.append((now - last[-1]) / BATCHES)
            last.append(now)

    options = TrainerOptions(run_dir=Path(tempfile.mkdtemp()) / "r", device="cpu", checkpoint_every=0)
    Trainer(exp, options, [on_event]).run()
    return statistics.median(per_batch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"# trainer CPU per batch: {machine()}")
    batches = make_batches()
    ratios = []
    for r in range(args.rounds):
        a, b = bare(batches), with_trainer(batches)
        ratios.append(b / a - 1)
        print(f"round {r + 1}: bare {a * 1e3:.3f} ms, trainer {b * 1e3:.3f} ms, {100 * (b / a - 1):+.1f}%", flush=True)
    print(f"median: {100 * statistics.median(ratios):+.2f}% of the bare loop's CPU time per batch")


if __name__ == "__main__":
    main()

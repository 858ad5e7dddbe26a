"""Dashboard redraw cost and History memory on long runs.

For each history size (100 epochs with 10k batch losses; 10k epochs with 1M batch losses,
100 batches an epoch, interval "epoch") and terminal size (120x40, 80x24), a CosineApp on a
ReplaySession of synthetic events runs under Textual's headless driver. After the app has
drained and drawn everything, its own 8 Hz poll timer is paused and each timed frame is:

  1. one new event appended to the app's History (a BatchChunk of 20 losses, or an EpochEnd),
     or none ("next": the poll after an epoch end, which draws the plot that waited),
  2. app.poll(): the widgets recompute their data (series, decimation) and ask for a refresh,
  3. 0.1 s of asyncio sleep: Textual renders the dirty widgets on its own schedule (plotext
     runs here) and composes the screen update (headless: the final write to a terminal is
     skipped, so a real terminal costs slightly more).

What is timed is the main thread's CPU time (time.thread_time) over 2+3, i.e. the time the
UI holds the interpreter for that frame; sleeping does not count. Textual's pilot.pause() is
not used to wait: it walks every widget's message queue, about 4 ms a frame of test-harness
work that a running dashboard does not do. "idle" is the same window with no poll. Reported:
median, mean and max over the frames (--frames chunk frames, 5 epoch frames, each followed by
its "next" frame). Frames come every 0.1 s, close to the 8 Hz a live run's chunks arrive at,
so the dashboard's own pacing applies (plots redrawn at most once a second within an epoch,
only when their picture changed, and at most one plot a frame): the median chunk frame is one
without a plot rebuild, the mean spreads the rebuilds over the frames (use --frames 60 or
more, so that an epoch's chunks span more than a second). Memory: tracemalloc growth while
building a History (the domain object the trainer and the app each keep) from 1M batch losses.

    .venv/bin/python benchmarks/render.py
    .venv/bin/python benchmarks/render.py --frames 60
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _util import machine, table  # noqa: E402

SPE = 100  # batches per epoch


def schedule_state(epochs: int) -> dict:
    import torch

    from cosinetui.schedule import AdjustableCosineLR

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    return AdjustableCosineLR(opt, T_max=epochs, eta_min=1e-4).state_dict()


def synthetic_events(epochs: int, planned: int, chunk: int = 100):
    """RunStarted, then per epoch BatchChunks of ``chunk`` losses and an EpochEnd."""
    from cosinetui.events import BatchChunk, EpochEnd, RunStarted

    rng = random.Random(0)
    yield RunStarted("bench", "/tmp/bench", "cpu", "x", 1000, planned, SPE, "epoch", schedule_state(planned))
    step = 0
    for e in range(1, epochs + 1):
        lr = 1e-4 + 0.5 * (0.1 - 1e-4) * (1 + math.cos(math.pi * (e - 1) / planned))
        base = 2.0 / math.sqrt(e)
        for first in range(0, SPE, chunk):
            n = min(chunk, SPE - first)
            losses = tuple(base * (1 + 0.1 * rng.random()) for _ in range(n))
            yield BatchChunk(e, step, losses, (lr,) * n, first + n)
            step += n
        yield EpochEnd(e, base, base * 1.1, lr, 1.0, 6400.0, step)


def history_memory(epochs: int) -> tuple[float, int]:
    from cosinetui.history import History

    events = synthetic_events(epochs, epochs * 2)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    history = History()
    for event in events:
        history.apply(event)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    losses = len(history.losses)
    return (after - before) / losses, after - before


async def frames(epochs: int, size: tuple[int, int], n_chunks: int, n_epochs: int) -> dict[str, list[float]]:
    from cosinetui.events import BatchChunk, EpochEnd
    from cosinetui.session import ReplaySession
    from cosinetui.ui.app import CosineApp

    planned = epochs * 2
    events = list(synthetic_events(epochs, planned))
    app = CosineApp(ReplaySession(events))
    out: dict[str, list[float]] = {"first": [], "idle": [], "chunk": [], "epoch": [], "next": []}
    async with app.run_test(size=size) as pilot:
        # First full draw of the whole history (drained over as many polls as needed).
        t = time.thread_time()
        while app.history.epochs_done < epochs:
            app.poll()
        await pilot.pause(0.05)
        await pilot.pause(0.05)
        out["first"].append((time.thread_time() - t) * 1e3)
        app.poll_timer.pause()  # one poll a frame, the benchmark's
        history = app.history
        step, e = history.step, epochs + 1
        rng = random.Random(1)
        done = 0

        async def frame(kind: str, poll: bool = True) -> None:
            t = time.thread_time()
            if poll:
                app.poll()
            await asyncio.sleep(0.05)
            await asyncio.sleep(0.05)
            out[kind].append((time.thread_time() - t) * 1e3)

        for _ in range(3):
            await frame("idle", poll=False)
        for _ in range(n_epochs):
            for _ in range(n_chunks // n_epochs):
                losses = tuple(0.02 * (1 + rng.random()) for _ in range(20))
                done += 20
                history.apply(BatchChunk(e, step, losses, (1e-3,) * 20, done))
                step += 20
                await frame("chunk")
            history.apply(EpochEnd(e, 0.02, 0.022, 1e-3, 1.0, 6400.0, step))
            e, done = e + 1, 0
            await frame("epoch")
            await frame("next")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=20, help="chunk frames per case (5 epoch frames)")
    ap.add_argument("--epochs", default="100,10000")
    args = ap.parse_args()
    import torch  # noqa: F401 - for the machine line

    print(f"# render: {machine()}")
    rows = []
    for epochs in (int(x) for x in args.epochs.split(",")):
        for size in ((120, 40), (80, 24)):
            out = asyncio.run(frames(epochs, size, args.frames, 5))
            rows.append([
                f"{epochs:,}", f"{epochs * SPE:,}", f"{size[0]}x{size[1]}", out["first"][0], statistics.median(out["idle"]),
                statistics.median(out["chunk"]), statistics.fmean(out["chunk"]), max(out["chunk"]),
                statistics.median(out["epoch"]), max(out["epoch"]), statistics.median(out["next"]), max(out["next"]),
            ])
            print(f"  done {epochs} {size}", flush=True)
    print(table(["epochs", "batch losses", "size", "first draw ms", "idle ms", "chunk frame ms (median)", "mean", "max",
                 "epoch frame ms (median)", "max", "next frame ms (median)", "max"], rows))
    per, total = history_memory(10_000)
    print(f"History memory for 1,000,000 batch losses and 10,000 epochs: {total / 2**20:.1f} MiB, "
          f"{per:.1f} bytes per batch loss (losses + LRs + epoch records)")


if __name__ == "__main__":
    main()

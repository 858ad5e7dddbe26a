"""Overhead of cosinetui.track() on a loop you write: the same loop, bare and tracked.

  bare     a plain loop: forward, backward, AdamW step, a per-batch AdjustableCosineLR step,
           the epoch's loss summed on the device and read once per epoch;
  tracked  the same loop inside ``cosinetui.track()`` (run.log_batch(loss) each batch,
           run.log_epoch() each epoch): the metrics log, the control socket, the diagnostics,
           and a checkpoint every epoch (``--checkpoint-every``, default 1; 0 leaves only the
           final one, written after the timed span).

The model is sized so that a batch takes about ``--batch-ms`` milliseconds of CPU time here
(calibrated once at start). The variants alternate (bare, tracked, bare, ...); each round's
ratio is tracked/bare samples per second, timed from the first batch to the end of the last
epoch (the checkpoints included), and the median over rounds is reported. Two clocks: wall
time, and the process's CPU time (all its threads: the control socket's thread and the
diagnostics count). On a machine shared with other work the wall-clock ratio is mostly the
neighbours' noise; the CPU-time ratio is what the tracking itself costs.

It also measures the CPU cost of the tracking alone, with a trivial "training" step: a
``log_batch`` call, and a chunk (every ~0.1 s of wall time: the metrics log line, the
diagnostics, the hand-over to the control socket). The overhead to expect on a machine that
is not shared is then ``per batch + per chunk x chunks a second / batches a second``.

    .venv/bin/python benchmarks/track_overhead.py                   # 5 ms batches, 7 rounds
    .venv/bin/python benchmarks/track_overhead.py --batch-ms 1 --rounds 9
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from _util import machine, median, table  # noqa: E402

BATCH = 64


def build(width: int, batches: int, seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, width), torch.nn.ReLU(), torch.nn.Linear(width, width), torch.nn.ReLU(),
        torch.nn.Linear(width, 10),
    )
    g = torch.Generator().manual_seed(seed)
    data = [(torch.randn(BATCH, 64, generator=g), torch.randint(0, 10, (BATCH,), generator=g)) for _ in range(batches)]
    return model, data


def step(model, opt, x, y):
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


def calibrate(target_ms: float) -> int:
    """The hidden width whose batch takes about target_ms here."""
    width = 256
    for _ in range(8):
        model, data = build(width, 20)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for x, y in data[:5]:
            step(model, opt, x, y)
        t = time.process_time()
        for x, y in data[5:]:
            step(model, opt, x, y)
        ms = (time.process_time() - t) * 1000 / 15
        if abs(ms - target_ms) / target_ms < 0.1:
            break
        width = max(16, int(width * (target_ms / ms) ** 0.5))
    return width


def clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def rates(samples: int, start: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = clocks()
    return samples / (wall - start[0]), samples / (cpu - start[1])


def bare(width: int, epochs: int, batches: int) -> tuple[float, float]:
    model, data = build(width, batches)
    from cosinetui.schedule import AdjustableCosineLR

    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = AdjustableCosineLR(opt, T_max=epochs * batches)
    start = clocks()
    for _ in range(epochs):
        total = torch.zeros(())
        for x, y in data:
            total += step(model, opt, x, y).detach()
            sched.step()
        total.item()
    return rates(epochs * batches * BATCH, start)


def tracked(width: int, epochs: int, batches: int, checkpoint_every: int) -> tuple[float, float]:
    import cosinetui

    model, data = build(width, batches)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = cosinetui.AdjustableCosineLR(opt, T_max=epochs * batches)
    run_dir = Path(tempfile.mkdtemp(prefix="ctt")) / "run"
    try:
        with cosinetui.track(model=model, optimizer=opt, scheduler=sched, epochs=epochs,
                             steps_per_epoch=batches, run_dir=run_dir, lines=False,
                             checkpoint_every=checkpoint_every) as run:
            start = clocks()
            for _ in run.epochs():
                for x, y in data:
                    loss = step(model, opt, x, y)
                    sched.step()
                    run.log_batch(loss, batch_size=BATCH)
                run.log_epoch()
            result = rates(epochs * batches * BATCH, start)
    finally:
        shutil.rmtree(run_dir.parent, ignore_errors=True)
    return result


def tracking_cost(rounds: int = 3, n: int = 2000, chunk: int = 20) -> tuple[float, float]:
    """Median CPU microseconds of one log_batch, and of one chunk's flush."""
    import cosinetui

    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = cosinetui.AdjustableCosineLR(opt, T_max=10**6)
    root = Path(tempfile.mkdtemp(prefix="ctc"))
    per_batch, per_chunk = [], []
    try:
        with cosinetui.track(model=model, optimizer=opt, scheduler=sched, epochs=10**6,
                             run_dir=root / "run", lines=False, checkpoint_every=0) as run:
            for _ in range(rounds):
                run._last_flush = float("inf")  # no time-based flush while measuring
                t = time.process_time()
                for i in range(n):
                    run.log_batch(0.5 + 0.001 * (i % 7))
                plain = (time.process_time() - t) / n
                run._flush()
                t = time.process_time()
                for i in range(n):
                    run.log_batch(0.5 + 0.001 * (i % 7))
                    if (i + 1) % chunk == 0:
                        run._flush()
                with_chunks = (time.process_time() - t) / n
                per_batch.append(plain * 1e6)
                per_chunk.append((with_chunks - plain) * chunk * 1e6)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return median(per_batch), median(per_chunk)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-ms", type=float, default=5.0)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batches", type=int, default=400, help="batches per epoch")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--checkpoint-every", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    width = calibrate(args.batch_ms)
    print(f"# track() overhead: {machine(args.threads)}")
    bare(width, 1, 20)  # warm-up: allocator, kernels
    tracked(width, 1, 20, 0)
    rows, wall, cpu = [], [], []
    for r in range(args.rounds):
        a = bare(width, args.epochs, args.batches)
        b = tracked(width, args.epochs, args.batches, args.checkpoint_every)
        wall.append(b[0] / a[0])
        cpu.append(b[1] / a[1])
        rows.append([r + 1, a[0], b[0], wall[-1], a[1], b[1], cpu[-1]])
    print(f"width {width}: {BATCH * 1000 / median([row[4] for row in rows]):.2f} ms of CPU a batch "
          f"({BATCH * 1000 / median([row[1] for row in rows]):.2f} ms wall) bare; {args.epochs} epochs "
          f"x {args.batches} batches, checkpoint every {args.checkpoint_every} epoch(s)")
    print(table(["round", "bare/s wall", "tracked/s wall", "ratio wall", "bare/s CPU",
                 "tracked/s CPU", "ratio CPU"], rows))
    for name, ratios in (("wall", wall), ("CPU", cpu)):
        print(f"median tracked / bare ({name}): {median(ratios):.4f} "
              f"(min {min(ratios):.4f}, max {max(ratios):.4f})")
    batch_us, chunk_us = tracking_cost()
    cost = batch_us / (args.batch_ms * 1000) + chunk_us * 10 / 1e6  # 10 chunks a second
    print(f"tracking alone: {batch_us:.1f} us of CPU per log_batch, {chunk_us:.0f} us per chunk; "
          f"at {args.batch_ms:g} ms batches on an unshared core: ~{cost:.2%} overhead "
          f"(tracked / bare ~{1 / (1 + cost):.4f})")


if __name__ == "__main__":
    main()

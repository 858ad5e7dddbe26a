"""Training overhead of the monitor: samples/s of one model and data set

  (a) bare      an ordinary PyTorch loop (SGD with momentum, CosineAnnealingLR per epoch, the
                epoch's loss summed on the device and read with .item() once per epoch);
  (b) headless  what `cosinetui run --headless` runs, in this process: a TrainerSession, the
                control socket server, and launch.run_headless printing to /dev/null;
  (c) dashboard the same session under the full dashboard, CosineApp(session).run_test() at
                120x40 (Textual's headless driver: every widget is rendered and composited,
                only the final write to a terminal is skipped).

  (d) lean      opt-in (--variants ...,lean): (c) with the UI changes recommended in
                docs/performance.md simulated by patching the app from outside (plots rebuilt
                at most every 2 s within an epoch, session polled every 0.5 s). It measures
                what those changes would buy; it is not how the dashboard ships.

The variants alternate (a, b, c, a, b, c, ...) in one process. Samples/s of a run is its
epochs' samples over their time, leaving out the first epoch (warm-up); for (b) and (c) the
time is the trainer's own per-epoch time from its EpochEnd events, for (a) the same span
measured in the loop. Ratios are per repetition (b/a and c/a of the same round), then the
median is taken.

    .venv/bin/python benchmarks/overhead.py                  # small and mid, 5 rounds
    .venv/bin/python benchmarks/overhead.py --models mid --reps 7 --threads 1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import experiments  # noqa: E402
import torch  # noqa: E402
from _util import machine, median, table  # noqa: E402


def bare(name: str, epochs: int) -> tuple[float, float]:
    exp = experiments.build(name, epochs)
    torch.manual_seed(0)
    model = exp.model
    opt = torch.optim.SGD(model.parameters(), lr=exp.lr, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    loss_fn = torch.nn.CrossEntropyLoss()
    samples = seconds = 0.0
    for epoch in range(epochs):
        model.train()
        start = time.perf_counter()
        total = torch.zeros(())
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
    return samples / seconds, 0.0


def _session(name: str, epochs: int, run_dir: Path):
    from cosinetui.remote import RunServer
    from cosinetui.session import TrainerSession
    from cosinetui.trainer import TrainerOptions

    exp = experiments.build(name, epochs)
    options = TrainerOptions(run_dir=run_dir, device="cpu", on_nan="stop", checkpoint_every=1)
    session = TrainerSession(exp, options)
    server = RunServer(run_dir, session.trainer.send)
    session.trainer.listeners.append(server.listener)
    server.start()
    return session, server


def _rate(epochs) -> float:
    later = [e for e in epochs if e.epoch > 1]
    return sum(e.samples_per_s * e.seconds for e in later) / sum(e.seconds for e in later)


def headless(name: str, epochs: int) -> tuple[float, float]:
    from cosinetui.launch import run_headless

    run_dir = Path(tempfile.mkdtemp(prefix="ctb"))
    session, server = _session(name, epochs, run_dir)
    try:
        wall = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            code = run_headless(session, run_dir)
        wall = time.perf_counter() - wall
        assert code == 0, code
        return _rate(session.trainer.history.epochs), wall
    finally:
        server.close()
        shutil.rmtree(run_dir, ignore_errors=True)


def dashboard(name: str, epochs: int, size=(120, 40)) -> tuple[float, float]:
    from cosinetui.ui.app import CosineApp

    run_dir = Path(tempfile.mkdtemp(prefix="ctb"))
    session, server = _session(name, epochs, run_dir)
    app = CosineApp(session)

    async def drive() -> float:
        async with app.run_test(size=size):
            session.start()
            # The UI thread's CPU time while epochs 2.. train, over their wall time: how much
            # of the time the UI held the interpreter (the GIL) that the trainer needs too.
            await app.wait_until(lambda h: h.epochs_done >= 1, timeout=900)
            cpu, wall = time.thread_time(), time.perf_counter()
            await app.wait_until(lambda h: h.end is not None, timeout=900)
            busy = (time.thread_time() - cpu) / (time.perf_counter() - wall)
        return busy

    try:
        busy = asyncio.run(drive())
        session.wait(60)
        assert app.history.state == "finished", app.history.state
        return _rate(app.history.epochs), busy
    finally:
        server.close()
        shutil.rmtree(run_dir, ignore_errors=True)


def lean(name: str, epochs: int) -> tuple[float, float]:
    from cosinetui.ui import app as app_module
    from cosinetui.ui.widgets import plots

    originals = {cls: cls.update_from for cls in (plots.LossPlot, plots.LRPlot)}

    def throttled(original):
        def update_from(self, history) -> None:
            now, done = time.monotonic(), history.epochs_done
            last = getattr(self, "_bench_last", None)
            if last and now - last[0] < 2.0 and done == last[1] and history.end is None:
                self._history = history
                return
            self._bench_last = (now, done)
            original(self, history)

        return update_from

    poll = app_module.POLL_SECONDS
    try:
        app_module.POLL_SECONDS = 0.5
        for cls, original in originals.items():
            cls.update_from = throttled(original)
        return dashboard(name, epochs)
    finally:
        app_module.POLL_SECONDS = poll
        for cls, original in originals.items():
            cls.update_from = original


VARIANTS = {"bare": bare, "headless": headless, "dashboard": dashboard, "lean": lean}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="small,mid", help="comma-separated: small, mid, large")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads for every variant")
    ap.add_argument("--variants", default="bare,headless,dashboard")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    variants = args.variants.split(",")
    print(f"# overhead: {machine(args.threads)}")
    rows = []
    for name in args.models.split(","):
        batch = experiments.SIZES[name][2]
        rates: dict[str, list[float]] = {v: [] for v in variants}
        busy: dict[str, list[float]] = {v: [] for v in variants}
        for rep in range(args.reps):
            for v in variants:
                rate, ui = VARIANTS[v](name, args.epochs)
                rates[v].append(rate)
                busy[v].append(ui)
            print(f"  {name} round {rep + 1}: " + "  ".join(f"{v} {rates[v][-1]:,.0f}/s" for v in variants), flush=True)
        for v in variants:
            ratios = [b / a for a, b in zip(rates["bare"], rates[v], strict=True)] if "bare" in rates else []
            rows.append([
                name,
                batch / median(rates["bare"]) * 1e3 if "bare" in rates else float("nan"),
                v,
                median(rates[v]),
                median(ratios) if ratios else float("nan"),
                f"{min(ratios):.3f}-{max(ratios):.3f}" if ratios else "-",
                f"{median(busy[v]):.1%}" if v in ("dashboard", "lean") else "-",
            ])
    print(table(["model", "ms/batch (bare)", "variant", "samples/s (median)", "ratio to bare (median)",
                 "ratio range", "UI thread busy"], rows))

if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()

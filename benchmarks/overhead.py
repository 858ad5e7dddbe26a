"""Training overhead of the monitor: samples/s of one model and data set

  (a) bare      an ordinary PyTorch loop (SGD with momentum, CosineAnnealingLR per epoch, the
                epoch's loss summed on the device and read with .item() once per epoch);
  (b) headless  what `cosinetui run --headless` runs, in this process: a TrainerSession, the
                control socket server, and launch.run_headless printing to /dev/null;
  (c) dashboard what `cosinetui run` runs with a terminal: the trainer in a child process
                (`cosinetui run ... --headless`, its own interpreter) and the full dashboard in
                this process attached over the run's control socket, CosineApp(session)
                .run_test() at 120x40 (Textual's headless driver: every widget is rendered and
                composited, only the final write to a terminal is skipped).

  Opt-in (--variants ...):
  (d) process   the child-process trainer of (c) with no dashboard attached: (c)/(d) isolates
                the dashboard's cost from the cost of a second interpreter.
  (e) thread    the dashboard and the trainer as two threads of one process (how the
                dashboard ran before the child process): the UI thread competes with the
                training loop for Python's interpreter lock.

The variants alternate (a, b, c, a, b, c, ...) in one process. Samples/s of a run is its
epochs' samples over their time, leaving out the first epoch (warm-up); for (b) and (c) the
time is the trainer's own per-epoch time from its EpochEnd events, for (a) the same span
measured in the loop. Ratios are per repetition (b/a and c/a of the same round), then the
median is taken. The child process gets the same torch thread count through OMP_NUM_THREADS.

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
    torch.manual_seed(0)
    return experiments.bare_rate(experiments.build(name, epochs), epochs), 0.0


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


def _drive_app(session, size=(120, 40), start=None) -> tuple[object, float]:
    from cosinetui.ui.app import CosineApp

    app = CosineApp(session)

    async def drive() -> float:
        async with app.run_test(size=size):
            if start is not None:
                start()
            # The UI thread's CPU time while epochs 2.. train, over their wall time.
            await app.wait_until(lambda h: h.epochs_done >= 1, timeout=900)
            cpu, wall = time.thread_time(), time.perf_counter()
            await app.wait_until(lambda h: h.end is not None, timeout=900)
            return (time.thread_time() - cpu) / (time.perf_counter() - wall)

    return app, asyncio.run(drive())


def thread(name: str, epochs: int) -> tuple[float, float]:
    run_dir = Path(tempfile.mkdtemp(prefix="ctb"))
    session, server = _session(name, epochs, run_dir)
    try:
        app, busy = _drive_app(session, start=session.start)
        session.wait(60)
        assert app.history.state == "finished", app.history.state
        return _rate(app.history.epochs), busy
    finally:
        server.close()
        shutil.rmtree(run_dir, ignore_errors=True)


def _child(name: str, epochs: int, run_dir: Path):
    import subprocess

    from cosinetui.remote import is_live

    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    cmd = [sys.executable, "-m", "cosinetui", "run", str(Path(experiments.__file__)), "--entry", name,
           "--epochs", str(epochs), "--headless", "--device", "cpu", "--on-nan", "stop",
           "--run-dir", str(run_dir)]
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    while not is_live(run_dir, timeout=0.5):
        assert child.poll() is None, "the trainer process ended at once"
        time.sleep(0.05)
    return child


def process(name: str, epochs: int) -> tuple[float, float]:
    from cosinetui.history import History
    from cosinetui.store import read_log

    run_dir = Path(tempfile.mkdtemp(prefix="ctb"))
    try:
        child = _child(name, epochs, run_dir)
        assert child.wait(900) == 0
        return _rate(History.from_events(read_log(run_dir).events).epochs), 0.0
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def dashboard(name: str, epochs: int) -> tuple[float, float]:
    from cosinetui.remote import AttachedSession

    run_dir = Path(tempfile.mkdtemp(prefix="ctb"))
    try:
        child = _child(name, epochs, run_dir)
        session = AttachedSession(run_dir)
        session.start()
        app, busy = _drive_app(session)
        session.close()
        assert child.wait(60) == 0
        assert app.history.state == "finished", app.history.state
        return _rate(app.history.epochs), busy
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


VARIANTS = {"bare": bare, "headless": headless, "dashboard": dashboard, "process": process, "thread": thread}


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
                f"{median(busy[v]):.1%}" if v in ("dashboard", "thread") else "-",
            ])
    print(table(["model", "ms/batch (bare)", "variant", "samples/s (median)", "ratio to bare (median)",
                 "ratio range", "UI thread busy"], rows))

if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()

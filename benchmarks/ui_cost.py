"""The dashboard's own CPU while a run streams batches: on a 2-core machine the trainer pays
for it. A scripted session feeds chunks of 20 batches ten times a second (a 5 ms batch) into
CosineApp at 120x40 (Textual's headless driver); the process's CPU time over the wall time is
printed, for the app's poll interval or the one given.

    .venv/bin/python benchmarks/ui_cost.py                 # the app's own interval, 15 s
    .venv/bin/python benchmarks/ui_cost.py --poll 0.125    # another interval
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cosinetui.ui.app as app_module  # noqa: E402
from cosinetui.events import BatchChunk, EpochEnd  # noqa: E402
from tests.functional.conftest_ui import ScriptedSession, scripted_events  # noqa: E402


async def measure(seconds: float) -> tuple[float, float, int]:
    events = scripted_events(epochs=200, done=5, steps_per_epoch=2000, in_progress=10)
    session = ScriptedSession(events)
    app = app_module.CosineApp(session)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        stop = threading.Event()

        def feed() -> None:  # plays the trainer: a chunk every 0.1 s, an epoch every 2000 batches
            step, epoch, done = app.history.step, 6, 10
            while not stop.wait(0.1):
                losses = tuple(1.0 + 0.01 * math.sin(step + i) for i in range(20))
                session.events.put(BatchChunk(epoch, step, losses, (0.05,) * 20, done + 20))
                step, done = step + 20, done + 20
                if done >= 2000:
                    session.events.put(EpochEnd(epoch, 1.0, 1.1, 0.05, 40.0, 1000.0, step))
                    epoch, done = epoch + 1, 0

        threading.Thread(target=feed, daemon=True).start()
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        stop.set()
        return cpu, wall, app.polls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--poll", type=float, help="poll interval in seconds (default: the app's)")
    ap.add_argument("--seconds", type=float, default=15.0)
    args = ap.parse_args()
    if args.poll:
        app_module.POLL_SECONDS = args.poll
    cpu, wall, polls = asyncio.run(measure(args.seconds))
    print(f"poll {app_module.POLL_SECONDS} s: dashboard CPU {cpu:.2f} s over {wall:.1f} s = "
          f"{cpu / wall:.1%} of a core ({polls} polls)")


if __name__ == "__main__":
    main()

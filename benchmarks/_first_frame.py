"""Child process of startup.py: the built-in demo in the dashboard (Textual's headless driver,
120x40), printing seconds since the process started at each milestone as JSON."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

T0 = float(sys.argv[1])  # time.time() in the parent just before it started this process
marks: dict[str, float] = {"interpreter": time.time() - T0}

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cosinetui.launch import build_experiment  # noqa: E402
from cosinetui.session import TrainerSession  # noqa: E402
from cosinetui.trainer import TrainerOptions  # noqa: E402
from cosinetui.ui.app import CosineApp  # noqa: E402

marks["imports"] = time.time() - T0


async def main() -> None:
    run_dir = Path(tempfile.mkdtemp(prefix="ctb"))
    config = {"target": None, "entry": "experiment", "overrides": {}, "device": "cpu"}
    session = TrainerSession(build_experiment(config), TrainerOptions(run_dir=run_dir, device="cpu"))
    session.start()
    app = CosineApp(session)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            marks["first frame"] = time.time() - T0
            await app.wait_until(lambda h: h.run is not None, timeout=120)
            await pilot.pause()
            marks["run shown"] = time.time() - T0
            await app.wait_until(lambda h: h.step > 0, timeout=120)
            await pilot.pause()
            marks["first batches shown"] = time.time() - T0
            app.stop("stopped")
            await app.wait_until(lambda h: h.end is not None, timeout=120)
    finally:
        session.wait(60)
        shutil.rmtree(run_dir, ignore_errors=True)


asyncio.run(main())
print(json.dumps(marks))

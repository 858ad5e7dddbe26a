"""Time to the first frame of the real `cosinetui` command, as a user sees it: the built-in demo
in tmux at 80x24, the pane read every 50 ms. Milestones: the footer drawn (first frame), the
run shown ("running" in the status line), the first batches counted (a step above 0).

    .venv/bin/python benchmarks/first_frame_tmux.py --runs 3
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import machine, median, table  # noqa: E402

MILESTONES = {
    "first frame": lambda screen: "q quit" in screen,
    "run shown": lambda screen: "running" in screen,
    "first batches shown": lambda screen: re.search(r"step [1-9]", screen) is not None,
}


def one_run(command: str) -> dict[str, float]:
    socket = f"ctbench-{uuid.uuid4().hex[:8]}"
    cwd = tempfile.mkdtemp(prefix="ctb")
    tmux = ["tmux", "-L", socket]
    start = time.perf_counter()
    subprocess.run([*tmux, "-f", "/dev/null", "new-session", "-d", "-s", "b", "-x", "80", "-y", "24",
                    "-c", cwd, f"env TERM=xterm-256color {command}; sleep 30"], check=True)
    seen: dict[str, float] = {}
    try:
        while len(seen) < len(MILESTONES) and time.perf_counter() - start < 60:
            screen = subprocess.run([*tmux, "capture-pane", "-p", "-t", "b"], capture_output=True,
                                    text=True).stdout
            for name, reached in MILESTONES.items():
                if name not in seen and reached(screen):
                    seen[name] = time.perf_counter() - start
            time.sleep(0.05)  # another process's screen: nothing to await
    finally:
        # q then y stops the demo with a checkpoint; then the tmux server goes.
        subprocess.run([*tmux, "send-keys", "-t", "b", "q"], capture_output=True)
        time.sleep(0.5)
        subprocess.run([*tmux, "send-keys", "-t", "b", "y"], capture_output=True)
        time.sleep(3)
        subprocess.run([*tmux, "kill-server"], capture_output=True)
        shutil.rmtree(cwd, ignore_errors=True)
    return seen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if shutil.which("tmux") is None:
        sys.exit("tmux is not installed")
    command = str(Path(sys.executable).with_name("cosinetui"))
    print(f"# first frame in tmux: {machine()}")
    runs = [one_run(command) for _ in range(args.runs)]
    rows = []
    for name in MILESTONES:
        values = [r[name] for r in runs if name in r]
        if values:
            rows.append([name, median(values), min(values), max(values)])
    print(table(["milestone", "s since start (median)", "min", "max"], rows))


if __name__ == "__main__":
    main()

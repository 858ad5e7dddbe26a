"""Startup: `cosinetui --help` wall time, what it imports, and the demo's time to first frame.

--help runs the installed entry point as a subprocess (`python -m cosinetui --help`, so the
venv's interpreter), --runs times, against a bare `python -c pass` for the interpreter's own
start. The demo's milestones come from a child process (_first_frame.py) that builds the
built-in demo as `cosinetui` does and opens the dashboard under Textual's headless driver:
seconds from the parent starting the child to (1) the interpreter running, (2) the imports
done, (3) the first frame composed, (4) the run shown (RunStarted drawn), (5) the first batch
losses drawn.

    .venv/bin/python benchmarks/startup.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import machine, table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def wall(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--demo-runs", type=int, default=3)
    args = ap.parse_args()
    print(f"# startup: {machine()}")
    py = sys.executable
    probe = ("import sys; from cosinetui.cli import main\ntry: main(['--help'])\nexcept SystemExit: pass\n"
             "print(sorted(m for m in ('torch', 'textual', 'numpy', 'plotext') if m in sys.modules))")
    imported = subprocess.run([py, "-c", probe], capture_output=True, text=True, cwd=ROOT).stdout.strip().splitlines()[-1]
    rows = []
    for label, cmd in (("python -c pass", [py, "-c", "pass"]),
                       ("cosinetui --help", [py, "-m", "cosinetui", "--help"]),
                       ("cosinetui run --help", [py, "-m", "cosinetui", "run", "--help"])):
        times = [wall(cmd) for _ in range(args.runs)]
        rows.append([label, statistics.median(times) * 1e3, min(times) * 1e3, max(times) * 1e3])
    print(table(["command", "wall ms (median)", "min", "max"], rows))
    print(f"heavy modules imported by --help: {imported}")
    marks: dict[str, list[float]] = {}
    for _ in range(args.demo_runs):
        t0 = time.time()
        out = subprocess.run([py, str(ROOT / "benchmarks" / "_first_frame.py"), repr(t0)],
                             capture_output=True, text=True, cwd=ROOT, check=True)
        for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items():
            marks.setdefault(k, []).append(v)
    print(table(["demo milestone", "s since start (median)", "min", "max"],
                [[k, statistics.median(v), min(v), max(v)] for k, v in marks.items()]))


if __name__ == "__main__":
    main()

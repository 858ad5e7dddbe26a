"""Finding and summarising run directories (`cosinetui ls`, `attach` without a directory)."""

from __future__ import annotations

import math
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from cosinetui import store
from cosinetui.history import History


@dataclass(frozen=True)
class RunSummary:
    path: Path
    name: str
    state: str  # live, finished, stopped, failed, interrupted, crashed
    epoch: int
    epochs: int
    best_val: float | None
    started: float  # Unix time of the first run_started, or the directory's mtime
    updated: float = 0.0  # Unix time of the metrics log's last write
    last_alert: str = ""  # "severity kind" of the alert episode raised last, "" if none


def run_dirs(root: str | os.PathLike[str], unreadable: list[str] | None = None) -> list[Path]:
    """Directories under ``root`` that hold a metrics log, newest first. Those that cannot be
    looked into (another user's, owner-only) are skipped, each named in ``unreadable``."""
    base = Path(root)
    skipped = unreadable if unreadable is not None else []
    try:
        entries = [d for d in base.iterdir() if d.is_dir()] if base.is_dir() else []
    except PermissionError:
        skipped.append(f"{base}: not readable")
        return []
    found: list[tuple[float, Path]] = []
    for d in entries:
        try:
            st = os.stat(d / store.METRICS)
        except FileNotFoundError:
            continue
        except PermissionError:
            skipped.append(f"{d}: not readable")
            continue
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            found.append((st.st_mtime, d))
    return [d for _, d in sorted(found, key=lambda item: item[0], reverse=True)]


def is_running(run_dir: Path) -> bool:
    """Whether a process serves ``run_dir``'s control socket, whoever owns the run."""
    from cosinetui.remote import SOCKET_NAME, is_live
    from cosinetui.remote.protocol import socket_address

    path = run_dir / SOCKET_NAME
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISSOCK(st.st_mode):
        return False
    if st.st_uid == os.getuid():
        return is_live(run_dir, timeout=0.2)
    # Another user's run (root sees them all): its server refuses us, but that it accepts
    # the connection at all shows a live process. Nothing is sent.
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(0.2)
    try:
        with socket_address(path) as address:
            sock.connect(address)
        return True
    except OSError:
        return False
    finally:
        sock.close()


def summarise(run_dir: Path, live: bool) -> RunSummary:
    log = store.read_log(run_dir)
    if not log.events and log.problems:  # an empty log is a run still starting; garbage is not
        raise store.RunDirError(f"{run_dir}: no readable records in its metrics log")
    history = History.from_events(log.events)
    first = next((e for e in log.events if e.type == "run_started"), None)
    if live:
        state = "live"
    elif history.state in ("finished", "stopped", "failed"):
        state = history.state
    elif not any(e.type == "checkpoint" for e in log.events) and not (run_dir / store.CHECKPOINT).exists():
        state = "crashed"  # killed before its first checkpoint: resume starts it afresh
    else:
        state = "interrupted"  # the process ended without writing how (killed, power cut)
    best = history.best_epoch
    alerts = history.active_alerts()
    updated = (run_dir / store.METRICS).stat().st_mtime
    return RunSummary(
        path=run_dir,
        name=history.run.run_name if history.run else run_dir.name,
        state=state,
        epoch=history.epochs_done,
        epochs=history.total_epochs,
        best_val=best.val_loss if best else None,
        started=first.time if first and first.time else updated,
        updated=updated,
        last_alert=f"{alerts[0].severity} {alerts[0].kind}" if alerts else "",
    )


SORT_KEYS = ("age", "name", "state", "epochs", "best")


def sort_rows(rows: list[RunSummary], key: str = "age") -> list[RunSummary]:
    """age: most recently written first; best: lowest val first (runs without one last);
    epochs: most trained first; name and state: alphabetical."""
    if key == "name":
        return sorted(rows, key=lambda r: r.name.lower())
    if key == "state":
        return sorted(rows, key=lambda r: (r.state, -r.updated))
    if key == "epochs":
        return sorted(rows, key=lambda r: (-r.epoch, -r.updated))
    if key == "best":
        def best(r: RunSummary) -> tuple:
            ok = r.best_val is not None and math.isfinite(r.best_val)
            return (not ok, r.best_val if ok else 0.0)

        return sorted(rows, key=best)
    return sorted(rows, key=lambda r: -r.updated)


def format_age(seconds: float) -> str:
    """A compact age: 42s, 5m, 3h, 2d."""
    seconds = max(seconds, 0.0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def format_table(rows: list[RunSummary], now: float | None = None) -> str:
    import time

    now = time.time() if now is None else now
    lines = [
        f"{'NAME':<20} {'STATE':<11} {'EPOCH':>9} {'BEST VAL':>9}  {'LAST ALERT':<22} {'AGE':>4}  DIRECTORY"
    ]
    for r in rows:
        best = "-" if r.best_val is None or not math.isfinite(r.best_val) else f"{r.best_val:.4g}"
        age = format_age(now - (r.updated or r.started))
        alert = r.last_alert or "-"
        lines.append(
            f"{r.name[:20]:<20} {r.state:<11} {f'{r.epoch}/{r.epochs}':>9} {best:>9}  "
            f"{alert[:22]:<22} {age:>4}  {r.path}"
        )
    if any(r.state == "crashed" for r in rows):
        lines.append(
            "crashed: killed before its first checkpoint; cosinetui resume DIR --restart starts it again from scratch"
        )
    return "\n".join(lines)

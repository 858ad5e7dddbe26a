"""The run directory: config, metrics log (JSON lines), checkpoints written atomically.

Layout (docs/run-format.md)::

    runs/<name>/config.json      what the run was started with
    runs/<name>/metrics.jsonl    every event, one JSON object a line
    runs/<name>/checkpoint.pt    the latest checkpoint (torch.save, loaded weights_only)
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cosinetui.events import Event, from_json, to_json

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"


class RunDirError(Exception):
    """A run directory or metrics log that cannot be read; the message says why."""


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write via a temp file in the same directory, fsync, then rename over ``path``.

    A crash (or an exception from ``write``) at any point leaves the previous file intact.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


# What atomic_write's mkstemp names look like: ".<name>.<8 random characters>.tmp".
_TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


def remove_stale_temp_files(run_dir: Path) -> int:
    """Remove the temp files of writes that never finished (a process killed while writing a
    checkpoint leaves one as large as the checkpoint); return the bytes freed.

    Call it only while holding the run: a live writer's temp file looks the same.
    """
    freed = 0
    try:
        entries = list(os.scandir(run_dir))
    except OSError:
        return 0
    for entry in entries:
        if not _TEMP_NAME.fullmatch(entry.name) or entry.is_dir(follow_symlinks=False):
            continue
        try:
            size = entry.stat(follow_symlinks=False).st_size
            os.unlink(entry.path)  # a symlink is removed, never followed
            freed += size
        except OSError:
            pass
    return freed


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    data = json.dumps(config, indent=2, sort_keys=True, default=str).encode() + b"\n"
    atomic_write(Path(run_dir) / CONFIG, lambda fh: fh.write(data))


def read_config(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / CONFIG
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunDirError(f"{run_dir}: no {CONFIG}: not a cosinetui run directory") from None
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{path}: unreadable ({exc})") from None


class MetricsLog:
    """Appends events to metrics.jsonl. ``flush()`` makes what was written durable."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)  # owner-only
        self._fh = open(fd, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._repair_tail()

    def _repair_tail(self) -> None:
        # A crash mid-write can leave a last line without its newline; start on a fresh line
        # so the next record is not glued to the broken one.
        size = self.path.stat().st_size
        if size:
            with open(self.path, "rb") as fh:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    self._fh.write("\n")

    def write(self, event: Event) -> None:
        self._fh.write(json.dumps(to_json(event), separators=(",", ":"), allow_nan=False) + "\n")

    def flush(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if not self._fh.closed:
            self.flush()
            self._fh.close()


@dataclass
class LogRead:
    events: list[Event]
    problems: list[str] = field(default_factory=list)  # lines skipped, with reasons


def metrics_path(path: str | os.PathLike[str]) -> Path:
    """A run directory or a metrics file -> the metrics file."""
    p = Path(path)
    return p / METRICS if p.is_dir() else p


def read_log(path: str | os.PathLike[str]) -> LogRead:
    """Read a metrics log (or a run directory's). Bad lines are reported, not fatal.

    A truncated last line (a crash mid-write) and unknown event types are skipped and listed
    in ``problems``. Raises RunDirError when the file is missing or unreadable.
    """
    p = metrics_path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        where = f"{path}: no {METRICS}" if Path(path).is_dir() else f"{path}: no such file"
        raise RunDirError(where) from None
    except OSError as exc:
        raise RunDirError(f"{p}: cannot read ({exc.strerror or exc})") from None
    lines = text.split("\n")
    last = len(lines) - 1
    if lines and lines[-1] == "":
        lines.pop()
        last -= 1
    out = LogRead([])
    for number, line in enumerate(lines, 1):
        event, why = parse_line(line)
        if event is not None:
            out.events.append(event)
        elif why:
            truncated = number - 1 == last and not text.endswith("\n")
            why = "truncated last line (the run stopped mid-write)" if truncated else why
            out.problems.append(f"{p}:{number}: skipped: {why}")
    return out


def checkpoints_recorded(run_dir: str | os.PathLike[str]) -> int:
    """How many checkpoint records the run's metrics log holds (0 without a readable log)."""
    try:
        return sum(e.type == "checkpoint" for e in read_log(run_dir).events)
    except RunDirError:
        return 0


def parse_line(line: str | bytes) -> tuple[Event | None, str]:
    """One metrics-log line -> (event, "") or (None, why it was skipped); a blank line is
    (None, "")."""
    if not line.strip():
        return None, ""
    try:
        if isinstance(line, bytes):
            line = line.decode("utf-8", errors="replace")
        data = json.loads(line)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return from_json(data), ""
    except (ValueError, TypeError, RecursionError) as exc:  # deep nesting raises RecursionError
        return None, str(exc)[:200]


def new_run_dir(base: str | os.PathLike[str], name: str, stamp: str) -> Path:
    """Create ``base/<name>-<stamp>`` (owner-only), adding -2, -3... if it exists."""
    root = Path(base)
    root.mkdir(parents=True, exist_ok=True)
    candidate = root / f"{name}-{stamp}"
    n = 1
    while True:
        try:
            candidate.mkdir(mode=0o700)
            return candidate
        except FileExistsError:
            n += 1
            candidate = root / f"{name}-{stamp}-{n}"

"""The run directory: config, metrics log (JSON lines), checkpoints written atomically.

Layout (docs/run-format.md)::

    runs/<name>/config.json      what the run was started with
    runs/<name>/metrics.jsonl    every event, one JSON object a line
    runs/<name>/checkpoint.pt    the latest checkpoint (torch.save, loaded weights_only)
"""

from __future__ import annotations

import errno
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


class WriteError(OSError):
    """A file of the run could not be written (a full disk, an I/O error); the message says
    which file and why. ``what`` names the file for people ("checkpoint", "metrics log")."""

    def __init__(self, what: str, path: Path, cause: OSError) -> None:
        if cause.errno == errno.ENOSPC:
            reason = "no space left on device"
        elif cause.errno == errno.EDQUOT:
            reason = "disk quota exceeded"
        else:
            reason = cause.strerror or str(cause)
        super().__init__(f"{reason} while writing the {what} ({path})")
        self.errno = cause.errno
        self.what = what


def _write(path: Path, fh: Any, data: bytes) -> int | None:
    """Every byte a run writes goes through here (one place to simulate a full disk)."""
    return fh.write(data)


class _Sink:
    """A file for ``atomic_write``'s writer that remembers the OSError a write raised: torch.save
    reports one as "unexpected pos ...", which would hide that the disk is full."""

    def __init__(self, path: Path, fh: IO[bytes]) -> None:
        self.path, self.fh, self.error = path, fh, None

    def write(self, data: bytes) -> int | None:
        try:
            return _write(self.path, self.fh, data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.fh.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fh, name)


def atomic_write(path: Path, write: Callable[[IO[bytes]], None], what: str | None = None) -> None:
    """Write via a temp file in the same directory, fsync, then rename over ``path``.

    A crash (or an exception from ``write``) at any point leaves the previous file intact.
    A failed write raises WriteError naming ``what`` (default: the file's name).
    """
    path = Path(path)
    what = what or path.name
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise WriteError(what, path, exc) from None
    _unfinished.add(tmp)
    sink = _Sink(Path(tmp), os.fdopen(fd, "wb"))
    try:
        with sink.fh:
            write(sink)  # type: ignore[arg-type]
            sink.fh.flush()
            os.fsync(sink.fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, WriteError):
            raise
        if isinstance(exc, OSError):
            raise WriteError(what, path, exc) from None
        if sink.error is not None and isinstance(exc, Exception):
            raise WriteError(what, path, sink.error) from None
        raise
    finally:
        _unfinished.discard(tmp)
    _fsync_dir(path.parent)


_unfinished: set[str] = set()  # temp files being written now


def discard_unfinished_writes() -> None:
    """Remove the temp files of writes in progress, for a process about to exit at once
    (from any thread): the files they were to replace stay as they were."""
    for tmp in list(_unfinished):
        try:
            os.unlink(tmp)
        except OSError:
            pass


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
    """Appends events to metrics.jsonl. ``flush()`` makes what was written durable.

    Lines are buffered here and written whole: a write that fails (a full disk) is taken
    back to the last complete line, so the log never ends mid-record, and its lines are kept
    to be tried again at the next ``flush()``. Raises WriteError.
    """

    FLUSH_BYTES = 1 << 16

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)  # owner-only
        self._file = open(fd, "ab", buffering=0)  # noqa: SIM115 - closed in close()
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._failed = False  # a write failed: wait for an explicit flush() to try again
        self._size = os.fstat(fd).st_size  # where the last complete write ended
        self._repair_tail()

    def _repair_tail(self) -> None:
        # A crash mid-write can leave a last line without its newline; start on a fresh line
        # so the next record is not glued to the broken one.
        if self._size:
            with open(self.path, "rb") as fh:
                fh.seek(self._size - 1)
                if fh.read(1) != b"\n":
                    self._add(b"\n")

    def _add(self, data: bytes) -> None:
        self._pending.append(data)
        self._pending_bytes += len(data)

    def write(self, event: Event) -> None:
        self._add((json.dumps(to_json(event), separators=(",", ":"), allow_nan=False) + "\n").encode())
        if self._pending_bytes >= self.FLUSH_BYTES and not self._failed:
            self._write_out()

    def _write_out(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending = [data]
        view = memoryview(data)
        try:
            while view:
                view = view[_write(self.path, self._file, view) or 0 :]
        except OSError as exc:
            self._failed = True
            try:
                os.ftruncate(self._file.fileno(), self._size)  # shrinking needs no space
            except OSError:
                pass
            raise WriteError("metrics log", self.path, exc) from None
        self._size += len(data)
        self._pending, self._pending_bytes, self._failed = [], 0, False

    def flush(self) -> None:
        self._write_out()
        try:
            os.fsync(self._file.fileno())
        except OSError as exc:
            raise WriteError("metrics log", self.path, exc) from None

    def close(self) -> None:
        """Flush and close; a write that fails here is dropped (the run already ended)."""
        if self._file.closed:
            return
        try:
            self.flush()
        except WriteError:
            pass
        finally:
            self._file.close()


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

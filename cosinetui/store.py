"""The run directory: config, metrics log (JSON lines), checkpoints written atomically.

Layout (docs/run-format.md)::

    runs/<name>/config.json      what the run was started with
    runs/<name>/metrics.jsonl    every event, one JSON object a line
    runs/<name>/checkpoint.pt    the latest checkpoint (torch.save, loaded weights_only)
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cosinetui.events import Event, from_json, to_json

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"  # the weights of the best val epoch

# A metrics-log line longer than this is skipped unread (the longest real ones, a run_started
# with a large config or a batch chunk of a very fast loop, are well under a megabyte).
MAX_LINE = 16 * 1024 * 1024
# Steps a log may leave without losses (NaN in the History) beyond the losses it records:
# gaps are legitimate (a lost buffer before a kill), a gap of 10**12 steps is not.
GAP_ALLOWANCE = 1 << 16

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


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


# -- who may have prepared a run directory ----------------------------------------------------


def check_run_dir(path: str | os.PathLike[str]) -> None:
    """Refuse a run directory another user could have prepared: one they own, or one they can
    write to (they could plant a symlink named like a file the run writes)."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise RunDirError(f"{path}: no such directory") from None
    except OSError as exc:
        raise RunDirError(f"{path}: not readable ({exc.strerror or exc})") from None
    if not stat.S_ISDIR(st.st_mode):
        raise RunDirError(f"{path}: not a directory")
    _check_owner(path, st, "a run directory")


def check_own_file(path: str | os.PathLike[str]) -> None:
    """Refuse a file in a run directory that is a symlink, not a plain file, owned by another
    user or writable by others: its content decides what code runs or what is trusted."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise RunDirError(f"{path}: missing") from None
    except OSError as exc:
        raise RunDirError(f"{path}: not readable ({exc.strerror or exc})") from None
    if stat.S_ISLNK(st.st_mode):
        raise RunDirError(f"{path}: is a symbolic link; refusing to follow it")
    if not stat.S_ISREG(st.st_mode):
        raise RunDirError(f"{path}: not a regular file")
    _check_owner(path, st, "it")


def _check_owner(path: Path, st: os.stat_result, what: str) -> None:
    if not hasattr(os, "getuid"):
        return  # no POSIX owners (Windows): nothing to compare
    if st.st_uid != os.getuid():
        raise RunDirError(
            f"{path}: owned by uid {st.st_uid}, not by you (uid {os.getuid()}); refusing to use {what}"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise RunDirError(
            f"{path}: writable by other users (mode {stat.S_IMODE(st.st_mode):o}); refusing to use "
            f"{what} (if only you can write there after all: chmod go-w {path})"
        )


def open_new_or_append(path: str | os.PathLike[str], *, readable: bool = False) -> int:
    """An fd appending to ``path`` (created owner-only), never through a symlink; the file must
    be a regular file of ours."""
    path = Path(path)
    flags = (os.O_RDWR if readable else os.O_WRONLY) | os.O_CREAT | os.O_APPEND | _NOFOLLOW | _CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if os.path.islink(path):
            raise RunDirError(f"{path}: is a symbolic link; refusing to write through it") from None
        raise RunDirError(f"{path}: cannot write ({exc.strerror or exc})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
        os.close(fd)
        raise RunDirError(f"{path}: not a regular file of yours; refusing to write to it")
    return fd


def read_tail(path: str | os.PathLike[str], size: int = 64 * 1024) -> str:
    """The last ``size`` bytes of a file in a run directory (not through a symlink), as text."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
    except OSError as exc:
        return f"({path}: {exc.strerror or exc})"
    try:
        end = os.fstat(fd).st_size
        return os.pread(fd, size, max(end - size, 0)).decode("utf-8", errors="replace")
    finally:
        os.close(fd)


# -- config -----------------------------------------------------------------------------------


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    data = json.dumps(config, indent=2, sort_keys=True, default=str).encode() + b"\n"
    atomic_write(Path(run_dir) / CONFIG, lambda fh: fh.write(data))


def read_config(run_dir: Path) -> dict[str, Any]:
    """config.json as a dict (not through a symlink); RunDirError says what is wrong with it."""
    path = Path(run_dir) / CONFIG
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
        with open(fd, "rb") as fh:
            data = fh.read(MAX_LINE + 1)
        if len(data) > MAX_LINE:
            raise ValueError(f"larger than {MAX_LINE >> 20} MiB")
        config = json.loads(data)
    except FileNotFoundError:
        raise RunDirError(f"{run_dir}: no {CONFIG}: not a cosinetui run directory") from None
    except (OSError, ValueError, RecursionError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise RunDirError(f"{path}: unreadable ({why})") from None
    if not isinstance(config, dict):
        raise RunDirError(f"{path}: expected a JSON object, got a {type(config).__name__}")
    return config


# What `resume` needs from config.json, and the types it must have.
_CONFIG_FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "target": ((str, type(None)), "a string or null"),
    "entry": ((str,), "a string"),
    "overrides": ((dict,), "an object"),
}
_OVERRIDES: dict[str, tuple[tuple[type, ...], str]] = {
    "epochs": ((int,), "an integer"),
    "lr": ((int, float), "a number"),
    "eta_min": ((int, float), "a number"),
    "warmup": ((int,), "an integer"),
    "interval": ((str,), "a string"),
    "seed": ((int,), "an integer"),
    "name": ((str,), "a string"),
}
_SETTINGS: dict[str, tuple[tuple[type, ...], str]] = {
    "device": ((str,), "a string"),
    "amp": ((bool,), "true or false"),
    "on_nan": ((str,), "a string"),
    "checkpoint_every": ((int,), "an integer"),
}


def check_config(run_dir: Path, config: dict[str, Any]) -> None:
    """Refuse a config.json that `resume` cannot use, naming the field (one line, no traceback)."""
    path = Path(run_dir) / CONFIG

    def check(where: dict[str, Any], fields: dict, prefix: str, required: bool) -> None:
        for name, (types, expected) in fields.items():
            if name not in where:
                if required:
                    raise RunDirError(f"{path}: no {prefix}{name!r} field; not a cosinetui config")
                continue
            value = where[name]
            if value is None and name not in ("target",):
                continue  # not given: the experiment's own value or the default applies
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                got = "null" if value is None else type(value).__name__
                raise RunDirError(f"{path}: {prefix}{name} must be {expected}, got {got}")

    check(config, _CONFIG_FIELDS, "", required=True)
    check(config["overrides"], _OVERRIDES, "overrides.", required=False)
    check(config, _SETTINGS, "", required=False)


class MetricsLog:
    """Appends events to metrics.jsonl. ``flush()`` makes what was written durable.

    Lines are buffered here and written whole: a write that fails (a full disk) is taken
    back to the last complete line, so the log never ends mid-record, and its lines are kept
    to be tried again at the next ``flush()``. Raises WriteError.
    """

    FLUSH_BYTES = 1 << 16

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        fd = open_new_or_append(self.path, readable=True)  # owner-only, never through a symlink
        self._file = open(fd, "ab", buffering=0)  # noqa: SIM115 - closed in close()
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._failed = False  # a write failed: wait for an explicit flush() to try again
        self._size = os.fstat(fd).st_size  # where the last complete write ended
        self._repair_tail(fd)

    def _repair_tail(self, fd: int) -> None:
        # A crash mid-write can leave a last line without its newline; start on a fresh line
        # so the next record is not glued to the broken one.
        if self._size and os.pread(fd, 1, self._size - 1) != b"\n":
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
    try:
        return p / METRICS if p.is_dir() else p
    except PermissionError:
        raise RunDirError(f"{path}: not readable (permission denied)") from None


def read_log(path: str | os.PathLike[str]) -> LogRead:
    """Read a metrics log (or a run directory's). Bad lines are reported, not fatal.

    A truncated last line (a crash mid-write), unknown event types, lines over MAX_LINE and
    records that claim more than the log before them supports (LogBounds) are skipped and
    listed in ``problems``. Raises RunDirError when the file is missing or unreadable.
    """
    p = metrics_path(path)
    in_dir = p != Path(path)
    try:
        # A run directory's log is not read through a symlink; a file named outright is.
        fd = os.open(p, os.O_RDONLY | _CLOEXEC | (_NOFOLLOW if in_dir else 0))
    except FileNotFoundError:
        where = f"{path}: no {METRICS}" if in_dir else f"{path}: no such file"
        raise RunDirError(where) from None
    except OSError as exc:
        why = "not readable" if isinstance(exc, PermissionError) else "cannot read"
        raise RunDirError(f"{p}: {why} ({exc.strerror or exc})") from None
    out = LogRead([])
    bounds = LogBounds()
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RunDirError(f"{p}: not a regular file")
    with open(fd, "rb") as fh:
        try:
            for number, (line, ended) in enumerate(_lines(fh), 1):
                if line is None:
                    out.problems.append(f"{p}:{number}: skipped: longer than {MAX_LINE >> 20} MiB")
                    continue
                event, why = parse_line(line)
                if event is not None:
                    event, why = bounds.check(event)
                    if event is not None:
                        out.events.append(event)
                if why:
                    why = "truncated last line (the run stopped mid-write)" if not ended else why
                    out.problems.append(f"{p}:{number}: skipped: {why}")
        except OSError as exc:
            raise RunDirError(f"{p}: cannot read ({exc.strerror or exc})") from None
    return out


def _lines(fh: IO[bytes]) -> Iterator[tuple[bytes | None, bool]]:
    """(line, ended with a newline) for each line; (None, True) for one over MAX_LINE, which
    is passed over without being held in memory."""
    while True:
        line = fh.readline(MAX_LINE + 1)
        if not line:
            return
        if len(line) > MAX_LINE and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = fh.readline(1 << 20)
            yield None, True
            continue
        ended = line.endswith(b"\n")
        yield (line[:-1] if ended else line), ended


class LogBounds:
    """What a record may claim, given the records before it, so that no reader allocates in
    proportion to a number read from a file: a batch chunk may leave a gap before it only
    while the gaps in all stay within the losses recorded (plus GAP_ALLOWANCE), and every
    schedule must be a valid, bounded plan."""

    def __init__(self) -> None:
        self.steps = 0  # batch steps known, as a History would hold them
        self.losses = 0  # losses actually recorded
        self.padding = 0  # steps filled with NaN for gaps so far

    def check(self, event: Event) -> tuple[Event | None, str]:
        """(the event to use, or None to skip it; "" or what was wrong with it). A run_started
        whose schedule is unusable is kept without it (the run's other facts stay known)."""
        kind = event.type
        if kind == "run_started":
            why = _check_schedule(event.schedule)  # type: ignore[union-attr]
            if why:
                event = dataclasses.replace(event, schedule=None)  # type: ignore[arg-type]
                return event, f"{why} (the record is used without its schedule)"
        return (None, why) if (why := self._check(event)) else (event, "")

    def _check(self, event: Event) -> str:
        kind = event.type
        if kind == "batches":
            first = event.first_step  # type: ignore[union-attr]
            gap = first - self.steps
            if first < 0:
                return f"first_step {first} is negative"
            if gap > 0 and self.padding + gap > self.losses + GAP_ALLOWANCE:
                return (
                    f"first_step {first} leaves a gap of {gap} steps after step {self.steps}, "
                    f"more than the log's {self.losses} recorded losses can account for"
                )
            if len(event.lrs) > len(event.losses):  # type: ignore[union-attr]
                return "more lrs than losses"
            self.padding += max(gap, 0)
            self.losses += len(event.losses)  # type: ignore[union-attr]
            self.steps = first + len(event.losses)  # type: ignore[union-attr]
        elif kind == "schedule":
            return _check_schedule(event.schedule)  # type: ignore[union-attr]
        elif kind == "run_started":
            if event.global_step < 0 or event.start_epoch < 0:  # type: ignore[union-attr]
                return "negative global_step or start_epoch"
            self.steps = min(self.steps, event.global_step)  # type: ignore[union-attr]
        elif kind == "epoch" and event.epoch < 1:  # type: ignore[union-attr]
            return f"epoch {event.epoch} is not >= 1"  # type: ignore[union-attr]
        return ""


def _check_schedule(state: dict[str, Any]) -> str:
    from cosinetui.cosine import CosineSchedule

    try:
        CosineSchedule.from_state(state)
    except (ValueError, TypeError, OverflowError) as exc:
        return f"bad schedule: {str(exc)[:200]}"
    return ""


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

"""The control-socket protocol: message encoding, request validation, and reading the
metrics log by line number (the sequence number every event carries).

Pure helpers plus small socket utilities; no threads. docs/protocol.md is the reference.
"""

from __future__ import annotations

import json
import math
import os
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cosinetui.events import (
    COMMAND_TYPES,
    AdjustSchedule,
    Command,
    Event,
    Stop,
    command_from_json,
    to_json,
)
from cosinetui.store import parse_line

PROTOCOL_VERSION = 1
SOCKET_NAME = "control.sock"
MAX_REQUEST_BYTES = 64 * 1024  # one line from a client, newline excluded
MAX_SERVER_LINE = 64 * 1024 * 1024  # one line from the server (an event can be large)
CONTROL_REQUESTS = ("bye", "ping")

# Limits on adjust arguments, so that nothing a client sends can make the scheduler raise
# anything but the ValueError/TypeError the trainer turns into a CommandRefused event.
_MAX_ARGS = 16
_MAX_LIST = 1024
_MAX_INT = 2**53
_MAX_REASON = 200

# sockaddr_un.sun_path is 108 bytes on Linux, 104 on macOS, both including the NUL.
_SUN_PATH_MAX = 103


class ProtocolError(ValueError):
    """A client message that cannot be accepted; the message is the reply's text."""


# --------------------------------------------------------------------------- encoding


def encode(message: dict[str, Any]) -> bytes:
    """One message as a JSON line (ASCII, compact, strict: no NaN)."""
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode("ascii") + b"\n"


def event_message(seq: int, event: Event) -> bytes:
    """``{"type": "event", "seq": k, "event": {...}}``; ``event`` is null if unencodable."""
    try:
        return encode({"type": "event", "seq": seq, "event": to_json(event)})
    except (TypeError, ValueError):
        # The trainer could log it (or it would not have reached us), so this is a value
        # json cannot encode strictly; the client counts the line and reads it from the log.
        return encode({"type": "event", "seq": seq, "event": None})


def live_message(event: Event) -> bytes:
    """``{"type": "system", "event": {...}}``: a live-only event (not in the log, no seq);
    empty when it cannot be encoded (it is simply not sent)."""
    try:
        return encode({"type": event.type, "event": to_json(event)})
    except (TypeError, ValueError):
        return b""


def error_message(text: str) -> bytes:
    return encode({"type": "error", "message": text})


# --------------------------------------------------------------------------- requests


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number this protocol accepts")


def parse_request(line: bytes) -> Command | str:
    """A client line -> a Command, or ``"bye"`` / ``"ping"``.

    Raises ProtocolError with the text of the error reply for anything else.
    """
    if len(line) > MAX_REQUEST_BYTES:
        raise ProtocolError(f"message too long: over {MAX_REQUEST_BYTES} bytes")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("not UTF-8 text: send one JSON object a line") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"not JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"a message must be a JSON object, not {type(data).__name__}")
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError('a message needs a "type" string')
    if kind in CONTROL_REQUESTS:
        return kind
    if kind not in COMMAND_TYPES:
        known = ", ".join([*COMMAND_TYPES, *CONTROL_REQUESTS])
        raise ProtocolError(f"unknown message type {kind[:100]!r}; expected one of: {known}")
    try:
        command = command_from_json(data)
    except (ValueError, TypeError) as exc:
        raise ProtocolError(str(exc)[:300]) from None
    _check_command(command)
    return command


def _check_command(command: Command) -> None:
    if isinstance(command, Stop):
        if not isinstance(command.reason, str) or len(command.reason) > _MAX_REASON:
            raise ProtocolError(f"stop: reason must be a string of at most {_MAX_REASON} characters")
    elif isinstance(command, AdjustSchedule):
        if len(command.args) > _MAX_ARGS:
            raise ProtocolError(f"adjust: at most {_MAX_ARGS} arguments")
        for name, value in command.args.items():
            values = value if isinstance(value, list) else [value]
            if isinstance(value, list) and len(value) > _MAX_LIST:
                raise ProtocolError(f"adjust: {name}: at most {_MAX_LIST} values")
            for v in values:
                if not _plain_number(v):
                    raise ProtocolError(
                        f"adjust: {name} must be a finite number, a list of numbers, or null; "
                        f"got {json.dumps(value)[:100]}"
                    )


def _plain_number(value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return True  # the scheduler refuses booleans itself, with a clear reason
    if isinstance(value, int):
        return -_MAX_INT <= value <= _MAX_INT
    if isinstance(value, float):
        return math.isfinite(value) and abs(value) <= _MAX_INT
    return False


# --------------------------------------------------------------------------- the log by line


class LogCursor:
    """Reads metrics.jsonl forward from where it stopped, one complete line at a time.

    Line numbers are the protocol's sequence numbers: the event on line k has ``seq`` k. A
    line without its newline yet (the trainer is mid-write) is left for the next read.
    """

    _BLOCK = 1 << 20

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.offset = 0  # bytes consumed: always just after a newline
        self.lines = 0  # complete lines consumed
        self.partial = False  # the last read ended inside a line

    def _lines(self, upto: int | None) -> Iterator[bytes]:
        """Yield complete lines after ``self.lines``, at most up to line ``upto``."""
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            self.partial = False
            return
        with fh:
            fh.seek(self.offset)
            rest = b""
            while upto is None or self.lines < upto:
                block = fh.read(self._BLOCK)
                if not block:
                    break
                rest += block
                start = 0
                while upto is None or self.lines < upto:
                    end = rest.find(b"\n", start)
                    if end < 0:
                        break
                    line = rest[start:end]
                    start = end + 1
                    self.offset += len(line) + 1
                    self.lines += 1
                    yield line
                rest = rest[start:]
            self.partial = bool(rest) and (upto is None or self.lines < upto)

    def skip(self, upto: int | None = None) -> int:
        """Count lines without parsing them; returns the complete lines consumed so far."""
        for _ in self._lines(upto):
            pass
        return self.lines

    def read(self, upto: int | None = None) -> tuple[list[Event | None], list[str]]:
        """Parse lines up to line ``upto``: one entry per line (None: skipped) and problems."""
        out: list[Event | None] = []
        problems: list[str] = []
        for line in self._lines(upto):
            event, why = parse_line(line)
            out.append(event)
            if why:
                problems.append(f"{self.path}:{self.lines}: skipped: {why}")
        return out, problems


def log_lines_at_start(path: Path) -> LogCursor:
    """A cursor over the whole existing log, for a server starting on a run directory."""
    cursor = LogCursor(path)
    cursor.skip()
    return cursor


# --------------------------------------------------------------------------- sockets


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end, where the platform tells (Linux)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    size = struct.calcsize("3i")
    try:
        _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, option, size))
    except OSError:
        return None
    return uid


@contextmanager
def socket_address(path: Path) -> Iterator[str]:
    """An address for bind/connect: ``path`` itself, or, when it is too long for a Unix
    socket, the same file reached through /proc/self/fd (Linux)."""
    path = Path(path)
    if len(os.fsencode(path)) <= _SUN_PATH_MAX:
        yield str(path)
        return
    if not os.path.isdir("/proc/self/fd"):
        raise OSError(
            36, f"{path}: too long for a Unix socket path ({len(os.fsencode(path))} bytes); "
            "use a shorter runs directory"
        )
    fd = os.open(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def answers(path: Path, timeout: float = 1.0) -> bool:
    """Whether a process listens on the socket at ``path`` (a stale one refuses)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        with socket_address(path) as address:
            sock.connect(address)
        return True
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError:
        return True  # it exists and is not plainly dead (e.g. a full backlog): assume live
    finally:
        sock.close()


def probe_pid(path: Path, timeout: float = 1.0) -> int | None:
    """The pid in a live server's hello, or None."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        with socket_address(path) as address:
            sock.connect(address)
        data = b""
        while b"\n" not in data and len(data) < MAX_REQUEST_BYTES:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        hello = json.loads(data.split(b"\n", 1)[0])
        pid = hello.get("pid") if isinstance(hello, dict) else None
        return pid if isinstance(pid, int) else None
    except (OSError, ValueError):
        return None
    finally:
        sock.close()


SEND_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)

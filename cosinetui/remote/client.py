"""AttachedSession: a live run in another process, reached through its control socket.

``start()`` reads the hello, loads the history from metrics.jsonl up to the line the hello
names, then a reader thread applies the live events that follow. Every event carries its
line number in the log (``seq``), so the seam between the file and the stream, and any
resync after falling behind, neither misses nor repeats an event.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Any

from cosinetui import store
from cosinetui.events import (
    Command,
    CommandRefused,
    Event,
    Failed,
    Finished,
    RunStarted,
    SystemSample,
    from_json,
    to_json,
)
from cosinetui.remote.protocol import (
    MAX_SERVER_LINE,
    PROTOCOL_VERSION,
    SEND_FLAGS,
    SOCKET_NAME,
    LogCursor,
    encode,
    peer_uid,
    socket_address,
)
from cosinetui.session import EventQueue


class AttachError(Exception):
    """No live run can be attached at this directory; the message says why, for the user."""


def connect(run_dir: str | os.PathLike[str], timeout: float = 5.0) -> socket.socket:
    """A connected socket to the run served at ``run_dir``, or AttachError."""
    run_dir = Path(run_dir)
    path = run_dir / SOCKET_NAME
    record = f"open the record with: cosinetui show {run_dir}"
    if not run_dir.is_dir():
        raise AttachError(f"{run_dir}: no such run directory")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise AttachError(f"{run_dir}: no live run ({SOCKET_NAME} missing); {record}") from None
    except OSError as exc:
        raise AttachError(f"{path}: cannot read ({exc.strerror})") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise AttachError(f"{path}: not a socket")
    if st.st_uid != os.getuid():
        raise AttachError(
            f"{path}: belongs to uid {st.st_uid}, not to you (uid {os.getuid()}); "
            "only the user who started a run can attach to it"
        )
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        with socket_address(path) as address:
            sock.connect(address)
    except (ConnectionRefusedError, FileNotFoundError):
        sock.close()
        raise AttachError(
            f"{run_dir}: no live run (stale {SOCKET_NAME}: the process that served it has ended); {record}"
        ) from None
    except PermissionError:
        sock.close()
        raise AttachError(f"{path}: permission denied") from None
    except TimeoutError:
        sock.close()
        raise AttachError(f"{run_dir}: the run did not answer within {timeout:g} s") from None
    except OSError as exc:
        sock.close()
        raise AttachError(f"{run_dir}: cannot connect ({exc.strerror or exc})") from None
    uid = peer_uid(sock)
    if uid is not None and uid != os.getuid():
        sock.close()
        raise AttachError(f"{path}: served by uid {uid}, not by you; refusing to attach")
    return sock


def is_live(run_dir: str | os.PathLike[str], timeout: float = 1.0) -> bool:
    """Whether a live process answers on ``run_dir``'s control socket."""
    try:
        sock = connect(run_dir, timeout)
    except AttachError:
        return False
    try:
        sock.send(encode({"type": "bye"}), SEND_FLAGS | getattr(socket, "MSG_DONTWAIT", 0))
    except OSError:
        pass
    sock.close()
    return True


def live_runs(root: str | os.PathLike[str] = "runs") -> list[Path]:
    """Run directories under ``root`` with a live control socket, most recently started first."""
    root = Path(root)
    try:
        candidates = [d for d in root.iterdir() if (d / SOCKET_NAME).exists()]
    except OSError:
        return []
    live = [d for d in candidates if is_live(d)]

    def started(d: Path) -> float:
        try:
            return os.lstat(d / SOCKET_NAME).st_mtime
        except OSError:
            return 0.0

    return sorted(live, key=started, reverse=True)


class AttachedSession:
    """A Session over the control socket of a run in another process.

    Detaching (``close()``) never stops the run. ``problems`` lists log lines that could
    not be read; ``errors`` lists error replies from the server (each also reaches the
    event stream as a CommandRefused, so the UI shows it).
    """

    read_only = False
    owns_run = False  # the run lives in another process: leaving never stops it

    def __init__(self, run_dir: str | os.PathLike[str], *, timeout: float = 5.0) -> None:
        self.run_dir = Path(run_dir)
        self.timeout = timeout
        self.pid: int | None = None
        self.hello: dict[str, Any] | None = None
        self.problems: list[str] = []
        self.errors: list[str] = []
        self.resyncs = 0
        self.seq = 0  # log lines accounted for: events applied plus lines skipped
        # Events that happened before this session attached (the log and the hello's seq):
        # the dashboard shows them but does not announce them as news.
        self.backlog = 0
        self._hello_seq = 0
        self._events = EventQueue()
        self._cursor = LogCursor(self.run_dir / store.METRICS)
        self._sock: socket.socket | None = None
        self._buf = bytearray()
        self._ended = False
        self._live = False
        self._done = threading.Event()
        self._send_lock = threading.Lock()
        self._reading = threading.Event()  # cleared only to simulate a stalled client in tests
        self._reading.set()
        self._reader: threading.Thread | None = None

    # ------------------------------------------------------------------ Session

    def start(self) -> None:
        """Connect, load the history from the log, then follow live events. AttachError if
        there is no live run, it does not answer, or it refuses the connection."""
        self._sock = connect(self.run_dir, self.timeout)
        try:
            hello = self._next_message(self._sock)
            if hello is None:
                raise AttachError(f"{self.run_dir}: the run closed the connection")
            if hello.get("type") == "error":
                raise AttachError(f"{self.run_dir}: {hello.get('message')}")
            if hello.get("type") != "hello" or hello.get("protocol") != PROTOCOL_VERSION:
                raise AttachError(f"{self.run_dir}: unexpected greeting {json.dumps(hello)[:200]}")
            self.hello = hello
            self.pid = hello.get("pid")
            self._hello_seq = int(hello["seq"])
            self._catch_up(int(hello["log"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self._sock.close()
            raise AttachError(f"{self.run_dir}: the run did not greet properly ({exc})") from None
        except AttachError:
            self._sock.close()
            raise
        self._live = True
        if self._ended:
            self._done.set()
        self._sock.settimeout(None)
        self._reader = threading.Thread(target=self._read_loop, args=(self._sock,), name="cosinetui-attach", daemon=True)
        self._reader.start()

    def drain(self, limit: int = 10_000) -> list[Event]:
        return self._events.drain(limit)

    def next_event(self, timeout: float | None = None) -> Event | None:
        return self._events.get(timeout)

    def send(self, command: Command) -> None:
        """Send a command; the run acknowledges it with an event. Never blocks for long."""
        data = encode(to_json(command))
        reason = None
        with self._send_lock:
            if self._sock is None or self._done.is_set() and self._reader_gone():
                reason = "detached: the connection to the run is closed"
            else:
                try:
                    n = self._sock.send(data, SEND_FLAGS | getattr(socket, "MSG_DONTWAIT", 0))
                    if n < len(data):
                        self._sock.sendall(data[n:])
                except BlockingIOError:
                    reason = "the run is not reading commands (its control socket is full)"
                except OSError:
                    reason = "detached: the connection to the run is closed"
        if reason:
            self._events.put(CommandRefused(to_json(command), reason))

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def close(self) -> None:
        """Detach; the run goes on."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        with self._send_lock:
            try:
                sock.send(encode({"type": "bye"}), SEND_FLAGS | getattr(socket, "MSG_DONTWAIT", 0))
            except OSError:
                pass
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._reading.set()
        if self._reader is not None:
            self._reader.join(5.0)
        sock.close()
        self._done.set()

    # ------------------------------------------------------------------ reading

    def _reader_gone(self) -> bool:
        return self._reader is None or not self._reader.is_alive()

    def _next_message(self, sock: socket.socket) -> dict[str, Any] | None:
        """The next line from the server as a dict; None at end of stream."""
        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                line = bytes(self._buf[:end])
                del self._buf[: end + 1]
                message = json.loads(line)
                if not isinstance(message, dict):
                    raise ValueError("a server message is not a JSON object")
                return message
            if len(self._buf) > MAX_SERVER_LINE:
                raise ValueError("a server message is too long")
            chunk = sock.recv(1 << 16)
            if not chunk:
                return None
            self._buf += chunk

    def _read_loop(self, sock: socket.socket) -> None:
        try:
            while True:
                self._reading.wait()
                message = self._next_message(sock)
                if message is None:
                    break
                self._handle(message)
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            if self._sock is not None:
                self.problems.append(f"connection to the run lost: {exc}")
        finally:
            self._done.set()

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "event":
            seq = int(message["seq"])
            if seq <= self.seq:
                return  # already read from the log
            if seq > self.seq + 1:
                self._catch_up(seq - 1)
            data = message.get("event")
            try:
                event = from_json(data) if isinstance(data, dict) else None
            except ValueError as exc:
                event = None
                self.problems.append(f"event {seq}: skipped: {exc}")
            if event is None and not isinstance(data, dict):
                event = self._from_log(seq)
            self.seq = seq
            if event is not None:
                self._apply(event)
        elif kind == "system":  # live-only: no seq, not in the log
            data = message.get("event")
            try:
                event = from_json(data) if isinstance(data, dict) else None
            except ValueError:
                event = None
            if isinstance(event, SystemSample):
                self._events.put(event)
        elif kind == "resync":
            self.resyncs += 1
            self._catch_up(int(message["log"]))
        elif kind == "error":
            text = str(message.get("message", ""))
            self.errors.append(text)
            self._events.put(CommandRefused({}, text))

    def _catch_up(self, log: int) -> None:
        """Apply log lines self.seq+1 .. log from metrics.jsonl."""
        if log <= self.seq:
            return
        self._cursor.skip(self.seq)  # the lines since applied from the stream
        deadline = time.monotonic() + self.timeout
        while True:
            events, problems = self._cursor.read(log)
            self.problems.extend(problems)
            for event in events:
                self.seq += 1
                if event is not None:
                    self._apply(event)
            if self.seq >= log:
                return
            # Only if the server's buffer did not reach back far enough: the trainer writes
            # the missing lines out at its next flush.
            if time.monotonic() > deadline:
                raise ValueError(f"{self._cursor.path}: line {log} did not appear within {self.timeout:g} s")
            time.sleep(0.02)

    def _from_log(self, seq: int) -> Event | None:
        """An event the server could not encode: read its line from the log instead."""
        cursor = LogCursor(self._cursor.path)
        cursor.skip(seq - 1)
        events, problems = cursor.read(seq)
        self.problems.extend(problems)
        return events[0] if events else None

    def _apply(self, event: Event) -> None:
        if self.seq <= self._hello_seq:
            self.backlog += 1  # counted before it can be drained
        self._events.put(event)
        if isinstance(event, (Finished, Failed)):
            self._ended = True
            if self._live:
                self._done.set()
        elif isinstance(event, RunStarted):
            self._ended = False

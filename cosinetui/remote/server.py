"""RunServer: serves a live run's events and accepts its commands on run_dir/control.sock.

The trainer thread only appends each event to a deque and, at most once per wake-up, writes a
byte to a socketpair (``listener`` is O(1) and never blocks). One daemon thread runs a
selectors loop: it numbers events (line numbers of metrics.jsonl), fans them out to clients
through bounded per-client queues, and reads their requests. A client that falls behind
loses its queue and is told to resync from the log; training never waits for a client.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from cosinetui import store
from cosinetui.events import Command, Event, Failed, Finished, RunStarted
from cosinetui.remote.protocol import (
    MAX_REQUEST_BYTES,
    PROTOCOL_VERSION,
    SEND_FLAGS,
    SOCKET_NAME,
    ProtocolError,
    answers,
    encode,
    error_message,
    event_message,
    live_message,
    log_lines_at_start,
    parse_request,
    peer_uid,
    probe_pid,
    socket_address,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - not a POSIX platform
    fcntl = None  # type: ignore[assignment]


class ServeError(Exception):
    """The control socket cannot be served; the message says why, for the user."""


class RunInUse(ServeError):
    """Another live process serves this run directory."""


class _Client:
    __slots__ = ("sock", "inbuf", "skipping", "out", "sent", "queued", "deaf")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbuf = bytearray()
        self.skipping = False  # discarding the rest of an oversized line
        self.out: deque[bytes] = deque()
        self.sent = 0  # bytes of out[0] already written
        self.queued = 0  # bytes in out, counting out[0] whole
        self.deaf = False  # a send failed: nothing more is sent, what it sent is still read


class RunServer:
    """``RunServer(run_dir, trainer.send)``; add ``server.listener`` to the trainer's
    listeners, ``start()`` before the trainer thread starts, ``close()`` when it is over."""

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        send_command: Callable[[Command], None],
        *,
        max_queued_bytes: int = 1 << 20,
        ring_bytes: int = 4 << 20,
        max_clients: int = 32,
        close_grace: float = 2.0,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / SOCKET_NAME
        self._send_command = send_command
        self.max_queued_bytes = max_queued_bytes
        self.ring_bytes = ring_bytes
        self.max_clients = max_clients
        self.close_grace = close_grace
        self.seq = 0  # events numbered so far (= lines of metrics.jsonl they occupy)
        self.ended = False
        self._incoming: deque[Event] = deque()
        self._live: deque[Event] = deque()  # live-only events (publish), never numbered
        self._woken = False
        self._closed = False
        self._stop = threading.Event()
        self._ring: deque[tuple[int, bytes]] = deque()  # recent event messages, for catch-up
        self._ring_size = 0
        self._clients: dict[int, _Client] = {}
        self._thread: threading.Thread | None = None
        self._listen: socket.socket | None = None
        self._lock_fd: int | None = None
        self._inode: tuple[int, int] | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    # ------------------------------------------------------------------ trainer side

    def listener(self, event: Event) -> None:
        """Called on the trainer thread for every event: O(1), never blocks, never raises."""
        if self._closed:
            return
        self._incoming.append(event)
        if not self._woken:
            self._woken = True
            try:
                self._wake_w.send(b"\0")
            except OSError:  # full (a wake-up is pending anyway) or closed
                pass

    def publish(self, event: Event) -> None:
        """Send a live-only event (a ``SystemSample``) to the clients connected now: not
        numbered, not kept for catch-up, dropped for a client that is behind. Thread-safe."""
        if self._closed:
            return
        self._live.append(event)
        if not self._woken:
            self._woken = True
            try:
                self._wake_w.send(b"\0")
            except OSError:
                pass

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Bind run_dir/control.sock (owner-only) and start serving in a daemon thread.

        Raises RunInUse when a live process serves the directory, ServeError otherwise.
        """
        self._prepare_dir()
        try:
            self._bind()
            self._cursor = log_lines_at_start(self.run_dir / store.METRICS)
            # A log ending mid-line gets its newline when the trainer opens it: one line more.
            self.seq = self._cursor.lines + (1 if self._cursor.partial else 0)
        except BaseException:
            self._release()
            raise
        self._thread = threading.Thread(target=self._serve, name="cosinetui-control", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Send what is queued (for up to ``close_grace`` seconds), disconnect every client
        and remove the socket file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(self.close_grace + 5.0)
        self._release()

    def __enter__(self) -> RunServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _prepare_dir(self) -> None:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            st = os.stat(self.run_dir)
        except OSError as exc:
            raise ServeError(f"{self.run_dir}: cannot create the run directory ({exc.strerror})") from None
        if st.st_uid != os.getuid():
            raise ServeError(f"{self.run_dir}: owned by uid {st.st_uid}, not by you; refusing to serve it")
        if stat.S_IMODE(st.st_mode) & 0o077:
            os.chmod(self.run_dir, 0o700)  # the socket must be reachable by its owner only
        if fcntl is not None:
            fd = os.open(self.run_dir, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise RunInUse(self._in_use_message()) from None
            self._lock_fd = fd

    def _bind(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            st = None
        if st is not None:
            if not stat.S_ISSOCK(st.st_mode):
                raise ServeError(f"{self.path}: exists and is not a socket; remove it first")
            if answers(self.path):
                raise RunInUse(self._in_use_message())
            os.unlink(self.path)  # left by a process that died: stale
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with socket_address(self.path) as address:
                sock.bind(address)
            os.chmod(self.path, 0o600)
            sock.listen(16)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise RunInUse(self._in_use_message()) from None
            raise ServeError(f"{self.path}: cannot serve the control socket ({exc.strerror or exc})") from None
        st = os.stat(self.path)
        self._inode = (st.st_dev, st.st_ino)
        self._listen = sock

    def _in_use_message(self) -> str:
        pid = probe_pid(self.path)
        who = f"a live run (pid {pid})" if pid else "another live run"
        return (
            f"{self.run_dir}: in use by {who}; attach to it with: cosinetui attach {self.run_dir}"
        )

    def _release(self) -> None:
        if self._listen is not None:
            self._listen.close()
            self._listen = None
        if self._inode is not None:
            try:
                st = os.lstat(self.path)
                if (st.st_dev, st.st_ino) == self._inode:  # never remove a successor's socket
                    os.unlink(self.path)
            except OSError:
                pass
            self._inode = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None
        for s in (self._wake_r, self._wake_w):
            s.close()

    # ------------------------------------------------------------------ the loop

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._listen, selectors.EVENT_READ, None)
        sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._sel = sel
        try:
            while not self._stop.is_set():
                for key, mask in sel.select():
                    if key.fileobj is self._listen:
                        self._accept()
                    elif key.fileobj is self._wake_r:
                        self._take_events()
                    else:
                        client = key.data
                        if mask & selectors.EVENT_READ:
                            self._read(client)
                        if mask & selectors.EVENT_WRITE and client.sock.fileno() in self._clients:
                            self._flush(client)
            self._take_events()
            self._drain_before_close()
        finally:
            for client in list(self._clients.values()):
                self._drop(client)
            sel.close()

    def _take_events(self) -> None:
        # Empty the wake-up socket before clearing the flag: an event appended after the
        # flag is cleared sends a new wake-up byte, one appended before is taken below.
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass
        self._woken = False
        while self._incoming:
            event = self._incoming.popleft()
            self.seq += 1
            message = event_message(self.seq, event)
            if isinstance(event, (Finished, Failed)):
                self.ended = True
            elif isinstance(event, RunStarted):
                self.ended = False
            self._ring.append((self.seq, message))
            self._ring_size += len(message)
            while self._ring_size > self.ring_bytes and len(self._ring) > 1:
                self._ring_size -= len(self._ring.popleft()[1])
            for client in list(self._clients.values()):
                self._queue(client, message)
        while self._live:
            message = live_message(self._live.popleft())
            for client in list(self._clients.values()):
                if message and client.queued + len(message) <= self.max_queued_bytes // 2:
                    self._push(client, message)
        for client in list(self._clients.values()):
            self._flush(client)

    def _accept(self) -> None:
        try:
            sock, _ = self._listen.accept()
        except OSError:
            return
        sock.setblocking(False)
        uid = peer_uid(sock)
        refuse = None
        if uid is not None and uid != os.getuid():
            refuse = "permission denied: this run belongs to another user"
        elif len(self._clients) >= self.max_clients:
            refuse = f"too many clients (at most {self.max_clients})"
        if refuse:
            try:
                sock.send(error_message(refuse), SEND_FLAGS)
            except OSError:
                pass
            sock.close()
            return
        client = _Client(sock)
        self._clients[sock.fileno()] = client
        self._sel.register(sock, selectors.EVENT_READ, client)
        self._catch_up(client, "hello")
        self._flush(client)

    def _catch_up(self, client: _Client, kind: str) -> None:
        """Queue a hello or resync: lines 1..log are in the file; the rest follow here."""
        on_disk = self._cursor.skip()
        oldest = self._ring[0][0] if self._ring else self.seq + 1
        # The ring always reaches back past what the trainer has not yet written out; if it
        # ever did not, the client waits for those lines to reach the file.
        log = max(min(on_disk, self.seq), oldest - 1)
        message = {"type": kind, "protocol": PROTOCOL_VERSION, "seq": self.seq, "log": log}
        if kind == "hello":
            message.update(run_dir=str(self.run_dir.resolve()), pid=os.getpid(), ended=self.ended)
        self._push(client, encode(message))
        for seq, line in self._ring:
            if seq > log:
                self._push(client, line)

    def _push(self, client: _Client, data: bytes) -> None:
        if client.deaf:
            return
        client.out.append(data)
        client.queued += len(data)

    def _queue(self, client: _Client, data: bytes) -> None:
        if client.out and client.queued + len(data) > self.max_queued_bytes:
            # The client stopped reading: forget its backlog (keeping a half-sent message
            # whole) and let it rebuild from the log instead of holding events for it.
            keep = client.out.popleft() if client.sent else None
            client.out.clear()
            client.queued = 0
            if keep is not None:
                self._push(client, keep)
            self._catch_up(client, "resync")  # the ring already holds ``data``
        else:
            self._push(client, data)

    def _reply(self, client: _Client, data: bytes) -> None:
        self._queue(client, data)

    def _flush(self, client: _Client) -> None:
        sock = client.sock
        while client.out:
            head = client.out[0]
            try:
                n = sock.send(memoryview(head)[client.sent :], SEND_FLAGS)
            except BlockingIOError:
                break
            except OSError:
                # The client is gone or stopped reading, but a command it sent before
                # closing may still wait unread: keep reading until its end of file.
                client.deaf = True
                client.out.clear()
                client.queued = client.sent = 0
                break
            client.sent += n
            if client.sent < len(head):
                break
            client.out.popleft()
            client.queued -= len(head)
            client.sent = 0
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.out else 0)
        if self._sel.get_key(sock).events != want:
            self._sel.modify(sock, want, client)

    def _drop(self, client: _Client) -> None:
        fd = client.sock.fileno()
        if self._clients.pop(fd, None) is not None:
            try:
                self._sel.unregister(client.sock)
            except (KeyError, ValueError):
                pass
        client.sock.close()

    def _read(self, client: _Client) -> None:
        try:
            data = client.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            self._drop(client)
            return
        if not data:  # the client left; the run goes on
            self._drop(client)
            return
        buf = client.inbuf
        buf += data
        start = 0
        while client.sock.fileno() in self._clients:
            end = buf.find(b"\n", start)
            if end < 0:
                break
            line = bytes(buf[start:end])
            start = end + 1
            if client.skipping:  # the tail of an oversized line
                client.skipping = False
                continue
            self._handle(client, line)
        del buf[:start]
        if len(buf) > MAX_REQUEST_BYTES:
            if not client.skipping:
                self._reply(client, error_message(f"message too long: over {MAX_REQUEST_BYTES} bytes; discarded"))
                client.skipping = True
            buf.clear()
        if client.sock.fileno() in self._clients:
            self._flush(client)

    def _handle(self, client: _Client, line: bytes) -> None:
        line = line.rstrip(b"\r")
        if not line.strip():
            return
        try:
            request = parse_request(line)
        except ProtocolError as exc:
            self._reply(client, error_message(str(exc)))
            return
        if request == "bye":
            self._drop(client)
        elif request == "ping":
            self._reply(client, encode({"type": "pong", "seq": self.seq}))
        elif self.ended:
            self._reply(client, error_message("the run has ended; commands are no longer applied"))
        else:
            try:
                self._send_command(request)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - a client must never take the server down
                self._reply(client, error_message(f"command not delivered: {exc}"))

    def _drain_before_close(self) -> None:
        """Give clients up to ``close_grace`` seconds to receive what is queued."""
        deadline = time.monotonic() + self.close_grace
        self._sel.unregister(self._listen)
        self._sel.unregister(self._wake_r)
        while any(c.out for c in self._clients.values()):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for key, mask in self._sel.select(left):
                if key.data is not None:
                    if mask & selectors.EVENT_READ:
                        self._read(key.data)
                    if mask & selectors.EVENT_WRITE and key.data.sock.fileno() in self._clients:
                        self._flush(key.data)


"""A run trained by a child process that is still starting, as a Session for the dashboard.

The dashboard must show at once, while the child imports torch and builds the experiment
(seconds). So the child, not this process, loads the experiment, picks the run directory and
starts the run's control socket; then it writes one JSON line on a pipe (``READY_FD``) naming
the directory, and this session attaches to it. Until then the dashboard shows "starting…"
and commands wait. A child that ends before it is ready (an error in the experiment, say)
becomes a ``Failed`` event whose error is the end of the child's output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from cosinetui.events import Command, CommandRefused, Event, Failed, Stop, to_json
from cosinetui.session import EventQueue

READY_FD = "COSINETUI_READY_FD"  # the child writes {"run_dir": ...} on this fd when serving
START_LOG = "COSINETUI_START_LOG"  # the child's output until it has a run directory
MAX_READY_BYTES = 64 * 1024


def announce_ready(run_dir: Path, output_log: Path) -> None:
    """In the child: move stdout and stderr to the run's output log (with what was written
    before there was one), then tell the parent where the run is. No-op without READY_FD."""
    fd = os.environ.pop(READY_FD, None)
    start_log = os.environ.pop(START_LOG, None)
    if fd is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    out = os.open(output_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    if start_log:
        try:
            with open(start_log, "rb") as early:
                os.write(out, early.read(MAX_READY_BYTES))
            os.unlink(start_log)
        except OSError:
            pass
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    try:
        os.write(int(fd), json.dumps({"run_dir": str(run_dir)}).encode() + b"\n")
        os.close(int(fd))
    except OSError:
        pass  # the dashboard is gone: the run trains on, detached


class TrainerChild:
    """``TrainerChild(argv, run_name=...)``: ``start()`` launches ``python -m cosinetui
    *argv`` (headless, in a session of its own) and returns at once."""

    read_only = False
    owns_run = True  # quitting stops it unless the user detaches

    def __init__(self, argv: list[str], *, run_name: str = "", attach_timeout: float = 5.0) -> None:
        self.argv = argv
        self.run_name = run_name
        self.attach_timeout = attach_timeout
        self.child: subprocess.Popen | None = None
        self.run_dir: Path | None = None
        self.error: str | None = None  # why the child ended before it was ready
        self.exit_status: int | None = None
        self._events = EventQueue()
        self._attached: Any = None
        self._pending: list[Command] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()  # attached, or failed
        self._thread: threading.Thread | None = None
        self._start_log: str | None = None
        self._stop_asked = False
        self.output = ""  # the child's output when it ended before it was ready

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child else None

    @property
    def backlog(self) -> int:
        attached = self._attached
        return attached.backlog if attached is not None else 0

    def start(self) -> None:
        read_fd, write_fd = os.pipe()
        fd, self._start_log = tempfile.mkstemp(prefix="cosinetui-start-", suffix=".log")
        env = {**os.environ, READY_FD: str(write_fd), START_LOG: self._start_log}
        try:
            self.child = subprocess.Popen(
                [sys.executable, "-m", "cosinetui", *self.argv],
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=fd,
                env=env,
                pass_fds=(write_fd,),
                start_new_session=True,  # no controlling terminal: immune to the shell's SIGHUP
            )
        finally:
            os.close(fd)
            os.close(write_fd)
        self._thread = threading.Thread(
            target=self._wait_ready, args=(read_fd,), name="cosinetui-start", daemon=True
        )
        self._thread.start()

    def _wait_ready(self, read_fd: int) -> None:
        data = b""
        with os.fdopen(read_fd, "rb") as pipe:
            while b"\n" not in data and len(data) < MAX_READY_BYTES:
                chunk = pipe.read1(4096) if hasattr(pipe, "read1") else pipe.read(4096)
                if not chunk:
                    break
                data += chunk
        try:
            self.run_dir = Path(json.loads(data.split(b"\n", 1)[0])["run_dir"])
        except (ValueError, KeyError, TypeError):
            self._failed_to_start()
            return
        from cosinetui.remote import AttachedSession, AttachError

        # One process serves at once; ranks launched by the child (--nproc) take a moment.
        while True:
            session = AttachedSession(self.run_dir, timeout=self.attach_timeout)
            try:
                session.start()
                break
            except AttachError as exc:
                if self.child is not None and self.child.poll() is not None:
                    self._fail(f"could not attach to the trainer: {exc}")
                    return
                time.sleep(0.2)  # another process: nothing to await but its socket
        with self._lock:
            self._attached = session
            pending, self._pending = self._pending, []
        for command in pending:
            session.send(command)
        self._ready.set()

    def _failed_to_start(self) -> None:
        assert self.child is not None
        self.exit_status = self.child.wait()
        text = ""
        if self._start_log:
            try:
                with open(self._start_log, "rb") as log:
                    text = log.read()[-8192:].decode(errors="replace")
                os.unlink(self._start_log)
            except OSError:
                pass
        self.output = text.strip()
        if self._stop_asked:
            self._fail("stopped before the run started")
        elif self.exit_status == 0:
            self._fail("", status=0)  # nothing to train (a complete run): the output says so
        else:
            lines = [line for line in text.splitlines() if line.strip()]
            self._fail("\n".join(lines[-15:]) or f"the trainer exited with status {self.exit_status}")

    def _fail(self, error: str, status: int | None = None) -> None:
        self.error = error
        if status is not None:
            self.exit_status = status
        self._events.put(Failed(0, 0, error))
        self._ready.set()

    # ------------------------------------------------------------------ Session

    def drain(self, limit: int = 10_000) -> list[Event]:
        out = self._events.drain(limit)
        attached = self._attached
        if attached is not None and len(out) < limit:
            out += attached.drain(limit - len(out))
        return out

    def send(self, command: Command) -> None:
        with self._lock:
            attached = self._attached
            if attached is None and not self._ready.is_set():
                self._pending.append(command)
                if isinstance(command, Stop) and self.child is not None:
                    self._stop_asked = True
                    # Still building the experiment: nothing to checkpoint yet; SIGTERM
                    # ends the child before it trains, or stops it after its first batch.
                    self.child.terminate()
                return
        if attached is not None:
            attached.send(command)
        else:
            self._events.put(CommandRefused(to_json(command), "the trainer did not start"))

    def wait(self, timeout: float | None = None) -> bool:
        if not self._ready.wait(timeout):
            return False
        attached = self._attached
        return attached.wait(timeout) if attached is not None else True

    @property
    def done(self) -> bool:
        if not self._ready.is_set():
            return False
        attached = self._attached
        return attached.done if attached is not None else True

    def close(self) -> None:
        attached = self._attached
        if attached is not None:
            attached.close()

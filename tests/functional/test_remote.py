"""Attaching to a live run over its control socket: real trainers, real sockets, short paths."""

from __future__ import annotations

import json
import os
import queue
import shutil
import socket
import stat
import tempfile
import threading
from pathlib import Path

import pytest
import torch

from cosinetui import store
from cosinetui.events import (
    AdjustSchedule,
    BatchChunk,
    CommandRefused,
    Finished,
    Pause,
    Paused,
    Resume,
    Resumed,
    RunStarted,
    ScheduleChanged,
    Stop,
    to_json,
)
from cosinetui.history import History
from cosinetui.remote import (
    SOCKET_NAME,
    AttachedSession,
    AttachError,
    RunInUse,
    RunServer,
    connect,
    is_live,
    live_runs,
)
from cosinetui.trainer import Trainer, TrainerOptions
from tests.functional.tiny_experiment import experiment

TIMEOUT = 30.0


@pytest.fixture
def short_dir():
    """A run root under /tmp: Unix socket paths must stay under ~107 bytes."""
    root = Path(tempfile.mkdtemp(dir="/tmp", prefix="ct-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


class Gate:
    """A train_step that holds the trainer inside the given batches until released."""

    def __init__(self, *at: int) -> None:
        self.n = 0
        self.reached = {k: threading.Event() for k in at}
        self.release = {k: threading.Event() for k in at}

    def open_all(self) -> Gate:
        for event in self.release.values():
            event.set()
        return self

    def __call__(self, model, batch):
        if self.n in self.reached:
            self.reached[self.n].set()
            assert self.release[self.n].wait(TIMEOUT)
        self.n += 1
        x, y = batch
        return torch.nn.functional.cross_entropy(model(x), y)

    def wait(self, k: int) -> None:
        assert self.reached[k].wait(TIMEOUT), f"the trainer never reached batch {k}"


class LiveRun:
    """A trainer thread with a RunServer, wired as the CLI wires them."""

    def __init__(
        self, run_dir: Path, exp, resume: bool = False, start_thread: bool = True, **server_options
    ) -> None:
        self.start_thread = start_thread
        self.trainer = Trainer(exp, TrainerOptions(run_dir=run_dir, resume=resume))
        self.delivered: queue.SimpleQueue = queue.SimpleQueue()  # commands handed to the trainer
        self.server = RunServer(run_dir, self._deliver, **server_options)
        self.trainer.listeners.append(self.server.listener)
        self.thread = threading.Thread(target=self.trainer.run, daemon=True)

    def __enter__(self) -> LiveRun:
        self.server.start()
        if self.start_thread:
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.thread.join(TIMEOUT)
        self.server.close()

    def _deliver(self, command) -> None:
        self.trainer.send(command)
        self.delivered.put(command)

    def join(self) -> None:
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), "training did not complete"


class Follower:
    """Reads a session's events, keeping every one, and waits for particular ones."""

    def __init__(self, session: AttachedSession) -> None:
        self.session = session
        self.seen: list = []

    def wait_for(self, kind, predicate=lambda e: True):
        while True:
            event = self.session.next_event(timeout=TIMEOUT)
            assert event is not None, f"no {kind.__name__} within {TIMEOUT}s"
            self.seen.append(event)
            if isinstance(event, kind) and predicate(event):
                return event

    def to_end(self) -> list:
        assert self.session.wait(TIMEOUT)
        self.seen.extend(self.session.drain())
        return self.seen


def attach(run_dir: Path) -> AttachedSession:
    session = AttachedSession(run_dir, timeout=TIMEOUT)
    session.start()
    return session


def logged(run_dir: Path) -> list[dict]:
    return [to_json(e) for e in store.read_log(run_dir).events]


def log_lines(run_dir: Path) -> int:
    return (run_dir / store.METRICS).read_bytes().count(b"\n")


def batch_losses(events) -> list[float]:
    return [x for e in events if isinstance(e, BatchChunk) for x in e.losses]


# --------------------------------------------------------------------------- steering


def test_two_clients_steer_detach_and_reattach(short_dir):
    run_dir = short_dir / "run"
    gate = Gate(3, 20)
    with LiveRun(run_dir, experiment(epochs=4, train_step=gate)) as run:
        gate.wait(3)
        a, b = attach(run_dir), attach(run_dir)
        fa, fb = Follower(a), Follower(b)
        a.send(Pause())
        assert run.delivered.get(timeout=TIMEOUT) == Pause()
        gate.release[3].set()
        for f in (fa, fb):
            paused = f.wait_for(Paused)
            assert (paused.step, paused.reason) == (4, "user")
        b.send(AdjustSchedule("reanneal", {"factor": 0.5}))
        for f in (fa, fb):
            assert f.wait_for(ScheduleChanged).op == "reanneal"
        b.close()  # detached while paused: the run goes on when resumed
        assert not b.done or b.wait(0)
        a.send(Resume())
        fa.wait_for(Resumed)
        gate.wait(20)
        c = attach(run_dir)  # re-attach mid-run, while events are being produced
        gate.release[20].set()
        run.join()
        assert fa.wait_for(Finished).reason == "completed"
        fc = Follower(c)
        fc.wait_for(Finished)
    full = logged(run_dir)
    own = run.trainer.history
    for f in (fa, fc):
        f.to_end()
        assert [to_json(e) for e in f.seen] == full  # nothing missing, nothing twice
        rebuilt = History.from_events(f.seen)
        assert [(e.epoch, e.train_loss, e.val_loss, e.lr) for e in rebuilt.epochs] == [
            (e.epoch, e.train_loss, e.val_loss, e.lr) for e in own.epochs
        ]
        assert list(rebuilt.losses) == list(own.losses) and list(rebuilt.lrs) == list(own.lrs)
        assert [s.op for s in rebuilt.schedule_changes] == ["reanneal"]
        assert rebuilt.state == "finished"
        assert not f.session.problems and not f.session.errors
        assert f.session.done
    # b saw an exact prefix of the run.
    b_events = fb.seen + b.drain()
    assert [to_json(e) for e in b_events] == full[: len(b_events)]
    assert run.server.seq == log_lines(run_dir)
    assert not (run_dir / SOCKET_NAME).exists()
    for s in (a, c):
        s.close()


def test_attach_to_a_resumed_run_reads_the_earlier_processes_too(short_dir):
    run_dir = short_dir / "run"
    box: list[Trainer] = []
    plain = Gate()

    def stop_in_batch_11(model, batch):
        if plain.n == 11:
            box[0].send(Stop())
        return plain(model, batch)

    box.append(Trainer(experiment(epochs=3, train_step=stop_in_batch_11), TrainerOptions(run_dir=run_dir)))
    box[0].run()
    assert box[0].history.state == "stopped"
    # A crash mid-write in an earlier process leaves a line without its newline.
    with open(run_dir / store.METRICS, "ab") as fh:
        fh.write(b'{"type":"epo')
    gate = Gate(2)
    with LiveRun(run_dir, experiment(epochs=3, train_step=gate), resume=True) as run:
        gate.wait(2)
        session = attach(run_dir)
        gate.release[2].set()
        follower = Follower(session)
        follower.wait_for(Finished)
        run.join()
    follower.to_end()
    assert [to_json(e) for e in follower.seen] == logged(run_dir)
    assert len(session.problems) == 1 and "metrics.jsonl" in session.problems[0]
    assert run.server.seq == log_lines(run_dir) == session.seq
    assert sum(isinstance(e, RunStarted) for e in follower.seen) == 2
    rebuilt = History.from_events(follower.seen)
    replay = History.from_events(store.read_log(run_dir).events)
    assert list(rebuilt.losses) == list(replay.losses) and len(rebuilt.losses) == 24
    assert [e.train_loss for e in rebuilt.epochs] == [e.train_loss for e in replay.epochs]
    session.close()


# --------------------------------------------------------------------------- robustness


BAD_LINES = [
    b"not json at all",
    b"\xff\xfe\x00\x01binary\x80",
    b"[1, 2, 3]",
    b'"a string"',
    b"{}",
    b'{"type": 5}',
    b'{"type": "explode"}',
    b'{"type": "adjust", "op": "melt", "args": {}}',
    b'{"type": "adjust", "op": "reanneal", "args": [1]}',
    b'{"type": "adjust", "op": "reanneal", "args": {"steps": 1e999}}',
    b'{"type": "adjust", "op": "reanneal", "args": {"steps": NaN}}',
    b'{"type": "adjust", "op": "reanneal", "args": {"steps": "many"}}',
    b'{"type": "adjust", "op": "reanneal", "args": {"steps": 123456789012345678901234567890}}',
    b'{"type": "stop", "reason": {"why": 1}}',
    b"[" * 30000 + b"]" * 30000,
    b"x" * 70000,  # oversized
    b'{"type": "pause"' + b" " * 70000 + b"}",  # a valid command, but oversized
]
# Well-formed, but refused by the trainer itself (a CommandRefused event, nothing changes).
REFUSED = [
    b'{"type": "adjust", "op": "retime", "args": {"T_max": 0}}',
    b'{"type": "adjust", "op": "reanneal", "args": {"factor": -1}}',
    b'{"type": "adjust", "op": "restart", "args": {"bogus": 1}}',
]


def raw_client(run_dir: Path) -> tuple[socket.socket, object]:
    sock = connect(run_dir, TIMEOUT)
    reader = sock.makefile("rb")
    hello = json.loads(reader.readline())
    assert hello["type"] == "hello" and hello["pid"] == os.getpid()
    return sock, reader


def replies_until_pong(sock, reader) -> list[dict]:
    sock.sendall(b'{"type": "ping"}\n')
    out = []
    while True:
        line = reader.readline()
        assert line, "the server closed the connection"
        message = json.loads(line)
        if message["type"] == "pong":
            return out
        if message["type"] != "event":
            out.append(message)


def test_malformed_input_gets_errors_and_never_disturbs_the_run(short_dir):
    baseline = []
    Trainer(
        experiment(epochs=2, train_step=Gate(2).open_all()),
        TrainerOptions(run_dir=short_dir / "baseline"),
        listeners=[baseline.append],
    ).run()
    gate = Gate(2)
    with LiveRun(short_dir / "run", experiment(epochs=2, train_step=gate)) as run:
        gate.wait(2)
        sock, reader = raw_client(short_dir / "run")
        sock.sendall(b"\n".join(BAD_LINES + REFUSED) + b"\n")
        replies = replies_until_pong(sock, reader)
        assert [r["type"] for r in replies] == ["error"] * len(BAD_LINES)
        assert all(r["message"] for r in replies)
        assert any("too long" in r["message"] for r in replies)
        assert any("not UTF-8" in r["message"] for r in replies)
        gate.release[2].set()
        run.join()
        assert is_live(short_dir / "run")
        sock.close()
    refused = run.trainer.history.refusals
    assert len(refused) == len(REFUSED)
    assert batch_losses(store.read_log(short_dir / "run").events) == batch_losses(baseline)
    assert run.trainer.history.state == "finished"


def test_a_client_that_never_reads_does_not_block_training(short_dir):
    run_dir = short_dir / "run"
    run_dir.mkdir(mode=0o700)
    # A large config makes the first event bigger than the socket's buffer.
    store.write_config(run_dir, {"notes": "x" * 600_000})
    exp = experiment(epochs=3)
    with LiveRun(run_dir, exp, start_thread=False, max_queued_bytes=1024) as run:
        stalled = connect(run_dir, TIMEOUT)  # never reads a byte
        session = AttachedSession(run_dir, timeout=TIMEOUT)
        session._reading.clear()  # this one stops reading too, then catches up
        session.start()
        run.thread.start()
        run.join()
        assert run.trainer.history.state == "finished"
        session._reading.set()
        follower = Follower(session)
        follower.wait_for(Finished)
        stalled.close()
    follower.to_end()
    assert session.resyncs >= 1
    assert [to_json(e) for e in follower.seen] == logged(run_dir)
    session.close()


# --------------------------------------------------------------------------- the socket


def test_socket_and_directory_are_owner_only(short_dir):
    run_dir = short_dir / "run"
    run_dir.mkdir(mode=0o755)
    os.chmod(run_dir, 0o755)
    with RunServer(run_dir, lambda cmd: None):
        assert stat.S_IMODE(os.stat(run_dir).st_mode) == 0o700
        sock_stat = os.lstat(run_dir / SOCKET_NAME)
        assert stat.S_ISSOCK(sock_stat.st_mode) and stat.S_IMODE(sock_stat.st_mode) == 0o600
    assert not (run_dir / SOCKET_NAME).exists()


def _stale_socket(path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()  # the file stays, nobody listens: what a killed process leaves


def test_stale_socket_is_detected_and_replaced(short_dir):
    run_dir = short_dir / "run"
    run_dir.mkdir(mode=0o700)
    _stale_socket(run_dir / SOCKET_NAME)
    assert not is_live(run_dir)
    with pytest.raises(AttachError, match="stale.*cosinetui show"):
        AttachedSession(run_dir).start()
    with RunServer(run_dir, lambda cmd: None) as server:
        assert is_live(run_dir)
        session = attach(run_dir)
        assert session.pid == os.getpid() and session.hello["seq"] == server.seq == 0
        session.close()
    assert not is_live(run_dir)


def test_second_server_on_a_live_run_dir_is_refused(short_dir):
    run_dir = short_dir / "run"
    commands = []
    with RunServer(run_dir, commands.append):
        with pytest.raises(RunInUse, match=rf"in use by a live run \(pid {os.getpid()}\).*attach"):
            RunServer(run_dir, commands.append).start()
        # The refused server removed nothing: the first one still serves.
        sock, reader = raw_client(run_dir)
        sock.sendall(b'{"type": "pause"}\n')
        assert replies_until_pong(sock, reader) == []
        sock.close()
    assert commands == [Pause()]


def test_attach_errors_say_what_to_do(short_dir):
    with pytest.raises(AttachError, match="no such run directory"):
        AttachedSession(short_dir / "nope").start()
    (short_dir / "done").mkdir()
    with pytest.raises(AttachError, match=r"no live run \(control.sock missing\).*cosinetui show"):
        AttachedSession(short_dir / "done").start()


def _as_nobody(path: str) -> bytes:
    """Connect to ``path`` from a forked child running as uid 65534; its first line."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: plain socket calls only, then _exit
        try:
            os.setuid(65534)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect(path)
            os.write(w, s.makefile("rb").readline())
        except OSError as exc:
            os.write(w, repr(exc).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        out = fh.read()
    os.waitpid(pid, 0)
    return out


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another user")
def test_other_users_are_refused(short_dir):
    run_dir = short_dir / "run"
    with RunServer(run_dir, lambda cmd: None):
        path = run_dir / SOCKET_NAME
        # Even with the file modes loosened, the server checks the peer's uid.
        os.chmod(short_dir, 0o755)
        os.chmod(run_dir, 0o777)
        os.chmod(path, 0o666)
        assert json.loads(_as_nobody(str(path))) == {
            "type": "error",
            "message": "permission denied: this run belongs to another user",
        }
        # And a client refuses a socket another user owns.
        os.chown(path, 65534, -1)
        with pytest.raises(AttachError, match="belongs to uid 65534"):
            AttachedSession(run_dir).start()
        os.chown(path, 0, -1)


def test_live_runs_lists_the_answering_ones_newest_first(short_dir):
    root = short_dir / "runs"
    older, newer, stale, finished = (root / n for n in ("a", "b", "c", "d"))
    for d in (stale, finished):
        d.mkdir(parents=True)
    _stale_socket(stale / SOCKET_NAME)
    with RunServer(older, lambda c: None), RunServer(newer, lambda c: None):
        os.utime(older / SOCKET_NAME, (1_000, 1_000), follow_symlinks=False)
        assert live_runs(root) == [newer, older]
        assert is_live(older) and not is_live(stale) and not is_live(finished)
    assert live_runs(root) == [] and live_runs(short_dir / "missing") == []


def test_a_long_run_path_still_works(short_dir):
    run_dir = short_dir / ("x" * 60) / ("y" * 60)
    assert len(str(run_dir / SOCKET_NAME)) > 108
    with RunServer(run_dir, lambda c: None):
        assert is_live(run_dir)
        session = attach(run_dir)
        session.send(Pause())
        session.close()


def test_commands_after_the_end_are_refused_with_a_reason(short_dir):
    run_dir = short_dir / "run"
    with LiveRun(run_dir, experiment(epochs=1)) as run:
        run.join()
        session = attach(run_dir)
        assert session.done  # the history ends with Finished
        session.send(Pause())
        refused = Follower(session).wait_for(CommandRefused)
        assert "ended" in refused.reason
        session.close()

"""The seam between the log and the live stream, under load: a scripted producer plays the
trainer (writes each event to metrics.jsonl, then hands it to the server) so that attaches,
stalls and resyncs land at chosen moments, with much of the log still unflushed."""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cosinetui import store
from cosinetui.events import BatchChunk, Finished, RunStarted, to_json
from cosinetui.remote import AttachedSession, RunServer, connect, is_live

TIMEOUT = 30.0


@pytest.fixture
def short_dir():
    root = Path(tempfile.mkdtemp(dir="/tmp", prefix="ct-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def scripted_events(n: int, width: int = 1) -> list:
    events = [
        RunStarted("scripted", "x", "cpu", "0", 1, 1, n, "batch", {}),
    ]
    for k in range(n):
        losses = tuple(float(k) + i / width for i in range(width))
        events.append(BatchChunk(1, k * width, losses, (0.1,) * width, (k + 1) * width))
    events.append(Finished(1, n * width))
    return events


class Producer:
    """Plays the trainer: log first, then the listener; holds at chosen indices."""

    def __init__(self, run_dir: Path, server: RunServer, events: list, hold_at=(), flush_every=0):
        self.events = events
        self.log = store.MetricsLog(run_dir / store.METRICS)
        self.server = server
        self.flush_every = flush_every
        self.reached = {k: threading.Event() for k in hold_at}
        self.release = {k: threading.Event() for k in hold_at}
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for k, event in enumerate(self.events):
            if k in self.reached:
                self.reached[k].set()
                assert self.release[k].wait(TIMEOUT)
            self.log.write(event)
            self.server.listener(event)
            if self.flush_every and k % self.flush_every == 0:
                self.log._write_out()  # to the OS, without the fsync (speed)
        self.log.close()


def follow_to_end(session: AttachedSession) -> list:
    seen = []
    while True:
        event = session.next_event(timeout=TIMEOUT)
        assert event is not None, "the stream stalled"
        seen.append(event)
        if isinstance(event, Finished):
            return seen


def test_attaching_at_any_moment_sees_every_event_once(short_dir):
    run_dir = short_dir / "run"
    events = scripted_events(3000)
    expected = [to_json(e) for e in events]
    with RunServer(run_dir, lambda c: None) as server:
        producer = Producer(run_dir, server, events, hold_at=(1, 1000, 2000), flush_every=700)
        producer.thread.start()
        sessions = []
        for k in (1, 1000, 2000):
            producer.reached[k].wait(TIMEOUT)
            session = AttachedSession(run_dir, timeout=TIMEOUT)
            session.start()  # much of the log is still in the producer's buffer here
            sessions.append(session)
            producer.release[k].set()
        racing = AttachedSession(run_dir, timeout=TIMEOUT)
        racing.start()  # while events stream in
        sessions.append(racing)
        producer.thread.join(TIMEOUT)
        for session in sessions:
            assert [to_json(e) for e in follow_to_end(session)] == expected
            assert not session.problems and session.resyncs == 0
            session.close()
        assert server.seq == len(events)


def test_a_stalled_client_is_resynced_from_the_log(short_dir):
    run_dir = short_dir / "run"
    events = scripted_events(400, width=500)  # ~10 MB of batch losses
    expected = [to_json(e) for e in events]
    with RunServer(run_dir, lambda c: None, max_queued_bytes=64 * 1024) as server:
        producer = Producer(run_dir, server, events, hold_at=(1,))
        producer.thread.start()
        producer.reached[1].wait(TIMEOUT)
        session = AttachedSession(run_dir, timeout=TIMEOUT)
        session._reading.clear()  # stops reading after the hello
        session.start()
        producer.release[1].set()
        producer.thread.join(TIMEOUT)
        assert not producer.thread.is_alive(), "the producer was held up by a stalled client"
        session._reading.set()
        assert [to_json(e) for e in follow_to_end(session)] == expected
        assert session.resyncs >= 1 and not session.problems
        session.close()


@pytest.fixture(scope="module")
def fuzz_server():
    root = Path(tempfile.mkdtemp(dir="/tmp", prefix="ct-"))
    commands: list = []
    with RunServer(root / "fuzz", commands.append) as server:
        yield server, commands
    shutil.rmtree(root, ignore_errors=True)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    payload=st.binary(max_size=3000)
    | st.recursive(
        st.none()
        | st.booleans()
        | st.floats(allow_nan=False)
        | st.integers()
        | st.text(max_size=10),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(["type", "op", "args", "reason", "x"]), inner, max_size=4
            )
        ),
        max_leaves=10,
    ).map(lambda v: json.dumps(v).encode())
)
def test_random_input_gets_replies_and_leaves_the_server_serving(fuzz_server, payload):
    server, commands = fuzz_server
    sock = connect(server.run_dir, TIMEOUT)
    reader = sock.makefile("rb")
    assert json.loads(reader.readline())["type"] == "hello"
    try:
        sock.sendall(payload + b"\n" + b'{"type": "ping"}\n')
    except OSError:
        pass  # a "bye" in the payload may close the connection first
    while True:
        line = reader.readline()
        if not line:
            assert b"bye" in payload
            break
        message = json.loads(line)
        assert message["type"] in ("error", "pong")
        if message["type"] == "pong":
            break
    sock.close()
    assert is_live(server.run_dir)
    assert all(type(c).__module__ == "cosinetui.events" for c in commands)


def test_a_client_reading_slowly_never_gets_a_torn_line(short_dir):
    """Raw clients see whole JSON lines, in order, whatever their reads look like."""
    run_dir = short_dir / "run"
    events = scripted_events(200, width=50)
    with RunServer(run_dir, lambda c: None) as server:
        producer = Producer(run_dir, server, events, hold_at=(0,))
        producer.thread.start()
        producer.reached[0].wait(TIMEOUT)
        sock = connect(run_dir, TIMEOUT)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        producer.release[0].set()
        data = b""
        while data.count(b"\n") < len(events) + 1:
            chunk = sock.recv(777)
            assert chunk
            data += chunk
        lines = [json.loads(x) for x in data.split(b"\n")[: len(events) + 1]]
        assert lines[0]["type"] == "hello" and lines[0]["seq"] == 0
        assert [m["seq"] for m in lines[1:]] == list(range(1, len(events) + 1))
        producer.thread.join(TIMEOUT)
        sock.close()

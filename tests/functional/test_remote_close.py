"""A command is applied even when its client closes the connection right after sending it."""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path

import pytest

from cosinetui.events import Pause, Resume
from cosinetui.remote import RunServer
from cosinetui.remote.client import connect

TIMEOUT = 30.0


@pytest.fixture
def short_dir():
    """Under /tmp: Unix socket paths must stay under ~107 bytes."""
    root = Path(tempfile.mkdtemp(dir="/tmp", prefix="ct-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_connect_send_close_never_loses_the_command(short_dir):
    got: list = []
    busy, release, all_in = threading.Event(), threading.Event(), threading.Event()
    closers = 10

    def send_command(command) -> None:
        got.append(command)
        if len(got) == 1:  # hold the server inside the first command
            busy.set()
            release.wait(TIMEOUT)
        if len(got) == 1 + closers:
            all_in.set()

    run_dir = short_dir / "r"
    with RunServer(run_dir, send_command):
        first = connect(run_dir, TIMEOUT)
        first.sendall(b'{"type": "pause"}\n')
        assert busy.wait(TIMEOUT)
        # While the server is busy, clients connect, send a command and close without
        # reading anything: the server meets each as a closed peer when it greets it.
        for _ in range(closers):
            sock = connect(run_dir, TIMEOUT)
            sock.sendall(b'{"type": "resume"}\n')
            sock.close()
        release.set()
        assert all_in.wait(TIMEOUT), f"{len(got) - 1} of {closers} commands applied"
        first.close()
    assert isinstance(got[0], Pause) and all(isinstance(c, Resume) for c in got[1:])

"""Attach to a live run from another process: a Unix socket in the run directory.

``RunServer`` serves a run's events and takes its commands (run_dir/control.sock);
``AttachedSession`` is the Session a dashboard uses to watch and steer such a run;
``live_runs`` and ``is_live`` find them. The protocol is documented in docs/protocol.md.
"""

from cosinetui.remote.client import AttachedSession, AttachError, connect, is_live, live_runs
from cosinetui.remote.protocol import (
    MAX_REQUEST_BYTES,
    PROTOCOL_VERSION,
    SOCKET_NAME,
    ProtocolError,
)
from cosinetui.remote.server import RunInUse, RunServer, ServeError

__all__ = [
    "MAX_REQUEST_BYTES",
    "PROTOCOL_VERSION",
    "SOCKET_NAME",
    "AttachError",
    "AttachedSession",
    "ProtocolError",
    "RunInUse",
    "RunServer",
    "ServeError",
    "connect",
    "is_live",
    "live_runs",
]

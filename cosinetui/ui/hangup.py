"""A terminal that goes away: SIGHUP and SIGTERM handlers, and output that must not block.

Textual installs no SIGHUP handler: without one a dropped SSH connection kills the process in
about 50 ms with no cleanup. The dashboard's reaction (detach, or stop with a checkpoint) is
the app's; what is done to the process's terminal is here.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from typing import Any


def install(handler: Callable[[int], None]) -> None:
    """Call ``handler(signum)`` on SIGHUP and SIGTERM, from the running event loop."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGHUP, signal.SIGTERM):
        loop.add_signal_handler(sig, handler, sig)


def mute_driver(app: Any) -> None:
    """Stop writing to a terminal that is gone.

    Textual's output thread dies on the first write to a hung-up tty, after which its bounded
    queue fills and the next write (the shutdown's restore sequences) blocks forever. Drop
    output instead, and skip the join of that thread at close.
    """
    driver = getattr(app, "_driver", None)
    if driver is not None:
        driver.write = lambda data: None
        driver.flush = lambda: None
        driver.close = lambda: None


def detach_terminal() -> None:
    """Point stdin, stdout and stderr at /dev/null once the terminal is gone, so that
    whatever still prints (a warning, the CLI's last line) does not fail with EIO."""
    try:
        null = os.open(os.devnull, os.O_RDWR)
    except OSError:
        return
    for fd in (0, 1, 2):
        try:
            os.dup2(null, fd)
        except OSError:
            pass
    os.close(null)

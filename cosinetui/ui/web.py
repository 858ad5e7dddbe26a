"""`cosinetui attach DIR --web`: the dashboard in a browser, served by textual-serve.

Each browser tab that opens the page starts its own ``cosinetui attach DIR`` under Textual's
web driver; closing the tab leaves that dashboard (never the run). Only loopback is served
unless the user names another address, because whoever can open the page can pause, change
and stop the run.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

EXTRA_HINT = "the browser view needs textual-serve: pip install 'cosinetui[web]'"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
WEB_DRIVER = "textual.drivers.web_driver:WebDriver"  # what textual-serve runs the app with


class WebError(Exception):
    """The browser view cannot be served; the message says why."""


def under_web_driver() -> bool:
    """True in a dashboard process that textual-serve started for a browser."""
    return os.environ.get("TEXTUAL_DRIVER") == WEB_DRIVER


def url_of(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def serve(run_dir: str | os.PathLike[str], host: str, port: int, echo=print) -> None:  # noqa: ANN001
    """Serve the dashboard of the live run ``run_dir`` until Ctrl+C or SIGTERM."""
    try:
        from textual_serve.server import Server
    except ImportError:
        raise WebError(EXTRA_HINT) from None
    command = shlex.join([sys.executable, "-m", "cosinetui", "attach", str(Path(run_dir).resolve())])
    url = url_of(host, port)

    class QuietServer(Server):
        async def on_startup(self, app) -> None:  # noqa: ANN001 - aiohttp's Application
            echo(f"dashboard of {run_dir} at {url}  (Ctrl+C stops serving; the run goes on)")
            sys.stdout.flush()

    server = QuietServer(command, host=host, port=port, title=f"cosinetui: {Path(run_dir).name}",
                         public_url=url)
    try:
        server.serve()
    except OSError as exc:
        raise WebError(f"cannot serve on {url}: {exc.strerror or exc} (pick another --port)") from None

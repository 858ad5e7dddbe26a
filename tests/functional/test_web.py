"""`cosinetui attach DIR --web`: the dashboard served by textual-serve, driven by a real
headless Chromium through the DevTools protocol: the page loads and shows the epoch table, and
a key pressed in the page pauses the run."""

from __future__ import annotations

import asyncio
import json
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from cosinetui.events import Paused, Stop
from cosinetui.remote import AttachedSession, AttachError, is_live

pytest.importorskip("textual_serve", reason="the web extra serves the dashboard")
aiohttp = pytest.importorskip("aiohttp", reason="textual-serve's web server")

TINY = str(Path(__file__).with_name("tiny_experiment.py"))
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# Keeps what the page receives over its websocket: xterm.js draws on a canvas, so the text
# of the screen is read from the stream the page was sent.
RECORD_SOCKET = """
window.__seen = "";
const Native = window.WebSocket;
window.WebSocket = function (url, protocols) {
  const ws = new Native(url, protocols);
  const decoder = new TextDecoder();
  ws.addEventListener("message", (e) => {
    if (typeof e.data === "string") { window.__seen += e.data; }
    else if (e.data instanceof ArrayBuffer) { window.__seen += decoder.decode(e.data); }
    else if (e.data && e.data.arrayBuffer) { e.data.arrayBuffer().then((b) => { window.__seen += decoder.decode(b); }); }
  });
  return ws;
};
window.WebSocket.prototype = Native.prototype;
Object.assign(window.WebSocket, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_line(proc: subprocess.Popen, stream, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], deadline - time.monotonic())
        if ready:
            line = stream.readline()
            if line or proc.poll() is not None:
                return line
    raise AssertionError("no output within the timeout")


@pytest.fixture(scope="module")
def live_run():
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="ctw") as d:
        out = subprocess.run(
            [sys.executable, "-m", "cosinetui", "run", TINY, "--epochs", "100000", "--detach", "--run-dir", "r"],
            capture_output=True, text=True, cwd=d, timeout=120,
        )
        assert out.returncode == 0, out.stderr
        run_dir = Path(d) / "r"
        yield run_dir
        if is_live(run_dir):
            session = AttachedSession(run_dir)
            try:
                session.start()
                session.send(Stop())
                session.wait(30)
            except AttachError:
                pass
            finally:
                session.close()


def serve(run_dir: Path, *args: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cosinetui", "attach", str(run_dir), "--web", "--port", str(port), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    return proc, port


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_serves_on_loopback_and_warns_for_other_hosts(live_run: Path):
    proc, port = serve(live_run)
    try:
        assert f"at http://127.0.0.1:{port}" in read_line(proc, proc.stdout)
    finally:
        stop(proc)
    proc, port = serve(live_run, "--host", "0.0.0.0")
    try:
        warning = read_line(proc, proc.stderr)
        assert "warning: serving on 0.0.0.0" in warning and "pause, change and stop" in warning
    finally:
        stop(proc)


class DevTools:
    """The few DevTools protocol calls the test needs, over one page's websocket."""

    def __init__(self, ws) -> None:  # noqa: ANN001
        self.ws, self.next_id = ws, 0

    async def call(self, method: str, **params) -> dict:  # noqa: ANN003
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            msg = json.loads((await self.ws.receive()).data)
            if msg.get("id") == self.next_id:
                assert "error" not in msg, msg
                return msg.get("result", {})

    async def evaluate(self, expression: str):  # noqa: ANN201
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 60.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not await self.evaluate(expression):
            assert asyncio.get_running_loop().time() < deadline, f"page never had {expression}"
            await asyncio.sleep(0.2)

    async def press(self, key: str) -> None:
        code = f"Key{key.upper()}"
        vk = ord(key.upper())
        await self.call("Input.dispatchKeyEvent", type="keyDown", key=key, code=code, text=key,
                        windowsVirtualKeyCode=vk)
        await self.call("Input.dispatchKeyEvent", type="keyUp", key=key, code=code, windowsVirtualKeyCode=vk)


async def open_page(devtools_port: int, url: str, then) -> None:  # noqa: ANN001
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{devtools_port}/json/list") as response:
            pages = [t for t in await response.json() if t["type"] == "page"]
        async with http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            tools = DevTools(ws)
            await tools.call("Page.enable")
            await tools.call("Page.addScriptToEvaluateOnNewDocument", source=RECORD_SOCKET)
            await tools.call("Page.navigate", url=url)
            await then(tools)


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (.ci/run installs the distribution's package)")
def test_browser_shows_the_dashboard_and_a_key_pauses_the_run(live_run: Path, tmp_path: Path):
    proc, port = serve(live_run)
    browser = None
    session = AttachedSession(live_run)
    try:
        assert f"at http://127.0.0.1:{port}" in read_line(proc, proc.stdout)
        profile = tmp_path / "profile"
        browser = subprocess.Popen(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
             "--window-size=1280,900", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        line = ""
        while "DevTools listening on" not in line:  # Chromium says where its protocol is
            line = read_line(browser, browser.stderr)
            assert line, "Chromium ended before serving DevTools"
        devtools_port = int(line.split("ws://127.0.0.1:")[1].split("/")[0])
        threading.Thread(target=browser.stderr.read, daemon=True).start()  # never let it block
        session.start()

        async def check(tools: DevTools) -> None:
            # The dashboard arrived: its epoch table (title and columns) and a trained epoch.
            await tools.wait_for("window.__seen.includes('epochs') && window.__seen.includes('train')")
            await tools.wait_for("document.body.classList.contains('-first-byte')")
            await tools.evaluate("document.querySelector('.xterm-helper-textarea').focus()")
            await tools.press("p")
            paused = await asyncio.to_thread(wait_paused, session)
            assert paused.reason == "user"

        asyncio.run(open_page(devtools_port, f"http://127.0.0.1:{port}/", check))
    finally:
        session.close()
        if browser is not None:
            stop(browser)
        stop(proc)


def wait_paused(session: AttachedSession, timeout: float = 60.0) -> Paused:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        event = session.next_event(timeout=deadline - time.monotonic())
        if isinstance(event, Paused):
            return event
    raise AssertionError("the run did not pause")



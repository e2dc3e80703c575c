"""Headless Debian Chromium, driven over its DevTools protocol, for the browser tests.

`chromium --dump-dom --virtual-time-budget` snapshots a page on a virtual clock, on
which MLflow's charts never finish drawing. Driving the browser instead lets a test wait
in real time until the page shows what it asserts (a JavaScript condition) and read
what is drawn: the Plotly figures' own data, not just the text around them.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import tempfile
import time
import urllib.request
from typing import Any

import websocket

FLAGS = (
    "--headless",
    "--no-sandbox",  # as root
    "--disable-gpu",
    "--disable-background-networking",  # no calls home
    "--disable-component-update",
    "--remote-debugging-port=0",  # Chromium picks a free port and writes it down
)


class ChromiumError(RuntimeError):
    pass


class Chromium:
    """One headless browser with one tab, for `with` blocks."""

    def __init__(self, binary: str, width: int = 1400, height: int = 3000):
        self._profile = tempfile.TemporaryDirectory(prefix="chromium-")
        self._process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self._profile.name}", f"--window-size={width},{height}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: `close` ends its helpers too
        )
        self._next_id = 0
        try:
            self._socket = websocket.create_connection(self._page_socket_url(), timeout=60, suppress_origin=True)
            self._call("Page.enable")
            metrics = dict(width=width, height=height, deviceScaleFactor=1, mobile=False)
            self._call("Emulation.setDeviceMetricsOverride", **metrics)
        except BaseException:
            self.close()
            raise

    def _page_socket_url(self, timeout_s: float = 30) -> str:
        port_file = os.path.join(self._profile.name, "DevToolsActivePort")
        deadline = time.time() + timeout_s
        while not os.path.exists(port_file) or not open(port_file).read().strip():
            if self._process.poll() is not None or time.time() > deadline:
                raise ChromiumError(f"Chromium did not start (exit code {self._process.poll()})")
            time.sleep(0.1)
        port = open(port_file).read().split()[0]
        targets = json.loads(_http_get(f"http://127.0.0.1:{port}/json"))
        return next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")

    def _call(self, method: str, **params: Any) -> dict:
        self._next_id += 1
        self._socket.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:  # events arrive in between; skip them
            message = json.loads(self._socket.recv())
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise ChromiumError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable)."""
        result = self._call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise ChromiumError(f"{expression[:80]}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def open(self, url: str, ready: str, timeout_s: float = 90) -> None:
        """Loads `url` afresh and waits until the JavaScript condition `ready` holds."""
        self._call("Page.navigate", url="about:blank")
        self._call("Page.navigate", url=url)
        deadline = time.time() + timeout_s
        # False, not an error, while the page is still loading (no document.body yet).
        while not self.evaluate(f"(() => {{ try {{ return Boolean({ready}); }} catch (e) {{ return false; }} }})()"):
            if time.time() > deadline:
                shown = self.text()[:500]
                raise ChromiumError(f"{url}: still not `{ready}` after {timeout_s:.0f} s; the page shows: {shown}")
            time.sleep(0.5)

    def text(self) -> str:
        """The page's visible text, whitespace collapsed."""
        return re.sub(r"\s+", " ", self.evaluate("document.body ? document.body.innerText : ''"))

    def html(self) -> str:
        return self.evaluate("document.documentElement.outerHTML")

    def screenshot(self, path: str) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(self._call("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        if getattr(self, "_socket", None) is not None:
            self._socket.close()
        self._process.terminate()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        # Chromium's helper processes (renderer, GPU, crash handler) can outlive the browser
        # and still write into the profile while it is removed: end the whole group first.
        deadline = time.time() + 10
        try:
            while time.time() < deadline:
                os.killpg(self._process.pid, signal.SIGKILL)
                time.sleep(0.1)
        except ProcessLookupError:  # no process of the group is left
            pass
        self._profile.cleanup()

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _http_get(url: str, timeout_s: float = 10) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return response.read().decode()

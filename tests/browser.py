"""Headless Chromium driven over the DevTools protocol, for tests that look at real web UIs.

Chromium is the Debian package (``/usr/bin/chromium``, installed by ``scripts/setup.sh``); the
protocol goes over its websocket with ``websockets`` (already a dependency, via uvicorn). One
page, attached in flat mode; conditions are polled in the page until a generous deadline, so a
slow machine is slower, never flaky.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

CHROMIUM = "/usr/bin/chromium"
#: Generous: a loaded 2-core machine renders a React app slowly.
DEADLINE_S = 180.0


class BrowserError(RuntimeError):
    """A DevTools call failed, or a condition did not hold by its deadline."""


def chromium() -> str | None:
    """The Chromium binary, or None when it is not installed."""
    return CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")


class Browser:
    """One headless Chromium page."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self.session = ""
        self.session = self.call(
            "Target.attachToTarget", session=False, flatten=True, **self._page()
        )["sessionId"]
        for domain in ("Page", "Runtime"):
            self.call(f"{domain}.enable")

    def _page(self) -> dict[str, str]:
        pages = self.call("Target.getTargets", session=False)["targetInfos"]
        page = next(t for t in pages if t["type"] == "page")
        return {"targetId": page["targetId"]}

    @classmethod
    @contextmanager
    def launch(cls, profile: Path, width: int = 1440, height: int = 900) -> Iterator[Browser]:
        """Start Chromium with a fresh profile in ``profile``; stopped on exit."""
        binary = chromium()
        if binary is None:
            raise BrowserError("chromium is not installed (scripts/setup.sh installs it)")
        profile.mkdir(parents=True, exist_ok=True)
        (profile / "DevToolsActivePort").unlink(missing_ok=True)  # a previous run's port
        args = [
            binary,
            "--headless=new",
            "--no-sandbox",  # tests may run as root, where Chromium's sandbox cannot start
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-extensions",
            "--hide-scrollbars",
            f"--window-size={width},{height}",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "about:blank",
        ]
        log = (profile / "chromium.log").open("wb")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        try:
            with connect(_devtools_url(profile, proc), max_size=None, open_timeout=60) as ws:
                yield cls(ws)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()

    # -- protocol --------------------------------------------------------------------------------

    def call(self, method: str, session: bool = True, **params: Any) -> dict[str, Any]:
        """Send one command and return its result (events in between are skipped)."""
        message_id = next(self._ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params}
        if session and self.session:
            message["sessionId"] = self.session
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + DEADLINE_S
        while True:
            answer = json.loads(self.ws.recv(timeout=max(1.0, deadline - time.monotonic())))
            if answer.get("id") != message_id:
                continue
            if "error" in answer:
                raise BrowserError(f"{method}: {answer['error']}")
            return dict(answer.get("result", {}))

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page (promises awaited)."""
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:200]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    # -- actions ---------------------------------------------------------------------------------

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def wait_for(self, expression: str, what: str, timeout: float = DEADLINE_S) -> Any:
        """Poll ``expression`` until it is truthy; its value. Raises naming ``what`` and the
        page's URL and text when it never is."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
            except BrowserError:
                value = None  # the page is between documents
            if value:
                return value
            time.sleep(0.5)
        state = self.evaluate("[location.href, document.body ? document.body.innerText : '']")
        raise BrowserError(
            f"{what}: not seen within {timeout:.0f} s at {state[0]}:\n{state[1][:2000]}"
        )

    def type_into(self, selector: str, text: str) -> None:
        """Focus an input and type into it as a user would (real input events)."""
        self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        self.call("Input.insertText", text=text)

    def click_at(self, x: float, y: float) -> None:
        """A real (trusted) mouse click at page coordinates."""
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def wait_for_page(self, url: str, timeout: float = DEADLINE_S) -> None:
        """Wait until some open page (a tab a click opened included) is at ``url``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if url in self.page_urls():
                return
            time.sleep(0.5)
        raise BrowserError(f"no page opened {url} within {timeout:.0f} s: {self.page_urls()}")

    def page_urls(self) -> list[str]:
        """URLs of every open page (tabs a click opened included)."""
        targets = self.call("Target.getTargets", session=False)["targetInfos"]
        return [t["url"] for t in targets if t["type"] == "page"]


def _devtools_url(profile: Path, proc: subprocess.Popen) -> str:
    """The browser's websocket, from the port file Chromium writes once it listens."""
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BrowserError(f"chromium exited with code {proc.returncode}; see {profile}")
        lines = port_file.read_text().split() if port_file.exists() else []
        if len(lines) == 2:
            return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        time.sleep(0.2)
    raise BrowserError(f"chromium did not open its DevTools port within {DEADLINE_S:.0f} s")

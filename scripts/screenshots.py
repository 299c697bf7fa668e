"""Screenshots of the built documentation, to look at what readers see.

Serves ``site/`` (build it first: ``make docs``) on 127.0.0.1 and has headless Chromium
write PNGs of the API reference pages into ``screenshots/``; ``make screenshots`` does
both. Chromium comes from Debian's ``chromium`` package. Chromium's own ``--screenshot``
flag cannot show a part of a page further down (it draws nothing when the page scrolls to
an anchor), so this drives it over the DevTools protocol on a pipe, with the standard
library only.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import functools
import http.server
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 1280, 2000

# (PNG name, page, element id to scroll to or None for the top of the page)
SHOTS: list[tuple[str, str, str | None]] = [
    ("api.png", "reference/api/", None),
    ("api-signals.png", "reference/api/", "playback_hooks.message_playback_started"),
    ("testing.png", "reference/testing/", None),
]

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


# Run in the page before the shot: no animations (the theme fades its header title when
# the page scrolls), the anchor's heading just below the fixed header, fonts loaded, and
# two frames drawn.
_SETTLE = """(async (anchor) => {
  const style = document.createElement("style");
  style.textContent = "*, *::before, *::after { transition: none !important;"
    + " animation: none !important; }";
  document.head.appendChild(style);
  if (anchor !== null) {
    const top = document.getElementById(anchor).getBoundingClientRect().top;
    const header = document.querySelector("header");
    window.scrollTo(0, window.scrollY + top - (header ? header.offsetHeight : 0) - 16);
  }
  await document.fonts.ready;
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
})(%s)"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    sys.exit("screenshots: no Chromium found (Debian: apt-get install -y chromium)")


class Browser:
    """Headless Chromium driven over ``--remote-debugging-pipe`` (fd 3 in, fd 4 out)."""

    def __init__(self, executable: str, profile: str, timeout: float = 60.0) -> None:
        self._timeout = timeout
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()

        def in_child() -> None:
            # move the pipe ends above any descriptor the dup2() calls could overwrite
            read_end = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
            write_end = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self._process = subprocess.Popen(
            [executable, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=False,
            preexec_fn=in_child,  # the pipe must land on fds 3 and 4
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._out = to_browser_w
        self._in = from_browser_r
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._in], [], [], left)[0]:
                raise TimeoutError("screenshots: Chromium did not answer in time")
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                raise RuntimeError("screenshots: Chromium closed the pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send one command and return its result (events met on the way are kept)."""
        self._next_id += 1
        command: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            command["sessionId"] = session
        os.write(self._out, json.dumps(command).encode() + b"\0")
        deadline = time.monotonic() + self._timeout
        while True:
            message = self._read_message(deadline)
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"screenshots: {method} failed: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self._events.append(message)

    def wait_event(self, method: str, session: str) -> None:
        """Wait for an event of ``session`` (it may already have arrived)."""
        deadline = time.monotonic() + self._timeout
        while True:
            for i, event in enumerate(self._events):
                if event.get("method") == method and event.get("sessionId") == session:
                    del self._events[i]
                    return
            self._events.append(self._read_message(deadline))

    def screenshot(self, url: str, anchor: str | None, png: Path) -> None:
        """Load ``url`` in a ``WIDTH`` x ``HEIGHT`` window, scroll to ``anchor``, save a PNG."""
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable", session)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            session,
            width=WIDTH,
            height=HEIGHT,
            deviceScaleFactor=1,
            mobile=False,
        )
        self.call("Page.navigate", session, url=url)
        self.wait_event("Page.loadEventFired", session)
        self.call(
            "Runtime.evaluate",
            session,
            expression=_SETTLE % json.dumps(anchor),
            awaitPromise=True,
        )
        data = self.call("Page.captureScreenshot", session, format="png")["data"]
        png.write_bytes(base64.b64decode(data))
        self.call("Target.closeTarget", targetId=target)

    def close(self) -> None:
        """Ask Chromium to quit; kill it if it does not."""
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.call("Browser.close")
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        os.close(self._out)
        os.close(self._in)


def shoot(site: Path, out: Path) -> list[Path]:
    """Serve ``site`` on a free loopback port and write one PNG per entry of ``SHOTS``."""
    if not (site / "index.html").is_file():
        sys.exit(f"screenshots: {site} has no index.html (run `make docs` first)")
    executable = _chromium()
    out.mkdir(parents=True, exist_ok=True)
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    written: list[Path] = []
    try:
        port = server.server_address[1]
        with tempfile.TemporaryDirectory() as profile:
            browser = Browser(executable, profile)
            try:
                for name, page, anchor in SHOTS:
                    png = out / name
                    browser.screenshot(f"http://127.0.0.1:{port}/{page}", anchor, png)
                    written.append(png)
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()
    return written


def main(argv: list[str] | None = None) -> int:
    """Write the screenshots; print their paths."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--site", type=Path, default=ROOT / "site", help="the built site")
    parser.add_argument("--out", type=Path, default=ROOT / "screenshots", help="output folder")
    args = parser.parse_args(argv)
    for png in shoot(args.site, args.out):
        print(png)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Screenshots of TensorBoard as a person sees it after a small sweep: HPARAMS (table and parallel coordinates),
SCALARS and IMAGES, taken by headless Chromium (``apt-get install chromium``) and written to ``docs/img/``.

    python scripts/tensorboard_screenshots.py                 # runs a tiny 6-trial sweep first (about a minute)
    python scripts/tensorboard_screenshots.py multirun/<date>/<time> --out /tmp/shots

TensorBoard runs on a free port for the duration and is stopped at the end. Chromium is driven through its
DevTools protocol (a small websocket client below, the standard library only): a view's tab (PARALLEL
COORDINATES VIEW) is clicked by its text, searched through shadow roots, as a person clicks it.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TINY_SWEEP = [
    "hparams_search=signal_optuna",
    "hydra.sweeper.n_trials=6",
    "data.generator.n_samples=16",
    "data.generator.duration=2.0",
    "trainer.max_epochs=4",
    "trainer.accelerator=cpu",
    "extras.print_config=false",
    "callbacks.progress=null",
]
# (file name, URL fragment, text of a tab to click first or None)
VIEWS = [
    ("tensorboard-hparams-table.png", "#hparams", None),
    ("tensorboard-hparams-parallel.png", "#hparams", "PARALLEL COORDINATES VIEW"),
    ("tensorboard-scalars.png", "#scalars", None),
    ("tensorboard-images.png", "#images", None),
]
# finds an element by its visible text through every shadow root and same-origin iframe, and clicks it
CLICK_BY_TEXT = """
(function (wanted) {
  function search(root) {
    for (const el of root.querySelectorAll('*')) {
      const text = (el.textContent || '').trim().toUpperCase();
      if (el.children.length <= 2 && text === wanted) { el.click(); return true; }
      if (el.shadowRoot && search(el.shadowRoot)) return true;
      if (el.tagName === 'IFRAME' && el.contentDocument && search(el.contentDocument)) return true;
    }
    return false;
  }
  return search(document);
})(%s)
"""


class DevTools:
    """Just enough of a websocket client for Chromium's DevTools protocol: send a command, read its answer."""

    def __init__(self, url: str) -> None:
        address, path = url.removeprefix("ws://").split("/", 1)
        host, port = address.split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /{path} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        received = b""
        while b"\r\n\r\n" not in received:
            received += self.sock.recv(4096)
        self.buffer = received.split(b"\r\n\r\n", 1)[1]
        self.last_id = 0

    def _exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def _message(self) -> str:
        parts = []
        while True:
            first, second = self._exactly(2)
            length = second & 0x7F
            if length == 126:
                length = struct.unpack(">H", self._exactly(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", self._exactly(8))[0]
            parts.append(self._exactly(length))
            if first & 0x80:  # the final frame of the message
                return b"".join(parts).decode()

    def call(self, method: str, **params) -> dict:
        self.last_id += 1
        payload = json.dumps({"id": self.last_id, "method": method, "params": params}).encode()
        mask = os.urandom(4)
        header = bytearray([0x81])
        if len(payload) < 126:
            header.append(0x80 | len(payload))
        elif len(payload) < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack(">H", len(payload))
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", len(payload))
        self.sock.sendall(bytes(header) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        while True:
            answer = json.loads(self._message())
            if answer.get("id") == self.last_id:
                return answer.get("result", {})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, seconds: float) -> bytes:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def run_tiny_sweep(where: Path) -> Path:
    sweep = where / "sweep"
    command = [sys.executable, "-m", "lstmlab.train", "-m", *TINY_SWEEP, f"hydra.sweep.dir={sweep}"]
    subprocess.run(command, cwd=where, check=True, capture_output=True, text=True)
    return sweep


def screenshots(logdir: Path, out: Path, chromium: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    tb_port, cdp_port = free_port(), free_port()
    board = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", f"--logdir={logdir}", f"--port={tb_port}", "--host=127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    profile = tempfile.mkdtemp(prefix="chromium-")
    browser = subprocess.Popen(
        [
            chromium,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1600,1000",
            f"--remote-debugging-port={cdp_port}",
            f"--user-data-dir={profile}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    written = []
    try:
        wait_for(f"http://127.0.0.1:{tb_port}/data/logdir", 60)
        pages = json.loads(wait_for(f"http://127.0.0.1:{cdp_port}/json", 30))
        page = DevTools(next(p for p in pages if p.get("type") == "page")["webSocketDebuggerUrl"])
        page.call("Page.enable")
        for name, fragment, tab in VIEWS:
            page.call("Page.navigate", url=f"http://127.0.0.1:{tb_port}/{fragment}")
            time.sleep(8)  # TensorBoard loads its runs and draws its charts after the page itself
            if tab is not None:
                clicked = page.call("Runtime.evaluate", expression=CLICK_BY_TEXT % json.dumps(tab), returnByValue=True)
                if not clicked.get("result", {}).get("value"):
                    print(f"  {name}: no tab {tab!r} found; the screenshot shows the default view", file=sys.stderr)
                time.sleep(4)
            shot = page.call("Page.captureScreenshot", format="png")
            path = out / name
            path.write_bytes(base64.b64decode(shot["data"]))
            written.append(path)
    finally:
        browser.terminate()
        board.terminate()
        browser.wait(10)
        board.wait(10)
        shutil.rmtree(profile, ignore_errors=True)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", nargs="?", type=Path, help="a sweep dir (default: run a tiny sweep)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    args = parser.parse_args()
    if not args.chromium:
        raise SystemExit("error: no chromium on PATH; apt-get install chromium, or pass --chromium=<binary>")
    with tempfile.TemporaryDirectory() as scratch:
        sweep = args.sweep or run_tiny_sweep(Path(scratch))
        for path in screenshots(sweep, args.out, args.chromium):
            print(path)


if __name__ == "__main__":
    main()

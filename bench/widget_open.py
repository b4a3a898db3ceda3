"""How long the chat widget takes to open on a bare click (no hover warm-up), in headless Chromium.

The browser test checks that a click opens the chat (frame shown and focused); this measures how
long that takes, which depends on the machine's load and so is no test assertion. Against a running
server (e.g. `python -m devtools.runner`):

    # 1. A bot that allows this script's host page (once; same environment as the server):
    .venv/bin/python bench/widget_load.py --setup --origin http://127.0.0.1:8766
    # 2. The measurement: each run is a fresh browser context (cold cache), first open of the page.
    .venv/bin/python bench/widget_open.py --base-url http://127.0.0.1:8000 --widget-key wk_... -n 20

The figure is the loader's own `groundwork:open` event (`detail.ms`: click to frame shown and
focused). Results are printed and written to bench/results/widget_open.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import tempfile
import threading
from datetime import UTC, datetime
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "widget_open.json"

OPEN_SCRIPT = """() => new Promise(resolve => {
    document.addEventListener("groundwork:open", e => resolve(e.detail.ms), {once: true});
    document.querySelector("groundwork-chat").shadowRoot.querySelector("button.l").dispatchEvent(new Event("click"));
})"""


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _chromium() -> str:
    path = os.environ.get("GROUNDWORK_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise SystemExit("Chromium not found: install Debian's 'chromium' package or set GROUNDWORK_CHROMIUM.")
    return path


def measure(base_url: str, widget_key: str, port: int, runs: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="gw-widget-open-") as root:
        snippet = f'<script src="{base_url}/static/widget/widget.js" data-bot="{widget_key}" async></script>'
        Path(root, "index.html").write_text(f"<!doctype html><html><head><meta charset='utf-8'></head><body>{snippet}")
        server = ThreadingHTTPServer(("127.0.0.1", port), partial(_QuietHandler, directory=root))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        timings: list[float] = []
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=_chromium(), args=["--no-sandbox", "--disable-gpu", "--disable-component-update"]
                )
                for _ in range(runs):
                    context = browser.new_context()
                    page = context.new_page()
                    page.goto(f"http://127.0.0.1:{port}/index.html")
                    page.locator("groundwork-chat button.l").wait_for()
                    timings.append(float(page.evaluate(OPEN_SCRIPT)))
                    context.close()
                browser.close()
        finally:
            server.shutdown()
            server.server_close()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="the running Groundwork")
    parser.add_argument("--widget-key", required=True, help="from `bench/widget_load.py --setup --origin ...`")
    parser.add_argument("--port", type=int, default=8766, help="the host page's port (the bot must allow its origin)")
    parser.add_argument("-n", type=int, default=20, help="cold opens to measure")
    parser.add_argument("--no-save", action="store_true", help="print only; do not write bench/results")
    args = parser.parse_args()

    timings = measure(args.base_url.rstrip("/"), args.widget_key, args.port, args.n)
    ordered = sorted(timings)
    report = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load": list(os.getloadavg())},
        "runs": len(timings),
        "open_ms_median": round(statistics.median(timings), 1),
        "open_ms_p90": round(ordered[math.ceil(len(ordered) * 0.9) - 1], 1),  # nearest rank
        "open_ms_max": round(ordered[-1], 1),
        "open_ms_all": [round(t, 1) for t in timings],
    }
    print(json.dumps(report, indent=2))
    if not args.no_save:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

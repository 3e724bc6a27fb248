"""Open every dashboard in headless Chromium, check that every chart rendered with data, save screenshots.

Runs in the BI environment (Playwright drives the machine's Chromium through executable_path; it never downloads a
browser). Prints one JSON report on stdout and exits 1 when a dashboard has a chart that failed or came back empty:

    bi/.venv/bin/python bi/superset/look.py --url http://127.0.0.1:8088 --screenshots docs/img
    bi/.venv/bin/python bi/superset/look.py --serve bi/run.sh --screenshots docs/img   # its own server, free port
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dashboards import DASHBOARDS  # noqa: E402 (the dashboards' own list, next to this file)

# Superset's own markers: a chart holder per chart; an error alert or "No results" in a holder is a failure.
INSPECT = """() => [...document.querySelectorAll('.dashboard-component-chart-holder')].map(h => ({
  title: (h.querySelector('.header-title, [data-test="editable-title"]') || {}).innerText || '',
  error: !!h.querySelector('.alert-danger, [data-test="error-message"], .ant-alert-error, [role="alert"]'),
  empty: /No results were returned|No data/.test(h.innerText),
  loading: !!h.querySelector('.loading, [data-test="loading-indicator"]'),
  drawn: !!h.querySelector('canvas, svg, table, .big_number, .header-line, [data-test="big-number"]'),
  rows: h.querySelectorAll('tbody tr').length,
}))"""


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url


def login(page: Page, url: str, user: str, password: str) -> None:
    page.goto(f"{url}/login/")
    page.fill("input[name=username], #username", user)
    page.fill("input[name=password], #password", password)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url(lambda u: "/login" not in u, timeout=120_000)


def look(page: Page, url: str, slug: str, expected: int, folder: Path | None) -> dict:
    page.goto(f"{url}/superset/dashboard/{slug}/?standalone=0")
    page.wait_for_selector(".dashboard-component-chart-holder", timeout=120_000)
    # Charts render lazily as they come into view: scroll to the bottom, then wait until none is loading.
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    ready = f"""() => {{ const h = [...document.querySelectorAll('.dashboard-component-chart-holder')];
             return h.length >= {expected} && h.every(x => !x.querySelector('.loading, [data-test="loading-indicator"]')
               && (x.querySelector('canvas, svg, table, [role="alert"], .alert-danger')
                   || /No results|No data/.test(x.innerText))); }}"""
    page.wait_for_function(ready, timeout=180_000, polling=1000)
    page.wait_for_timeout(1500)  # let the charts' animations settle before the screenshot
    charts = page.evaluate(INSPECT)
    shot = None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        shot = folder / f"bi-{slug}.png"
        # A full-page screenshot resizes the page, and Superset re-renders its grid meanwhile (seen blank): make the
        # window as tall as the page instead, wait until every chart is drawn again, then take the window.
        page.evaluate("window.scrollTo(0, 0)")
        page.set_viewport_size({"width": 1400, "height": page.evaluate("document.body.scrollHeight")})
        page.wait_for_function(ready, timeout=180_000, polling=1000)
        page.wait_for_timeout(2000)
        page.screenshot(path=str(shot))
        page.set_viewport_size({"width": 1400, "height": 1000})
    bad = [c for c in charts if c["error"] or c["empty"] or not c["drawn"]]
    # The user page opens on one user: its summary table (the first chart) must hold exactly that user.
    one_user = slug != "user-twin" or (bool(charts) and charts[0]["rows"] == 1)
    return {"dashboard": slug, "charts": len(charts), "expected": expected, "failed": bad, "one_user": one_user,
            "screenshot": str(shot) if shot else None, "ok": len(charts) == expected and not bad and one_user}


@contextmanager
def served(run_sh: str) -> Iterator[str]:
    """`run.sh serve` on a free port of 127.0.0.1 until the block ends; stopped by its own process group id."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(["bash", run_sh, "serve", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(300):  # Superset's app starts in 10-20 s here
            if server.poll() is not None:
                raise SystemExit(f"Superset stopped while starting (exit {server.returncode})")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                time.sleep(1)
        yield url
    finally:
        # SIGTERM first; a server started from a shell that ignores SIGTERM (seen under nohup) gets SIGKILL.
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="a running Superset")
    where.add_argument("--serve", help="bi/run.sh: start Superset on a free port for this look, then stop it")
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", default="admin")
    parser.add_argument("--screenshots", type=Path, help="folder for bi-<dashboard>.png")
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    args = parser.parse_args()
    if not args.chromium:
        raise SystemExit("Chromium is needed (apt-get install chromium; `make browser`)")
    with (served(args.serve) if args.serve else _given(args.url)) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            login(page, url.rstrip("/"), args.user, args.password)
            report = [look(page, url.rstrip("/"), slug, len(charts), args.screenshots)
                      for slug, _, _, charts in DASHBOARDS]
        finally:
            browser.close()
    print(json.dumps(report, indent=1))
    return 0 if all(r["ok"] for r in report) else 1


if __name__ == "__main__":
    sys.exit(main())

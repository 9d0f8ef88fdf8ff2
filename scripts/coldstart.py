"""Cold start as the first visitor of a fresh Community Cloud machine meets it, in Chromium.

For each round, a new `streamlit run` (nothing cached, a fresh OpenVINO cache folder) and a new
browser context; times are seconds from the process start, each taken once the page shows what
it waits for and Streamlit's running indicator is gone (the script has finished):

- health:       `/_stcore/health` answers;
- home_first:   Home's title drawn and the running indicator gone (the first screen's text);
- home:         Home settled, its last element drawn; home_charts: its Plotly charts drawn too;
- home_answer:  on that server, the visitor then taps Home's "Try it" button (an app without it:
                opens Predict and uploads the photo) and a verdict is shown;
- answer:       on another fresh server, /predict opened directly, the first example tapped (an app
                without examples: the photo uploaded as soon as the uploader is there), a verdict shown.

    python scripts/coldstart.py [--rounds 3] [--root CHECKOUT] [--photo PHOTO] [--python .venv/bin/python] [--json]

`--root` runs another checkout of the app (an older commit, for a before/after in one sitting).
Needs Playwright and Debian's chromium (requirements-dev.txt; `apt-get install chromium`).
Without --photo, the daisy of examples/ is uploaded where an app has no examples.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
HOME_FIRST = "TensorFlow → OpenVINO"  # Home's title
HOME_DONE = ["Show the whole card", "Library versions"]  # Home's last element (before 2026-12-06: the versions)
ANSWER = ("backends agree", "Backends disagree", "does not look like one of", "This looks like")
# Checked on every animation frame in the page (Playwright's own waits poll up to 500 ms apart): one
# of the texts is shown and Streamlit's running indicator is not; CHARTS: every Plotly chart drawn too
# (the browser loads plotly.js, 4.7 MB, the first time a page has a chart).
SHOWN = ("texts => texts.some(t => document.body.innerText.includes(t))"
         " && !document.querySelector('[data-testid=stStatusWidgetRunningIcon], [data-testid=stStatusWidgetRunningManIcon]')")
CHARTS = "() => [...document.querySelectorAll('[data-testid=stPlotlyChart]')].every(c => c.querySelector('.js-plotly-plot'))"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(python: str, workdir: Path, env: dict[str, str] | None = None,
           root: Path = ROOT) -> Iterator[tuple[str, float, float]]:
    """A fresh `streamlit run`; yields (url, start time, seconds until health answered)."""
    port = free_port()
    log = open(workdir / f"streamlit-{port}.log", "w")
    start = time.perf_counter()
    proc = subprocess.Popen(
        [python, "-m", "streamlit", "run", str(root / "streamlit_app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none"],
        cwd=root, stdout=log, stderr=subprocess.STDOUT,
        env=os.environ | {"FLOWERS_CACHE_DIR": str(workdir / f"cache-{port}"),
                          "FLOWERS_RESULTS_DIR": str(workdir / f"results-{port}")} | (env or {}),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                    break
            except OSError:
                if proc.poll() is not None or time.perf_counter() - start > 120:
                    raise SystemExit(f"streamlit did not start; see {log.name}")
                time.sleep(0.05)
        yield url, start, time.perf_counter() - start
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def first_photo(path: str | None) -> Path:
    return Path(path) if path else ROOT / "examples" / "daisy.jpg"


def ask(page, photo: Path) -> None:
    """On Predict: tap the first example where the app offers them, else upload the photo."""
    example = page.locator("button[data-variant=pills]").first
    uploader = page.locator("input[type=file]").first
    uploader.wait_for(state="attached", timeout=120_000)
    if example.count():
        example.click()
    else:
        uploader.set_input_files(str(photo))


def measure(python: str, photo: Path, workdir: Path, root: Path) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless"])
        with server(python, workdir, root=root) as (url, start, health):
            page = browser.new_page()
            page.goto(url, timeout=120_000)
            page.wait_for_function(SHOWN, arg=[HOME_FIRST], polling="raf", timeout=120_000)
            home_first = time.perf_counter() - start
            page.wait_for_function(SHOWN, arg=HOME_DONE, polling="raf", timeout=120_000)
            home = time.perf_counter() - start
            page.wait_for_function(CHARTS, polling="raf", timeout=120_000)
            home_charts = time.perf_counter() - start
            try_it = page.get_by_role("button", name="Try it on a photo")
            if try_it.count():
                try_it.click()
            else:
                page.goto(f"{url}/predict", timeout=120_000)
                ask(page, photo)
            page.wait_for_function(SHOWN, arg=list(ANSWER), polling="raf", timeout=180_000)
            home_answer = time.perf_counter() - start
        with server(python, workdir, root=root) as (url, start, _):
            page = browser.new_page()
            page.goto(f"{url}/predict", timeout=120_000)
            ask(page, photo)
            page.wait_for_function(SHOWN, arg=list(ANSWER), polling="raf", timeout=180_000)
            first_answer = time.perf_counter() - start
        browser.close()
    return {"health_s": round(health, 2), "home_first_s": round(home_first, 2), "home_s": round(home, 2), "home_charts_s": round(home_charts, 2),
            "home_answer_s": round(home_answer, 2),
            "answer_s": round(first_answer, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--photo", help="the photo to upload where an app has no examples (default: examples/daisy.jpg)")
    parser.add_argument("--root", default=str(ROOT), help="the checkout whose app runs (default: this one)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter that runs streamlit")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="coldstart-") as tmp:
        workdir = Path(tmp)
        photo = first_photo(args.photo)
        rounds = [measure(args.python, photo, workdir, Path(args.root).resolve()) for _ in range(args.rounds)]
    summary = {key: {"median": statistics.median(r[key] for r in rounds),
                     "min": min(r[key] for r in rounds), "max": max(r[key] for r in rounds)}
               for key in rounds[0]}
    if args.json:
        print(json.dumps({"rounds": rounds, "summary": summary}, indent=2))
        return
    for key, s in summary.items():
        print(f"{key:15} median {s['median']:.2f} s  (min {s['min']:.2f}, max {s['max']:.2f}; {len(rounds)} rounds)")


if __name__ == "__main__":
    main()

"""Cold start as the first visitor of a fresh Community Cloud machine meets it, in Chromium.

For each round, a new `streamlit run` (nothing cached, a fresh OpenVINO cache folder) and a new
browser context; times are seconds from the process start:

- health: `/_stcore/health` answers;
- home:   Home fully rendered (its last section, the library versions, is drawn);
- answer: on another fresh server, /predict opened directly, one photo uploaded as soon as the
          uploader is there, and every default backend's answer shown.

    python scripts/coldstart.py [--rounds 3] [--photo PHOTO] [--python .venv/bin/python] [--json]

Needs Playwright and Debian's chromium (requirements-dev.txt; `apt-get install chromium`).
Without --photo, a daisy from ../shared/flowers/flower_photos_mini.tgz is used.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
MINI = ROOT.parent / "shared" / "flowers" / "flower_photos_mini.tgz"
CHROMIUM = "/usr/bin/chromium"
HOME_DONE = "Library versions"  # Home's last section
ANSWER = ("backends agree", "Backends disagree", "does not look like one of")
# Checked on every animation frame in the page (Playwright's own waits poll up to 500 ms apart).
SHOWN = "texts => texts.some(t => document.body.innerText.includes(t))"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(python: str, workdir: Path, env: dict[str, str] | None = None) -> Iterator[tuple[str, float, float]]:
    """A fresh `streamlit run`; yields (url, start time, seconds until health answered)."""
    port = free_port()
    log = open(workdir / f"streamlit-{port}.log", "w")
    start = time.perf_counter()
    proc = subprocess.Popen(
        [python, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
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


def first_photo(path: str | None, workdir: Path) -> Path:
    if path:
        return Path(path)
    with tarfile.open(MINI) as archive:
        name = sorted(m.name for m in archive.getmembers() if "/daisy/" in m.name and m.name.endswith(".jpg"))[0]
        out = workdir / "daisy.jpg"
        out.write_bytes(archive.extractfile(name).read())
        return out


def measure(python: str, photo: Path, workdir: Path) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless"])
        with server(python, workdir) as (url, start, health):
            page = browser.new_page()
            page.goto(url, timeout=120_000)
            page.wait_for_function(SHOWN, arg=[HOME_DONE], polling="raf", timeout=120_000)
            home = time.perf_counter() - start
        with server(python, workdir) as (url, start, _):
            page = browser.new_page()
            page.goto(f"{url}/predict", timeout=120_000)
            uploader = page.locator("input[type=file]").first
            uploader.wait_for(state="attached", timeout=120_000)
            uploader.set_input_files(str(photo))
            page.wait_for_function(SHOWN, arg=list(ANSWER), polling="raf", timeout=180_000)
            first_answer = time.perf_counter() - start
        browser.close()
    return {"health_s": round(health, 2), "home_s": round(home, 2), "first_answer_s": round(first_answer, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--photo", help="the photo to upload (default: a daisy from the mini archive)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter that runs streamlit")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="coldstart-") as tmp:
        workdir = Path(tmp)
        photo = first_photo(args.photo, workdir)
        rounds = [measure(args.python, photo, workdir) for _ in range(args.rounds)]
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

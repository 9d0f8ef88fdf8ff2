"""The Predict page's per-photo times as a visitor reads them in Chromium, beside isolated runs.

A fresh `streamlit run` of this checkout; Chromium (on the same machine) opens Predict, waits until
every default backend has joined, then taps each flower example in turn and reads the times the
page prints under its answer, measuring it again ("Measure again") a few times. Just before and
just after, `python -m core latency` (every backend alone in its own process, batch-1 p50) on the
same model. Prints, per backend, the median of the page's times, the mean of the two isolated p50s
(and each) and their ratio (issue #36 asks for at most 1.3).

    python scripts/predict_latency_browser.py [--photos 20] [--root CHECKOUT] [--json]

`--root` runs another checkout's app (an older commit, for a before/after in one sitting); the
isolated runs are always this checkout's.

Needs Playwright and Debian's chromium (requirements-dev.txt; `apt-get install chromium`).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from coldstart import CHROMIUM, ROOT, server

sys.path.insert(0, str(ROOT))
from core.app import examples  # noqa: E402
from core.model import registry  # noqa: E402
from core.runtimes.predict import default_setups, setup_label  # noqa: E402

MODEL = ROOT / "models" / registry.DEFAULT_MODEL
TIME = re.compile(r"(OpenVINO [A-Z0-9]+|TensorFlow): ([0-9.]+) ms \(")  # "OpenVINO FP16: 12.8 ms (12.3–19.4; ..."


def page_times(workdir: Path, root: Path, rounds: int) -> dict[str, list[float]]:
    """Per backend label, the times the page showed: each flower example tapped, then measured
    again `rounds - 1` times ("Measure again"), once every default backend has joined."""
    from playwright.sync_api import sync_playwright

    flowers = [(e.label, e.path.name) for e in examples.load().photos if e.true_class]
    backends = len(default_setups(root / "models" / registry.DEFAULT_MODEL))
    times: dict[str, list[float]] = {}
    with sync_playwright() as p, server(sys.executable, workdir, root=root) as (url, _, _):
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{url}/predict", timeout=120_000)
        # Until TensorFlow has joined (it loads in the background): the last example, measured again and again.
        page.get_by_role("radio", name=flowers[-1][0], exact=True).click(timeout=120_000)
        while not page.get_by_text(f"all {backends} backends agree").count():
            page.wait_for_timeout(2000)
            page.get_by_role("button", name="Measure again").click(timeout=120_000)
        previous = ""
        for label, file in flowers:
            page.get_by_role("radio", name=label, exact=True).click(timeout=120_000)
            for round_ in range(rounds):
                if round_:
                    page.get_by_role("button", name="Measure again").click(timeout=120_000)
                # This photo's new answer, once the page has finished its run (until then the
                # previous one may still be shown).
                page.wait_for_function(
                    "([file, verdict, previous]) => document.body.innerText.includes(file)"
                    " && document.body.innerText.includes(verdict)"
                    " && !document.querySelector('[data-testid=stStatusWidgetRunningIcon]')"
                    " && [...document.querySelectorAll('p')].some(p => p.innerText.includes('ImageNet check:')"
                    " && p.innerText !== previous)",
                    arg=[file, f"all {backends} backends agree", previous], polling="raf", timeout=120_000)
                previous = page.get_by_text("ImageNet check:").first.inner_text()
                for name, ms in TIME.findall(previous):
                    times.setdefault(name, []).append(float(ms))
        browser.close()
    return times


def isolated(photos: int) -> dict[str, float]:
    """Each variant's batch-1 p50 alone in its own process (`python -m core latency`)."""
    out = subprocess.run([sys.executable, "-m", "core", "latency", "--model-dir", str(MODEL), "--photos", str(photos),
                          "--json"], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return {setup_label(row["variant"]): row["isolated_p50_ms"] for row in json.loads(out)["rows"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=20, help="photos for the isolated runs")
    parser.add_argument("--rounds", type=int, default=3, help="times each example is measured on the page")
    parser.add_argument("--root", default=str(ROOT), help="the checkout whose app runs (default: this one)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    # The isolated runs just before and just after the page's, so that a machine that drifts within
    # the sitting (this shared VM's p50s moved by a third between sittings) shows as their spread.
    before = isolated(args.photos)
    with tempfile.TemporaryDirectory(prefix="predict-latency-") as tmp:
        shown = page_times(Path(tmp), Path(args.root).resolve(), args.rounds)
    after = isolated(args.photos)
    rows = []
    for name, values in shown.items():
        if name in before and name in after:
            alone = (before[name] + after[name]) / 2
            rows.append({"backend": name, "page_ms": statistics.median(values), "photos": len(values),
                         "isolated_p50_ms": alone, "isolated_before_after_ms": [before[name], after[name]],
                         "ratio": statistics.median(values) / alone})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        print(f"{r['backend']:15} page {r['page_ms']:6.2f} ms ({r['photos']} photos)  isolated {r['isolated_p50_ms']:6.2f} ms"
              f" (before {r['isolated_before_after_ms'][0]:.2f}, after {r['isolated_before_after_ms'][1]:.2f})"
              f"  ratio {r['ratio']:.2f}")


if __name__ == "__main__":
    main()

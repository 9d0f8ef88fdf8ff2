"""The README's screenshots, from the real app in Chromium: `python scripts/screenshots.py`.

Writes docs/img/home.png (the first screen: the result and the invitation), predict.png (the
"not a flower" example, scikit-image's CC0 coffee cup, which the app should call "not one of" the
flower classes) and benchmark.png (the example run's charts).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from coldstart import CHROMIUM, ROOT, server

OUT = ROOT / "docs" / "img"
VIEWPORT = {"width": 1280, "height": 860}


def main() -> None:
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="screenshots-") as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless"])
        page = browser.new_page(viewport=VIEWPORT)
        with server(str(Path(__import__("sys").executable)), Path(tmp)) as (url, _, _):
            page.goto(url, timeout=120_000)
            page.get_by_text("Show the whole card").wait_for(timeout=120_000)
            page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(OUT / "home.png"))

            page.goto(f"{url}/predict", timeout=120_000)
            page.get_by_text("not a flower", exact=True).click(timeout=120_000)
            page.get_by_text("ms (").first.wait_for(timeout=120_000)
            page.locator('[data-testid="stImage"]').first.scroll_into_view_if_needed()
            page.wait_for_timeout(1500)
            page.screenshot(path=str(OUT / "predict.png"))

            page.goto(f"{url}/benchmark", timeout=120_000)
            page.get_by_text("Saved runs", exact=True).wait_for(timeout=120_000)
            page.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
            page.wait_for_timeout(2500)
            page.screenshot(path=str(OUT / "benchmark.png"))
        browser.close()
    for name in ("home", "predict", "benchmark"):
        print(OUT / f"{name}.png")


if __name__ == "__main__":
    main()

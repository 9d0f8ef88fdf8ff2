"""The README's screenshots, from the real app in Chromium: `python scripts/screenshots.py`.

Writes docs/img/home.png, predict.png (a CC0 photo of a coffee cup from scikit-image, which the
app should call "not one of" the flower classes) and benchmark.png (the example run's charts).
No photo of the flower data set appears in them: those are not to be committed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from coldstart import CHROMIUM, ROOT, server

OUT = ROOT / "docs" / "img"
VIEWPORT = {"width": 1280, "height": 860}


def main() -> None:
    from playwright.sync_api import sync_playwright
    from PIL import Image
    from skimage import data

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="screenshots-") as tmp, sync_playwright() as p:
        photo = Path(tmp) / "coffee.jpg"
        Image.fromarray(data.coffee()).save(photo, quality=90)
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless"])
        page = browser.new_page(viewport=VIEWPORT)
        with server(str(Path(__import__("sys").executable)), Path(tmp)) as (url, _, _):
            page.goto(url, timeout=120_000)
            page.get_by_text("Library versions").wait_for(timeout=120_000)
            page.get_by_text("Accuracy per class").scroll_into_view_if_needed()
            page.wait_for_timeout(1500)
            page.screenshot(path=str(OUT / "home.png"))

            page.goto(f"{url}/predict", timeout=120_000)
            page.locator("input[type=file]").first.wait_for(state="attached", timeout=120_000)
            page.locator("input[type=file]").first.set_input_files(str(photo))
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

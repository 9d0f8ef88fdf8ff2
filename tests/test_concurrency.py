"""Ten browser sessions against one `streamlit run` server, while a benchmark job runs in another.

A load test, opt-in: `python -m pytest -m load`. The default run keeps its parts: a second
visitor predicts while a job runs (test_browser), and a busy server's refusal stays
visible (test_benchmark's page refusals)."""

import pytest

import asyncio
import concurrent.futures

from conftest import CHROMIUM, mini_photo, needs_chromium, needs_mini

pytestmark = [needs_chromium, needs_mini, pytest.mark.load]
CLASSES = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]


async def predict_in_session(browser, url: str, path, expected: str) -> str:
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{url}/predict", timeout=120_000)
    try:
        await page.get_by_text("Tap an example, or upload").wait_for(timeout=180_000)
    except Exception as exc:  # say what the page showed instead
        raise AssertionError(f"Predict never got ready; the page read:\n{await page.inner_text('body')}") from exc
    await page.locator("input[type=file]").first.set_input_files(str(path))
    verdict = page.get_by_text("backends agree").first
    await verdict.wait_for(timeout=240_000)
    text = await verdict.inner_text()
    await context.close()
    return text


async def start_sweep(browser, url: str, expect: str):
    """Press "Run sweep" on the Benchmark page (a long sweep, within a visitor's caps) in a new
    browser; returns the text matching `expect` and the page, still open."""
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{url}/benchmark", timeout=120_000)
    sizes = page.get_by_role("textbox", name="Test sizes (images)")
    await sizes.wait_for(timeout=180_000)
    # The "Full" preset (every default backend): long enough to outlast ten sessions' predictions.
    await page.locator('[data-testid="stSelectbox"]').filter(has_text="Sweep preset").click()
    await page.locator('[role="option"]', has_text="Full").first.click()
    await page.get_by_text("tensorflow-predict — TensorFlow model.predict").first.wait_for(timeout=60_000)
    await sizes.fill("200")
    await page.get_by_role("spinbutton", name="Repeats").fill("5")
    await page.get_by_role("button", name="Run sweep").click()
    marker = page.get_by_text(expect).first
    try:
        await marker.wait_for(timeout=120_000)
    except Exception as exc:  # say what the page showed instead
        raise AssertionError(f"no {expect!r} after Run sweep; the page read:\n{await page.inner_text('body')}") from exc
    return await marker.inner_text(), page


async def cancel_sweep(page) -> None:
    """Only the browser that started the sweep sees it, and can cancel it."""
    await page.get_by_role("button", name="Cancel sweep").click(timeout=120_000)
    await page.get_by_text("The last sweep was cancelled").wait_for(timeout=120_000)


async def scenario(url: str, photos: dict[str, object]):
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--headless"])
        # One visitor first loads the models into the server (once per server, a minute or two of
        # compiling on a busy 2-core machine); then the job starts and ten more predict beside it.
        await predict_in_session(browser, url, photos["daisy"], "daisy")
        first, owner_page = await start_sweep(browser, url, "Cancel sweep")
        refused, other_page = await start_sweep(browser, url, "Not started")
        assert not await other_page.get_by_role("button", name="Cancel sweep").count()  # not theirs to cancel
        # Ten sessions predict at once while the sweep (minutes long) runs in its own process.
        answers = await asyncio.gather(*[predict_in_session(browser, url, photos[c], c) for c in CLASSES * 2])
        await cancel_sweep(owner_page)
        await browser.close()
        return first, answers, refused


def test_ten_sessions_predict_correctly_while_a_job_runs(app_url, tmp_path):
    photos = {}
    for c in CLASSES:
        photos[c] = tmp_path / f"{c}.jpg"
        photos[c].write_bytes(mini_photo(c))
    # Its own thread: the session's sync Playwright (other browser tests) owns this thread's event loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        first, answers, refused = pool.submit(asyncio.run, scenario(app_url, photos)).result()
    assert first == "Cancel sweep"
    assert [a.split(",")[0] for a in answers] == CLASSES * 2
    assert "busy with another benchmark job" in refused

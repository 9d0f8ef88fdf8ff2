"""The real browser path: Chromium drives `streamlit run`. (Training through the browser, from an
uploaded archive to the finished model, is in test_cloud_memory, inside Cloud's memory limit.)"""

from conftest import mini_photo, needs_chromium, needs_mini

pytestmark = [needs_chromium, needs_mini]


def test_upload_a_photo_and_read_the_prediction(app_url, browser, tmp_path):
    photo = tmp_path / "sunflower.jpg"
    photo.write_bytes(mini_photo("sunflowers"))
    page = browser.new_page()
    page.goto(f"{app_url}/predict", timeout=60_000)
    page.get_by_text("Upload one or more flower photos").wait_for(timeout=120_000)
    page.locator("input[type=file]").first.set_input_files(str(photo))
    verdict = page.get_by_text("backends agree").first
    verdict.wait_for(timeout=120_000)
    assert verdict.inner_text().startswith("sunflowers")
    page.screenshot(path=str(tmp_path / "predict.png"), full_page=True)
    page.close()

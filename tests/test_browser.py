"""The real browser path: Chromium drives `streamlit run`. (Training through the browser, from an
uploaded archive to the finished model, is in test_cloud_memory, inside Cloud's memory limit.)"""

from conftest import ROOT, mini_photo, needs_chromium, needs_mini, streamlit_server, wait_for_script

pytestmark = [needs_chromium, needs_mini]


def test_upload_a_photo_and_read_the_prediction(app_url, browser, tmp_path):
    photo = tmp_path / "sunflower.jpg"
    photo.write_bytes(mini_photo("sunflowers"))
    page = browser.new_page()
    page.goto(f"{app_url}/predict", timeout=60_000)
    page.get_by_text("Tap an example, or upload").wait_for(timeout=120_000)
    page.locator("input[type=file]").first.set_input_files(str(photo))
    verdict = page.get_by_text("backends agree").first
    verdict.wait_for(timeout=120_000)
    assert verdict.inner_text().startswith("sunflowers")
    page.screenshot(path=str(tmp_path / "predict.png"), full_page=True)
    page.close()


PHONE = {"width": 390, "height": 844}


def no_sideways_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_on_a_phone_the_pages_fit_the_width_and_predict_works(app_url, browser, tmp_path):
    """At a phone's viewport (390×844, touch): Home, Predict (upload and camera reachable, the
    answer readable) and Benchmark fit without sideways scrolling. The screenshots are kept in
    test-artifacts/ (not committed) for a person to look at."""
    shots = ROOT / "test-artifacts"
    shots.mkdir(exist_ok=True)
    photo = tmp_path / "daisy.jpg"
    photo.write_bytes(mini_photo("daisy"))
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    page = context.new_page()
    page.goto(app_url, timeout=60_000)
    page.get_by_text("Show the whole card").wait_for(timeout=120_000)
    # The first screen: what this is, the invitation, and the result in words.
    for text in ("TensorFlow → OpenVINO", "faster"):
        box = page.get_by_text(text).first.bounding_box()
        assert box is not None and box["y"] + box["height"] <= PHONE["height"], (text, box)
    try_it = page.get_by_role("button", name="Try it on a photo")
    assert try_it.bounding_box()["y"] + try_it.bounding_box()["height"] <= PHONE["height"]
    assert no_sideways_scroll(page)
    page.screenshot(path=str(shots / "phone-home.png"), full_page=True)

    # No photo at hand: one tap gives a verdict, on Predict's first screen.
    try_it.tap()
    page.get_by_text("Use the camera").wait_for(state="visible", timeout=60_000)
    page.locator("input[type=file]").first.wait_for(state="attached", timeout=60_000)  # upload reachable too
    verdict = page.get_by_text("backends agree").first
    verdict.wait_for(timeout=120_000)
    assert verdict.inner_text().startswith("daisy, one of the 5 kinds this model knows")
    box = verdict.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    assert box["y"] + box["height"] <= PHONE["height"], box  # the answer is on the first screen, unscrolled
    page.get_by_text("Flickr photo").first.wait_for(timeout=60_000)  # the example's credit
    page.get_by_text("not a flower", exact=True).tap()  # the non-flower example
    page.get_by_text("This looks like").first.wait_for(timeout=120_000)
    page.locator("input[type=file]").first.set_input_files(str(photo))  # and an upload beside it
    page.get_by_text("daisy.jpg").first.wait_for(timeout=120_000)
    assert no_sideways_scroll(page)
    table = page.locator("table").filter(has_text="dandelion").filter(has_text="OpenVINO INT8").first  # the top k
    table_box = table.bounding_box()
    assert table_box is not None and table_box["x"] + table_box["width"] <= PHONE["width"], table_box
    assert page.locator(".js-plotly-plot").count() == 0  # no chart library to load for an answer
    verdict.scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "phone-predict.png"))

    page.goto(f"{app_url}/benchmark", timeout=60_000)
    page.get_by_text("Saved runs", exact=True).wait_for(timeout=120_000)
    wait_for_script(page)
    assert no_sideways_scroll(page)
    for chart in page.locator(".js-plotly-plot").all()[:3]:
        chart_box = chart.bounding_box()
        assert chart_box is None or chart_box["width"] <= PHONE["width"]
    page.screenshot(path=str(shots / "phone-benchmark.png"), full_page=True)

    page.goto(f"{app_url}/tune", timeout=60_000)
    page.locator(".st-key-tune button").wait_for(timeout=120_000)  # the button, found by its widget key
    assert no_sideways_scroll(page)
    context.close()


def test_a_first_choice_of_openvino_fp32_on_a_fresh_server_answers(browser):
    """The shipped folder has no FP32 IR: choosing it first on a fresh server remakes it from the Keras
    model (TensorFlow imported once, on the loading thread) while the others answer, and then it
    answers too."""
    with streamlit_server("fp32-first") as (url, _):
        page = browser.new_page()
        page.goto(f"{url}/predict", timeout=60_000)
        page.get_by_text("Tap an example, or upload").wait_for(timeout=120_000)
        wait_for_script(page)
        backends = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Backends").locator("input")
        backends.fill("OpenVINO FP32")
        backends.press("Enter")
        page.keyboard.press("Escape")
        page.locator('[data-testid="stMultiSelect"]').filter(has_text="OpenVINO FP32").wait_for(timeout=30_000)
        wait_for_script(page)
        page.get_by_text("daisy", exact=True).click()
        page.get_by_text("kinds this model knows").first.wait_for(timeout=120_000)
        # Once TensorFlow and the remade IR have joined, every backend, FP32 included, has answered.
        page.get_by_text("OpenVINO FP32:").first.wait_for(timeout=180_000)
        assert page.get_by_text("is left out").count() == 0
        page.close()

"""The real browser path: Chromium drives `streamlit run`."""

from conftest import choose, mini_photo, needs_chromium, needs_mini

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


def test_train_from_an_uploaded_zip_and_see_the_finished_model(app_url, browser, tmp_path):
    import re
    import time
    import zipfile

    from conftest import make_dataset

    # Large enough that an epoch outlasts the page's one-second refresh, so progress is seen moving.
    dataset = make_dataset(tmp_path / "colours", per_class=80)
    archive = tmp_path / "colours.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(dataset.rglob("*.jpg")):
            zf.write(f, f"colours/{f.relative_to(dataset)}")
    page = browser.new_page()
    page.goto(f"{app_url}/train", timeout=60_000)
    page.get_by_text("Upload an archive of class folders").click()
    page.locator("input[type=file]").first.set_input_files(str(archive))
    page.get_by_text("240 images in 3 classes").wait_for(timeout=120_000)

    choose(page, "Architecture", "tutorial_cnn")
    for label, value in (("Image size (px)", "256"), ("Epochs (head / all for the CNN)", "10"),
                         ("Model name", "browser-cnn")):
        box = page.get_by_role("textbox", name=label).or_(page.get_by_role("spinbutton", name=label)).first
        box.fill(value)
        box.press("Enter")  # commit each value before the next (a click right after fill can race it)
        page.wait_for_timeout(500)
    page.get_by_role("button", name="Train, convert and validate").click()

    # Progress advances: poll the live progress text and keep every distinct epoch seen.
    seen, ready = set(), page.get_by_text("browser-cnn is ready and selectable")  # the job ended, not its last step
    deadline = time.time() + 600
    while time.time() < deadline and not ready.count():
        for text in page.get_by_text(re.compile(r"epoch \d+ of 10")).all_inner_texts():
            seen.add(re.search(r"epoch (\d+) of 10", text).group(1))
        failed = page.get_by_text("Training failed")
        assert not failed.count(), failed.first.inner_text()
        page.wait_for_timeout(200)
    assert ready.count(), "training did not finish"
    assert len(seen) >= 2, f"progress was seen at epochs {seen} only"
    # The results table is a canvas grid; the model list below it is plain text.
    listing = page.get_by_text("variants: tensorflow, openvino-fp32, openvino-fp16, openvino-int8").first
    listing.wait_for(timeout=60_000)
    assert "browser-cnn" in listing.inner_text()
    page.screenshot(path=str(tmp_path / "train.png"), full_page=True)
    page.goto(f"{app_url}/predict", timeout=60_000)
    choose(page, "Model", "browser-cnn")
    page.get_by_text("Upload one or more flower photos").wait_for(timeout=120_000)
    page.close()

"""The real browser path: Chromium drives `streamlit run`, one server for the file (`app_url`) as
the public sees it, nothing configured: a visitor's answers, on a phone too, and what a stranger
might try. (A fresh server's first visit, the FP32 IR chosen first and remade, a sweep, and
training through the browser, from an uploaded archive to the finished model, are in
test_cloud_memory, inside Cloud's memory limit.)"""

import io
import shutil
import tarfile

from conftest import ROOT, choose, mini_photo, needs_chromium, needs_mini, wait_for_script

from core.app import workspace

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


def workspace_of(context) -> workspace.Workspace:
    """The private workspace the server gives this browser (derived from its XSRF cookie)."""
    cookie = next(c["value"] for c in context.cookies() if c["name"] == "_streamlit_xsrf")
    return workspace.Workspace(workspace.key_from_xsrf_cookie(cookie))


def evil_tar(tmp_path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for cls in ("a", "b"):
            info = tarfile.TarInfo(f"set/{cls}/1.jpg")
            info.size = 1
            tf.addfile(info, io.BytesIO(b"x"))
        link = tarfile.TarInfo("set/a/passwd.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    return buf.getvalue()


def test_visitor_has_no_paths_and_sees_only_their_own_models(app_url, browser, tiny_model, tmp_path):
    from conftest import _session_tmp

    a, b = browser.new_context(), browser.new_context()
    page_a, page_b = a.new_page(), b.new_page()
    for page in (page_a, page_b):
        page.goto(f"{app_url}/train", timeout=60_000)
        page.get_by_text("Role: visitor").wait_for(timeout=120_000)
    assert not page_a.get_by_text("Folder on the server").count() and not page_a.get_by_text("Archive URL").count()
    assert not page_a.get_by_role("textbox", name="Folder path").count()

    # Browser A has a model of its own and an uploaded archive; browser B sees neither.
    cache = _session_tmp / "visitor-server" / "cache"
    ws_a = workspace_of(a)
    mine = cache / "workspaces" / ws_a.key / "models" / "a-private-model"
    shutil.copytree(tiny_model, mine)
    archive = tmp_path / "evil.tgz"
    archive.write_bytes(evil_tar(tmp_path))
    page_a.get_by_text("Upload an archive of class folders").click()
    page_a.locator("input[type=file]").first.set_input_files(str(archive))
    refusal = page_a.get_by_text("This dataset cannot be used")
    refusal.wait_for(timeout=60_000)
    assert "unsafe" in refusal.inner_text() or "link" in refusal.inner_text()
    assert list((cache / "workspaces" / ws_a.key / "uploads").glob("*.tgz"))

    page_a.reload()
    choose(page_a, "Model", "a-private-model (yours)")
    page_b.reload()
    page_b.get_by_text("Your models").wait_for(timeout=60_000)
    page_b.locator('[data-testid="stSelectbox"]').filter(has_text="Model").click()
    options = page_b.locator('[role="option"]').all_inner_texts()
    assert options and not any("a-private-model" in o for o in options)
    page_b.keyboard.press("Escape")
    page_b.get_by_text("Models you train appear here").wait_for(timeout=30_000)  # B's own list: empty
    a.close()
    b.close()

"""The real browser path: Chromium drives one `streamlit run` server for the file, as a newcomer
deploys it (nothing configured, so everyone is a visitor; the default model), inside Community
Cloud's 2700 MB memory cgroup throughout (where one can be made: it needs root; elsewhere the
memory checks skip): a fresh server's first visit (the FP32 IR chosen first and remade), a sweep
while another visitor predicts, an upload, a phone, and what a stranger might try; at the end,
nothing was killed and the peak stayed in the budget. Opt-in (`-m cloud_full`):
training through the browser, from an uploaded archive to the finished model. (The full checks,
on all photos and at fractions of a core: test_cloud_memory, test_cloud_cpu.)"""

import io
import json
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import ROOT, choose, mini_photo, needs_chromium, needs_mini, needs_weights, streamlit_server, wait_for_script
from cgroup import MemoryCgroup
from test_cloud_memory import (LIMIT_MB, HealthProbe, health_ms, own_model_on_predict, peaks,
                               predict_in_another_browser, predict_photos, real_photos, smaller_archive, stage,
                               sweep_on_page, train_on_page)

from core.app import access, workspace

pytestmark = [needs_chromium, needs_mini, needs_weights]


@dataclass
class Server:
    url: str
    process: object
    group: MemoryCgroup | None
    no_group: str  # why there is no cgroup (it needs root): the memory checks skip, the others run
    folder: Path  # the server's own models, cache (visitors' workspaces) and results
    report: dict = field(default_factory=lambda: {"limit_mb": LIMIT_MB})

    def memory_checked(self) -> MemoryCgroup:
        if self.group is None:
            pytest.skip(self.no_group)
        return self.group


@pytest.fixture(scope="module")
def server():
    """The file's server, in the 2700 MB memory cgroup where one can be made (its tests print what
    they measured)."""
    from conftest import _session_tmp

    group = MemoryCgroup.create(LIMIT_MB)
    no_group = group if isinstance(group, str) else ""
    group = None if no_group else group
    try:
        with streamlit_server("cloud-fast", preexec_fn=group.enter if group else None) as (url, process):
            yield Server(url, process, group, no_group, _session_tmp / "cloud-fast")
    finally:
        if group:
            group.close()


def test_a_first_visit_and_a_sweep_fit_in_clouds_memory(server, browser, tmp_path):
    """A first visitor's photos (and a 12 MP phone JPEG) answered by every default backend and by
    OpenVINO FP32, which the visitor adds first (the shipped folder has none: it is remade from the
    Keras model, TensorFlow imported once, on the loading thread, while the others answer); then a
    10-photo INT8 sweep while another visitor predicts, the health endpoint answering within 2 s."""
    group, report, url = server.group, server.report, server.url
    probe = HealthProbe(url)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    photos = real_photos(tmp_path, per_class=1)
    probe.phase = "first predict"
    report["first_answer_s"] = predict_photos(page, url, photos, also="OpenVINO FP32")
    if group:
        report["after_predict"] = stage(group, server.process)
    probe.phase = "sweep"

    def another_visitor() -> None:
        report["predict_during_sweep_s"] = predict_in_another_browser(browser, url, photos[0])

    report["sweep_s"] = sweep_on_page(page, url, ("openvino-int8", "10"), while_sweeping=another_visitor)
    probe.stop()
    report["health_slowest_ms"] = {k: round(v) for k, v in probe.slowest_by_phase.items()}
    # While a sweep runs and another visitor predicts: 0.3 s alone on the AVX2 machine, up to 1.2 s
    # with the suite's other worker busy, so bounded at 2 s.
    assert probe.slowest_by_phase.get("sweep", 0) < 2000, probe.slowest_by_phase
    assert not probe.failures, probe.failures[:3]
    assert server.process.poll() is None, "the server died"
    page.close()
    if group:
        report |= peaks(group)
        print("cloud memory:", json.dumps(report))
        assert report["oom_kills"] == 0 and report["peak_rss_mb"] <= access.MEMORY_BUDGET_MB, report


# The training journey takes 90 s to 2 minutes, over a third of the suite's time on 2 cores: opt-in.
@pytest.mark.cloud_full
def test_training_through_the_browser_fits_in_clouds_memory(server, browser, tmp_path):
    """60 real photos uploaded as an archive, "Quick" trained at 112 px with one fine-tuning epoch
    (converted, validated, calibrated) while another visitor predicts, watching the epoch counter
    advance; the finished model in the page's list and loaded on Predict. After two photos answered on
    Predict, as when it ran after the first visit: on a server still loading Predict's backends
    (TensorFlow's import holds the GIL), the page showed only the last of three short epochs."""
    group = server.memory_checked()  # the point of this long check is the job's memory
    photos = real_photos(tmp_path, per_class=1)[:2]
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    predict_photos(page, server.url, photos)
    archive = smaller_archive(tmp_path, per_class=12)
    probe = HealthProbe(server.url)
    probe.phase = "training"
    report = server.report
    report |= train_on_page(page, browser, server.url, archive, "Quick", True, 112, 1, 900, photos[0])
    report["after_training"] = stage(group, server.process)
    own_model_on_predict(page, server.url)
    report["after_own_model_loaded"] = stage(group, server.process)
    probe.stop()
    report["health_slowest_ms_training"] = round(probe.slowest_ms)
    assert not probe.failures, probe.failures[:3]
    page.close()


PHONE = {"width": 390, "height": 844}


def no_sideways_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_on_a_phone_the_pages_fit_the_width_and_predict_works(server, browser, tmp_path):
    """At a phone's viewport (390×844, touch): Home, Predict (upload and camera reachable, the
    answer readable, an uploaded photo answered) and Benchmark fit without sideways scrolling. The
    screenshots are kept in test-artifacts/ (not committed) for a person to look at."""
    shots = ROOT / "test-artifacts"
    shots.mkdir(exist_ok=True)
    photo = tmp_path / "sunflower.jpg"
    photo.write_bytes(mini_photo("sunflowers"))
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    page = context.new_page()
    page.goto(server.url, timeout=60_000)
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
    page.locator("input[type=file]").first.set_input_files(str(photo))  # and an upload beside it, answered
    page.get_by_text("sunflower.jpg").first.wait_for(timeout=120_000)
    page.get_by_text("backends agree").filter(has_text="sunflowers").first.wait_for(timeout=120_000)
    wait_for_script(page)  # the layout once the run has ended, not midway through a rerun
    assert no_sideways_scroll(page)
    # The top-k tables on screen: the upload's (the not-a-flower example's stays folded in its expander).
    tables = page.locator("table").filter(has_text="dandelion").filter(has_text="OpenVINO INT8").filter(visible=True)
    assert tables.count() >= 1
    for table in tables.all():
        table_box = table.bounding_box()
        assert table_box is not None and table_box["x"] + table_box["width"] <= PHONE["width"], table_box
    assert page.locator(".js-plotly-plot").count() == 0  # no chart library to load for an answer
    verdict.scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "phone-predict.png"))

    page.goto(f"{server.url}/benchmark", timeout=60_000)
    page.get_by_text("Saved runs", exact=True).wait_for(timeout=120_000)
    wait_for_script(page)
    assert no_sideways_scroll(page)
    for chart in page.locator(".js-plotly-plot").all()[:3]:
        chart_box = chart.bounding_box()
        assert chart_box is None or chart_box["width"] <= PHONE["width"]
    page.screenshot(path=str(shots / "phone-benchmark.png"), full_page=True)

    page.goto(f"{server.url}/tune", timeout=60_000)
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


def test_visitor_has_no_paths_and_sees_only_their_own_models(server, browser, tiny_model, tmp_path):
    a, b = browser.new_context(), browser.new_context()
    page_a, page_b = a.new_page(), b.new_page()
    for page in (page_a, page_b):
        page.goto(f"{server.url}/train", timeout=60_000)
        page.get_by_text("Role: visitor").wait_for(timeout=120_000)
    assert not page_a.get_by_text("Folder on the server").count() and not page_a.get_by_text("Archive URL").count()
    assert not page_a.get_by_role("textbox", name="Folder path").count()

    # Browser A has a model of its own and an uploaded archive; browser B sees neither.
    cache = server.folder / "cache"
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


def test_the_server_was_never_killed_and_stayed_in_the_budget(server):
    """Last: over every visit of this file, in 2700 MB."""
    assert server.process.poll() is None, "the server died"
    assert health_ms(server.url) < 10_000
    report = server.report | peaks(server.memory_checked())
    print("cloud memory, the whole file:", json.dumps(report))
    assert report["oom_kills"] == 0 and report["peak_rss_mb"] <= access.MEMORY_BUDGET_MB, report

"""The app on a fraction of a core, as Community Cloud may give it (0.078 to 2 cores): the server
runs under a CPU quota (a cgroup's CFS quota) inside the 2700 MB memory cgroup, driven by Chromium.

The fast check (CI): at 0.5 core, a first visitor's photo is answered with every backend, and the
health endpoint answers within a second while another visitor predicts and a sweep runs. The full
check, `python -m pytest -m cloud_full -k fraction -n 0 -s`, trains "Quick" on all photos and runs
the "Quick" sweep at 1 and at 0.5 core; docs/deploying.md quotes its figures.
"""

import json
import time

import pytest
from conftest import SHARED, mini_photo, needs_chromium, needs_mini, needs_weights, streamlit_server
from test_cloud_memory import (HealthProbe, answer, cloud_groups, keep_only, predict_in_another_browser,
                               run_in_cloud_budget, wait_for_own_sweep)

from core.app import access

pytestmark = [needs_chromium, needs_mini, needs_weights]


@pytest.mark.cloud_full
@pytest.mark.parametrize("cores", [1.0, 0.5])
def test_quick_training_and_sweep_on_a_fraction_of_a_core(browser, tmp_path, cores):
    """Community Cloud may give an app less than a core: Quick on all photos and the Quick sweep
    finish within the visitor caps, and the server keeps answering."""
    report = run_in_cloud_budget(browser, tmp_path, SHARED / "flowers" / "flower_photos.tgz", "Quick", "Quick",
                                 train_timeout_s=access.VISITOR_LIMITS.train_max_seconds + 300, upload=False,
                                 cores=cores)
    assert report["train_job_s"] <= access.VISITOR_LIMITS.train_max_seconds, report


def test_a_half_core_server_keeps_answering(browser, tmp_path):
    """The fast subset of the CPU-quota check: under 0.5 core (and the memory cgroup), a first
    visitor's photo is answered with every backend, and health answers within a second while
    another visitor predicts and a sweep runs."""
    group, quota = cloud_groups(0.5)
    photo = tmp_path / "rose.jpg"
    photo.write_bytes(mini_photo("roses"))
    report = {"cores": 0.5}
    try:
        with streamlit_server("cloud-half-core", preexec_fn=lambda: (group.enter(), quota.enter())) as (url, server):
            probe = HealthProbe(url)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            t0 = time.time()
            page.goto(f"{url}/predict", timeout=120_000)
            page.locator("input[type=file]").first.set_input_files(str(photo))
            answer(page).first.wait_for(timeout=180_000)
            report["first_answer_s"] = round(time.time() - t0, 1)
            page.goto(f"{url}/benchmark", timeout=120_000)
            sizes = page.get_by_role("textbox", name="Test sizes (images)")
            sizes.wait_for(timeout=120_000)
            keep_only(page, "Backends", ["ov-int8"])
            sizes.fill("10")
            page.get_by_role("spinbutton", name="Repeats").fill("1")
            page.get_by_role("button", name="Run sweep").click()
            report["predict_during_sweep_s"] = predict_in_another_browser(browser, url, photo)
            wait_for_own_sweep(page, 300_000)
            probe.stop()
            report["health_slowest_ms"] = round(probe.slowest_ms, 1)
            assert not probe.failures, probe.failures[:3]
            assert server.poll() is None, "the server died"
            page.close()
    finally:
        report |= {"peak_rss_mb": round(group.peak_rss_mb), "cpu_throttled_s": round(quota.throttled_s, 1),
                   "oom_kills": group.oom_kills}
        quota.close()
        group.close()
        print("half core:", json.dumps(report))
    assert report["health_slowest_ms"] < 1000, report
    assert report["oom_kills"] == 0


def test_the_smallest_cloud_app_serves_home_and_predict(browser, tmp_path):
    """Cloud's smallest app, 690 MB and half a core: Home, then Predict answers a photo with every
    default backend (TensorFlow included), and nothing is killed for memory (the kernel reclaims
    the libraries' file pages before it kills)."""
    group, quota = cloud_groups(0.5, memory_mb=690)
    photo = tmp_path / "daisy.jpg"
    photo.write_bytes(mini_photo("daisy"))
    report = {"cores": 0.5, "limit_mb": 690}
    try:
        with streamlit_server("cloud-smallest", preexec_fn=lambda: (group.enter(), quota.enter())) as (url, server):
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url, timeout=120_000)
            page.get_by_text("Library versions").wait_for(timeout=180_000)
            page.goto(f"{url}/predict", timeout=120_000)
            page.locator("input[type=file]").first.set_input_files(str(photo))
            answer(page).first.wait_for(timeout=180_000)
            page.wait_for_timeout(3000)
            assert server.poll() is None, "the server was killed"
            assert page.get_by_text("all 4 backends agree").count() == 1  # the light model: every file shipped
            page.close()
    finally:
        report |= {"peak_rss_mb": round(group.peak_rss_mb), "oom_kills": group.oom_kills}
        quota.close()
        group.close()
        print("smallest app:", json.dumps(report))
    assert report["oom_kills"] == 0

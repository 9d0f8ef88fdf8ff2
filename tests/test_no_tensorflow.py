"""The app as Community Cloud's Python 3.14 installs it: without the TensorFlow stack (no wheel
there; requirements.txt's markers leave it out). A second environment, .venv/notf, holds exactly
the packages requirements.txt keeps for Python 3.14 (.ci/run makes it with
scripts/requirements_for_python.py); the real app runs in it, in Chromium, every page visited."""

import json
import subprocess

import pytest
import skimage.data
from PIL import Image

from conftest import MODELS, ROOT, mini_photo, needs_chromium, needs_mini, streamlit_server, wait_for_script

NO_TF_PYTHON = ROOT / ".venv" / "notf" / "bin" / "python"
NOTICE = ".st-key-tensorflow-missing"  # app_pages.session.TF_MISSING_KEY
ERRORS = '[data-testid="stException"]'
needs_env = pytest.mark.skipif(not NO_TF_PYTHON.exists(),
                               reason=f"{NO_TF_PYTHON} is absent (.ci/run makes it: the packages of requirements.txt "
                                      "for Python 3.14, which has no TensorFlow)")
pytestmark = [needs_env]


def run(*code: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(NO_TF_PYTHON), *code], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_the_environment_really_lacks_tensorflow():
    probe = run("-c", "import importlib.util as u; print([n for n in ('tensorflow', 'keras', 'tf2onnx') if u.find_spec(n)])")
    assert probe.stdout.strip() == "[]", probe.stdout + probe.stderr


@needs_mini
def test_cli_sweeps_openvino_and_the_peers_without_tensorflow(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        (photos / f"daisy{i}.jpg").write_bytes(mini_photo("daisy", i))
    sweep = run("-m", "core", "benchmark", "--model-dir", str(MODELS / "flowers-mobilenetv2"),
                "--backends", "openvino-fp32,openvino-int8,onnxruntime,litert", "--sizes", "3", "--batches", "1",
                "--repeats", "1", "--images", str(photos), "--out", str(tmp_path / "out"))
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    run_json = next((tmp_path / "out").glob("*/run.json"))
    rows = json.loads(run_json.read_text())["rows"]
    assert {r["settings"]["backend"] for r in rows} == {"openvino-fp32", "openvino-int8", "onnxruntime", "litert"}
    assert all(r["result"]["throughput_ips"] > 0 for r in rows)


def test_training_refuses_with_the_fix():
    train = run("-m", "core", "train", "--data", str(ROOT / "nowhere"), "--out", "/tmp/never")
    assert train.returncode != 0
    assert "Traceback" not in train.stderr, train.stderr[-2000:]
    assert "3.12 or 3.13" in train.stderr + train.stdout


def assert_ran_clean(page, path: str) -> None:
    """The page's script has run to its end, with no exception shown."""
    wait_for_script(page)
    assert page.locator(ERRORS).count() == 0, f"{path} shows an exception"


@needs_chromium
@needs_mini
def test_every_page_without_tensorflow_in_chromium(browser, tmp_path):
    photo = tmp_path / "tulip.jpg"
    photo.write_bytes(mini_photo("tulips"))
    cat = tmp_path / "cat.png"
    Image.fromarray(skimage.data.chelsea()).save(cat)
    # cold: as on Cloud's Python 3.14, the ImageNet check is made on this server, without Keras.
    with streamlit_server("no-tensorflow", python=str(NO_TF_PYTHON), cold=True) as (url, _):
        page = browser.new_page()
        page.goto(url, timeout=60_000)
        page.get_by_text("Show the whole card").wait_for(timeout=120_000)  # Home, drawn to its end
        assert page.locator(NOTICE).is_visible()
        assert_ran_clean(page, "/")

        page.goto(f"{url}/predict", timeout=60_000)
        page.locator(NOTICE).wait_for(timeout=120_000)
        page.locator("input[type=file]").first.wait_for(state="attached", timeout=60_000)
        page.locator("input[type=file]").first.set_input_files([str(photo), str(cat)])
        answer = page.locator('[data-testid="stAlertContentSuccess"], [data-testid="stAlertContentWarning"]')
        page.get_by_text("ImageNet check:").first.wait_for(timeout=120_000)  # a latency line: answered
        assert answer.count() >= 2
        page.get_by_text("This looks like Egyptian cat").wait_for(timeout=30_000)  # the check runs here too
        page.get_by_text("How to read these results").click()
        assert page.get_by_text("The ImageNet check does not run on this server").count() == 0
        (ROOT / "test-artifacts").mkdir(exist_ok=True)
        page.screenshot(path=str(ROOT / "test-artifacts" / "no-tensorflow-predict.png"), full_page=True)
        assert_ran_clean(page, "/predict")

        page.goto(f"{url}/benchmark", timeout=60_000)
        page.get_by_text("Saved runs", exact=True).wait_for(timeout=120_000)
        assert page.locator(NOTICE).is_visible()
        assert_ran_clean(page, "/benchmark")

        page.goto(f"{url}/tune", timeout=60_000)
        page.locator(NOTICE).wait_for(timeout=120_000)
        assert page.locator(".st-key-tune button").is_disabled()  # the accuracy guard needs TensorFlow
        assert_ran_clean(page, "/tune")

        page.goto(f"{url}/train", timeout=60_000)
        page.locator(NOTICE).wait_for(timeout=120_000)
        assert page.get_by_role("button", name="Train, convert and validate").count() == 0
        assert_ran_clean(page, "/train")
        page.close()


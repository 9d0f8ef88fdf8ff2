"""SIGKILL in the middle of training, conversion or a benchmark leaves nothing half-made."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, app_test
from core.measure import runs
from core.model import registry


def start_cli(*args):
    env = os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "core", *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def kill_when(proc, marker: str, timeout: float = 300) -> str:
    """Read the job's output until `marker` appears, then SIGKILL it mid-work."""
    seen = []
    deadline = time.time() + timeout
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return "".join(seen)
        if time.time() > deadline:
            break
    proc.kill()
    pytest.fail(f"never saw {marker!r}:\n{''.join(seen)[-3000:]}")


def assert_app_starts_clean(models_root, monkeypatch):
    monkeypatch.setenv("FLOWERS_MODELS_DIR", str(models_root))
    at = app_test()
    assert not list(models_root.glob(".tmp-*")), "stale temp folders are removed at start-up"
    return at


def test_kill_during_training(tiny_dataset, tmp_path, monkeypatch):
    root = tmp_path / "models"
    proc = start_cli("train", "--data", tiny_dataset, "--arch", "tutorial_cnn", "--image-size", "64",
                     "--epochs", "500", "--patience", "500", "--batch-size", "4", "--out", root / "killed")
    kill_when(proc, "epoch 2/")
    assert registry.list_models(root) == []
    assert_app_starts_clean(root, monkeypatch)


# Mid-conversion (the FP16 IR written, the INT8 IR half-made: every IR is written the same way), and
# mid-validation (every file written, the card not yet).
MARKERS = ["writing INT8 IR", "running openvino-fp16"]


def test_kill_during_conversion(tiny_model, tmp_path, monkeypatch):
    """Two conversions at once, each killed at another point (in parallel to keep the suite short)."""
    from concurrent.futures import ThreadPoolExecutor

    from core.runtimes.backends import load_backend

    roots = [tmp_path / f"models-{i}" for i in range(len(MARKERS))]
    procs = []
    for root in roots:
        shutil.copytree(tiny_model, root / "tiny")
        shutil.rmtree(root / "tiny" / "openvino")
        procs.append(start_cli("convert", "--model-dir", root / "tiny", "--calibration-size", "8"))
    with ThreadPoolExecutor(len(procs)) as pool:
        list(pool.map(kill_when, procs, MARKERS))
    for root in roots:
        model = root / "tiny"
        card = json.loads((model / registry.METADATA_FILE).read_text())  # still whole, valid JSON
        assert card["name"] == "tiny"
        [entry] = registry.list_models(root)
        for variant in entry.variants:  # every listed variant is complete and loads
            load_backend(model, variant)
        assert_app_starts_clean(root, monkeypatch)
        assert not list(model.rglob(".tmp-*")) and not list(model.rglob(".old-*"))


def test_kill_during_benchmark(tiny_model, tiny_dataset, tmp_path):
    out = tmp_path / "results"
    proc = start_cli("benchmark", "--model-dir", tiny_model, "--backends", "openvino-fp32", "--sizes", "4,8",
                     "--batch", "1", "--repeats", "50", "--images", tiny_dataset, "--out", out)
    kill_when(proc, "loaded, measuring")
    assert not out.exists(), "a sweep writes nothing until its run is complete"
    assert runs.list_runs(out) == []


KILLED_INSIDE = """
import os, signal, sys
from pathlib import Path
from core import atomic
with atomic.atomic_dir(Path(sys.argv[1])) as tmp:
    (tmp / "half.json").write_text("{")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_kill_inside_atomic_dir_leaves_only_a_hidden_temp_that_is_cleaned(tmp_path):
    target = tmp_path / "models" / "m"
    proc = subprocess.run([sys.executable, "-c", KILLED_INSIDE, str(target)], cwd=ROOT)
    assert proc.returncode == -signal.SIGKILL
    left = list(target.parent.iterdir())
    assert not target.exists() and len(left) == 1 and left[0].name.startswith(".tmp-m-")
    assert registry.list_models(target.parent) == []
    assert registry.remove_stale(target.parent) == left and list(target.parent.iterdir()) == []

"""The CLI end to end, as a user runs it (subprocesses, real photos when present)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import MINI_ARCHIVE, ROOT, make_dataset, mini_photo, needs_mini, needs_weights


def run_cli(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "core", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stderr[-3000:]}")
    return proc


@needs_mini
@needs_weights
def test_offline_mobilenet_train_convert_evaluate_predict(tmp_path):
    out = tmp_path / "mini-model"
    run_cli("train", "--data", MINI_ARCHIVE, "--arch", "mobilenet_v2", "--alpha", "0.35", "--epochs", "2",
            "--out", out)
    run_cli("convert", "--model-dir", out, "--calibration-size", "40")
    report = json.loads(run_cli("evaluate", "--model-dir", out, "--data", MINI_ARCHIVE, "--json").stdout)
    assert report["n_images"] == 100
    assert set(report["variants"]) == {"tensorflow", "openvino-fp32", "openvino-fp16", "openvino-int8"}
    assert report["variants"]["openvino-fp32"]["agreement_with_tf"] >= 0.99
    assert report["variants"]["tensorflow"]["accuracy"] > 0.4  # ImageNet features: well above chance (0.2)

    # --split val re-creates the model's own validation split: the numbers match metadata.json.
    split = json.loads(run_cli("evaluate", "--model-dir", out, "--data", MINI_ARCHIVE, "--split", "val",
                               "--json").stdout)
    meta = json.loads((out / "metadata.json").read_text())
    assert split["n_images"] == meta["accuracy"]["val"]["n_images"] == 20
    for variant, row in split["variants"].items():
        assert row["accuracy"] == pytest.approx(meta["accuracy"]["val"][variant])

    photo = tmp_path / "daisy.jpg"
    photo.write_bytes(mini_photo("daisy"))
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("not a photo")
    proc = run_cli("predict", "--model-dir", out, "--json", photo, not_image, check=False)
    assert proc.returncode == 1  # one file failed; the other was still predicted
    good, bad = json.loads(proc.stdout)["images"]
    assert set(good["results"]) == set(report["variants"])
    assert all(r["latency_ms"] > 0 for r in good["results"].values())
    assert "not an image" in bad["error"]


def test_errors_are_messages_not_tracebacks(tmp_path):
    make_dataset(tmp_path / "one", per_class=3, classes={"only": (1, 2, 3)})
    proc = run_cli("train", "--data", tmp_path / "one", "--arch", "tutorial_cnn", "--out", tmp_path / "m",
                   check=False)
    assert proc.returncode == 2 and "error: a dataset needs at least 2 class folders" in proc.stderr
    proc = run_cli("evaluate", "--model-dir", tmp_path / "nothing", "--data", tmp_path, check=False)
    assert proc.returncode == 2 and "error:" in proc.stderr and "Traceback" not in proc.stderr


def test_core_never_imports_streamlit():
    offenders = [p.name for p in (ROOT / "core").glob("*.py") if "import streamlit" in p.read_text()
                 or "from streamlit" in p.read_text()]
    assert offenders == []

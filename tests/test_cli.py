"""The CLI end to end, as a user runs it (real photos when present). The error messages run
`python -m core` in a subprocess (what a terminal shows); training, conversion, evaluating and
predicting call the same `cli.main` in this process (a subprocess would only add another
TensorFlow import, 5 s of CPU: the crash tests and test_readme run the CLI as a process)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import MINI_ARCHIVE, ROOT, make_dataset, mini_photo, needs_mini
from core.model import recipes, registry


def cli_here(capsys, *args) -> tuple[int, str]:
    """`python -m core ARGS` in this process: exit code and standard output."""
    from core import cli

    capsys.readouterr()
    code = cli.main([str(a) for a in args])
    return code, capsys.readouterr().out


def run_cli(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "core", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stderr[-3000:]}")
    return proc


@needs_mini
def test_train_convert_evaluate_predict_on_real_photos(tmp_path, capsys):
    """The whole CLI path on the mini archive of real photos (the small CNN keeps it quick; the
    offline ImageNet-weights path is trained through the browser in test_browser, `-m cloud_full`)."""
    out = tmp_path / "mini-model"
    code, _ = cli_here(capsys, "train", "--data", MINI_ARCHIVE, "--recipe", "Tutorial CNN", "--image-size", "64",
                       "--epochs", "2", "--val-fraction", "0.2", "--out", out)
    assert code == 0
    code, _ = cli_here(capsys, "convert", "--model-dir", out, "--calibration-size", "40")
    assert code == 0
    # --split val re-creates the model's own validation split: the numbers match its card.
    code, stdout = cli_here(capsys, "evaluate", "--model-dir", out, "--data", MINI_ARCHIVE, "--split", "val", "--json")
    split = json.loads(stdout)
    card = registry.read_card(out)
    assert split["n_images"] == card.scores["val"].n_images == 20
    assert set(split["accuracy"]) == {"tensorflow", "openvino-fp32", "openvino-fp16", "openvino-int8"}
    for variant, accuracy in split["accuracy"].items():
        assert accuracy == pytest.approx(card.scores["val"].accuracy[variant])
    assert split["agreement_with_tf"]["openvino-fp32"] == 1.0 and split["max_prob_diff"]["openvino-fp32"] < 1e-4

    photo = tmp_path / "daisy.jpg"
    photo.write_bytes(mini_photo("daisy"))
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("not a photo")
    code, stdout = cli_here(capsys, "predict", "--model-dir", out, "--json", photo, not_image)
    assert code == 1  # one file failed; the other was still predicted
    good, bad = json.loads(stdout)["images"]
    assert set(good["results"]) == set(split["accuracy"])
    assert all(r["latency_ms"] > 0 for r in good["results"].values())
    assert "not an image" in bad["error"]


def test_flags_come_from_the_settings_dataclasses():
    import dataclasses

    from core import cli, settings

    parser = cli.build_parser()
    args = parser.parse_args(["train", "--recipe", "Quick", "--batch-size", "8", "--no-augment", "--out", "x"])
    cfg = cli.config_from(recipes.TrainConfig, args, dataclasses.asdict(recipes.RECIPES["Quick"].config))
    assert cfg == dataclasses.replace(recipes.RECIPES["Quick"].config, batch_size=8, augment=False)
    args = parser.parse_args(["benchmark", "--batch", "1,8", "--backends", "tf-serving,ov-int8,openvino-fp32"])
    sweep = cli.config_from(settings.SweepConfig, args)
    # Older spellings still work, and the user is told the catalogue's names.
    assert sweep.batches == [1, 8] and sweep.backends == ["tensorflow", "openvino-int8", "openvino-fp32"]
    assert settings.renamed(args.backends) == ["'tf-serving' is now 'tensorflow'", "'ov-int8' is now 'openvino-int8'"]
    assert parser.parse_args(["export-serving", "--variant", "int8", "--out", "x"]).variant == "openvino-int8"
    assert sweep.sizes == settings.SweepConfig().sizes
    for cls, command in ((recipes.TrainConfig, "train"), (settings.SweepConfig, "benchmark"),
                         (settings.OVSettings, "predict")):
        sub = parser._subparsers._group_actions[0].choices[command]
        assert {f.name for f in dataclasses.fields(cls)} <= {a.dest for a in sub._actions}, command


def test_errors_are_messages_not_tracebacks(tmp_path):
    make_dataset(tmp_path / "one", per_class=3, classes={"only": (1, 2, 3)})
    proc = run_cli("train", "--data", tmp_path / "one", "--arch", "tutorial_cnn", "--out", tmp_path / "m",
                   check=False)
    assert proc.returncode == 2 and "error: a dataset needs at least 2 class folders" in proc.stderr
    proc = run_cli("evaluate", "--model-dir", tmp_path / "nothing", "--data", tmp_path, check=False)
    assert proc.returncode == 2 and "error:" in proc.stderr and "Traceback" not in proc.stderr


def test_core_imports_no_streamlit_and_no_runtime():
    """Importing every core module in a fresh interpreter loads neither Streamlit (core is UI-free)
    nor TensorFlow, OpenVINO or ONNX Runtime (they are imported only by the code that runs them)."""
    code = ("import importlib, pkgutil, sys, core\n"
            "names = [m.name for m in pkgutil.walk_packages(core.__path__, 'core.') if not m.name.endswith('__main__')]\n"
            "for n in names: importlib.import_module(n)\n"
            "print(len(names), sorted({k.split('.')[0] for k in sys.modules}"
            " & {'streamlit', 'tensorflow', 'keras', 'openvino', 'onnxruntime'}))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    count, loaded = proc.stdout.split(" ", 1)
    assert int(count) >= 20 and loaded.strip() == "[]", proc.stderr

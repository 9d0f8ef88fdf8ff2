"""The README's commands, as written, on a fresh copy of what git tracks: the shipped models without
an FP32 IR, peer files or tuned.json, and `../shared` beside the copy, as CI's clone has it.

The default run checks the quick ones (`streamlit run` answering, the first `predict` line: a cold
process remakes the FP32 IR while TensorFlow loads); `python -m pytest -m readme` runs every
command, with smaller budgets and photo counts where a flag sets them (`SMALLER`)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import MINI_ARCHIVE, ROOT, SHARED, _imagenet_cache, needs_mini

README = ROOT / "README.md"
# Flags whose value only sets how much work a command does, and the value a test gives them.
SMALLER = {"--sizes": "4", "--batches": "1", "--budget-s": "200"}
EXTRA = {"train": ["--epochs", "1", "--fine-tune-epochs", "1"]}  # one epoch of each phase


def readme_commands() -> list[str]:
    """Every command line of the README's bash blocks, split at `&&`."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    return [part.strip() for line in lines if line for part in line.split("&&")]


def core_commands(kinds: tuple[str, ...] | None = None) -> list[list[str]]:
    """The `python -m core …` commands as argument lists (after `-m core`), with `SMALLER` budgets."""
    commands = []
    for line in readme_commands():
        args = shlex.split(line)
        if args[:3] != ["python", "-m", "core"] or (kinds and args[3] not in kinds):
            continue
        args = args[3:]
        for i, arg in enumerate(args[:-1]):
            if arg in SMALLER:
                args[i + 1] = SMALLER[arg]
        commands.append(args + EXTRA.get(args[0], []))
    return commands


@pytest.fixture(scope="module")
def fresh_copy(tmp_path_factory) -> Path:
    """What git tracks, copied to tmp/repo, with ../shared beside it (a link to the real one)."""
    root = tmp_path_factory.mktemp("fresh")
    repo = root / "repo"
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True,
                            timeout=60).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / name, repo / name)
    (root / "shared").symlink_to(SHARED)
    shipped = repo / "models" / "flowers-efficientnet-lite0"
    assert not (shipped / "openvino" / "fp32").exists() and not (shipped / "tuned.json").exists()
    assert not (shipped / "onnx").exists()
    return repo


def run(repo: Path, args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    """`python -m core ARGS` in the copy, as a user runs it (the app's code is the copy's). The cache
    folder shares the run's ImageNet classifier (its making is tested in test_openset and, in a
    cold server, test_cloud_cpu)."""
    (tmp / "cache").mkdir(exist_ok=True)
    if not (tmp / "cache" / "imagenet").exists():
        (tmp / "cache" / "imagenet").symlink_to(_imagenet_cache)
    env = os.environ | {"FLOWERS_CACHE_DIR": str(tmp / "cache"), "FLOWERS_RESULTS_DIR": str(tmp / "results"),
                        "FLOWERS_MODELS_DIR": str(repo / "models"), "FLOWERS_DATASET_MIRROR": str(MINI_ARCHIVE),
                        "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=1200)


def check(proc: subprocess.CompletedProcess, args: list[str]) -> None:
    assert proc.returncode == 0, f"{shlex.join(args)}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
    if "--json" in args:  # stdout holds exactly one JSON document, whatever a library printed
        json.loads(proc.stdout)


def test_the_readme_names_what_these_tests_run():
    lines = readme_commands()
    assert "streamlit run streamlit_app.py" in lines and "python -m pytest" in lines
    kinds = [c[0] for c in core_commands()]
    assert kinds[:2] == ["predict", "predict"] and {"evaluate", "benchmark", "tune", "train", "convert"} <= set(kinds)
    assert len(README.read_text().encode()) <= 8192  # a guide; the figures live in docs/results.md


@needs_mini
def test_the_quick_readme_command_works_on_a_fresh_copy(fresh_copy, tmp_path):
    """The first `predict` line on a fresh copy: the FP32 IR is remade from model.keras while
    TensorFlow loads for its own backend (two threads importing TensorFlow at once used to crash
    it, 4 runs in 4). Its `--json` form: test_cli, in process, and `-m readme`."""
    args = core_commands(("predict",))[0]
    proc = run(fresh_copy, args, tmp_path)
    check(proc, args)
    assert "daisy.jpg: daisy" in proc.stdout and "coffee.jpg: not one of the classes" in proc.stdout
    assert all(f"{variant} daisy" in proc.stdout
               for variant in ("tensorflow", "openvino-fp32", "openvino-fp16", "openvino-int8"))


def test_streamlit_run_as_written_answers(fresh_copy, tmp_path):
    from core.serve import serving

    port = serving.free_port()
    env = os.environ | {"FLOWERS_CACHE_DIR": str(tmp_path / "cache"), "FLOWERS_MODELS_DIR": str(fresh_copy / "models")}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true"],
                            cwd=fresh_copy, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).status == 200
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "streamlit did not start"
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@needs_mini
@pytest.mark.readme
def test_every_readme_command_works_on_a_fresh_copy(fresh_copy, tmp_path):
    """All of them, in the README's order (train, then convert and calibrate the model it made)."""
    for args in core_commands():
        check(run(fresh_copy, args, tmp_path), args)

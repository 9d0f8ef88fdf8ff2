"""requirements.txt installs on every Python Streamlit Community Cloud offers, on Cloud's platform
(Debian 11, glibc 2.31, x86-64), resolved by uv as Cloud's installer does; the TensorFlow stack
is left out by its markers where it has no wheel, and everything else still resolves."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

CLOUD_PYTHONS = ("3.11", "3.12", "3.13", "3.14")
CLOUD_PLATFORM = "x86_64-manylinux_2_31"
NO_TENSORFLOW = ("3.14",)  # TensorFlow 2.21 publishes wheels for cp310–cp313 only
TF_STACK = ("tensorflow-cpu", "keras", "tf2onnx")
APP_CORE = ("openvino", "streamlit", "onnxruntime", "ai-edge-litert", "nncf", "plotly", "pandas")
OFFLINE_SIGNS = ("dns error", "failed to fetch", "connection", "timed out", "network")


def _uv() -> str:
    found = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    if not Path(found).exists():
        pytest.skip("uv is not installed (it is in requirements-dev.txt)")
    return found


def resolve(python: str, tmp_path: Path) -> dict[str, str] | str:
    """`uv pip compile` for Cloud's platform and `python`: {package: version}, or why it failed."""
    out = tmp_path / f"resolved-{python}.txt"
    proc = subprocess.run(
        [_uv(), "pip", "compile", "--quiet", "--no-build", "--python-platform", CLOUD_PLATFORM,
         "--python-version", python, str(ROOT / "requirements.txt"), "-o", str(out)],
        capture_output=True, text=True, timeout=240,
        # Only the wheels' tags matter: no interpreter of that version is needed or downloaded.
        env=os.environ | {"UV_PYTHON_DOWNLOADS": "never"},
    )
    if proc.returncode != 0:
        message = proc.stderr.lower()
        if "no solution found" not in message and any(sign in message for sign in OFFLINE_SIGNS):
            pytest.skip(f"the package index cannot be reached: {proc.stderr.strip()[-300:]}")
        return proc.stderr
    pins = {}
    for line in out.read_text().splitlines():
        if "==" in line and not line.startswith((" ", "#")):
            name, version = line.split("==", 1)
            pins[name.strip().lower()] = version.split(";")[0].strip()
    return pins


@pytest.fixture(scope="module")
def resolved(tmp_path_factory) -> dict[str, dict[str, str] | str]:
    """Every Python's resolution, run at once (each waits mostly on the index)."""
    from concurrent.futures import ThreadPoolExecutor

    tmp = tmp_path_factory.mktemp("resolved")
    with ThreadPoolExecutor(len(CLOUD_PYTHONS)) as pool:
        return dict(zip(CLOUD_PYTHONS, pool.map(lambda python: resolve(python, tmp), CLOUD_PYTHONS)))


@pytest.mark.parametrize("python", CLOUD_PYTHONS)
def test_requirements_resolve_on_cloud(python, resolved):
    pins = resolved[python]
    assert isinstance(pins, dict), f"requirements.txt does not resolve for Python {python} on {CLOUD_PLATFORM}:\n{pins}"
    for name in APP_CORE:
        assert name in pins, f"{name} is missing for Python {python}"
    has_tf = [name for name in TF_STACK if name in pins]
    if python in NO_TENSORFLOW:
        assert not has_tf, f"{has_tf} would be installed on Python {python}, which has no TensorFlow wheel"
    else:
        assert has_tf == list(TF_STACK), f"Python {python} lacks part of the TensorFlow stack: {has_tf}"

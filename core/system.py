"""Facts about this machine and its libraries, recorded beside every result."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist, key in (("tensorflow-cpu", "tensorflow"), ("tensorflow", "tensorflow"), ("keras", "keras"),
                      ("openvino", "openvino"), ("nncf", "nncf"),
                      ("onnxruntime", "onnxruntime"), ("tf2onnx", "tf2onnx"), ("numpy", "numpy"), ("pillow", "pillow")):
        if key in out:
            continue
        try:
            out[key] = version(dist)
        except PackageNotFoundError:
            pass
    return out


def machine_summary() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "system": platform.platform()}

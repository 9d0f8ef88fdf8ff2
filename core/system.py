"""Facts about this machine and its libraries, recorded beside every result."""

from __future__ import annotations

import os
import platform
import signal
import threading
import time
from pathlib import Path
from typing import Any


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist, key in (("tensorflow-cpu", "tensorflow"), ("tensorflow", "tensorflow"), ("keras", "keras"),
                      ("openvino", "openvino"), ("nncf", "nncf"),
                      ("onnxruntime", "onnxruntime"), ("tf2onnx", "tf2onnx"),
                      ("ai-edge-litert", "litert"), ("numpy", "numpy"), ("pillow", "pillow")):
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


def exit_with_parent(kill_group: bool = False) -> None:
    """End this worker process when the process that started it dies (a server stopped or
    killed mid-job), instead of running on as an orphan; with `kill_group`, end its whole
    process group too (the benchmark workers a job started)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        if kill_group:
            os.killpg(0, signal.SIGKILL)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()

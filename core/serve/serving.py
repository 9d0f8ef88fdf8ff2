"""Serving beyond one machine: an OpenVINO Model Server (OVMS) model repository, and a local
Open Inference Protocol (KServe v2) server on it.

    out/
      config.json                  OVMS `model_config_list`: plugin_config, nireq, shape
      <model>/1/model.xml, .bin    the IR, byte for byte the variant scored on the model card
      <model>/labels.txt           class names, one per line, in output order
      <model>/serving.json         input/output, classes, calibration, where the settings came from
      docker-compose.yml           openvino/model_server on this repository
      inferenceservice.yaml        KServe InferenceService with its OpenVINO runtime
      README.md                    the commands and the expected request and response

OVMS cannot be installed here (no container registry), so `serve` runs the same repository in
KServe's Python model server (`core.serve.model_server`), which speaks the same protocol. It lives in its
own environment (`requirements-serve.txt`): kserve pins versions the app's stack does not use.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from core import atomic, children, paths
from core.model import tuned
from core.model import openset, registry
from core.errors import UserError
from core.variants import IR_VARIANTS, SHORT_IR_NAMES, ir_variant
from core.settings import OVSettings, RunSetup

TUNED = "tuned"  # the tuning's winner, whichever IR it runs
SERVE_VARIANTS = (TUNED, *IR_VARIANTS)
MODEL_VERSION = "1"
LABELS_FILE = "labels.txt"
SERVING_FILE = "serving.json"
CONFIG_FILE = "config.json"
INPUT_NAME, OUTPUT_NAME = "image", "probabilities"  # the IR's tensor names (core.model.convert)
OVMS_IMAGE = "openvino/model_server:2026.4"  # matches the `openvino` the IR was written with
SERVE_PYTHON_ENV = "FLOWERS_SERVE_PYTHON"
SERVE_REQUIREMENTS = "requirements-serve.txt"


class ServingError(UserError):
    """An export or a model server that cannot be made or started."""


@dataclass(frozen=True)
class ServingSetup:
    """What the model server runs: a `RunSetup` of an IR variant, how many requests it keeps in
    flight, its static batch if any, and where the setup came from."""

    setup: RunSetup
    nireq: int
    batch: int | None  # a static batch size (what OVMS calls `shape`), or None for a dynamic batch
    source: str  # "tuned (...)" or "defaults ..."

    @property
    def variant(self) -> str:
        return self.setup.variant

    @property
    def plugin_config(self) -> dict[str, str]:
        return self.setup.ov.config_strings()

    def ovms_config(self, name: str, image_size: int) -> dict[str, Any]:
        config: dict[str, Any] = {"name": name, "base_path": name, "target_device": "CPU", "nireq": self.nireq,
                                  "plugin_config": self.plugin_config}
        if self.batch is not None:
            config["shape"] = {INPUT_NAME: f"({self.batch},{image_size},{image_size},3)"}
        return {"model_config_list": [{"config": config}]}


DEFAULT_SETUP = "defaults (no tuning found): f32, THROUGHPUT hint"


def choose_setup(model_dir: Path, variant: str = "tuned", tuned_path: Path | None = None,
                 batch: int | None = 1) -> ServingSetup:
    """The served variant and its settings. With a tuning (`python -m core tune`), its fastest
    throughput setup within the accuracy budget at `batch` photos per request (1: what the
    Predict page and most clients send; None: any): for `tuned` the overall winner, for a named
    variant that variant's best. It runs exactly as measured (and as Predict runs it): the same
    `RunSetup`, as many requests as it kept in flight. Without one, the app's own defaults."""
    variant = SHORT_IR_NAMES.get(variant, variant)
    if variant not in SERVE_VARIANTS:
        raise ServingError(f"variant must be one of {', '.join(SERVE_VARIANTS)}")
    tuning = tuned.load(model_dir, tuned_path)
    if tuning is None and tuned_path is not None:  # asked for by name: say so rather than fall back quietly
        raise ServingError(f"{tuned_path} is not a readable tuning (a tuned.json written by `python -m core tune`)")
    if tuning is not None:
        winner = tuning.serving_winner(None if variant == TUNED else variant, batch)
        if winner is not None:
            return ServingSetup(winner.setup, winner.nireq, winner.static_batch,
                                f"tuned ({winner.label}, {winner.throughput_ips:.0f} img/s on "
                                f"{tuning.describe_machine()})")
    if variant == TUNED:
        raise ServingError(f"{Path(model_dir).name} has no tuning; run `python -m core tune` or choose a variant "
                           f"({', '.join(IR_VARIANTS)})")
    setup = RunSetup("", variant, ov=OVSettings("f32", "THROUGHPUT"), async_queue=True)
    return ServingSetup(setup, nireq=2, batch=None, source=DEFAULT_SETUP)


def export(model_dir: Path, out: Path, variant: str = "tuned", tuned_path: Path | None = None,
           batch: int | None = 1) -> Path:
    """Write the model repository `out` (replaced as a whole, atomically); returns it."""
    model_dir = Path(model_dir)
    card = registry.read_card(model_dir)
    setup = choose_setup(model_dir, variant, tuned_path, batch)
    xml = registry.variant_path(model_dir, setup.variant)
    if not xml.exists():
        raise ServingError(f"{setup.variant} is missing in {model_dir}; run `python -m core convert`")
    name = registry.check_name(card.name)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / CONFIG_FILE).exists():
        # Replacing is for an earlier export only: never a folder of the user's that happens to be named.
        raise ServingError(f"{out} exists and is not a model repository; choose a new or empty folder")
    with atomic.atomic_dir(out, replace=True) as tmp:
        version = tmp / name / MODEL_VERSION
        version.mkdir(parents=True)
        shutil.copyfile(xml, version / "model.xml")
        shutil.copyfile(xml.with_suffix(".bin"), version / "model.bin")
        (tmp / name / LABELS_FILE).write_text("\n".join(card.classes) + "\n")
        distance = model_dir / openset.DISTANCE_FILE
        if distance.exists():
            shutil.copyfile(distance, tmp / name / openset.DISTANCE_FILE)
        (tmp / name / SERVING_FILE).write_text(json.dumps(_description(card, setup), indent=2) + "\n")
        (tmp / CONFIG_FILE).write_text(json.dumps(setup.ovms_config(name, card.image_size), indent=2) + "\n")
        (tmp / "docker-compose.yml").write_text(_compose(name))
        (tmp / "inferenceservice.yaml").write_text(_inference_service(name))
        (tmp / "README.md").write_text(_readme(card, setup))
    return out


def export_zip(model_dir: Path, variant: str = "tuned", tuned_path: Path | None = None) -> bytes:
    """The model repository as a zip, for a download button."""
    with tempfile.TemporaryDirectory() as tmp:
        root = export(model_dir, Path(tmp) / "serving", variant, tuned_path)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in sorted(root.rglob("*")):
                if f.is_file():
                    zf.write(f, Path("serving") / f.relative_to(root))
        return buffer.getvalue()


def default_variant(model_dir: Path, tuned_path: Path | None = None) -> str | None:
    """`tuned` where there is a tuning, else INT8 (the smallest; within a point of TensorFlow), else
    the first IR the model has; None if it has none."""
    if tuned_path is not None or tuned.load(model_dir) is not None:
        return TUNED
    return next((v for v in (ir_variant("int8"), ir_variant("fp32"), ir_variant("fp16"))
                 if registry.variant_path(model_dir, v).exists()), None)


def _description(card, setup: ServingSetup) -> dict[str, Any]:
    test = card.scores.get("test")
    return {
        "model": card.name, "variant": setup.variant, "classes": list(card.classes),
        "input": {"name": INPUT_NAME, "datatype": "UINT8", "layout": "NHWC",
                  "shape": [setup.batch or -1, card.image_size, card.image_size, 3],
                  "preprocessing": "RGB photo resized (bilinear, stretched) to the input size; the model scales "
                                   "pixels itself"},
        "output": {"name": OUTPUT_NAME, "datatype": "FP32", "shape": [setup.batch or -1, len(card.classes)],
                   "meaning": "class probabilities, in the order of labels.txt"},
        "features": {"name": "features", "datatype": "FP32", "meaning": "the penultimate layer (IRs converted since "
                     "the open-set check; older ones lack it): openset.npz holds `projection` and class `means`; the "
                     "squared distance min over classes of |features @ projection - means[c]|^2, looked up in the "
                     "sorted `reference` distances of validation flowers, is the typicality; under 1 - keep: not a "
                     "flower"},
        "calibration": card.openset or None,
        "held_out_accuracy": (test.accuracy.get(setup.variant) if test else None),
        "settings": {"plugin_config": setup.plugin_config, "nireq": setup.nireq, "batch": setup.batch,
                     "source": setup.source},
    }


def _compose(name: str) -> str:
    return f"""# OpenVINO Model Server on this repository: REST on 8000, gRPC on 9000 (KServe v2 API on both).
services:
  ovms:
    image: {OVMS_IMAGE}
    command: ["--config_path", "/models/{CONFIG_FILE}", "--rest_port", "8000", "--port", "9000"]
    ports: ["8000:8000", "9000:9000"]
    volumes: ["./:/models:ro"]
    # The settings in config.json were tuned for a number of cores; give the container that many.
    cpus: 2
"""


def _inference_service(name: str) -> str:
    return f"""# KServe with its OpenVINO Model Server runtime (kserve-ovms). Copy the folder `{name}/`
# (with `1/` inside) to object storage or a volume and point storageUri at it.
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: {name}
spec:
  predictor:
    minReplicas: 1
    maxReplicas: 4
    scaleMetric: cpu
    scaleTarget: 70
    model:
      modelFormat:
        name: openvino_ir
      protocolVersion: v2
      storageUri: s3://YOUR-BUCKET/models/{name}
      resources:
        requests: {{cpu: "2", memory: 1Gi}}
        limits: {{cpu: "2", memory: 2Gi}}
"""


def _readme(card, setup: ServingSetup) -> str:
    size = card.image_size
    batch = setup.batch or "N"
    calibration = card.openset or {}
    return f"""# Serving `{card.name}` ({setup.variant})

A model repository for OpenVINO Model Server (OVMS), made by `python -m core export-serving`.

- Input `{INPUT_NAME}`: UINT8, NHWC, shape [{batch}, {size}, {size}, 3]: an RGB photo resized (bilinear,
  stretched) to {size}×{size}. The model scales the pixels itself; send raw 0–255 values.
- Output `{OUTPUT_NAME}`: FP32, shape [{batch}, {len(card.classes)}], class probabilities in the order of
  `{card.name}/{LABELS_FILE}`: {", ".join(card.classes)}.
- Settings (`{CONFIG_FILE}`): {setup.source}. `plugin_config` {json.dumps(setup.plugin_config)},
  nireq {setup.nireq}, {"static batch " + str(setup.batch) if setup.batch else "dynamic batch"}. On a CPU without native
  bf16, remove `INFERENCE_PRECISION_HINT` if it says bf16.
- Output `features`: FP32, shape [{batch}, D], the penultimate layer; the project's open-set check (is it one
  of the classes at all?) measures a Mahalanobis distance on it with `openset.npz` (see `{card.name}/{SERVING_FILE}`).
- Calibrated confidence: divide the log of each probability by the temperature
  {calibration.get("temperature", "—")} and apply softmax.

## Run it

```bash
docker compose up          # OVMS with config.json; REST on :8000
curl localhost:8000/v2/models/{card.name}/ready
```

Or on Kubernetes: `kubectl apply -f inferenceservice.yaml` after copying `{card.name}/` to the storage it names.

Without containers, the same repository runs in KServe's Python server (same protocol):
`python -m core serve --repository . --port 8000` from the project.

## Request and response (KServe v2 / Open Inference Protocol, REST)

JSON (simple, about 4 bytes per pixel value):

```
POST /v2/models/{card.name}/infer
{{"inputs": [{{"name": "{INPUT_NAME}", "shape": [1, {size}, {size}, 3], "datatype": "UINT8",
              "data": [<{size * size * 3} integers, row by row>]}}]}}

200 {{"model_name": "{card.name}", "outputs": [{{"name": "{OUTPUT_NAME}", "shape": [1, {len(card.classes)}],
      "datatype": "FP32", "data": [<{len(card.classes)} probabilities>]}}]}}
```

Binary (what the project's `kserve-v2` backend sends): the same JSON with
`"parameters": {{"binary_data_size": {size * size * 3}}}` instead of `data`, followed by the raw bytes, and the
header `Inference-Header-Content-Length: <length of the JSON>`.

With Triton's Python client (`pip install tritonclient[http]`):

```python
import numpy as np, tritonclient.http as http
client = http.InferenceServerClient("localhost:8000")
image = http.InferInput("{INPUT_NAME}", [1, {size}, {size}, 3], "UINT8")
image.set_data_from_numpy(photo[None])          # photo: uint8 array ({size}, {size}, 3)
probs = client.infer("{card.name}", [image]).as_numpy("{OUTPUT_NAME}")
labels = open("{card.name}/{LABELS_FILE}").read().split()
print(labels[int(probs[0].argmax())])
```
"""


# ---------------------------------------------------------------- the local model server

def server_python() -> str:
    """The interpreter of the model server's environment: $FLOWERS_SERVE_PYTHON, `.venv-serve`,
    or this one if it has kserve."""
    given = os.environ.get(SERVE_PYTHON_ENV)
    if given:
        return given
    local = paths.PROJECT_ROOT / ".venv-serve" / "bin" / "python"
    if local.exists():
        return str(local)
    if importlib.util.find_spec("kserve") is not None:
        return sys.executable
    raise ServingError(
        "The model server runs in its own environment (kserve pins versions the app does not use): "
        f"`python3 -m venv .venv-serve && .venv-serve/bin/pip install -r {SERVE_REQUIREMENTS}`, "
        f"or set {SERVE_PYTHON_ENV}.")


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(repository: Path, port: int, host: str = "127.0.0.1", **streams: Any) -> subprocess.Popen:
    """The model server on `repository`, in its own environment and process group (`children.stop` ends it)."""
    return children.start("core.serve.model_server", args=("--repository", str(repository), "--host", host,
                                                           "--port", str(port)), python=server_python(), **streams)


@dataclass(frozen=True)
class RunningServer:
    url: str
    pid: int


@contextmanager
def running_server(repository: Path, timeout_s: float = 120, log: Path | None = None) -> Iterator[RunningServer]:
    """Start the model server on `repository` on 127.0.0.1 at a free port, wait until its models are
    ready, yield its URL and process, and stop it (the whole process group) on the way out, also
    after a failure. Loopback only, fixed here: the readiness probe is the one URL this module opens."""
    port = free_port()
    log_file = open(log, "w") if log else subprocess.DEVNULL
    proc = start_server(repository, port, stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc, timeout_s, log)
        yield RunningServer(url, proc.pid)
    finally:
        children.stop(proc)
        if log:
            log_file.close()


def _wait_ready(url: str, proc: subprocess.Popen, timeout_s: float, log: Path | None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text()[-2000:] if log else ""
            raise ServingError(f"the model server exited with code {proc.returncode} before it was ready\n{tail}")
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise ServingError(f"the model server was not ready within {timeout_s:.0f} s")

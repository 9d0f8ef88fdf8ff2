"""The `kserve-v2` backend: a model on a remote server, over the Open Inference Protocol (REST).

It speaks to OpenVINO Model Server, KServe (and `python -m core serve`) alike. Photos go as raw
bytes with the protocol's binary tensor extension (OVMS, KServe and Triton read it); JSON would
be about four bytes per pixel value. The endpoint is the owner's setting, from the environment
or from root-level keys of `.streamlit/secrets.toml` (Streamlit exports those to the
environment): a visitor never types a URL the server would call.

    FLOWERS_REMOTE_URL = "https://flowers.example.org"   # base URL of the server
    FLOWERS_REMOTE_MODEL = "flowers-mobilenetv2"         # the served model; also the local model it stands for
    FLOWERS_REMOTE_TOKEN = "..."                          # optional: sent as a bearer token
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import quote

import numpy as np
import urllib3

from core import paths
from core.model import registry
from core.runtimes.base import Backend
from core.errors import UserError
from core.variants import REMOTE_SETUP

URL_ENV, MODEL_ENV, TOKEN_ENV, TIMEOUT_ENV = ("FLOWERS_REMOTE_URL", "FLOWERS_REMOTE_MODEL", "FLOWERS_REMOTE_TOKEN",
                                              "FLOWERS_REMOTE_TIMEOUT")
BINARY_HEADER = "Inference-Header-Content-Length"


class RemoteError(UserError):
    """The remote model server cannot be reached, does not serve the model, or refused a request."""


@dataclass(frozen=True)
class RemoteConfig:
    url: str
    model: str
    token: str | None = None
    timeout_s: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RemoteConfig | None:
        env = os.environ if env is None else env
        url, model = env.get(URL_ENV, "").strip(), env.get(MODEL_ENV, "").strip()
        if not url or not model:
            return None
        return cls(url.rstrip("/"), model, env.get(TOKEN_ENV) or None, float(env.get(TIMEOUT_ENV, 10)))


def serves(model_dir: Path, env: Mapping[str, str] | None = None) -> bool:
    """Whether the configured server stands for this model: a shared model (never a visitor's own)
    with the served model's name."""
    config = RemoteConfig.from_env(env)
    model_dir = Path(model_dir)
    if config is None or model_dir.resolve().parent != paths.models_dir().resolve():
        return False
    try:
        return registry.read_card(model_dir).name == config.model
    except UserError:
        return False


class RemoteBackend(Backend):
    """Classifies over HTTP, in requests of the server's static batch where it has one (see `_run`).
    Safe to share between threads (urllib3's pool is)."""

    variant = REMOTE_SETUP

    def __init__(self, config: RemoteConfig, image_size: int, n_classes: int, pool_size: int = 8) -> None:
        self.config = config
        self.image_size = image_size
        headers = {"Authorization": f"Bearer {config.token}"} if config.token else {}
        self._http = urllib3.PoolManager(maxsize=pool_size, block=False, retries=False, headers=headers,
                                         timeout=urllib3.Timeout(connect=min(3.0, config.timeout_s),
                                                                 read=config.timeout_s))
        self._model_url = f"{config.url}/v2/models/{quote(config.model, safe='')}"
        server = self._get(f"{config.url}/v2", "server metadata")
        meta = self._get(self._model_url, "model metadata")
        self.server = f"{server.get('name', '?')} {server.get('version', '')}".strip()
        self._check_metadata(meta, n_classes)

    @classmethod
    def for_model(cls, model_dir: Path) -> RemoteBackend:
        config = RemoteConfig.from_env()
        if config is None:
            raise RemoteError(f"no remote model server is configured ({URL_ENV} and {MODEL_ENV})")
        card = registry.read_card(model_dir)
        return cls(config, card.image_size, len(card.classes))

    def _check_metadata(self, meta: dict[str, Any], n_classes: int) -> None:
        inputs, outputs = meta.get("inputs") or [], meta.get("outputs") or []
        if len(inputs) != 1 or len(outputs) < 1:
            raise RemoteError(f"{self.config.model} on the server has {len(inputs)} inputs and {len(outputs)} "
                              "outputs; expected one image input and a probabilities output")
        given, out = inputs[0], outputs[0]  # the first output is the probabilities (core.model.convert)
        expected = [self.image_size, self.image_size, 3]
        if given.get("datatype") != "UINT8" or list(given.get("shape", []))[1:] != expected:
            raise RemoteError(f"the server's {self.config.model} takes {given.get('datatype')} "
                              f"{given.get('shape')}, this model UINT8 [N, {', '.join(map(str, expected))}]: "
                              "a different model or export")
        if list(out.get("shape", []))[-1:] != [n_classes]:
            raise RemoteError(f"the server's {self.config.model} returns {out.get('shape')}, this model "
                              f"{n_classes} classes: a different model")
        self.input_name, self.output_name = given["name"], out["name"]
        self.features_name = next((o["name"] for o in outputs[1:] if o["name"] == "features"), None)
        self.max_batch = given["shape"][0] if given["shape"][0] > 0 else None

    def _request(self, method: str, url: str, what: str, **kwargs) -> urllib3.BaseHTTPResponse:
        try:
            response = self._http.request(method, url, **kwargs)
        except urllib3.exceptions.NewConnectionError as exc:  # before TimeoutError: urllib3 derives it from one
            raise RemoteError(f"cannot reach the model server for {what}: connection refused or no route") from exc
        except urllib3.exceptions.TimeoutError as exc:
            raise RemoteError(f"the model server gave no {what} within {self.config.timeout_s:.0f} s") from exc
        except urllib3.exceptions.HTTPError as exc:
            raise RemoteError(f"cannot reach the model server for {what}: {type(exc).__name__}") from exc
        if response.status == 404:
            raise RemoteError(f"the model server does not serve a model named {self.config.model!r}")
        if response.status >= 400:
            try:
                message = response.json().get("error", "")
            except ValueError:
                message = response.data[:200].decode(errors="replace")
            raise RemoteError(f"the model server refused the {what} (HTTP {response.status}): {message}")
        return response

    def _get(self, url: str, what: str) -> dict[str, Any]:
        return self._request("GET", url, what).json()

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self._run(images, [self.output_name])[0]

    def infer(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if self.features_name is None:  # a server with an IR exported before it had features
            return self.predict(images), None
        probs, features = self._run(images, [self.output_name, self.features_name])
        return probs, features

    def _run(self, images: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
        """Requests of the server's static batch (the last one padded with blank photos, whose
        answers are dropped), or the whole batch in one request where the server takes any."""
        images = np.ascontiguousarray(self._check(images))
        step = self.max_batch or len(images)
        parts = []
        for i in range(0, len(images), step):
            chunk = images[i:i + step]
            padded = np.concatenate([chunk, np.zeros((step - len(chunk), *chunk.shape[1:]), np.uint8)])
            parts.append([value[:len(chunk)] for value in self._infer(padded, outputs)])
        return [np.concatenate([part[k] for part in parts]) for k in range(len(outputs))]

    def _infer(self, batch: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
        header = json.dumps({
            "inputs": [{"name": self.input_name, "shape": list(batch.shape), "datatype": "UINT8",
                        "parameters": {"binary_data_size": batch.nbytes}}],
            "outputs": [{"name": name, "parameters": {"binary_data": True}} for name in outputs],
        }).encode()
        response = self._request("POST", f"{self._model_url}/infer", "inference", body=header + batch.tobytes(),
                                 headers={"Content-Type": "application/octet-stream",
                                          BINARY_HEADER: str(len(header))})
        return self._decode(response, len(batch), outputs)

    def _decode(self, response: urllib3.BaseHTTPResponse, n: int, wanted: list[str]) -> list[np.ndarray]:
        """The outputs, from a JSON answer or one in the binary extension (their bytes follow the
        JSON in the order the JSON lists them)."""
        body = response.data
        json_size = int(response.headers.get(BINARY_HEADER, len(body)))
        values, offset = {}, json_size
        for out in json.loads(body[:json_size])["outputs"]:
            if "data" in out:
                value = np.asarray(out["data"], np.float32)
            else:
                size = out["parameters"]["binary_data_size"]
                value, offset = np.frombuffer(body[offset:offset + size], np.float32), offset + size
            values[out["name"]] = value.reshape(out["shape"])
        missing = [name for name in wanted if name not in values]
        if missing:
            raise RemoteError(f"the server's answer has no output {missing[0]!r}")
        if any(len(values[name]) != n for name in wanted):
            raise RemoteError(f"sent {n} photos, the server answered for another number")
        return [values[name] for name in wanted]

    def settings(self) -> dict[str, Any]:
        # The URL stays out: results and pages are seen by visitors; it is the owner's setting.
        return {"runtime": "kserve-v2 (remote)", "server": self.server, "model": self.config.model,
                "shape": f"static batch {self.max_batch}" if self.max_batch else "dynamic batch",
                "transport": "HTTP/REST, binary tensors", "timeout_s": self.config.timeout_s,
                "note": "latency includes the network, serialization and the server's queue"}

"""A KServe v2 (Open Inference Protocol) server on an OVMS model repository (`core.serve.serving.export`).

Runs in the model server's own environment (`requirements-serve.txt`: kserve, openvino, numpy),
so it imports nothing else of the project. It reads the repository as OVMS would: `config.json`'s
plugin_config, nireq and shape, the newest numeric version folder of each model.

    python -m core.serve.model_server --repository OUT --port 8000 [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # imported where it runs, like every runtime in core
    import openvino as ov

log = logging.getLogger("flowers.model_server")


def parse_shape(text: str) -> list[int]:
    """OVMS's "(1,288,288,3)" as [1, 288, 288, 3]."""
    return [int(x) for x in text.strip("() ").split(",")]


def read_repository(repository: Path) -> list[dict[str, Any]]:
    """Each model's config from `config.json`, with `path`: its newest version's model.xml."""
    listed = json.loads((repository / "config.json").read_text())["model_config_list"]
    models = []
    for entry in listed:
        config = dict(entry["config"])
        base = repository / config["base_path"]
        versions = sorted((int(d.name) for d in base.iterdir() if d.is_dir() and d.name.isdigit()), reverse=True)
        if not versions:
            raise SystemExit(f"{base} has no numeric version folder")
        config["path"] = base / str(versions[0]) / "model.xml"
        models.append(config)
    return models


def compile_entry(config: dict[str, Any], core: ov.Core) -> ov.CompiledModel:
    """One model of the repository compiled as OVMS would: its shape, then its plugin_config."""
    model = core.read_model(config["path"])
    for name, shape in (config.get("shape") or {}).items():
        model.reshape({name: parse_shape(shape)})
    plugin_config = {k: str(v) for k, v in (config.get("plugin_config") or {}).items()}
    return core.compile_model(model, config.get("target_device", "CPU"), plugin_config)


def make_model(config: dict[str, Any], core: ov.Core):
    """A kserve.Model that runs one IR with its OVMS settings: `nireq` infer requests, each
    used by one request at a time, on as many threads (OpenVINO releases the GIL while it infers)."""
    import kserve
    from kserve.errors import InvalidInput

    class OpenVINOModel(kserve.Model):
        def load(self) -> bool:
            self.compiled = compile_entry(config, core)
            self.input = self.compiled.input(0)
            nireq = int(config.get("nireq") or self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
            self.idle: asyncio.Queue = asyncio.Queue()
            for _ in range(nireq):
                self.idle.put_nowait(self.compiled.create_infer_request())
            self.pool = ThreadPoolExecutor(nireq, thread_name_prefix="infer")
            log.info("%s: %s, %s, nireq %d", self.name, config["path"], config.get("plugin_config"), nireq)
            self.ready = True
            return self.ready

        def _shape(self, port) -> list[int]:
            return [d.get_length() if d.is_static else -1 for d in port.get_partial_shape()]

        def get_input_types(self) -> list[dict[str, Any]]:
            return [{"name": self.input.get_any_name(), "datatype": "UINT8", "shape": self._shape(self.input)}]

        def get_output_types(self) -> list[dict[str, Any]]:
            return [{"name": port.get_any_name(), "datatype": "FP32", "shape": self._shape(port)}
                    for port in self.compiled.outputs]

        def _check(self, payload) -> np.ndarray:
            if len(payload.inputs) != 1:
                raise InvalidInput(f"expected one input, got {len(payload.inputs)}")
            given = payload.inputs[0]
            if given.datatype != "UINT8":
                raise InvalidInput(f"input {given.name!r} must be UINT8, got {given.datatype}")
            try:
                x = given.as_numpy()
            except ValueError as exc:  # binary_data_size does not match the shape
                raise InvalidInput(f"input {given.name!r}: {exc}")
            expected = self._shape(self.input)
            if x.ndim != 4 or any(e not in (-1, g) for e, g in zip(expected, x.shape)):
                raise InvalidInput(f"input shape {list(x.shape)} does not match the model's {expected}")
            return np.ascontiguousarray(x)

        def _infer(self, request: ov.InferRequest, x: np.ndarray, wanted: list[int]) -> list[np.ndarray]:
            request.infer({0: x}, share_inputs=True)
            return [request.get_output_tensor(i).data.copy() for i in wanted]

        async def predict(self, payload, headers=None, response_headers=None):
            x = self._check(payload)
            names = [port.get_any_name() for port in self.compiled.outputs]
            asked = [o.name for o in payload.request_outputs or []]
            unknown = [name for name in asked if name not in names]
            if unknown:
                raise InvalidInput(f"no output named {unknown[0]!r}; the model has {names}")
            wanted = [names.index(name) for name in asked] or list(range(len(names)))  # none asked: all
            request = await self.idle.get()
            try:
                values = await asyncio.get_running_loop().run_in_executor(self.pool, self._infer, request, x, wanted)
            finally:
                self.idle.put_nowait(request)
            outputs = [kserve.InferOutput(names[i], list(v.shape), "FP32", v) for i, v in zip(wanted, values)]
            return kserve.InferResponse(payload.id or "", self.name, outputs)

    return OpenVINOModel(config["name"])


def _bind_to(host: str) -> None:
    """KServe's REST server listens on 0.0.0.0 (in a pod that is what one wants); here the caller
    chooses, 127.0.0.1 by default, so that a demo server is not reachable from the network."""
    from kserve import model_server
    from kserve.protocol.rest.server import RESTServer

    class BoundRESTServer(RESTServer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.config.host = host

    model_server.RESTServer = BoundRESTServer


def _keep_binary_inputs_as_bytes() -> None:
    """KServe 0.21 reads a binary-extension tensor into a Python list of numbers and back into an
    array (`InferRequest.from_bytes`): about 90 ms for one 288 px photo, 60 times the inference.
    OVMS reads the bytes in place; so does this replacement (JSON `data` inputs keep KServe's path)."""
    import orjson
    from kserve.errors import InvalidInput
    from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput

    kserves_own = InferRequest.from_bytes.__func__

    def from_bytes(cls, req_bytes: bytes, json_length: int, model_name: str) -> InferRequest:
        try:
            header = orjson.loads(req_bytes[:json_length])
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"Unrecognized request format: {exc}")
        if any("data" in spec for spec in header.get("inputs", [])):
            return kserves_own(cls, req_bytes, json_length, model_name)
        start, inputs = json_length, []
        for spec in header.get("inputs", []):
            size = (spec.get("parameters") or {}).get("binary_data_size")
            if size is None:
                raise InvalidInput(f"input {spec.get('name')!r} has neither data nor binary_data_size")
            tensor = InferInput(spec["name"], spec["shape"], spec["datatype"], parameters=spec.get("parameters"))
            tensor._raw_data = req_bytes[start:start + size]
            start += size
            inputs.append(tensor)
        outputs = [RequestedOutput(name=o["name"], parameters=o.get("parameters")) for o in header.get("outputs") or []]
        return cls(model_name=model_name, request_id=header.get("id"), parameters=header.get("parameters"),
                   infer_inputs=inputs, request_outputs=outputs or None)

    InferRequest.from_bytes = classmethod(from_bytes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, required=True, help="an OVMS model repository")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    sys.argv = sys.argv[:1]  # kserve parses sys.argv when imported; these flags are ours
    import kserve

    _bind_to(args.host)
    _keep_binary_inputs_as_bytes()
    import openvino as ov
    core = ov.Core()
    models = [make_model(config, core) for config in read_repository(args.repository)]
    for model in models:
        model.load()
    server = kserve.ModelServer(http_port=args.port, enable_grpc=False, workers=1, enable_docs_url=False,
                                enable_latency_logging=False)
    # One log line per request (KServe's timing trace, uvicorn's access log) costs more than a
    # batch-1 inference; errors are still logged. (After ModelServer(): it configures logging.)
    for name in ("kserve.trace", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.WARNING)
    server.start(models)


if __name__ == "__main__":
    main()

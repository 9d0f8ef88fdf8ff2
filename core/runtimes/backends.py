"""One predict interface over TensorFlow, OpenVINO and the peers (ONNX Runtime, LiteRT).

Every backend takes a uint8 NHWC batch (see `core.model.images.to_model_input`) and returns
class probabilities; TensorFlow, OpenVINO and the remote server also return the penultimate
features with them (`infer`), which the open-set score needs. Each runtime is imported only by the backend that needs it, so a
benchmark subprocess measures one runtime's memory alone.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from core.model import artifacts, registry
from core import availability
from core.runtimes.base import Backend
from core.runtimes.remote import RemoteBackend
from core.settings import TF_MODES, OVSettings, RunSetup
from core.variants import CATALOGUE, LITERT_VARIANTS, ONNX_VARIANTS, REMOTE_SETUP


class TensorFlowBackend(Backend):
    def __init__(self, model_dir: Path, mode: str = "function") -> None:
        availability.require_tensorflow()
        import tensorflow as tf

        if mode not in TF_MODES:
            raise ValueError(f"TensorFlow mode must be one of {TF_MODES}")
        start = time.perf_counter()
        self.variant = registry.TF_VARIANT if mode == "function" else f"{registry.TF_VARIANT}-predict"
        self.mode = mode
        self.image_size = registry.read_card(model_dir).image_size
        self.model = registry.load_keras(model_dir)
        if tuple(self.model.input_shape[1:]) != (self.image_size, self.image_size, 3):
            raise registry.ModelError(
                f"model input {self.model.input_shape} does not match the card's image_size {self.image_size}"
            )
        spec = tf.TensorSpec([None, self.image_size, self.image_size, 3], tf.uint8)
        self._serve = tf.function(lambda x: self.model(tf.cast(x, tf.float32), training=False), input_signature=[spec])
        both = registry.with_features(self.model)  # the same layers, the classifier's input as a second output
        self._serve_both = tf.function(lambda x: both(tf.cast(x, tf.float32), training=False), input_signature=[spec])
        self._lock = threading.Lock()  # Keras predict is not safe to call from several sessions at once
        self.load_seconds = time.perf_counter() - start

    def predict(self, images: np.ndarray) -> np.ndarray:
        images = self._check(images)
        if self.mode == "predict":
            with self._lock:
                return self.model.predict(images.astype(np.float32), batch_size=len(images), verbose=0)
        return self._serve(images).numpy()

    def infer(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        probs, features = self._serve_both(self._check(images))
        return probs.numpy(), features.numpy()

    def settings(self) -> dict[str, Any]:
        import tensorflow as tf

        return {
            "runtime": "tensorflow",
            "mode": self.mode,
            "precision": "f32",
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or "auto",
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads() or "auto",
            "shape": "dynamic batch",
        }


_core = None
_core_lock = threading.Lock()


def ov_core():
    """One OpenVINO Core per process."""
    global _core
    with _core_lock:
        if _core is None:
            import openvino as ov

            _core = ov.Core()
        return _core


def _plain(value: Any) -> Any:
    """OpenVINO property values (ov.Type, enums) as plain JSON-friendly values: 'bf16', 'LATENCY'."""
    if hasattr(value, "get_type_name"):
        return value.get_type_name()
    if hasattr(value, "name") and not isinstance(value, (str, bytes)):
        return value.name
    return value


def device_info(device: str = "CPU") -> dict[str, Any]:
    """What OpenVINO sees: the device, and the precision its plugin picks when none is asked for."""
    core = ov_core()
    return {
        "device": device,
        "name": core.get_property(device, "FULL_DEVICE_NAME"),
        "default_precision": _plain(core.get_property(device, "INFERENCE_PRECISION_HINT")),
        "capabilities": list(core.get_property(device, "OPTIMIZATION_CAPABILITIES")),
    }


def native_precisions(capabilities: list[str]) -> list[str]:
    """f32 always; bf16 and f16 only where the CPU plugin reports them as native capabilities."""
    return ["f32"] + [p for p, cap in (("bf16", "BF16"), ("f16", "FP16")) if cap in capabilities]


class OpenVINOBackend(Backend):
    def __init__(self, model_dir: Path, variant: str, settings: OVSettings | None = None,
                 static_batch: int | None = None) -> None:
        start = time.perf_counter()
        self.variant = variant
        self.image_size = registry.read_card(model_dir).image_size
        self.ov_settings = settings or OVSettings()
        self.static_batch = static_batch
        xml = registry.variant_path(model_dir, variant)
        if not xml.exists():
            raise registry.ModelError(f"{variant} is missing in {model_dir}; run `python -m core convert`")
        core = ov_core()
        model = core.read_model(xml)
        shape = model.input(0).get_partial_shape()
        if shape.rank.get_length() != 4 or [d.get_length() for d in list(shape)[1:]] != [self.image_size, self.image_size, 3]:
            raise registry.ModelError(f"{xml} input {shape} does not match the card's image_size {self.image_size}")
        if static_batch is not None:
            model.reshape([static_batch, self.image_size, self.image_size, 3])
        compile_start = time.perf_counter()
        self.compiled = core.compile_model(model, self.ov_settings.device, self.ov_settings.config())
        self.compile_seconds = time.perf_counter() - compile_start
        self.load_seconds = time.perf_counter() - start
        # Idle infer requests, reused: creating one per call cost more than a batch-1 inference.
        # A request serves one call at a time; sessions predicting at once each take their own.
        self._idle: queue.SimpleQueue = queue.SimpleQueue()

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self._run(images, features=False)[0]

    def infer(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        return self._run(images, features=True)

    def _run(self, images: np.ndarray, features: bool) -> tuple[np.ndarray, np.ndarray | None]:
        images = self._check(images)
        try:
            request = self._idle.get_nowait()
        except queue.Empty:
            request = self.compiled.create_infer_request()
        try:
            request.infer({0: np.ascontiguousarray(images)}, share_inputs=True)  # read in place, no copy
            probs = request.get_output_tensor(0).data.copy()
            has_features = features and len(self.compiled.outputs) > 1  # IRs converted before features: one
            return probs, request.get_output_tensor(1).data.copy() if has_features else None
        finally:
            self._idle.put(request)

    def property(self, name: str) -> Any:
        return _plain(self.compiled.get_property(name))

    def settings(self) -> dict[str, Any]:
        return {
            "runtime": "openvino",
            "device": self.ov_settings.device,
            "requested": asdict(self.ov_settings),
            "precision": self.property("INFERENCE_PRECISION_HINT"),
            "hint": self.property("PERFORMANCE_HINT"),
            "streams": self.property("NUM_STREAMS"),
            "threads": self.property("INFERENCE_NUM_THREADS"),
            "pinning": self.property("ENABLE_CPU_PINNING"),
            "optimal_requests": self.property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"),
            "shape": f"static batch {self.static_batch}" if self.static_batch else "dynamic batch",
        }


def _peer_file(model_dir: Path, variant: str) -> Path:
    path = registry.variant_path(model_dir, variant)
    if not path.exists():
        raise registry.ModelError(f"{path} is missing; it is made by core.model.artifacts.ensure")
    return path


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime on the same model (exported by tf2onnx): what many users would pick instead."""

    def __init__(self, model_dir: Path, variant: str, threads: int | None = None) -> None:
        import onnxruntime as ort

        start = time.perf_counter()
        self.variant = variant
        self.image_size = registry.read_card(model_dir).image_size
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(_peer_file(model_dir, variant)), options,
                                            providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name
        self.threads = threads
        self.load_seconds = time.perf_counter() - start

    def predict(self, images: np.ndarray) -> np.ndarray:
        images = self._check(images)
        return self.session.run(None, {self._input: images.astype(np.float32)})[0]

    def settings(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {"runtime": "onnxruntime", "precision": CATALOGUE[self.variant].precision,
                "threads": self.threads or "auto", "providers": ",".join(self.session.get_providers()),
                "shape": "dynamic batch", "version": ort.__version__}


class LiteRTBackend(Backend):
    """LiteRT (formerly TensorFlow Lite) with its default XNNPACK delegate, from the small
    `ai-edge-litert` package: TensorFlow is not imported."""

    def __init__(self, model_dir: Path, variant: str, threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        start = time.perf_counter()
        self.variant = variant
        self.image_size = registry.read_card(model_dir).image_size
        self.interpreter = Interpreter(model_path=str(_peer_file(model_dir, variant)), num_threads=threads)
        self._input = self.interpreter.get_input_details()[0]["index"]
        self._output = self.interpreter.get_output_details()[0]["index"]
        self._batch = 0
        self._lock = threading.Lock()  # one interpreter holds one set of tensors
        self.threads = threads
        self.load_seconds = time.perf_counter() - start

    def predict(self, images: np.ndarray) -> np.ndarray:
        images = self._check(images).astype(np.float32)
        with self._lock:
            if len(images) != self._batch:  # re-plans the tensors; the same batch size runs without it
                self.interpreter.resize_tensor_input(self._input, list(images.shape))
                self.interpreter.allocate_tensors()
                self._batch = len(images)
            self.interpreter.set_tensor(self._input, images)
            self.interpreter.invoke()
            return self.interpreter.get_tensor(self._output).copy()

    def settings(self) -> dict[str, Any]:
        from importlib.metadata import version

        return {"runtime": "litert", "precision": CATALOGUE[self.variant].precision,
                "threads": self.threads or "auto", "delegate": "XNNPACK (default)", "shape": "dynamic batch",
                "version": version("ai-edge-litert")}


def load_backend(model_dir: Path, variant: str, ov_settings: OVSettings | None = None,
                 tf_mode: str = "function", static_batch: int | None = None, threads: int | None = None) -> Backend:
    """The backend of `variant`; `threads` applies to the peers (OpenVINO takes them in `ov_settings`)."""
    if variant == registry.TF_VARIANT:
        return TensorFlowBackend(model_dir, tf_mode)
    if variant in CATALOGUE:
        artifacts.ensure(model_dir, variant)  # a shipped folder's FP32 IR is remade here once
    if variant in ONNX_VARIANTS:
        return OnnxRuntimeBackend(model_dir, variant, threads)
    if variant in LITERT_VARIANTS:
        return LiteRTBackend(model_dir, variant, threads)
    if variant == REMOTE_SETUP:
        return RemoteBackend.for_model(model_dir)
    return OpenVINOBackend(model_dir, variant, ov_settings, static_batch)


def load_setup(model_dir: Path, setup: RunSetup, batch: int | None = None) -> Backend:
    """The backend of a `RunSetup`; a static shape is compiled for `batch`."""
    return load_backend(model_dir, setup.variant, setup.ov, setup.tf_mode,
                        static_batch=batch if setup.static else None, threads=setup.threads)

"""The catalogue: every variant of a model and the runtime that runs it, typed once.

A *variant* is a model file: the Keras model, an OpenVINO IR, or a peer's file (ONNX, LiteRT)
made from the Keras model. How a variant is run (precision hint, streams, static batch, ...) is a
setup (`core.settings`); a tuned setup or a remote server is a named setup, not a variant.
Adding a runtime or a file format starts here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Runtime:
    name: str  # as rows, settings and charts name it
    label: str  # in words
    module: str  # what a benchmark worker imports, and times, to start it
    hue: str  # its colour family in every chart (a Plotly sequential palette)


TENSORFLOW = Runtime("tensorflow", "TensorFlow", "tensorflow", "Oranges")
OPENVINO = Runtime("openvino", "OpenVINO", "openvino", "Blues")
ONNXRUNTIME = Runtime("onnxruntime", "ONNX Runtime", "onnxruntime", "Greens")
LITERT = Runtime("litert", "LiteRT", "ai_edge_litert.interpreter", "Purples")
RUNTIMES = {r.name: r for r in (TENSORFLOW, OPENVINO, ONNXRUNTIME, LITERT)}


@dataclass(frozen=True)
class Variant:
    name: str
    runtime: Runtime
    file: str  # inside the model folder
    precision: str  # of the file's weights, as tables show it
    peer: bool = False  # made on first use from the Keras model (core.model.peers), not by training and conversion
    calibrated: bool = False  # INT8: made with the training photos, so only where they are

    @property
    def label(self) -> str:
        """The variant in words, as charts and messages name it: "OpenVINO INT8", "LiteRT"."""
        if self.runtime is TENSORFLOW:
            return TENSORFLOW.label
        if self.runtime is OPENVINO:
            return f"{OPENVINO.label} {self.precision.upper()}"
        return self.runtime.label + (" INT8" if self.calibrated else "")

    @property
    def rebuildable(self) -> bool:
        """Made from model.keras alone: where TensorFlow is, a missing file is rebuilt on first use
        (`core.model.artifacts`), so a shipped folder need not carry it."""
        return self.runtime is not TENSORFLOW and not self.calibrated


TF_VARIANT = "tensorflow"
IR_PRECISIONS = ("fp32", "fp16", "int8")
ONNX_VARIANT = "onnxruntime"
ONNX_INT8_VARIANT = "onnxruntime-int8"  # static QDQ quantization, calibrated on the same photos as NNCF's INT8
LITERT_VARIANT = "litert"
LITERT_INT8_VARIANT = "litert-int8"  # the TFLite converter's full-integer quantization, same calibration photos


def ir_variant(precision: str) -> str:
    """The IR variant of a precision: "int8" -> "openvino-int8"."""
    return f"openvino-{precision}"


# How the model server's --variant named the IRs before it used the catalogue's names; still accepted.
SHORT_IR_NAMES = {p: ir_variant(p) for p in IR_PRECISIONS}


CATALOGUE: dict[str, Variant] = {v.name: v for v in (
    Variant(TF_VARIANT, TENSORFLOW, "model.keras", "fp32"),
    *(Variant(ir_variant(p), OPENVINO, f"openvino/{p}/model.xml", p, calibrated=p == "int8") for p in IR_PRECISIONS),
    Variant(ONNX_VARIANT, ONNXRUNTIME, "onnx/model.onnx", "f32", peer=True),
    Variant(ONNX_INT8_VARIANT, ONNXRUNTIME, "onnx-int8/model.onnx", "int8 (QDQ)", peer=True, calibrated=True),
    Variant(LITERT_VARIANT, LITERT, "litert/model.tflite", "f32", peer=True),
    Variant(LITERT_INT8_VARIANT, LITERT, "litert-int8/model.tflite", "int8 (full integer)", peer=True,
            calibrated=True),
)}

MODEL_VARIANTS = tuple(name for name, v in CATALOGUE.items() if not v.peer)  # what training and conversion make
IR_VARIANTS = tuple(ir_variant(p) for p in IR_PRECISIONS)
ONNX_VARIANTS = (ONNX_VARIANT, ONNX_INT8_VARIANT)
LITERT_VARIANTS = (LITERT_VARIANT, LITERT_INT8_VARIANT)
PEER_VARIANTS = tuple(name for name, v in CATALOGUE.items() if v.peer)

# Not a variant: the model on an owner-configured Open Inference Protocol server (core.runtimes.remote).
REMOTE_SETUP = "kserve-v2"
REMOTE_MODULE = "urllib3"  # its client, what a benchmark worker imports for it

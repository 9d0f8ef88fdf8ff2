"""Peers: the runtimes a user would otherwise deploy the model with, each at its best.

ONNX Runtime (tf2onnx export; INT8 by static QDQ) and LiteRT, formerly TensorFlow Lite (XNNPACK;
INT8 by the TFLite converter's full-integer quantization). Both INT8 peers calibrate on the same
seeded training photos as NNCF's INT8 IR. Each file is made from the Keras model on first use
(`core.model.artifacts`) and scored on the model's own validation and held-out photos, like the
OpenVINO variants, so a speed-up can be stated against the best peer within the same accuracy budget.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from core.model import registry
from core.progress import ProgressFn
from core.settings import CALIBRATION_SIZE
from core.variants import CATALOGUE, LITERT_INT8_VARIANT, LITERT_VARIANT, ONNX_INT8_VARIANT, ONNX_VARIANT


def _calibration(model_dir: Path, progress: ProgressFn) -> np.ndarray:
    from core.model.convert import calibration_images

    card = registry.read_card(model_dir)
    return calibration_images(card.rebuild_split(progress=progress), card.image_size, CALIBRATION_SIZE, card.seed,
                              progress)


def _make_onnx(model_dir: Path, tmp: Path, progress: ProgressFn) -> None:
    import tensorflow as tf
    import tf2onnx

    size = registry.read_card(model_dir).image_size
    spec = (tf.TensorSpec([None, size, size, 3], tf.float32, name="image"),)
    tf2onnx.convert.from_keras(registry.load_keras(model_dir), input_signature=spec, opset=17,
                               output_path=str(tmp / _filename(ONNX_VARIANT)))


def _make_onnx_int8(model_dir: Path, tmp: Path, progress: ProgressFn) -> None:
    """Static QDQ quantization (per-channel weights) of the ONNX export."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    source = Path(model_dir) / CATALOGUE[ONNX_VARIANT].file  # made first (core.model.artifacts.SOURCES)
    calibration = _calibration(model_dir, progress)
    input_name = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Photos(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(calibration[i : i + 1].astype(np.float32) for i in range(len(calibration)))

        def get_next(self):
            batch = next(self._batches, None)
            return None if batch is None else {input_name: batch}

    quantize_static(str(source), str(tmp / _filename(ONNX_INT8_VARIANT)), Photos(),
                    quant_format=QuantFormat.QDQ, per_channel=True, weight_type=QuantType.QInt8,
                    activation_type=QuantType.QUInt8)


def _make_litert(model_dir: Path, tmp: Path, progress: ProgressFn, int8: bool = False) -> None:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(registry.load_keras(model_dir))
    if int8:
        calibration = _calibration(model_dir, progress)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([calibration[i : i + 1].astype(np.float32)]
                                                    for i in range(len(calibration)))
        # Every op in int8; the float input and output stay, so every runtime gets the same pixels.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    variant = LITERT_INT8_VARIANT if int8 else LITERT_VARIANT
    (tmp / _filename(variant)).write_bytes(converter.convert())


# How each peer's file is made: (model_dir, a temporary folder to write the file in, progress).
MAKERS: dict[str, Callable[[Path, Path, ProgressFn], None]] = {
    ONNX_VARIANT: _make_onnx,
    ONNX_INT8_VARIANT: _make_onnx_int8,
    LITERT_VARIANT: _make_litert,
    LITERT_INT8_VARIANT: lambda m, t, p: _make_litert(m, t, p, int8=True),
}


def _filename(variant: str) -> str:
    return Path(CATALOGUE[variant].file).name

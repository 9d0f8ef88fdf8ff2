"""Keras model -> OpenVINO IR: FP32, FP16-compressed weights, and INT8 via NNCF.

The IR takes uint8 NHWC images (PrePostProcessor converts them to f32 in the graph);
pixel scaling is already inside the Keras model, so there is one copy of preprocessing.
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from core.model import data, registry
from core.errors import UserError
from core.progress import Event, ProgressFn, ignore
from core.settings import CALIBRATION_SIZE
from core.model.variants import ir_variant


def calibration_images(split: data.Split, image_size: int, n: int, seed: int,
                       progress: ProgressFn = ignore) -> np.ndarray:
    """A seeded sample of the *training* split, decoded like every other input."""
    items = random.Random(seed).sample(split.train, min(n, len(split.train)))
    images, _, _ = data.load_arrays(items, image_size, progress, "load calibration")
    return images


def keras_to_ov(model_dir: Path):
    """Export the Keras model to a SavedModel and convert it to an `ov.Model` with a uint8 input and
    two outputs: `probabilities`, and `features` (the penultimate layer, for the open-set score)."""
    import openvino as ov
    from openvino.preprocess import PrePostProcessor

    card = registry.read_card(model_dir)
    size = card.image_size
    keras_model = registry.with_features(registry.load_keras(model_dir))
    with tempfile.TemporaryDirectory(prefix="savedmodel-") as tmp:
        keras_model.export(tmp, format="tf_saved_model", verbose=False)
        # share_weights=False: the IR must not point into the temporary SavedModel.
        ov_model = ov.convert_model(tmp, input=ov.PartialShape([-1, size, size, 3]), share_weights=False)
    ppp = PrePostProcessor(ov_model)
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    ppp.input().preprocess().convert_element_type(ov.Type.f32)
    ov_model = ppp.build()
    ov_model.input(0).get_tensor().set_names({"image"})
    widths = [out.get_partial_shape()[1].get_length() for out in ov_model.outputs]
    if widths[0] != len(card.classes):
        raise registry.ModelError(f"the converted model's first output has {widths[0]} values, not one per class")
    ov_model.output(0).get_tensor().set_names({"probabilities"})
    ov_model.output(1).get_tensor().set_names({"features"})
    return ov_model


def make_ir(model_dir: Path, tmp: Path, precision: str) -> None:
    """Write one float IR (fp32, or fp16-compressed weights) into `tmp`: what `convert` writes for it."""
    import openvino as ov

    ov.save_model(keras_to_ov(model_dir), tmp / "model.xml", compress_to_fp16=precision == "fp16")


def quantize_int8(ov_model, calibration: np.ndarray, subset_size: int = CALIBRATION_SIZE):
    """NNCF post-training quantization, calibrated on `calibration` (uint8 NHWC training images).

    Full bias correction (not NNCF's fast default): on the EfficientNet-Lite0 model it halved the
    largest probability error against FP32 on the validation photos (0.15 to 0.09) for 10% more
    time (docs/model.md, "INT8")."""
    import nncf

    samples = [calibration[i : i + 1] for i in range(len(calibration))]
    return nncf.quantize(
        ov_model,
        nncf.Dataset(samples),
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=min(subset_size, len(samples)),
        fast_bias_correction=False,
    )


def convert(
    model_dir: Path,
    calibration: np.ndarray | None,
    precisions: tuple[str, ...] = registry.IR_PRECISIONS,
    progress: ProgressFn = ignore,
    subset_size: int = CALIBRATION_SIZE,
) -> dict[str, Any]:
    """Write the requested IR variants into `model_dir` and record them on its card."""
    import openvino as ov

    model_dir = Path(model_dir)
    unknown = set(precisions) - set(registry.IR_PRECISIONS)
    if unknown:
        raise UserError(f"unknown precision(s) {sorted(unknown)}; choose from {registry.IR_PRECISIONS}")
    if "int8" in precisions and (calibration is None or len(calibration) == 0):
        raise UserError("INT8 quantization needs calibration images")
    steps = len(precisions) + 1
    progress(Event("convert", 0, steps, "exporting Keras model and converting to OpenVINO"))
    start = time.perf_counter()
    ov_model = keras_to_ov(model_dir)
    record: dict[str, Any] = {"convert_seconds": round(time.perf_counter() - start, 2)}
    for i, precision in enumerate(precisions, start=1):
        progress(Event("convert", i, steps, f"writing {precision.upper()} IR"))
        t0 = time.perf_counter()
        if precision == "int8":
            model = quantize_int8(ov_model, calibration, subset_size)
            extra = {"calibration_images": min(subset_size, len(calibration)), "preset": "mixed",
                     "bias_correction": "full", "tool": "nncf.quantize"}
        else:
            model, extra = ov_model, {}
        registry.save_variant(
            model_dir, precision,
            lambda tmp, m=model, p=precision: ov.save_model(m, tmp / "model.xml", compress_to_fp16=(p == "fp16")),
        )
        variant = ir_variant(precision)
        record[precision] = {
            "seconds": round(time.perf_counter() - t0, 2),
            "size_bytes": registry.variant_size_bytes(model_dir, variant),
            "weights": {"fp32": "float32", "fp16": "float16 (compressed)", "int8": "int8 (NNCF PTQ)"}[precision],
        } | extra
    progress(Event("convert", steps, steps, "conversion done"))
    registry.update_card(model_dir, conversion=registry.read_card(model_dir).conversion | record)
    return record

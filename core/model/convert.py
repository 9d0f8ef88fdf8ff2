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
    card = registry.read_card(model_dir)
    ov_model = uint8_ir(registry.with_features(registry.load_keras(model_dir)), card.image_size)
    widths = [out.get_partial_shape()[1].get_length() for out in ov_model.outputs]
    if widths[0] != len(card.classes):
        raise registry.ModelError(f"the converted model's first output has {widths[0]} values, not one per class")
    ov_model.output(0).get_tensor().set_names({"probabilities"})
    ov_model.output(1).get_tensor().set_names({"features"})
    return ov_model


def uint8_ir(keras_model, size: int):
    """`keras_model` as an `ov.Model` taking uint8 NHWC images of `size` pixels (PrePostProcessor
    converts them to f32 in the graph), its input named `image`."""
    import openvino as ov
    from openvino.preprocess import PrePostProcessor

    with tempfile.TemporaryDirectory(prefix="savedmodel-") as tmp:
        keras_model.export(tmp, format="tf_saved_model", verbose=False)
        # share_weights=False: the IR must not point into the temporary SavedModel.
        ov_model = ov.convert_model(tmp, input=ov.PartialShape([-1, size, size, 3]), share_weights=False)
    ppp = PrePostProcessor(ov_model)
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    ppp.input().preprocess().convert_element_type(ov.Type.f32)
    ov_model = ppp.build()
    ov_model.input(0).get_tensor().set_names({"image"})
    return ov_model


def make_ir(model_dir: Path, tmp: Path, precision: str) -> None:
    """Write one float IR (fp32, or fp16-compressed weights) into `tmp`: what `convert` writes for it."""
    import openvino as ov

    ov.save_model(keras_to_ov(model_dir), tmp / "model.xml", compress_to_fp16=precision == "fp16")


FLOAT_STEM_CONVOLUTIONS = 3  # of a transfer backbone: the stem and the first block (see `quantize_int8`)


def float_layers(ov_model, arch: str) -> list[str]:
    """The convolutions INT8 leaves in floating point: for an ImageNet backbone, the stem and the
    first block (its first three convolutions). Their error reaches every later layer, and at about
    5% of the compute they cost little: on the EfficientNet-Lite0 model, keeping them in float cut
    the mean probability error against FP32 on the validation photos by a third (0.0044 to 0.0029;
    docs/model.md, "INT8")."""
    from core.model import architectures

    if not architectures.get(arch).transfer:
        return []
    convolutions = [op.get_friendly_name() for op in ov_model.get_ordered_ops()
                    if op.get_type_name() in ("Convolution", "GroupConvolution")]
    return convolutions[:FLOAT_STEM_CONVOLUTIONS]


def quantize_int8(ov_model, calibration: np.ndarray, subset_size: int = CALIBRATION_SIZE,
                  keep_float: list[str] = ()):
    """NNCF post-training quantization, calibrated on `calibration` (uint8 NHWC training images),
    with `keep_float` left in floating point.

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
        ignored_scope=nncf.IgnoredScope(names=list(keep_float)) if keep_float else None,
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
            keep_float = float_layers(ov_model, registry.read_card(model_dir).arch)
            model = quantize_int8(ov_model, calibration, subset_size, keep_float)
            extra = {"calibration_images": min(subset_size, len(calibration)), "preset": "mixed",
                     "bias_correction": "full", "tool": "nncf.quantize", "float_layers": keep_float,
                     "float_layers_why": "the stem and the first block: their error reaches every later layer, "
                                         "at about 5% of the compute" if keep_float else ""}
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

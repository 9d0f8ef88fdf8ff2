"""Keras model -> OpenVINO IR: FP32, FP16-compressed weights, and INT8 via NNCF.

The IR takes uint8 NHWC images (PrePostProcessor converts them to f32 in the graph);
pixel scaling is already inside the Keras model, so there is one copy of preprocessing.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from core.model import data, registry
from core.errors import UserError
from core.progress import Event, ProgressFn, ignore
from core.settings import CALIBRATION_SIZE
from core.variants import ir_variant

ACCURACY_CONTROL_PHOTOS = 150  # validation photos INT8's accuracy control measures on
FIDELITY_DROP = 0.004  # INT8's largest loss of `fidelity` to the float model on them (docs/lab-log.md, "INT8")


def calibration_images(split: data.Split, image_size: int, n: int, seed: int,
                       progress: ProgressFn = ignore) -> np.ndarray:
    """A seeded sample of the *training* split, decoded like every other input."""
    items = random.Random(seed).sample(split.train, min(n, len(split.train)))
    images, _, _ = data.load_arrays(items, image_size, progress, "load calibration")
    return images


def validation_images(split: data.Split, image_size: int, seed: int, progress: ProgressFn = ignore,
                      n: int = ACCURACY_CONTROL_PHOTOS) -> np.ndarray:
    """A seeded sample of the validation photos, decoded like every other input: what INT8's
    accuracy control measures on (its time grows with their number: about 12 minutes with all 294
    for EfficientNet-Lite1 in a Cloud-sized app)."""
    items = random.Random(seed).sample(split.val, min(n, len(split.val)))
    images, _, _ = data.load_arrays(items, image_size, progress, "load validation")
    return images


def keras_to_ov(model_dir: Path):
    """The Keras model as an `ov.Model` with a uint8 input and two outputs: `probabilities`, and
    `features` (the penultimate layer, for the open-set score)."""
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
    import tensorflow as tf
    from openvino.preprocess import PrePostProcessor

    # Traced in memory, in inference mode: the graph a SavedModel export gives (the same outputs,
    # bit for bit, and the same operations), without writing it to disk and parsing it back, which
    # took 5.9 s of CPU against 1.6 s for EfficientNet-Lite0 at 288 px. share_weights=False: the
    # IR owns its weights, not TensorFlow's buffers.
    serve = tf.function(lambda images: keras_model(images, training=False),
                        input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
    ov_model = ov.convert_model(serve, share_weights=False)
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
    docs/lab-log.md, "INT8")."""
    from core.model import architectures

    if not architectures.get(arch).transfer:
        return []
    convolutions = [op.get_friendly_name() for op in ov_model.get_ordered_ops()
                    if op.get_type_name() in ("Convolution", "GroupConvolution")]
    return convolutions[:FLOAT_STEM_CONVOLUTIONS]


def quantize_int8(ov_model, calibration: np.ndarray, subset_size: int = CALIBRATION_SIZE,
                  keep_float: list[str] = (), validation: np.ndarray | None = None,
                  max_drop: float | None = None, progress: ProgressFn = ignore, reference: np.ndarray | None = None):
    """NNCF post-training quantization, calibrated on `calibration` (uint8 NHWC training images),
    with `keep_float` left in floating point; given `validation` photos, with NNCF's accuracy
    control on them (`nncf.quantize_with_accuracy_control`): the layers whose quantized inputs cost
    the INT8 model most `fidelity` take them in floating point again, until it is within `max_drop`
    (by default FIDELITY_DROP) of the float model's, on those photos.

    Full bias correction (not NNCF's fast default): on the EfficientNet-Lite0 model it halved the
    largest probability error against FP32 on the validation photos (0.15 to 0.09) for 10% more
    time. Activation ranges from histograms (the range that minimises the quantization error, not
    NNCF's default mean of each photo's min and max): on the same photos it cut the mean error
    (1 - fidelity) by a fifth, 0.0073 to 0.0057 (docs/lab-log.md, "INT8")."""
    import nncf
    from nncf.quantization.advanced_parameters import (AdvancedAccuracyRestorerParameters,
                                                       AdvancedQuantizationParameters, RestoreMode)
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    samples = nncf.Dataset([calibration[i : i + 1] for i in range(len(calibration))])
    common = dict(preset=nncf.QuantizationPreset.MIXED, subset_size=min(subset_size, len(calibration)),
                  fast_bias_correction=False,
                  ignored_scope=nncf.IgnoredScope(names=list(keep_float)) if keep_float else None)
    ranges = AdvancedQuantizationParameters(activations_range_estimator_params=RangeEstimatorParametersSet.HISTOGRAM)
    if validation is None or len(validation) == 0:
        return nncf.quantize(ov_model, samples, advanced_parameters=ranges, **common)
    if reference is None:  # the float model's probabilities on `validation`, unless the caller has them
        reference = _probabilities(_compile(ov_model), validation)
    steps = iter(range(1, 10_000))

    def validate(compiled, indices) -> tuple[float, list[float]]:
        # NNCF calls this for the float model, the INT8 one and each layer it tries to put back.
        progress(Event("quantize", next(steps), None, "NNCF accuracy control: measuring a candidate INT8 model"))
        indices = list(indices)
        per_photo = fidelity(_probabilities(compiled, validation[indices]), reference[indices])
        return float(per_photo.mean()), per_photo.tolist()

    # Only the activations go back to floating point: the weights stay INT8, so the file stays as
    # small as plain INT8's (putting weights back too made the shipped model's INT8 IR 3.6 -> 6.5 MB
    # for the same fidelity on the validation photos).
    restorer = AdvancedAccuracyRestorerParameters(restore_mode=RestoreMode.ONLY_ACTIVATIONS)
    return nncf.quantize_with_accuracy_control(
        ov_model, samples, nncf.Dataset(list(range(len(validation)))), validate,
        max_drop=FIDELITY_DROP if max_drop is None else max_drop, drop_type=nncf.DropType.ABSOLUTE,
        advanced_quantization_parameters=ranges, advanced_accuracy_restorer_parameters=restorer, **common)


def fidelity(probabilities: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per photo, 1 minus the total variation distance between two models' probabilities: 1 when
    they answer alike. What INT8's accuracy control keeps: a final fit's validation photos are
    training photos, where both models are right, so accuracy on them could not tell them apart."""
    return 1.0 - 0.5 * np.abs(probabilities - reference).sum(axis=1)


def _compile(ov_model):
    import openvino as ov

    return ov.Core().compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})


def _probabilities(compiled, images: np.ndarray, batch: int = 32) -> np.ndarray:
    return np.concatenate([np.asarray(compiled(images[i:i + batch])[0]) for i in range(0, len(images), batch)])


def float_input_layers(ov_model) -> list[str]:
    """The convolutions and matrix products of a quantized model whose input is not quantized (no
    FakeQuantize before it), so they compute in floating point: the ones kept so on purpose and
    those accuracy control put back (their weights may still be stored in INT8)."""
    return [op.get_friendly_name() for op in ov_model.get_ordered_ops()
            if op.get_type_name() in ("Convolution", "GroupConvolution", "MatMul")
            and op.input_value(0).get_node().get_type_name() != "FakeQuantize"]


def _int8(ov_model, arch: str, calibration: np.ndarray, subset_size: int, validation: np.ndarray | None,
          progress: ProgressFn) -> tuple[Any, dict[str, Any]]:
    """The INT8 model and what its card records. With `validation` photos, NNCF's accuracy control
    too, kept only if it ends at least as faithful to the float model as plain INT8 on those photos:
    layers put back in float keep the bias corrections made for the fully quantized model, and on a
    budget it cannot reach that can leave it further from the float model than plain INT8."""
    keep_float = float_layers(ov_model, arch)
    model = quantize_int8(ov_model, calibration, subset_size, keep_float, progress=progress)
    extra: dict[str, Any] = {
        "calibration_images": min(subset_size, len(calibration)), "preset": "mixed", "bias_correction": "full",
        "activation_ranges": "histogram", "tool": "nncf.quantize", "float_layers": keep_float,
        "float_layers_why": "the stem and the first block: their error reaches every later layer, at about 5% "
                            "of the compute" if keep_float else ""}
    if validation is None or len(validation) == 0:
        return model, extra
    reference = _probabilities(_compile(ov_model), validation)
    plain = float(fidelity(_probabilities(_compile(model), validation), reference).mean())
    controlled = quantize_int8(ov_model, calibration, subset_size, keep_float, validation, progress=progress,
                               reference=reference)
    achieved = float(fidelity(_probabilities(_compile(controlled), validation), reference).mean())
    reverted = [n for n in float_input_layers(controlled) if n not in keep_float]
    control = {"metric": "fidelity to the float model: 1 - total variation distance of the probabilities, mean "
                         "over the validation photos",
               "max_drop": FIDELITY_DROP, "validation_images": len(validation), "plain_fidelity": round(plain, 5),
               "fidelity": round(achieved, 5), "reverted": reverted, "kept": achieved >= plain}
    if achieved < plain:
        control["budget_met"] = plain >= 1 - FIDELITY_DROP
        return model, extra | {"accuracy_control": control}
    control["budget_met"] = achieved >= 1 - FIDELITY_DROP
    extra |= {"tool": "nncf.quantize_with_accuracy_control", "float_layers": keep_float + reverted,
              "accuracy_control": control}
    if reverted:
        why = (f"{len(reverted)} put back by NNCF's accuracy control, to keep within {FIDELITY_DROP} of the float "
               "model's answers on the validation photos")
        extra["float_layers_why"] = "; ".join(filter(None, (extra["float_layers_why"], why)))
    return controlled, extra


def convert(
    model_dir: Path,
    calibration: np.ndarray | None,
    precisions: tuple[str, ...] = registry.IR_PRECISIONS,
    progress: ProgressFn = ignore,
    subset_size: int = CALIBRATION_SIZE,
    validation: np.ndarray | None = None,
) -> dict[str, Any]:
    """Write the requested IR variants into `model_dir` and record them on its card; where
    `validation` photos are given, INT8 also tries NNCF's accuracy control (`_int8`)."""
    import openvino as ov

    model_dir = Path(model_dir)
    unknown = set(precisions) - set(registry.IR_PRECISIONS)
    if unknown:
        raise UserError(f"unknown precision(s) {sorted(unknown)}; choose from {registry.IR_PRECISIONS}")
    if "int8" in precisions and (calibration is None or len(calibration) == 0):
        raise UserError("INT8 quantization needs calibration images")
    steps = len(precisions) + 1
    progress(Event("convert", 0, steps, "converting the Keras model to OpenVINO"))
    start = time.perf_counter()
    ov_model = keras_to_ov(model_dir)
    record: dict[str, Any] = {"convert_seconds": round(time.perf_counter() - start, 2)}
    for i, precision in enumerate(precisions, start=1):
        progress(Event("convert", i, steps, f"writing {precision.upper()} IR"))
        t0 = time.perf_counter()
        if precision == "int8":
            model, extra = _int8(ov_model, registry.read_card(model_dir).arch, calibration, subset_size, validation,
                                 progress)
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

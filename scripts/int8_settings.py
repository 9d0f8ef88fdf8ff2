"""NNCF quantization settings for a model's INT8 IR, measured on its *validation* photos (never the
held-out ones): the error of the INT8 probabilities against the FP32 IR, and top-1 agreement.

    python scripts/int8_settings.py models/flowers-efficientnet-lite0

docs/lab-log.md ("INT8") quotes its output; `core.model.convert.quantize_int8` uses the chosen setting.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.model import convert, data, registry  # noqa: E402
from core.settings import CALIBRATION_SIZE  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    args = parser.parse_args()
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    card = registry.read_card(args.model_dir)
    split = card.rebuild_split()
    photos, _, _ = data.load_arrays(split.val, card.image_size)
    fp32 = convert.keras_to_ov(args.model_dir)
    core = ov.Core()

    def probabilities(model) -> np.ndarray:
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        return np.concatenate([compiled(photos[i : i + 32])[0] for i in range(0, len(photos), 32)])

    reference = probabilities(fp32)
    stem = convert.float_layers(fp32, card.arch)
    convolutions = [op.get_friendly_name() for op in fp32.get_ordered_ops()
                    if op.get_type_name() in ("Convolution", "GroupConvolution", "MatMul")]
    settings = {
        "mixed preset, fast bias correction (NNCF's default)": dict(fast_bias_correction=True),
        "mixed, full bias correction": {},
        "the same with 600 calibration photos": dict(n=600),
        "performance preset, fast bias correction": dict(preset=nncf.QuantizationPreset.PERFORMANCE,
                                                         fast_bias_correction=True),
        "full bias correction, the stem convolution in float": dict(keep=stem[:1]),
        "full bias correction, the stem and the first block in float": dict(keep=stem),
        "full bias correction, the last two layers in float": dict(keep=convolutions[-2:]),
        "stem and first block in float, activation ranges from the global min and max": dict(
            keep=stem, ranges=RangeEstimatorParametersSet.MINMAX),
        "stem and first block in float, activation ranges from histograms (the choice)": dict(
            keep=stem, ranges=RangeEstimatorParametersSet.HISTOGRAM),
        "that + every depthwise convolution in float": dict(
            keep=sorted(set(stem) | {op.get_friendly_name() for op in fp32.get_ordered_ops()
                                     if op.get_type_name() == "GroupConvolution"}),
            ranges=RangeEstimatorParametersSet.HISTOGRAM),
    }
    print(f"{card.name}: {len(photos)} validation photos; error of INT8 against FP32 "
          "(1 - fidelity: the mean total variation distance of the probabilities)\n")
    print("| NNCF setting | 1 - fidelity | mean abs error | max | agreement | time |\n"
          "| --- | --- | --- | --- | --- | --- |")
    for label, s in settings.items():
        n = s.get("n", CALIBRATION_SIZE)
        calibration = convert.calibration_images(split, card.image_size, n, card.seed)
        start = time.perf_counter()
        model = nncf.quantize(fp32, nncf.Dataset([calibration[i : i + 1] for i in range(len(calibration))]),
                              preset=s.get("preset", nncf.QuantizationPreset.MIXED), subset_size=n,
                              fast_bias_correction=s.get("fast_bias_correction", False),
                              ignored_scope=nncf.IgnoredScope(names=s["keep"]) if s.get("keep") else None,
                              advanced_parameters=AdvancedQuantizationParameters(
                                  activations_range_estimator_params=s["ranges"]) if "ranges" in s else None)
        seconds = time.perf_counter() - start
        p = probabilities(model)
        error = np.abs(p - reference)
        agreement = (p.argmax(1) == reference.argmax(1)).mean()
        unfaithful = 1 - convert.fidelity(p, reference).mean()
        print(f"| {label} | {unfaithful:.4f} | {error.mean():.4f} | {error.max():.3f} | {agreement:.1%} | "
              f"{seconds:.0f} s |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

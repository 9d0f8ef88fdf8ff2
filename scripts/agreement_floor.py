"""How far top-1 agreement with TensorFlow can go on a model's held-out photos: the photos that
are near-ties for TensorFlow itself, and which photos each OpenVINO variant answers differently,
in f32 and in each lower precision the CPU runs natively (bf16 on this project's machine), scored as the tuner's accuracy guard scores them.

    python scripts/agreement_floor.py models/flowers-efficientnet-lite0

A photo whose two best classes are within a few hundredths of each other flips under any small
change of arithmetic: the float model's own bf16 run shows how many such flips are arithmetic,
not quantization. docs/lab-log.md ("INT8") quotes its output.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.model import data, registry  # noqa: E402
from core.quality import evaluate
from core.runtimes.backends import device_info, load_backend, native_precisions  # noqa: E402
from core.settings import OVSettings  # noqa: E402
from core.system import describe_cpu, machine_summary  # noqa: E402

VARIANTS = ("openvino-fp32", "openvino-fp16", "openvino-int8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    args = parser.parse_args()
    card = registry.read_card(args.model_dir)
    images, labels, _ = data.load_arrays(card.rebuild_split().test, card.image_size)
    tf = evaluate.predict_batched(load_backend(args.model_dir, registry.TF_VARIANT), images)
    top2 = np.sort(tf, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    print(f"{card.name}, {len(images)} held-out photos, {describe_cpu(machine_summary())}")
    print("TensorFlow's near-ties (best minus second-best probability): "
          + ", ".join(f"< {t}: {int((margin < t).sum())}" for t in (0.02, 0.05, 0.1)) + "\n")
    print("| variant | precision | agreement with TF | photos answered differently (TF's margin) |\n| --- | --- | --- | --- |")
    for precision in native_precisions(device_info()["capabilities"]):
        for variant in VARIANTS:
            probs = evaluate.predict_batched(load_backend(args.model_dir, variant, OVSettings(precision)), images)
            flips = np.flatnonzero(probs.argmax(1) != tf.argmax(1))
            listed = ", ".join(f"#{i} ({margin[i]:.3f})" for i in flips) or "none"
            agreeing = len(images) - len(flips)
            print(f"| {variant} | {precision} | {agreeing} of {len(images)} ({agreeing / len(images):.1%}) | {listed} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

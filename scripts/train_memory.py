"""Peak resident memory of a training process at several batch sizes, input sizes and fine-tuning
depths: what `core.model.training.estimate_peak_mb`'s per-architecture factor is fitted on.

    python scripts/train_memory.py --arch efficientnet_lite0 [--grid 16x240x120,16x240x60]

Each configuration trains one head epoch and one fine-tuning epoch on the mini archive in a fresh
process (malloc arenas limited to 2, as the app's jobs run), sampled every 50 ms with psutil.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MINI = ROOT.parent / "shared" / "flowers" / "flower_photos_mini.tgz"

CHILD = """
import sys, tempfile, threading, time, psutil
peak = 0
def sample():
    global peak
    me = psutil.Process()
    while True:
        peak = max(peak, me.memory_info().rss); time.sleep(0.05)
threading.Thread(target=sample, daemon=True).start()
from core.model import training
from core.model.recipes import TrainConfig
arch, batch, size, layers, data = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
cfg = TrainConfig(arch=arch, image_size=size, epochs=1, fine_tune_epochs=1, fine_tune_layers=layers,
                  batch_size=batch, val_fraction=0.2)
training.train(data, cfg, "memory", __import__("pathlib").Path(tempfile.mkdtemp()))
print(peak / 2**20)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="efficientnet_lite0")
    parser.add_argument("--data", default=str(MINI))
    parser.add_argument("--grid", default="8x224x90,16x224x90,32x224x90,16x288x90,16x224x45,16x224x142",
                        help="configurations as BATCHxPIXELSxLAYERS (fine-tuned layers), comma-separated")
    args = parser.parse_args()
    grid = [tuple(int(n) for n in cell.split("x")) for cell in args.grid.split(",")]
    env = os.environ | {"MALLOC_ARENA_MAX": "2", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    print(f"| {args.arch}: batch | px | fine-tuned layers | peak resident (MB) |\n| --- | --- | --- | --- |")
    for batch, size, layers in grid:
        out = subprocess.run([sys.executable, "-c", CHILD, args.arch, str(batch), str(size), str(layers), args.data],
                             capture_output=True, text=True, env=env, check=True).stdout.split()[-1]
        print(f"| {batch} | {size} | {layers} | {float(out):.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

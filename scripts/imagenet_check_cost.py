"""What the open-set check's ImageNet classifier costs: making its IR (once per server), loading it,
its memory, and its time per photo.

    python scripts/imagenet_check_cost.py [--photos N]

Runs in a fresh cache folder (so the IR is made cold, as on a first start on Community Cloud) and
prints one JSON line. Memory is this process's resident set (psutil) before and after, with
TensorFlow already imported as it is in the app.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=100, help="timed single-photo calls, after 5 warm-up calls")
    args = parser.parse_args()
    os.environ["FLOWERS_CACHE_DIR"] = tempfile.mkdtemp(prefix="imagenet-cost-")
    import tensorflow  # noqa: F401  (in the app it is already there)

    from core.model import imagenet

    process = psutil.Process()
    rss_before = process.memory_info().rss
    t0 = time.perf_counter()
    path = imagenet.ensure_ir()
    make_s = time.perf_counter() - t0
    rss_after_make = process.memory_info().rss
    t0 = time.perf_counter()
    judge = imagenet.Judge(path)
    compile_s = time.perf_counter() - t0
    photo = np.random.default_rng(0).integers(0, 256, (1, imagenet.SIZE, imagenet.SIZE, 3), np.uint8)
    for _ in range(5):
        judge.opinion(photo)
    times = []
    for _ in range(args.photos):
        t0 = time.perf_counter()
        judge.opinion(photo)
        times.append((time.perf_counter() - t0) * 1000)
    q = statistics.quantiles(times, n=20)
    print(json.dumps({
        "make_ir_s": round(make_s, 1), "compile_s": round(compile_s, 2),
        "ir_mb": round(sum(f.stat().st_size for f in path.parent.iterdir()) / 1e6, 1),
        "rss_mb": {"before": round(rss_before / 1e6), "after_making_ir": round(rss_after_make / 1e6),
                   "after_compile_and_calls": round(process.memory_info().rss / 1e6)},
        "ms_per_photo": {"p50": round(statistics.median(times), 2), "p5": round(q[0], 2), "p95": round(q[-1], 2)},
        "photos": args.photos, "cpus": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()

"""Where the benchmark harness's THROUGHPUT cells lose against OpenVINO's own benchmark_app.

    python scripts/harness_overhead.py MODEL_DIR [--variant openvino-int8] [--batch 1] [--images 1000] [--rounds 3]

In one process, on one compiled IR (THROUGHPUT hint, static batch, f32, pinning off: the settings of
the `openvino-int8-tput-static` backend) and in alternating rounds, so that the machine's drift falls on
every way alike:

- "callback": an AsyncInferQueue whose Python callback copies the output and records the latency
  (the harness until 2026-11-30);
- "harness": `core.measure.bench_worker.async_runner` as it is now (no Python callback; OpenVINO's
  own latency per request, read when the request is next taken);
- "benchmark_app": OpenVINO's tool on the same IR with the same properties (`-load_config`),
  fed generated data.

Prints each round's images/s and the medians' ratios to benchmark_app as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--variant", default="openvino-int8")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10, help="benchmark_app's -t per round")
    args = parser.parse_args()

    import openvino as ov

    from core.measure import bench_worker
    from core.measure.benchmark_app import run_benchmark_app
    from core.settings import SETUPS
    from core.system import machine_summary

    setup = replace(SETUPS["openvino-int8-tput-static"], variant=args.variant)
    loaded = bench_worker.load(setup, str(args.model_dir), args.batch)
    size = loaded.backend.image_size
    photos = np.random.default_rng(0).integers(0, 256, (64, size, size, 3), dtype=np.uint8)
    chunks = [np.ascontiguousarray(photos[(i * args.batch) % (64 - args.batch + 1):][: args.batch])
              for i in range(args.images // args.batch)]

    callback_queue = ov.AsyncInferQueue(loaded.backend.compiled, loaded.requests)
    callback_queue.set_callback(lambda request, started: request.get_output_tensor(0).data.copy())

    def with_callback(batches: list[np.ndarray]) -> None:
        for chunk in batches:
            callback_queue.start_async({0: chunk}, time.perf_counter(), share_inputs=True)
        callback_queue.wait_all()

    ways = {"callback": with_callback, "harness": loaded.run}
    rates: dict[str, list[float]] = {name: [] for name in [*ways, "benchmark_app"]}
    for _ in range(args.rounds):
        for name, run in ways.items():
            run(chunks)  # warm-up
            seconds = []
            for _ in range(5):
                t0 = time.perf_counter()
                run(chunks)
                seconds.append(time.perf_counter() - t0)
            rates[name].append(len(chunks) * args.batch / statistics.median(seconds))
        theirs = run_benchmark_app(args.model_dir, args.variant, "THROUGHPUT", args.batch, args.seconds, setup.ov)
        rates["benchmark_app"].append(theirs["throughput_ips"])
        print({k: round(v[-1], 1) for k, v in rates.items()}, file=sys.stderr, flush=True)
    medians = {k: statistics.median(v) for k, v in rates.items()}
    print(json.dumps({"machine": machine_summary(), "variant": args.variant, "batch": args.batch,
                      "requests": loaded.requests, "images": len(chunks) * args.batch,
                      "images_per_s": {k: [round(x, 1) for x in v] for k, v in rates.items()},
                      "ratio_to_benchmark_app": {k: round(m / medians["benchmark_app"], 3) for k, m in medians.items()}}))


if __name__ == "__main__":
    main()

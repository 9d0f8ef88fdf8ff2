"""Peak memory of the Train page's job, phase by phase: train, convert, validate, calibrate, latency.

    MALLOC_ARENA_MAX=2 OPENBLAS_NUM_THREADS=1 python scripts/job_memory.py [--recipe Recommended] [--data SOURCE]

Runs `core.app.workflow.train_and_optimize` (what the job runs) in this process, into a temporary
folder, with the job's environment as `core.app.jobs` sets it (the two variables above), and
samples this process's resident set every 50 ms. Prints, per phase as the job reports it, the
peak resident and anonymous (resident minus shared) MB as one JSON line. A phase that runs more
than once ("load val") shows its highest peak.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.app import workflow  # noqa: E402
from core.progress import Event  # noqa: E402
from core.model.recipes import RECIPES  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="Recommended", choices=list(RECIPES))
    parser.add_argument("--data", default=str(Path(__file__).resolve().parent.parent.parent
                                              / "shared" / "flowers" / "flower_photos.tgz"))
    args = parser.parse_args()

    process = psutil.Process()
    phase = {"now": "start"}
    peaks: dict[str, list[float]] = {}

    def sample() -> None:
        while True:
            memory = process.memory_info()
            peak = peaks.setdefault(phase["now"], [0.0, 0.0])
            peak[0] = max(peak[0], memory.rss / 2**20)
            peak[1] = max(peak[1], (memory.rss - memory.shared) / 2**20)
            time.sleep(0.05)

    started = time.time()

    def progress(event: Event) -> None:
        name = "fit" if event.stage in ("batch", "epoch", "fit") else event.stage
        if name != phase["now"]:
            print(f"{time.time() - started:7.1f} s  {name}: {event.message}", file=sys.stderr, flush=True)
            phase["now"] = name

    threading.Thread(target=sample, daemon=True).start()
    with tempfile.TemporaryDirectory(prefix="job-memory-") as out:
        workflow.train_and_optimize(args.data, RECIPES[args.recipe].config, "job-memory", Path(out), progress)
    print(json.dumps({"recipe": args.recipe, "seconds": round(time.time() - started),
                      "peak_mb": {name: {"resident": round(r), "anonymous": round(a)} for name, (r, a) in peaks.items()}}))


if __name__ == "__main__":
    main()

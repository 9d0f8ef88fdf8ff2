"""One backend's benchmark, run in its own process by `core.benchmark`.

Reads a job (JSON) on stdin and writes one JSON object per line on stdout: `loaded`
once, then a `cell` per (batch, test size). Only the runtime being measured is
imported, so memory and threads are this backend's alone.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

import numpy as np
import psutil

from core.system import exit_with_parent

_PROC = psutil.Process()


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def rss_mb() -> float:
    return _PROC.memory_info().rss / 2**20


class PeakRSS:
    """Samples resident memory on a thread while a block runs; `.peak_mb` is the maximum seen."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak_mb = 0.0
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, rss_mb())
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakRSS":
        self.peak_mb = rss_mb()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, rss_mb())


def sync_runner(backend):
    def run(chunks: list[np.ndarray]) -> list[float]:
        latencies = []
        for chunk in chunks:
            t0 = time.perf_counter()
            backend.predict(chunk)
            latencies.append(time.perf_counter() - t0)
        return latencies

    return run


def async_runner(backend):
    """OpenVINO THROUGHPUT mode: an AsyncInferQueue with the plugin's optimal number of requests."""
    import openvino as ov

    queue = ov.AsyncInferQueue(backend.compiled, int(backend.property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
    latencies: list[float] = []

    def done(request, started: float) -> None:
        request.get_output_tensor(0).data.copy()  # the same work as the sync path: fetch the result
        latencies.append(time.perf_counter() - started)

    queue.set_callback(done)

    def run(chunks: list[np.ndarray]) -> list[float]:
        latencies.clear()
        for chunk in chunks:
            # share_inputs: the request reads the (contiguous) batch in place instead of copying it.
            queue.start_async({0: chunk}, time.perf_counter(), share_inputs=True)
        queue.wait_all()
        return list(latencies)

    return run, len(queue)


def main() -> int:
    job = json.loads(sys.stdin.read())
    exit_with_parent()
    rss_start = rss_mb()
    t0 = time.perf_counter()
    if job["variant"] == "tensorflow":
        import tensorflow  # noqa: F401  (timed: the import is part of what a deployment pays)
    elif job["variant"] == "onnxruntime":
        import onnxruntime  # noqa: F401
    else:
        import openvino  # noqa: F401
    import_s = time.perf_counter() - t0
    rss_import = rss_mb()

    from core.backends import OVSettings, load_backend

    settings = OVSettings(**job["ov_settings"]) if job.get("ov_settings") else None
    static = bool(job.get("static"))

    def prepare(batch: int):
        """A backend for this batch size: one compiled model with a static shape, or the dynamic one."""
        backend = load_backend(job["model_dir"], job["variant"], settings, job.get("tf_mode", "serving"),
                               static_batch=batch if static else None)
        run, n_requests = async_runner(backend) if job.get("async") else (sync_runner(backend), 1)
        return backend, run, n_requests

    images = np.load(job["images"])
    t0 = time.perf_counter()
    backend, run, n_requests = prepare(job["batches"][0])
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    backend.predict(images[: backend.static_batch or 1])
    first_ms = (time.perf_counter() - t0) * 1000
    emit({"event": "loaded", "pid": os.getpid(), "tensorflow_imported": "tensorflow" in sys.modules,
          "import_s": import_s, "load_s": load_s,
          "compile_s": getattr(backend, "compile_seconds", None), "first_inference_ms": first_ms,
          "rss_start_mb": rss_start, "rss_after_import_mb": rss_import, "rss_after_load_mb": rss_mb(),
          "settings": backend.settings(), "requests": n_requests})

    for batch in job["batches"]:
        if static and backend.static_batch != batch:
            backend, run, n_requests = prepare(batch)
        for size in job["sizes"]:
            chunks = [images[i : min(i + batch, size)] for i in range(0, size, batch)]
            padded = 0
            if static and len(chunks[-1]) < batch:
                # A static shape takes only full batches: pad the last one with other real photos.
                # The backend does that extra work, but only the `size` images count.
                padded = batch - len(chunks[-1])
                chunks[-1] = np.concatenate([chunks[-1], images[:padded]])
            for _ in range(job["warmup"]):
                run(chunks)
            totals, latencies = [], []
            cpu0 = sum(_PROC.cpu_times()[:2])
            with PeakRSS() as peak:
                for _ in range(job["repeats"]):
                    t0 = time.perf_counter()
                    latencies += run(chunks)
                    totals.append(time.perf_counter() - t0)
            cpu_s = (sum(_PROC.cpu_times()[:2]) - cpu0) / job["repeats"]
            lat_ms = np.asarray(latencies) * 1000
            median = float(np.median(totals))
            emit({
                "event": "cell", "batch": batch, "size": size, "repeats": job["repeats"],
                "shape": backend.settings().get("shape"), "requests": n_requests, "padded_images": padded,
                "total_s_median": median, "total_s_min": float(np.min(totals)), "total_s_max": float(np.max(totals)),
                "total_s_std": float(np.std(totals)), "throughput_ips": size / median,
                "batch_latency_ms_p50": float(np.percentile(lat_ms, 50)),
                "batch_latency_ms_p90": float(np.percentile(lat_ms, 90)),
                "batch_latency_ms_p99": float(np.percentile(lat_ms, 99)),
                "image_latency_ms": median * 1000 / size,
                "cpu_s": cpu_s, "cpu_utilisation": cpu_s / median, "rss_peak_mb": peak.peak_mb,
            })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

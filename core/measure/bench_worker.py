"""One backend's benchmark, run in its own process by `core.measure.benchmark`.

Reads a job (JSON: the serialized `RunSetup`, the model, the images file and the plan)
on stdin and writes one JSON object per line on stdout: `loaded` once, then a `cell` per
(batch, test size). Only the runtime being measured is imported, so memory and threads are
this backend's alone. `load` and `measure` are the parts; `main` is the plumbing.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import psutil

from core.runtimes.backends import Backend, load_setup
from core.settings import RunSetup
from core.children import emit, read_request
from core.timing import time_calls, time_once
from core.variants import CATALOGUE, REMOTE_MODULE, REMOTE_SETUP

# The module each backend imports (and times) to start its runtime.
RUNTIME_MODULES = {name: v.runtime.module for name, v in CATALOGUE.items()} | {REMOTE_SETUP: REMOTE_MODULE}

_PROC = psutil.Process()


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


Runner = Callable[[list[np.ndarray]], list[float]]  # runs the batches once; returns each batch's seconds


def sync_runner(backend: Backend) -> Runner:
    def run(chunks: list[np.ndarray]) -> list[float]:
        return [time_once(lambda c=chunk: backend.predict(c))[0] for chunk in chunks]

    return run


def async_runner(backend: Backend) -> tuple[Runner, int]:
    """OpenVINO THROUGHPUT mode: an AsyncInferQueue with the plugin's optimal number of requests, driven
    as benchmark_app drives its own, with no Python callback: on two cores, handing each finished
    request to a Python callback (the GIL, a thread switch) cost 2–8% of the throughput of
    EfficientNet-Lite0 INT8 at batch 1. Each request's latency is OpenVINO's own (start to end, timed
    in C++), read with its result when the request is next taken, or at the end."""
    import openvino as ov

    queue = ov.AsyncInferQueue(backend.compiled, int(backend.property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))

    def finished(request_id: int) -> float:
        request = queue[request_id]
        request.get_output_tensor(0).data.copy()  # the same work as the sync path: fetch the result
        return request.latency / 1000  # milliseconds -> seconds

    def run(chunks: list[np.ndarray]) -> list[float]:
        latencies: list[float] = []
        ran: set[int] = set()
        for chunk in chunks:
            request_id = queue.get_idle_request_id()  # waits for one; start_async takes the same one
            if request_id in ran:
                latencies.append(finished(request_id))
            ran.add(request_id)
            # share_inputs: the request reads the (contiguous) batch in place instead of copying it.
            queue.start_async({0: chunk}, share_inputs=True)
        queue.wait_all()
        return latencies + [finished(i) for i in ran]

    return run, len(queue)


@dataclass
class Loaded:
    backend: Backend
    run: Runner
    requests: int  # infer requests in flight: 1, or the async queue's size


def load(spec: RunSetup, model_dir: str, batch: int) -> Loaded:
    """The backend of `spec`, ready for `batch`: a static shape compiles for that batch, a dynamic one takes any."""
    backend = load_setup(Path(model_dir), spec, batch)
    if spec.async_queue:
        run, requests = async_runner(backend)
        return Loaded(backend, run, requests)
    return Loaded(backend, sync_runner(backend), 1)


def batches_of(images: np.ndarray, size: int, batch: int, static_batch: int | None) -> tuple[list[np.ndarray], int]:
    """The first `size` images in batches; a static shape takes only full batches, so the last one is
    padded with other real photos. The backend does that extra work, but only `size` images count."""
    chunks = [images[i : min(i + batch, size)] for i in range(0, size, batch)]
    padded = 0
    if static_batch and len(chunks[-1]) < static_batch:
        padded = static_batch - len(chunks[-1])
        chunks[-1] = np.concatenate([chunks[-1], images[:padded]])
    return chunks, padded


def measure(run: Runner, chunks: list[np.ndarray], size: int, repeats: int, warmup: int) -> dict[str, float]:
    """Warm up, then time `repeats` runs over the batches: the fields of `runs.CellResult` but padding."""
    for _ in range(warmup):
        run(chunks)
    latencies: list[float] = []
    cpu0 = sum(_PROC.cpu_times()[:2])
    with PeakRSS() as peak:
        timing = time_calls(lambda: latencies.extend(run(chunks)), repeats, warmup=0)
    cpu_s = (sum(_PROC.cpu_times()[:2]) - cpu0) / repeats
    lat_ms = np.asarray(latencies) * 1000
    median_s = timing.median_ms / 1000
    return {
        "total_s_median": median_s, "total_s_min": timing.min_ms / 1000, "total_s_max": timing.max_ms / 1000,
        "total_s_std": timing.std_ms / 1000, "throughput_ips": size / median_s,
        "batch_latency_ms_p50": float(np.percentile(lat_ms, 50)),
        "batch_latency_ms_p90": float(np.percentile(lat_ms, 90)),
        "batch_latency_ms_p99": float(np.percentile(lat_ms, 99)),
        "image_latency_ms": median_s * 1000 / size,
        "cpu_s": cpu_s, "cpu_utilisation": cpu_s / median_s, "rss_peak_mb": peak.peak_mb,
    }


def main() -> int:
    job = read_request()
    spec, plan = RunSetup.from_dict(job["spec"]), job["plan"]
    rss_start = rss_mb()
    # Timed: the runtime's import is part of what a deployment pays. Only this one is imported.
    import_s, _ = time_once(lambda: importlib.import_module(RUNTIME_MODULES[spec.variant]))
    rss_import = rss_mb()
    images = np.load(job["images"])
    load_s, loaded = time_once(lambda: load(spec, job["model_dir"], plan["batches"][0]))
    first_s, _ = time_once(lambda: loaded.backend.predict(images[: loaded.backend.static_batch or 1]))
    emit("loaded", pid=os.getpid(), tensorflow_imported="tensorflow" in sys.modules, import_s=import_s,
         load_s=load_s, compile_s=getattr(loaded.backend, "compile_seconds", None), first_inference_ms=first_s * 1000,
         rss_start_mb=rss_start, rss_after_import_mb=rss_import, rss_after_load_mb=rss_mb(),
         settings=loaded.backend.settings(), requests=loaded.requests)
    for batch in plan["batches"]:
        if spec.static and loaded.backend.static_batch != batch:
            del loaded  # release the old compiled model (and its request queue) before compiling the next
            loaded = load(spec, job["model_dir"], batch)
        for size in plan["sizes"]:
            chunks, padded = batches_of(images, size, batch, loaded.backend.static_batch)
            emit("cell", batch=batch, size=size, shape=loaded.backend.settings().get("shape"),
                 requests=loaded.requests, padded_images=padded,
                 **measure(loaded.run, chunks, size, plan["repeats"], plan["warmup"]))
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # Every result is written: skip the interpreter's teardown. It is not measured, and a native abort
    # there (a CI machine once reported "terminate called without an active exception") would turn a
    # finished run into a failed one.
    os._exit(code)

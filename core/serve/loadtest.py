"""Load test of a model server: bounded concurrent clients over loopback, every answer checked,
beside the same IR with the same settings run in this process, in one run.

Measurement (`in_process`, `run_level`) is apart from plumbing (`load_test` exports the model,
starts the server and stops it, also on failure).
"""

from __future__ import annotations

import itertools
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from core.model import registry
from core.serve import serving
from core.progress import Event, ProgressFn, ignore
from core.runtimes.remote import RemoteBackend, RemoteConfig, RemoteError
from core.system import library_versions, machine_summary

CONCURRENCY = (1, 2, 4, 8)
REQUESTS = 400  # per concurrency level: each request is one photo


@dataclass
class LevelResult:
    concurrency: int
    requests: int
    ok: int  # answered with the expected top-1
    wrong: int  # answered, but another class than the in-process run
    errors: int  # no answer (timeout, refused, HTTP error)
    seconds: float
    throughput_ips: float
    p50_ms: float
    p99_ms: float
    max_abs_diff: float  # largest probability difference from the in-process run
    server_cpu_ms: float = 0.0  # the server process's CPU time per answered request
    client_cpu_ms: float = 0.0  # this process's (the clients') CPU time per answered request
    error_examples: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.requests - self.ok - self.wrong - self.errors


def in_process(repository: Path, photos: np.ndarray, requests: int) -> dict[str, Any]:
    """The served model, compiled here with the repository's settings: each photo's probabilities,
    batch-1 latency (sync, one request) and throughput (AsyncInferQueue with `nireq` requests)."""
    import openvino as ov

    from core.serve.model_server import compile_entry, read_repository

    config = read_repository(repository)[0]
    compiled = compile_entry(config, ov.Core())
    batch = compiled.input(0).get_partial_shape()[0]
    # One photo per request, as the clients send; a static batch gets the same blank padding as theirs.
    size = batch.get_length() if batch.is_static else 1
    inputs = [np.concatenate([p[None], np.zeros((size - 1, *p.shape), np.uint8)]) for p in photos]
    request = compiled.create_infer_request()
    probs = np.stack([request.infer({0: x})[0][0].copy() for x in inputs])  # also the warm-up
    latencies = []
    cpu_before = _cpu_s(psutil.Process())
    for i in range(requests):
        start = time.perf_counter()
        request.infer({0: inputs[i % len(inputs)]}, share_inputs=True)
        latencies.append(time.perf_counter() - start)
    cpu_ms = (_cpu_s(psutil.Process()) - cpu_before) / requests * 1000
    queue = ov.AsyncInferQueue(compiled, int(config["nireq"]))
    start = time.perf_counter()
    for i in range(requests):
        queue.start_async({0: inputs[i % len(inputs)]}, share_inputs=True)
    queue.wait_all()
    seconds = time.perf_counter() - start
    return {"probabilities": probs, "p50_ms": float(np.median(latencies) * 1000),
            "p99_ms": float(np.percentile(latencies, 99) * 1000), "throughput_ips": requests / seconds,
            "cpu_ms": cpu_ms,
            "nireq": int(config["nireq"]), "plugin_config": config["plugin_config"], "shape": config.get("shape")}


def run_level(backend: RemoteBackend, photos: np.ndarray, expected: np.ndarray, concurrency: int,
              requests: int) -> LevelResult:
    """`concurrency` client threads share `requests` single-photo requests, each sent when the
    client's previous one is answered (a closed loop: the load is bounded by design)."""
    counter = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    outcome = {"ok": 0, "wrong": 0, "errors": 0, "diff": 0.0}
    examples: list[str] = []

    def client() -> None:
        while (i := next(counter)) < requests:
            k = i % len(photos)
            start = time.perf_counter()
            try:
                probs = backend.predict(photos[k][None])[0]
            except RemoteError as exc:
                with lock:
                    outcome["errors"] += 1
                    if len(examples) < 3:
                        examples.append(str(exc))
                continue
            took = time.perf_counter() - start
            with lock:
                latencies.append(took)
                outcome["ok" if probs.argmax() == expected[k].argmax() else "wrong"] += 1
                outcome["diff"] = max(outcome["diff"], float(np.abs(probs - expected[k]).max()))

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    answered = outcome["ok"] + outcome["wrong"]
    return LevelResult(concurrency, requests, outcome["ok"], outcome["wrong"], outcome["errors"], seconds,
                       answered / seconds, float(np.median(latencies) * 1000) if latencies else float("nan"),
                       float(np.percentile(latencies, 99) * 1000) if latencies else float("nan"),
                       outcome["diff"], examples)


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def load_test(model_dir: Path, photos: np.ndarray, variant: str = "tuned", tuned_path: Path | None = None,
              concurrency: tuple[int, ...] = CONCURRENCY, requests: int = REQUESTS,
              progress: ProgressFn = ignore, batch: int | None = 1) -> dict[str, Any]:
    """Export the model, measure it in this process, then start the model server on a free
    loopback port and put each concurrency level on it; the server is stopped in every case."""
    card = registry.read_card(model_dir)
    with tempfile.TemporaryDirectory(prefix="loadtest-") as tmp:
        repository = serving.export(model_dir, Path(tmp) / "repository", variant, tuned_path, batch)
        setup = serving.choose_setup(model_dir, variant, tuned_path, batch)
        progress(Event("loadtest", 0, len(concurrency) + 1, "in process"))
        local = in_process(repository, photos, requests)
        levels = []
        with serving.running_server(repository, log=Path(tmp) / "server.log") as server:
            backend = RemoteBackend(RemoteConfig(server.url, card.name, timeout_s=30), card.image_size,
                                    len(card.classes), pool_size=max(concurrency))
            backend.predict(photos[:1])  # warm-up: the server's first inference
            processes = {"server": psutil.Process(server.pid), "client": psutil.Process()}
            for i, c in enumerate(concurrency, 1):
                progress(Event("loadtest", i, len(concurrency) + 1, f"{c} clients"))
                before = {k: _cpu_s(p) for k, p in processes.items()}
                level = run_level(backend, photos, local["probabilities"], c, requests)
                answered = max(1, level.ok + level.wrong)
                level.server_cpu_ms = (_cpu_s(processes["server"]) - before["server"]) / answered * 1000
                level.client_cpu_ms = (_cpu_s(processes["client"]) - before["client"]) / answered * 1000
                levels.append(level)
    return {
        "model": card.name, "variant": setup.variant, "settings_source": setup.source,
        "photos": len(photos), "requests_per_level": requests,
        "in_process": {k: v for k, v in local.items() if k != "probabilities"},
        "levels": [asdict(level) | {"lost": level.lost} for level in levels],
        "server": "KServe ModelServer (core.serve.model_server) on 127.0.0.1, clients in this process",
        "machine": machine_summary(), "versions": library_versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }

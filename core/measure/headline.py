"""Home's headline: TensorFlow against OpenVINO's best setup within the accuracy budget, one photo
at a time, time and memory, from a saved benchmark run of the model (never a typed number).

The run is an ordinary sweep (`python -m core benchmark`), each backend in its own process. A
shipped model carries one in its folder (`HEADLINE_DIR`); a run a visitor or the owner saves on
the Benchmark page that has the same backends is newer and, measured on this server, wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import UserError
from core.measure import runs
from core.model import registry
from core.quality.evaluate import ACCURACY_BUDGET, MIN_AGREEMENT, Guard
from core.variants import CATALOGUE, OPENVINO
from core.settings import BASELINE, SETUPS
from core.system import describe_cpu

HEADLINE_DIR = "headline"  # in a model folder: its saved run, as `--out MODEL/headline` writes it (docs/results.md)


@dataclass(frozen=True)
class Side:
    backend: str  # a key of settings.SETUPS
    label: str
    precision: str  # what the runtime reported running in
    latency_ms: float  # per photo: the median over the run's calls at batch 1
    latency_p90_ms: float
    memory_mb: float  # the backend's whole process at its peak (runtime, model and working memory)


@dataclass(frozen=True)
class Headline:
    tensorflow: Side
    openvino: Side
    machine: str  # "AMD EPYC, 2 cores"
    measured: str  # the run's date, YYYY-MM-DD
    photos: int
    repeats: int
    run_id: str
    openvino_left_out: dict[str, str]  # faster OpenVINO setups outside the accuracy budget, and why

    @property
    def speedup(self) -> float:
        return self.tensorflow.latency_ms / self.openvino.latency_ms

    @property
    def memory_ratio(self) -> float:
        return self.tensorflow.memory_mb / self.openvino.memory_mb

    def sentence(self) -> str:
        return (f"On {self.machine}, OpenVINO answers a photo in {self.openvino.latency_ms:.1f} ms, "
                f"**{self.speedup:.1f}× faster** than TensorFlow ({self.tensorflow.latency_ms:.1f} ms), and its "
                f"process needs **{self.memory_ratio:.1f}× less memory** ({self.openvino.memory_mb:.0f} MB "
                f"against {self.tensorflow.memory_mb:.0f} MB).")

    def how(self) -> str:
        left_out = "".join(f" {CATALOGUE[SETUPS[b].variant].label} is left out: {why}."
                           for b, why in self.openvino_left_out.items())
        return (f"Measured {self.measured} on {self.machine} (run {self.run_id}): each backend alone in its own "
                f"process, one photo at a time, {self.photos} photos × {self.repeats} runs, the median per photo; "
                f"memory is the process's peak resident size. OpenVINO's setup: {self.openvino.label} "
                f"(runs in {self.openvino.precision}), the fastest within the accuracy budget (accuracy at most "
                f"{ACCURACY_BUDGET:.0%} below TensorFlow's, the same top-1 answer on at least {MIN_AGREEMENT:.0%} of "
                f"held-out photos).{left_out}")


def _side(cell: dict[str, Any]) -> Side:
    return Side(cell["backend"], cell["label"], str(cell["precision"]), float(cell["batch_latency_ms_p50"]),
                float(cell["batch_latency_ms_p90"]), float(cell["rss_peak_mb"]))


def from_run(run: dict[str, Any], card) -> Headline | None:
    """The headline a saved run gives for a model card, or None if it lacks TensorFlow or OpenVINO
    at batch 1 or no OpenVINO setup in it is within the accuracy budget. Plain dicts, no pandas:
    Home's first screen reads it (docs/deploying.md)."""
    timed = [c for c in runs.cells(run) if c["batch"] == 1 and c.get("batch_latency_ms_p50") is not None]
    if not timed:
        return None
    size = max(c["size"] for c in timed)
    by_backend = {c["backend"]: c for c in timed if c["size"] == size}
    if BASELINE not in by_backend:
        return None
    within, left_out = [], {}
    for backend, cell in by_backend.items():
        if backend not in SETUPS or SETUPS[backend].runtime != OPENVINO.name:
            continue
        guard = Guard.from_card(card, SETUPS[backend].variant)
        if guard is None:
            continue
        if guard.reason is None:
            within.append(cell)
        else:
            left_out[backend] = guard.reason
    if not within:
        return None
    best = min(within, key=lambda c: c["batch_latency_ms_p50"])
    faster_left_out = {b: why for b, why in left_out.items()
                       if by_backend[b]["batch_latency_ms_p50"] < best["batch_latency_ms_p50"]}
    baseline = by_backend[BASELINE]
    return Headline(_side(baseline), _side(best), describe_cpu(run["machine"]), run["finished"][:10], size,
                    int(baseline["repeats"]), run["id"], faster_left_out)


def find(entry: registry.ModelEntry, roots: list[Path]) -> Headline | None:
    """The newest usable headline for the model: from runs saved under `roots` (the Benchmark
    page's) or the one shipped in its folder."""
    candidates: list[tuple[str, Path]] = []
    for root in [entry.path / HEADLINE_DIR, *roots]:  # a run's id ends with its model's name: read only those
        candidates += [(run_id, root) for run_id in runs.list_runs(root) if run_id.endswith(f"-{entry.name}")]
    for run_id, root in sorted(candidates, key=lambda c: c[0], reverse=True):
        try:
            run = runs.load_run(run_id, root)
        except UserError:  # an unreadable run is skipped here; the Benchmark page says why
            continue
        if run.get("model", {}).get("name") != entry.name:
            continue
        if (headline := from_run(run, entry.card)) is not None:
            return headline
    return None

"""Tune: the fastest OpenVINO setup of a model within an accuracy budget, against the peers at theirs.

1. Search space: IR variant x inference precision (f32, and bf16/f16 only where the CPU runs
   them natively) x {LATENCY: sync batch 1; THROUGHPUT: async queue, streams, batch} x static
   or dynamic shape; CPU pinning is tried on the leaders. The peers (ONNX Runtime, LiteRT, f32
   and INT8) over their thread counts, so the comparison is with each at its best.
2. Accuracy guard, once per variant and precision: accuracy on the model's held-out split
   within `ACCURACY_BUDGET` of TensorFlow's, and top-1 agreement with TensorFlow of at least
   `MIN_AGREEMENT`.
3. Successive halving: every setup is measured briefly, the faster half of each objective and
   runtime again on more photos and repeats, and so on, inside the time budget. Every measurement is
   a benchmark cell (`core.measure.bench_worker` in its own process), so tune and the Benchmark page
   report the same numbers.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from core.measure import benchmark, runs
from core.model.tuned import (BOTH, OBJECTIVE_CHOICES, OBJECTIVES, TUNED_FILE, Candidate, Failure, GuardSettings,
                               Reported, Tuning)
from core.model import data, registry
from core.quality import evaluate
from core.runtimes.backends import device_info, native_precisions
from core.errors import UserError
from core.quality.evaluate import ACCURACY_BUDGET, MIN_AGREEMENT, Guard
from core.progress import Event, ProgressFn, ignore
from core.settings import OVSettings, Plan, RunSetup, SweepConfig
from core.variants import CATALOGUE, IR_VARIANTS, OPENVINO, PEER_VARIANTS
from core.system import machine_summary

RUNGS = ((32, 2), (64, 3), (128, 5))  # (photos, repeats) of each round of successive halving
THROUGHPUT_BATCHES = (1, 8, 32)


@dataclass(frozen=True)
class Point:
    """One point of the search space (what benchmark_app would call a configuration): a setup and
    the objective it is measured for (one photo at a time, or batches through an async queue)."""

    objective: str
    setup: RunSetup

    def batches(self) -> tuple[int, ...]:
        return (1,) if self.objective == "latency" else THROUGHPUT_BATCHES

    def describe(self) -> str:
        return self.setup.describe()


def _openvino_point(objective: str, variant: str, precision: str, static: bool, streams: int | None = None,
                    pinning: bool = False) -> Point:
    hint = "LATENCY" if objective == "latency" else "THROUGHPUT"
    ov = OVSettings(precision, hint, streams=streams, pinning=pinning)
    return Point(objective, RunSetup("", variant, ov=ov, async_queue=objective == "throughput", static=static))


def search_space(variants: list[str], precisions: list[str], peer_variants: list[str] = ()) -> list[Point]:
    points = []
    for variant in variants:
        for precision in precisions:
            for static in (False, True):
                points.append(_openvino_point("latency", variant, precision, static))
                for streams in (None, 1):
                    points.append(_openvino_point("throughput", variant, precision, static, streams))
    for variant in peer_variants:
        for threads in dict.fromkeys((None, 1, os.cpu_count() or 1)):
            for objective in OBJECTIVES:
                points.append(Point(objective, RunSetup("", variant, threads=threads)))
    return points


# ---------------------------------------------------------------- accuracy guard

def accuracy_guards(model_dir: Path, variants: list[str], precisions: list[str], peer_variants: list[str] = (),
                    progress: ProgressFn = ignore) -> dict[tuple[str, str], Guard]:
    """Accuracy and agreement of every (variant, precision) on the held-out split, run once each;
    the peers (whose precision is their own) with the first."""
    card = registry.read_card(model_dir)
    split = card.rebuild_split(progress=progress)
    items = split.test or split.val
    if not items:
        raise UserError("tune needs the model's held-out (or validation) photos; none are in its split")
    images, labels, _ = data.load_arrays(items, card.image_size, progress, "load held-out photos")
    guards = {}
    for i, precision in enumerate(precisions):
        scored = variants + list(peer_variants) if i == 0 else variants
        progress(Event("tune", 0, None, f"accuracy guard: every variant in {precision} on {len(images)} photos"))
        scores = evaluate.score_variants(model_dir, images, labels, scored, OVSettings(precision))
        for variant in scored:
            key = (variant, CATALOGUE[variant].precision if CATALOGUE[variant].peer else precision)
            guards[key] = Guard(scores.accuracy[variant], scores.agreement_with_tf[variant],
                                scores.accuracy[registry.TF_VARIANT], scores.n_images)
    return guards


# ---------------------------------------------------------------- measuring

class SetupFailed(Exception):
    """A setup's worker failed (some setups crash on some CPUs); the search goes on without it."""


def measure_point(model_dir: Path, point: Point, images_path: Path, photos: int, repeats: int) -> list[runs.Cell]:
    """One benchmark-worker run of `point` over its batch sizes; one benchmark cell per batch."""
    plan = Plan((photos,), point.batches(), repeats)
    cells: list[runs.Cell] = []
    setup = replace(point.setup, label=point.describe())
    loaded = benchmark.measure_backend("tune", setup, str(model_dir), plan, images_path, cells.append)
    if "error" in loaded:
        raise SetupFailed(loaded["error"])
    return cells


def candidate(point: Point, cell: runs.Cell, guard: Guard, p99_limit_ms: float | None) -> Candidate:
    """A measured cell with the accuracy guard's verdict (and the p99 limit's, if one was set)."""
    r, s = cell.result, cell.settings
    reason = guard.reason or ""
    if not reason and p99_limit_ms is not None and r.batch_latency_ms_p99 > p99_limit_ms:
        reason = f"p99 {r.batch_latency_ms_p99:.1f} ms is over {p99_limit_ms:g} ms"
    return Candidate(point.objective, point.setup, s.batch, Reported(s.streams, s.requests, s.precision, s.threads),
                     p50_ms=r.batch_latency_ms_p50, p99_ms=r.batch_latency_ms_p99, throughput_ips=r.throughput_ips,
                     photos=s.size, repeats=s.repeats, accuracy=guard.accuracy,
                     agreement_with_tf=guard.agreement_with_tf, tf_accuracy=guard.tf_accuracy,
                     eligible=not reason, reason=reason)


def tune(model_dir: Path, objective: str = "both", budget_s: float = 300, p99_ms: float | None = None,
         progress: ProgressFn = ignore,
         variants: list[str] | None = None, peer_variants: list[str] | None = None,
         on_candidate: Callable[[Candidate], None] | None = None) -> Tuning:
    """Search, guard and measure (over `variants`, default every IR variant, and `peer_variants`,
    default every peer); save the tuning into the model folder and return it."""
    if objective not in OBJECTIVE_CHOICES:
        raise UserError(f"objective must be one of {', '.join(OBJECTIVE_CHOICES)}, not {objective!r}")
    objectives = OBJECTIVES if objective == BOTH else (objective,)
    started = time.monotonic()
    model_dir = Path(model_dir)
    info = device_info()
    available = [v for v in registry.available_variants(model_dir) if v in IR_VARIANTS]
    variants = [v for v in (variants or available) if v in available]
    if not variants:
        raise UserError(f"{model_dir.name} has no OpenVINO IR; convert it first")
    peer_variants = list(PEER_VARIANTS if peer_variants is None else peer_variants)
    for variant in variants + peer_variants:
        evaluate.ensure_scored(model_dir, variant, progress)
    precisions = native_precisions(info["capabilities"])
    guards = accuracy_guards(model_dir, variants, precisions, peer_variants, progress)
    points = _interleave([p for p in search_space(variants, precisions, peer_variants) if p.objective in objectives])

    photos_needed = max(p for p, _ in RUNGS)
    images, _ = benchmark.prepare_images(SweepConfig(str(model_dir), sizes=[photos_needed]), progress)
    with tempfile.TemporaryDirectory(prefix="tune-") as tmp:
        images_path = Path(tmp) / "images.npy"
        np.save(images_path, images)
        race = _Race(model_dir, images_path, guards, p99_ms, progress, on_candidate)
        race.run(points, objectives, deadline=started + budget_s)
    measured, failed = race.measured, race.failed

    if not measured and failed:
        raise UserError("every setup measured failed to run: "
                        + "; ".join(f"{p.describe()}: {e}" for p, e in failed.items()))
    if not measured:
        raise UserError(f"the {budget_s:.0f} s budget ran out before any setup was measured (the accuracy guard "
                        "alone took that long); give it more time")
    n_images = next(iter(guards.values())).n_images
    tuning = Tuning(
        candidates=tuple(sorted(measured.values(), key=lambda c: (c.objective, not c.eligible, c.p50_ms))),
        objectives=objectives,
        failed=tuple(Failure(p.objective, p.describe(), e) for p, e in failed.items()),
        guard=GuardSettings(ACCURACY_BUDGET, MIN_AGREEMENT, p99_ms, "held-out", n_images),
        machine=machine_summary() | {"openvino_device": info["name"], "capabilities": info["capabilities"]},
        budget_s=budget_s, seconds=round(time.monotonic() - started, 1),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    tuning.save(model_dir)
    progress(Event("tune", 1, 1, f"done in {tuning.seconds:.0f} s; saved {TUNED_FILE}"))
    return tuning


class _Race:
    """Successive halving over the points, then CPU pinning on each objective's OpenVINO leader;
    `measured` holds every candidate still in the race, `failed` the points whose worker died."""

    def __init__(self, model_dir: Path, images_path: Path, guards: dict[tuple[str, str], Guard],
                 p99_ms: float | None, progress: ProgressFn, on_candidate: Callable[[Candidate], None] | None) -> None:
        self.model_dir, self.images_path, self.guards, self.p99_ms = model_dir, images_path, guards, p99_ms
        self.progress, self.on_candidate = progress, on_candidate
        self.measured: dict[tuple[Point, int], Candidate] = {}
        self.failed: dict[Point, str] = {}

    def run(self, points: list[Point], objectives: tuple[str, ...], deadline: float) -> None:
        alive = list(points)
        photos, repeats = RUNGS[0]
        for rung, (photos, repeats) in enumerate(RUNGS, start=1):
            for i, point in enumerate(alive):
                if time.monotonic() > deadline:
                    break
                self.progress(Event("tune", i, len(alive), f"round {rung} of {len(RUNGS)} ({photos} photos, "
                                                           f"{repeats} repeats): {point.describe()}"))
                self.measure(point, photos, repeats)
            alive = _halve(alive, self.measured)
            if time.monotonic() > deadline or len(alive) <= len(_groups(alive)):
                break
        # CPU pinning, tried on each objective's OpenVINO leader with the leader's last measurement length.
        for leader in _leaders(self.measured, objectives):
            if time.monotonic() > deadline:
                break
            pinned = Point(leader.objective, replace(leader.setup, ov=replace(leader.setup.ov, pinning=True)))
            self.progress(Event("tune", 0, None, f"pinning: {pinned.describe()}"))
            self.measure(pinned, photos, repeats)

    def measure(self, point: Point, photos: int, repeats: int) -> None:
        try:
            cells = measure_point(self.model_dir, point, self.images_path, photos, repeats)
        except SetupFailed as e:
            # Dropped from the race: _halve and _leaders rank only what was measured.
            self.failed[point] = str(e)
            for key in [k for k in self.measured if k[0] == point]:
                del self.measured[key]
            self.progress(Event("tune", None, None, f"{point.describe()} failed: {e}"))
            return
        for cell in cells:
            c = candidate(point, cell, self.guards[(point.setup.variant, point.setup.precision)], self.p99_ms)
            self.measured[(point, c.batch)] = c
            if self.on_candidate:
                self.on_candidate(c)


def _rank(objective: str, measured: dict[tuple[Point, int], Candidate], runtime: str = OPENVINO.name) -> list[Candidate]:
    """Eligible candidates of one objective and runtime, best first."""
    pool = [c for c in measured.values() if c.objective == objective and c.runtime == runtime and c.eligible]
    return sorted(pool, key=lambda c: c.p50_ms if objective == "latency" else 1 / c.throughput_ips)


def _interleave(points: list[Point]) -> list[Point]:
    """Round-robin over (objective, runtime), so a budget that runs out in the first round has
    measured some of every group."""
    seen: dict[tuple[str, str], int] = {}
    order = []
    for p in points:
        group = (p.objective, p.setup.runtime)
        order.append((seen.get(group, 0), p))
        seen[group] = seen.get(group, 0) + 1
    return [p for _, p in sorted(order, key=lambda pair: pair[0])]


def _groups(points: list[Point]) -> set[tuple[str, str]]:
    return {(p.objective, p.setup.runtime) for p in points}


def _halve(alive: list[Point], measured: dict[tuple[Point, int], Candidate]) -> list[Point]:
    """The faster half (at least one) of each objective's and runtime's points still in the race, so
    each peer's best is measured as long as OpenVINO's."""
    keep: list[Point] = []
    for objective, runtime in sorted(_groups(alive)):
        ranked = [p for p in dict.fromkeys(Point(c.objective, c.setup) for c in _rank(objective, measured, runtime))
                  if p in alive]
        keep += ranked[: max(1, len(ranked) // 2)]
    return keep


def _leaders(measured: dict[tuple[Point, int], Candidate], objectives: tuple[str, ...]) -> list[Point]:
    return [Point(ranked[0].objective, ranked[0].setup) for o in objectives if (ranked := _rank(o, measured))]


def tune_job(ctx, model_dir: str, objective: str, budget_s: float, p99_ms: float | None,
             variants: list[str] | None = None, peer_variants: list[str] | None = None) -> dict[str, Any]:
    """`tune` as a job of `core.app.jobs` (in its child process): each measured setup becomes a row."""
    tuning = tune(Path(model_dir), objective, budget_s, p99_ms, ctx.progress, variants, peer_variants,
                  on_candidate=lambda c: ctx.add_row(c.to_dict()))
    return {"created": tuning.created, "seconds": tuning.seconds}

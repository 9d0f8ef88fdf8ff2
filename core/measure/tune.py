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

import dataclasses
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from core import atomic
from core.measure import benchmark, benchmark_app, runs
from core.model import data, evaluate, registry
from core.runtimes.backends import device_info
from core.errors import UserError
from core.model.evaluate import ACCURACY_BUDGET, MIN_AGREEMENT, Guard
from core.progress import Event, ProgressFn, ignore
from core.settings import BackendSpec, OVSettings, Plan, SweepConfig
from core.model.variants import CATALOGUE, IR_VARIANTS, PEER_VARIANTS, ir_variant
from core.system import machine_summary

TUNED_FILE = "tuned.json"
OBJECTIVES = ("latency", "throughput")
RUNGS = ((32, 2), (64, 3), (128, 5))  # (photos, repeats) of each round of successive halving
THROUGHPUT_BATCHES = (1, 8, 32)


@dataclass(frozen=True)
class Setup:
    """One point of the search space (what benchmark_app would call a configuration)."""

    objective: str
    variant: str
    precision: str  # OpenVINO's inference precision; a peer's own (f32 or its INT8)
    hint: str  # OpenVINO only ("" for a peer)
    streams: int | None  # None: the plugin's choice for the hint
    static: bool
    pinning: bool
    threads: int | None = None  # a peer's threads; None: its runtime's default

    @property
    def runtime(self) -> str:
        return CATALOGUE[self.variant].runtime.name

    def spec(self) -> BackendSpec:
        if self.runtime != "openvino":
            return BackendSpec(self.describe(), self.variant, threads=self.threads)
        ov = OVSettings(self.precision, self.hint, streams=self.streams, pinning=self.pinning)
        return BackendSpec(self.describe(), self.variant, ov=ov, async_queue=self.objective == "throughput",
                           static=self.static)

    def describe(self) -> str:
        if self.runtime != "openvino":
            return f"{self.variant} {self.precision} threads {self.threads or 'auto'}"
        streams = "auto" if self.streams is None else self.streams
        return (f"{self.variant} {self.precision} {self.hint} streams {streams}, "
                f"{'static' if self.static else 'dynamic'} shape, pinning {'on' if self.pinning else 'off'}")

    def batches(self) -> tuple[int, ...]:
        return (1,) if self.objective == "latency" else THROUGHPUT_BATCHES


def native_precisions(capabilities: list[str]) -> list[str]:
    """f32 always; bf16 and f16 only where the CPU plugin reports them as native capabilities."""
    return ["f32"] + [p for p, cap in (("bf16", "BF16"), ("f16", "FP16")) if cap in capabilities]


def search_space(variants: list[str], precisions: list[str], peer_variants: list[str] = ()) -> list[Setup]:
    setups = []
    for variant in variants:
        for precision in precisions:
            for static in (False, True):
                setups.append(Setup("latency", variant, precision, "LATENCY", None, static, False))
                for streams in (None, 1):
                    setups.append(Setup("throughput", variant, precision, "THROUGHPUT", streams, static, False))
    for variant in peer_variants:
        for threads in dict.fromkeys((None, 1, os.cpu_count() or 1)):
            for objective in OBJECTIVES:
                setups.append(Setup(objective, variant, CATALOGUE[variant].precision, "", None, False, False, threads))
    return setups


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


def measure_setup(model_dir: Path, setup: Setup, images_path: Path, photos: int, repeats: int) -> list[dict[str, Any]]:
    """One benchmark-worker run of `setup` over its batch sizes; one row (a benchmark cell) per batch."""
    plan = Plan((photos,), setup.batches(), repeats)
    cells: list[runs.Cell] = []
    loaded = benchmark.measure_backend("tune", setup.spec(), str(model_dir), plan, images_path, cells.append)
    if "error" in loaded:
        raise SetupFailed(loaded["error"])
    return [c.row() for c in cells]


def _score(objective: str, row: dict[str, Any]) -> float:
    """Lower is better: p50 latency of one photo, or seconds per image."""
    return row["batch_latency_ms_p50"] if objective == "latency" else 1 / row["throughput_ips"]


@dataclass
class Candidate:
    setup: Setup
    batch: int
    row: dict[str, Any]
    guard: Guard
    p99_limit_ms: float | None

    @property
    def reason(self) -> str | None:
        if self.guard.reason:
            return self.guard.reason
        if self.p99_limit_ms is not None and self.row["batch_latency_ms_p99"] > self.p99_limit_ms:
            return f"p99 {self.row['batch_latency_ms_p99']:.1f} ms is over {self.p99_limit_ms:g} ms"
        return None

    def to_dict(self) -> dict[str, Any]:
        s = self.setup
        return {
            "objective": s.objective, "label": s.describe(), "runtime": s.runtime,
            "setup": {"variant": s.variant, "precision": s.precision, "hint": s.hint,
                      "streams": self.row["streams"], "requests": self.row["requests"], "batch": self.batch,
                      "shape": "static" if s.static else "dynamic", "pinning": s.pinning,
                      "streams_requested": s.streams, "precision_reported": self.row["precision"],
                      "threads": self.row["threads"]},
            "p50_ms": self.row["batch_latency_ms_p50"], "p99_ms": self.row["batch_latency_ms_p99"],
            "throughput_ips": self.row["throughput_ips"], "photos": self.row["size"], "repeats": self.row["repeats"],
            "accuracy": self.guard.accuracy, "agreement_with_tf": self.guard.agreement_with_tf,
            "tf_accuracy": self.guard.tf_accuracy, "eligible": self.reason is None, "reason": self.reason or "",
        }


def tune(model_dir: Path, objective: str = "both", budget_s: float = 300, p99_ms: float | None = None,
         progress: ProgressFn = ignore,
         variants: list[str] | None = None, peer_variants: list[str] | None = None,
         on_candidate: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Search, guard and measure (over `variants`, default every IR variant, and `peer_variants`,
    default every peer); write `tuned.json` into the model folder and return it."""
    if objective not in (*OBJECTIVES, "both"):
        raise UserError(f"objective must be latency, throughput or both, not {objective!r}")
    objectives = OBJECTIVES if objective == "both" else (objective,)
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
    setups = _interleave([s for s in search_space(variants, precisions, peer_variants) if s.objective in objectives])

    photos_needed = max(p for p, _ in RUNGS)
    images, _ = benchmark.prepare_images(SweepConfig(str(model_dir), sizes=[photos_needed]), progress)
    with tempfile.TemporaryDirectory(prefix="tune-") as tmp:
        images_path = Path(tmp) / "images.npy"
        np.save(images_path, images)
        measured: dict[tuple[Setup, int], Candidate] = {}
        failed: dict[Setup, str] = {}

        def run(setup: Setup, photos: int, repeats: int) -> None:
            try:
                rows = measure_setup(model_dir, setup, images_path, photos, repeats)
            except SetupFailed as e:
                # Dropped from the race: _halve and _leaders rank only what was measured.
                failed[setup] = str(e)
                for key in [k for k in measured if k[0] == setup]:
                    del measured[key]
                progress(Event("tune", None, None, f"{setup.describe()} failed: {e}"))
                return
            for row in rows:
                candidate = Candidate(setup, row["batch"], row, guards[(setup.variant, setup.precision)], p99_ms)
                measured[(setup, row["batch"])] = candidate
                if on_candidate:
                    on_candidate(candidate.to_dict())

        alive = list(setups)
        for rung, (photos, repeats) in enumerate(RUNGS, start=1):
            for i, setup in enumerate(alive):
                if time.monotonic() - started > budget_s:
                    break
                progress(Event("tune", i, len(alive), f"round {rung} of {len(RUNGS)} ({photos} photos, "
                                                      f"{repeats} repeats): {setup.describe()}"))
                run(setup, photos, repeats)
            alive = _halve(alive, measured)
            if time.monotonic() - started > budget_s or len(alive) <= len(_groups(alive)):
                break
        # CPU pinning, tried on each objective's OpenVINO leader with the leader's last measurement length.
        for leader in _leaders(measured, objectives):
            if time.monotonic() - started > budget_s:
                break
            pinned = dataclasses.replace(leader, pinning=True)
            progress(Event("tune", 0, None, f"pinning: {pinned.describe()}"))
            run(pinned, photos, repeats)

    if not measured and failed:
        raise UserError("every setup measured failed to run: "
                        + "; ".join(f"{s.describe()}: {e}" for s, e in failed.items()))
    if not measured:
        raise UserError(f"the {budget_s:.0f} s budget ran out before any setup was measured (the accuracy guard "
                        "alone took that long); give it more time")
    candidates = [c.to_dict() for c in measured.values()]
    result = {
        "objectives": {o: best(candidates, o) for o in objectives},
        "best_peers": {o: best(candidates, o, among_peers=True) for o in objectives},
        "candidates": sorted(candidates, key=lambda c: (c["objective"], not c["eligible"], c["p50_ms"])),
        "failed": [{"objective": s.objective, "label": s.describe(), "error": e} for s, e in failed.items()],
        "guard": {"accuracy_budget": ACCURACY_BUDGET, "min_agreement": MIN_AGREEMENT, "p99_ms": p99_ms,
                  "split": "held-out", "n_images": next(iter(guards.values())).n_images},
        "machine": machine_summary() | {"openvino_device": info["name"], "capabilities": info["capabilities"]},
        "budget_s": budget_s, "seconds": round(time.monotonic() - started, 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic.write_json(model_dir / TUNED_FILE, result)
    progress(Event("tune", 1, 1, f"done in {result['seconds']:.0f} s; saved {TUNED_FILE}"))
    return result


def _rank(objective: str, measured: dict[tuple[Setup, int], Candidate], runtime: str = "openvino") -> list[Candidate]:
    """Eligible candidates of one objective and runtime, best first."""
    pool = [c for c in measured.values()
            if c.setup.objective == objective and c.setup.runtime == runtime and c.reason is None]
    return sorted(pool, key=lambda c: _score(objective, c.row))


def _interleave(setups: list[Setup]) -> list[Setup]:
    """Round-robin over (objective, runtime), so a budget that runs out in the first round has
    measured some of every group."""
    seen: dict[tuple[str, str], int] = {}
    order = []
    for s in setups:
        group = (s.objective, s.runtime)
        order.append((seen.get(group, 0), s))
        seen[group] = seen.get(group, 0) + 1
    return [s for _, s in sorted(order, key=lambda pair: pair[0])]


def _groups(setups: list[Setup]) -> set[tuple[str, str]]:
    return {(s.objective, s.runtime) for s in setups}


def _halve(alive: list[Setup], measured: dict[tuple[Setup, int], Candidate]) -> list[Setup]:
    """The faster half (at least one) of each objective's and runtime's setups still in the race, so
    each peer's best is measured as long as OpenVINO's."""
    keep: list[Setup] = []
    for objective, runtime in sorted(_groups(alive)):
        ranked = list(dict.fromkeys(c.setup for c in _rank(objective, measured, runtime) if c.setup in alive))
        keep += ranked[: max(1, len(ranked) // 2)]
    return keep


def _leaders(measured: dict[tuple[Setup, int], Candidate], objectives: tuple[str, ...]) -> list[Setup]:
    return [ranked[0].setup for o in objectives if (ranked := _rank(o, measured))]


def best(candidates: list[dict[str, Any]], objective: str, among_peers: bool = False) -> dict[str, Any] | None:
    """The winner among the longest-measured eligible OpenVINO candidates (short early runs are
    noisier), or among the peers'."""
    pool = [c for c in candidates if c["objective"] == objective and c["eligible"]
            and (c.get("runtime", "openvino") != "openvino") == among_peers]
    if not pool:
        return None
    longest = max(c["photos"] * c["repeats"] for c in pool)
    pool = [c for c in pool if c["photos"] * c["repeats"] == longest]
    key = (lambda c: c["p50_ms"]) if objective == "latency" else (lambda c: -c["throughput_ips"])
    return min(pool, key=key)


def winners_beside_benchmark_app(model_dir: Path, result: dict[str, Any], seconds: int = 15,
                progress: ProgressFn = ignore) -> list[dict[str, Any]]:
    """OpenVINO's benchmark_app with `-hint latency` and `-hint throughput` (its own defaults otherwise)
    on each winner's IR and batch, right after tuning; stored in tuned.json. The tuned latency winner
    should be at least as fast per call, the throughput winner at least as fast in bulk."""
    checks = []
    for objective in OBJECTIVES:
        best = result["objectives"].get(objective)
        if best is None:
            continue
        progress(Event("tune", 0, None, f"benchmark_app -hint {objective} on {best['setup']['variant']}"))
        theirs = benchmark_app.run_benchmark_app(Path(model_dir), best["setup"]["variant"], objective,
                                             best["setup"]["batch"], seconds)
        if objective == "latency":
            ours, their_value, unit = best["p50_ms"], theirs["median_ms"], "ms (p50 of a call)"
            holds = ours <= their_value
        else:
            ours, their_value, unit = best["throughput_ips"], theirs["throughput_ips"], "images/s"
            holds = ours >= their_value
        checks.append({"objective": objective, "ours": ours, "benchmark_app": their_value, "unit": unit,
                       "tuned_is_at_least_as_good": holds, "command": theirs["command"],
                       "benchmark_app_requests": theirs["requests"], "benchmark_app_inputs": theirs["inputs"]})
    atomic.write_json(Path(model_dir) / TUNED_FILE, result | {"benchmark_app": checks})
    return checks


def tune_job(ctx, model_dir: str, objective: str, budget_s: float, p99_ms: float | None) -> dict[str, Any]:
    """`tune` as a job of `core.app.jobs` (in its child process): each measured setup becomes a row."""
    return tune(Path(model_dir), objective, budget_s, p99_ms, ctx.progress, on_candidate=ctx.add_row)


def pareto(candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The eligible candidates no other eligible one beats on both p50 latency and throughput,
    by latency."""
    pool = [c for c in candidates if c["eligible"]]
    front = [c for c in pool if not any(o["p50_ms"] <= c["p50_ms"] and o["throughput_ips"] >= c["throughput_ips"]
                                        and (o["p50_ms"], o["throughput_ips"]) != (c["p50_ms"], c["throughput_ips"])
                                        for o in pool)]
    return sorted(front, key=lambda c: c["p50_ms"])


def over_best_peer(result: dict[str, Any], objective: str) -> float | None:
    """How many times faster OpenVINO's winner is than the best peer within the same accuracy budget
    (p50 latency, or throughput), both from this tuning; None without both."""
    ours, peer = result["objectives"].get(objective), result.get("best_peers", {}).get(objective)
    if not ours or not peer:
        return None
    if objective == "latency":
        return peer["p50_ms"] / ours["p50_ms"]
    return ours["throughput_ips"] / peer["throughput_ips"]


def recommendation(result: dict[str, Any]) -> list[str]:
    """The tuning in plain words."""
    lines = []
    latency, throughput = result["objectives"].get("latency"), result["objectives"].get("throughput")
    if latency:
        lines.append(f"For one photo at a time use {latency['label']}: {latency['p50_ms']:.2f} ms per photo (p50), "
                     f"p99 {latency['p99_ms']:.2f} ms, accuracy {latency['accuracy']:.1%}.")
    if throughput:
        lines.append(f"For bulk use {throughput['label']} at batch {throughput['setup']['batch']}: "
                     f"{throughput['throughput_ips']:.0f} photos/s, accuracy {throughput['accuracy']:.1%}.")
    for objective, peer in result.get("best_peers", {}).items():
        ratio = over_best_peer(result, objective)
        if ratio is None:
            continue
        ours = result["objectives"][objective]
        figure = (f"{ours['p50_ms']:.2f} vs {peer['p50_ms']:.2f} ms p50" if objective == "latency"
                  else f"{ours['throughput_ips']:.0f} vs {peer['throughput_ips']:.0f} photos/s")
        faster = f"{ratio:.2f}× faster than" if ratio >= 1 else f"{1 / ratio:.2f}× slower than"
        lengths = [f"{c['photos']} photos × {c['repeats']} repeats" for c in (ours, peer)]
        measured = lengths[0] + " each" if lengths[0] == lengths[1] else f"{lengths[0]} vs {lengths[1]}"
        lines.append(f"For {objective}, OpenVINO's winner is {faster} the best peer within the same accuracy budget, "
                     f"{peer['label']} ({figure}; {measured}, in this tuning).")
    int8 = [c for c in result["candidates"] if c["setup"]["variant"] == ir_variant("int8")]
    if int8:
        c = max(int8, key=lambda c: c["accuracy"])
        cost = (c["tf_accuracy"] - c["accuracy"]) * 100
        verdict = "within the budget" if c["eligible"] else f"not eligible: {c['reason']}"
        lines.append(f"INT8 costs {cost:.1f} points of held-out accuracy here ({c['accuracy']:.1%} vs TensorFlow's "
                     f"{c['tf_accuracy']:.1%}; {verdict}).")
    if failed := result.get("failed"):
        lines.append(f"{len(failed)} setup(s) failed to run on this machine and were left out: "
                     + "; ".join(f"{f['label']} ({f['error']})" for f in failed) + ".")
    for objective in result["objectives"]:
        if not result["objectives"][objective]:
            lines.append(f"No setup met the accuracy budget for {objective}.")
    return lines


def load_tuned(model_dir: Path) -> dict[str, Any] | None:
    """The saved tuning of a model, if any."""
    path = Path(model_dir) / TUNED_FILE
    try:
        return json.loads(path.read_text()) if path.exists() else None
    except (OSError, ValueError):
        return None


def settings_of(winner: dict[str, Any]) -> tuple[str, OVSettings, int | None]:
    """A saved winner as (variant, OpenVINO settings, static batch or None), to load it again."""
    s = winner["setup"]
    settings = OVSettings(s["precision"], s["hint"], streams=s["streams_requested"], pinning=bool(s["pinning"]))
    return s["variant"], settings, s["batch"] if s["shape"] == "static" else None


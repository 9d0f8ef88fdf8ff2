"""A tuning as saved: `tuned.json` in the model folder, typed and versioned like the model card.

`core.measure.tune` searches and measures; this module is what it found: every measured
candidate (a `RunSetup`, the batch it ran at, its figures and the accuracy guard's verdict),
each objective's winner, the best peer's, and the reading of all that (the winner to load,
the Pareto front, OpenVINO over the best peer, the tuning in words). Predict, the model server,
the CLI and the Benchmark page read a tuning only through `load`.

Version 1 (no `version` key, before 2026-11-30) kept each setup as a flat dict with the streams
both as asked (`streams_requested`) and as reported; `from_dict` migrates it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from core import atomic
from core.variants import OPENVINO, ir_variant
from core.settings import OVSettings, RunSetup

TUNED_FILE = "tuned.json"
TUNED_VERSION = 2
OBJECTIVES = ("latency", "throughput")
BOTH = "both"  # tune for every objective
OBJECTIVE_CHOICES = (BOTH, *OBJECTIVES)  # what the Tune page and the CLI offer


@dataclass(frozen=True)
class Reported:
    """What the runtime reported running with (the plugin's choice where the setup left it open)."""

    streams: str
    requests: int
    precision: str
    threads: str


@dataclass(frozen=True)
class Candidate:
    """One measured setup at one batch size, with the accuracy guard's verdict."""

    objective: str
    setup: RunSetup
    batch: int
    reported: Reported
    p50_ms: float
    p99_ms: float
    throughput_ips: float
    photos: int
    repeats: int
    accuracy: float
    agreement_with_tf: float
    tf_accuracy: float
    eligible: bool
    reason: str = ""

    @property
    def label(self) -> str:
        return self.setup.describe()

    @property
    def runtime(self) -> str:
        return self.setup.runtime

    @property
    def static_batch(self) -> int | None:
        """The batch a static shape is compiled for; None for a dynamic one."""
        return self.batch if self.setup.static else None

    @property
    def nireq(self) -> int:
        """Requests to keep in flight to run it as measured: as many as it had, at least one per stream."""
        streams = int(self.reported.streams) if self.reported.streams.isdigit() else 1
        return max(self.reported.requests, streams)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"setup": self.setup.to_dict(), "label": self.label}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Candidate:
        d = {k: v for k, v in d.items() if k != "label"}
        return cls(**d | {"setup": RunSetup.from_dict(d["setup"]), "reported": Reported(**d["reported"])})


@dataclass(frozen=True)
class Failure:
    objective: str
    label: str
    error: str


@dataclass(frozen=True)
class GuardSettings:
    """The accuracy budget the candidates were held to, and on which photos."""

    accuracy_budget: float
    min_agreement: float
    p99_ms: float | None
    split: str
    n_images: int


@dataclass(frozen=True)
class AppCheck:
    """OpenVINO's benchmark_app on a winner's IR and batch, right after tuning."""

    objective: str
    ours: float
    benchmark_app: float
    unit: str
    tuned_is_at_least_as_good: bool
    command: str
    benchmark_app_requests: int | None
    benchmark_app_inputs: str


@dataclass(frozen=True)
class Tuning:
    candidates: tuple[Candidate, ...]
    objectives: tuple[str, ...]
    failed: tuple[Failure, ...]
    guard: GuardSettings
    machine: dict[str, Any]  # core.system.machine_summary, with the OpenVINO device and its capabilities
    budget_s: float
    seconds: float
    created: str
    benchmark_app: tuple[AppCheck, ...] = ()
    version: int = TUNED_VERSION

    # ------------------------------------------------------------ reading it

    def winner(self, objective: str, among_peers: bool = False) -> Candidate | None:
        return best(self.candidates, objective, among_peers)

    @property
    def winners(self) -> dict[str, Candidate | None]:
        return {o: self.winner(o) for o in self.objectives}

    def over_best_peer(self, objective: str) -> float | None:
        """How many times faster OpenVINO's winner is than the best peer within the same accuracy
        budget (p50 latency, or throughput), both from this tuning; None without both."""
        ours, peer = self.winner(objective), self.winner(objective, among_peers=True)
        if ours is None or peer is None:
            return None
        return peer.p50_ms / ours.p50_ms if objective == "latency" else ours.throughput_ips / peer.throughput_ips

    def pareto(self) -> list[Candidate]:
        return pareto(self.candidates)

    def serving_winner(self, variant: str | None, batch: int | None) -> Candidate | None:
        """The fastest eligible OpenVINO throughput setup at `batch` photos per request (None: any),
        of one IR variant (None: any)."""
        pool = [c for c in self.candidates if c.runtime == OPENVINO.name and (variant is None or c.setup.variant == variant)
                and (batch is None or c.batch == batch)]
        return best(pool, "throughput")

    def describe_machine(self) -> str:
        return self.machine.get("cpu") or self.machine.get("processor") or "an unnamed machine"

    # ------------------------------------------------------------ saving it

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self) | {"candidates": [c.to_dict() for c in self.candidates]}
        # The winners, written out for a reader of the file (derived: `from_dict` recomputes them).
        d["winners"] = {o: c.to_dict() if (c := self.winner(o)) else None for o in self.objectives}
        d["best_peers"] = {o: c.to_dict() if (c := self.winner(o, True)) else None for o in self.objectives}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Tuning:
        if d.get("version", 1) == 1:
            d = _from_version_1(d)
        fields = {k: v for k, v in d.items() if k not in ("winners", "best_peers")}
        return cls(**fields | {
            "candidates": tuple(Candidate.from_dict(c) for c in d["candidates"]),
            "objectives": tuple(d["objectives"]),
            "failed": tuple(Failure(**f) for f in d["failed"]),
            "guard": GuardSettings(**d["guard"]),
            "benchmark_app": tuple(AppCheck(**c) for c in d.get("benchmark_app", ())),
        })

    def save(self, model_dir: Path) -> None:
        atomic.write_json(Path(model_dir) / TUNED_FILE, self.to_dict())

    def with_checks(self, checks: list[AppCheck]) -> Tuning:
        return replace(self, benchmark_app=tuple(checks))


def load(model_dir: Path, path: Path | None = None) -> Tuning | None:
    """The saved tuning of a model (or the file `path`), if any; None when there is none or it is unreadable."""
    path = Path(path) if path is not None else Path(model_dir) / TUNED_FILE
    try:
        return Tuning.from_dict(json.loads(path.read_text())) if path.exists() else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def best(candidates: tuple[Candidate, ...] | list[Candidate], objective: str,
         among_peers: bool = False) -> Candidate | None:
    """The winner among the longest-measured eligible OpenVINO candidates (short early runs are
    noisier), or among the peers'."""
    pool = [c for c in candidates if c.objective == objective and c.eligible
            and (c.runtime != OPENVINO.name) == among_peers]
    if not pool:
        return None
    longest = max(c.photos * c.repeats for c in pool)
    pool = [c for c in pool if c.photos * c.repeats == longest]
    return min(pool, key=lambda c: c.p50_ms if objective == "latency" else -c.throughput_ips)


def pareto(candidates: tuple[Candidate, ...] | list[Candidate]) -> list[Candidate]:
    """The eligible candidates no other eligible one beats on both p50 latency and throughput, by latency."""
    pool = [c for c in candidates if c.eligible]
    front = [c for c in pool if not any(o.p50_ms <= c.p50_ms and o.throughput_ips >= c.throughput_ips
                                        and (o.p50_ms, o.throughput_ips) != (c.p50_ms, c.throughput_ips)
                                        for o in pool)]
    return sorted(front, key=lambda c: c.p50_ms)


def summary(tuning: Tuning) -> list[str]:
    """The tuning in plain words."""
    lines = []
    latency, throughput = tuning.winner("latency"), tuning.winner("throughput")
    if latency:
        lines.append(f"For one photo at a time use {latency.label}: {latency.p50_ms:.2f} ms per photo (p50), "
                     f"p99 {latency.p99_ms:.2f} ms, accuracy {latency.accuracy:.1%}.")
    if throughput:
        lines.append(f"For bulk use {throughput.label} at batch {throughput.batch}: "
                     f"{throughput.throughput_ips:.0f} photos/s, accuracy {throughput.accuracy:.1%}.")
    for objective in tuning.objectives:
        ratio = tuning.over_best_peer(objective)
        ours, peer = tuning.winner(objective), tuning.winner(objective, among_peers=True)
        if ratio is None or ours is None or peer is None:
            continue
        figure = (f"{ours.p50_ms:.2f} vs {peer.p50_ms:.2f} ms p50" if objective == "latency"
                  else f"{ours.throughput_ips:.0f} vs {peer.throughput_ips:.0f} photos/s")
        faster = f"{ratio:.2f}× faster than" if ratio >= 1 else f"{1 / ratio:.2f}× slower than"
        lengths = [f"{c.photos} photos × {c.repeats} repeats" for c in (ours, peer)]
        measured = lengths[0] + " each" if lengths[0] == lengths[1] else f"{lengths[0]} vs {lengths[1]}"
        lines.append(f"For {objective}, OpenVINO's winner is {faster} the best peer within the same accuracy budget, "
                     f"{peer.label} ({figure}; {measured}, in this tuning).")
    int8 = [c for c in tuning.candidates if c.setup.variant == ir_variant("int8")]
    if int8:
        c = max(int8, key=lambda c: c.accuracy)
        cost = (c.tf_accuracy - c.accuracy) * 100
        verdict = "within the budget" if c.eligible else f"not eligible: {c.reason}"
        lines.append(f"INT8 costs {cost:.1f} points of held-out accuracy here ({c.accuracy:.1%} vs TensorFlow's "
                     f"{c.tf_accuracy:.1%}; {verdict}).")
    if tuning.failed:
        lines.append(f"{len(tuning.failed)} setup(s) failed to run on this machine and were left out: "
                     + "; ".join(f"{f.label} ({f.error})" for f in tuning.failed) + ".")
    for objective, winner in tuning.winners.items():
        if winner is None:
            lines.append(f"No setup met the accuracy budget for {objective}.")
    return lines


def _from_version_1(d: dict[str, Any]) -> dict[str, Any]:
    """Version 1 → 2: each candidate's flat `setup` dict becomes a `RunSetup` (OpenVINO's streams as
    the tuning asked for them) and what the runtime reported; the objectives are the keys of its
    `objectives` (the winners themselves are recomputed from the candidates, by the same rule)."""
    return d | {"version": TUNED_VERSION, "objectives": list(d["objectives"]),
                "candidates": [_candidate_from_version_1(c) for c in d["candidates"]]}


def _candidate_from_version_1(c: dict[str, Any]) -> dict[str, Any]:
    s = c["setup"]
    runtime = c.get("runtime", OPENVINO.name)
    threads = str(s.get("threads", "?"))
    if runtime == OPENVINO.name:
        ov = OVSettings(s["precision"], s["hint"], streams=s.get("streams_requested"), pinning=bool(s["pinning"]))
        setup = RunSetup("", s["variant"], ov=ov, async_queue=c["objective"] == "throughput",
                         static=s["shape"] == "static")
    else:  # version 1 kept a peer's threads as reported; they were what the setup asked for unless "auto"
        setup = RunSetup("", s["variant"], threads=int(threads) if "threads auto" not in c["label"] and threads.isdigit()
                         else None)
    return {"objective": c["objective"], "setup": setup.to_dict(), "batch": int(s["batch"]),
            "reported": asdict(Reported(str(s["streams"]), int(s["requests"]), str(s.get("precision_reported", s["precision"])),
                                        threads)),
            **{k: c[k] for k in ("p50_ms", "p99_ms", "throughput_ips", "photos", "repeats", "accuracy",
                                 "agreement_with_tf", "tf_accuracy", "eligible", "reason")}}

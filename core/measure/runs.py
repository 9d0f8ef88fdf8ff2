"""A benchmark run as it is measured, saved and read back: the typed cell (`CellSettings`, what
was asked and run; `LoadResult`; `CellResult`, what was measured), the saved runs with the
migration of older ones, the table every view is made from, and the run in sentences.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd

from core import atomic, paths
from core.errors import UserError
from core.settings import BACKENDS, BASELINE, RENAMED_BACKENDS

EXAMPLE_RUN = paths.PROJECT_ROOT / "docs" / "benchmark"  # the reference run of docs/benchmarking.md, shown until one's own
RUN_VERSION = 2  # rows as {"settings", "load", "result"}; version 1 rows were flat


# ---------------------------------------------------------------- the result schema

@dataclass(frozen=True)
class CellSettings:
    """What one measured cell ran with: the setup asked for and what the runtime reports it chose."""

    backend: str
    label: str
    runtime: str
    variant: str
    precision: str
    hint: str
    streams: str
    requests: int
    threads: str
    pinning: str
    shape: str
    mode: str
    batch: int
    size: int
    repeats: int
    warmup: int
    library_version: str
    cpu: str
    cores: int
    cpu_quota_cores: float | None = None  # a cgroup's CPU cap (Community Cloud: 0.078–2 cores); None: the whole machine


@dataclass(frozen=True)
class LoadResult:
    """What starting the backend cost, measured once in its process."""

    import_s: float
    load_s: float
    first_inference_ms: float
    rss_after_import_mb: float
    rss_after_load_mb: float


@dataclass(frozen=True)
class CellResult:
    """What one (backend, batch, test size) cell measured over its repeated runs."""

    total_s_median: float
    total_s_min: float
    total_s_max: float
    total_s_std: float
    throughput_ips: float
    batch_latency_ms_p50: float
    batch_latency_ms_p90: float
    batch_latency_ms_p99: float
    image_latency_ms: float
    cpu_s: float
    cpu_utilisation: float
    rss_peak_mb: float
    padded_images: int


@dataclass(frozen=True)
class Cell:
    settings: CellSettings
    load: LoadResult
    result: CellResult

    def row(self) -> dict[str, Any]:
        """The flat row of the run's table (settings, then load, then results)."""
        return asdict(self.settings) | asdict(self.load) | asdict(self.result)

    def to_json(self) -> dict[str, Any]:
        return {"settings": asdict(self.settings), "load": asdict(self.load), "result": asdict(self.result)}


def _names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


SETTINGS_COLUMNS = _names(CellSettings)
LOAD_COLUMNS = _names(LoadResult)
RESULT_COLUMNS = _names(CellResult)
COLUMNS = SETTINGS_COLUMNS + LOAD_COLUMNS + RESULT_COLUMNS
SUMMARY_COLUMNS = ["backend", "precision", "hint", "batch", "size", "total_s_median", "throughput_ips",
                   "batch_latency_ms_p50", "batch_latency_ms_p99", "rss_peak_mb"]  # the short table of the CLI and live view


def save_run(run: dict[str, Any], out_root: Path | None = None) -> Path:
    """Write run.json and rows.csv into results/<id>/ atomically."""
    root = Path(out_root or paths.results_dir())
    root.mkdir(parents=True, exist_ok=True)
    target = atomic.unique_name(root / (time.strftime("%Y%m%d-%H%M%S") + f"-{run['model']['name']}"))
    run["id"] = target.name
    with atomic.atomic_dir(target) as tmp:
        (tmp / "run.json").write_text(json.dumps(run, indent=2, default=str))
        frame(run).to_csv(tmp / "rows.csv", index=False)
    return target


def list_runs(root: Path | None = None) -> list[str]:
    """Saved runs, newest first (half-written ones are hidden temp folders and never listed)."""
    root = Path(root or paths.results_dir())
    if not root.is_dir():
        return []
    return sorted((p.name for p in root.iterdir() if (p / "run.json").exists() and not p.name.startswith(".")),
                  reverse=True)


def load_run(run_id: str, root: Path | None = None) -> dict[str, Any]:
    """A saved run, with rows in the current layout (older runs are read too)."""
    path = Path(root or paths.results_dir()) / run_id / "run.json"
    try:
        run = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read benchmark run {run_id!r}: {exc}") from exc
    if run.get("version", 1) == 1:
        run["rows"] = [_row_v1(r) for r in run["rows"]]
        run["backends"] = {RENAMED_BACKENDS.get(k, k): v for k, v in run.get("backends", {}).items()}
        run["version"] = RUN_VERSION
    return run


def _row_v1(row: dict[str, Any]) -> dict[str, Any]:
    """A flat version-1 row split into settings, load and result (missing entries are None)."""
    row = row | {"backend": RENAMED_BACKENDS.get(row["backend"], row["backend"])}
    return {part: {k: row.get(k) for k in names}
            for part, names in (("settings", SETTINGS_COLUMNS), ("load", LOAD_COLUMNS), ("result", RESULT_COLUMNS))}


def frame(run: dict[str, Any]) -> pd.DataFrame:
    """The run's cells as one table with the fixed columns `COLUMNS`."""
    df = pd.DataFrame([r["settings"] | r["load"] | r["result"] for r in run["rows"]], columns=COLUMNS)
    # Streams are a count or a word ("-", "auto"); older runs stored counts as numbers.
    return df.astype({"streams": str})


def speedups(df: pd.DataFrame, baseline: str = BASELINE) -> pd.DataFrame:
    """Each row's speed-up over the baseline backend at the same batch and size (median time ratio)."""
    base = df[df["backend"] == baseline][["batch", "size", "total_s_median", "rss_peak_mb"]]
    base = base.rename(columns={"total_s_median": "base_s", "rss_peak_mb": "base_rss_mb"})
    out = df.merge(base, on=["batch", "size"], how="inner")
    out["speedup"] = out["base_s"] / out["total_s_median"]
    out["memory_ratio"] = out["rss_peak_mb"] / out["base_rss_mb"]
    return out


def summary(run: dict[str, Any], baseline: str = BASELINE) -> list[str]:
    """Plain sentences computed from the run: speed-up and memory of each backend vs the baseline."""
    df = frame(run)
    if df.empty or baseline not in set(df["backend"]):
        return []
    sp = speedups(df, baseline)
    size = int(sp["size"].max())
    base_label = BACKENDS[baseline].label
    lines = []
    for batch in sorted(sp["batch"].unique()):
        cell = sp[(sp["batch"] == batch) & (sp["size"] == size) & (sp["backend"] != baseline)]
        for _, r in cell.sort_values("speedup", ascending=False).iterrows():
            faster = f"{r['speedup']:.1f}× faster than" if r["speedup"] >= 1 else f"{1 / r['speedup']:.1f}× slower than"
            lines.append(
                f"At batch {batch} ({size} images), {r['label']} ({r['precision']}) is {faster} {base_label}, "
                f"at {r['throughput_ips']:.0f} images/s, using {r['memory_ratio']:.0%} of its peak memory "
                f"({r['rss_peak_mb']:.0f} vs {r['base_rss_mb']:.0f} MB)."
            )
    lines += peer_sentences(run, df)
    for key, info in run["backends"].items():
        if "error" in info:
            lines.append(f"{info['label']} failed: {info['error']}")
    return lines


def peer_sentences(run: dict[str, Any], df: pd.DataFrame) -> list[str]:
    """OpenVINO's fastest setup against the fastest peer (ONNX Runtime, LiteRT), both within the
    accuracy budget, per batch at the largest test size; and what was left out, and why."""
    accuracy = {k: info.get("accuracy", {"unknown": "not recorded (an older run)"})
                for k, info in run["backends"].items()}
    within = {k for k, a in accuracy.items() if a.get("eligible")}
    size = int(df["size"].max())
    lines = []
    for batch in sorted(df["batch"].unique()):
        cell = df[(df["batch"] == batch) & (df["size"] == size) & df["backend"].isin(within)]
        ov = cell[cell["runtime"] == "openvino"]
        peer = cell[cell["runtime"].isin(["onnxruntime", "litert"])]
        if ov.empty or peer.empty:
            continue
        ours, theirs = ov.loc[ov["throughput_ips"].idxmax()], peer.loc[peer["throughput_ips"].idxmax()]
        ratio = ours["throughput_ips"] / theirs["throughput_ips"]
        faster = (f"{ratio:.1f}× faster than" if ratio >= 1.05 else f"{1 / ratio:.1f}× slower than"
                  if ratio <= 1 / 1.05 else "as fast as (within 5%)")
        lines.append(f"At batch {batch} ({size} images), within the accuracy budget, the fastest OpenVINO setup "
                     f"({ours['label']}) is {faster} the best peer ({theirs['label']}): "
                     f"{ours['throughput_ips']:.0f} vs {theirs['throughput_ips']:.0f} images/s.")
    if lines:
        measured = set(df["backend"])
        left_out = [f"{run['backends'][k]['label']} ({a.get('reason') or a.get('unknown')})"
                    for k, a in accuracy.items() if k not in within and k in measured]
        if left_out:
            lines.append("Not compared, outside the accuracy budget or not scored as run: " + "; ".join(left_out) + ".")
    return lines

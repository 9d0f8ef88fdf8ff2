"""A benchmark run as it is measured, saved and read back: the typed cell (`CellSettings`, what
was asked and run; `LoadResult`; `CellResult`, what was measured), the saved runs with the
migration of older ones, the table every view is made from, and the run in sentences.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import atomic, paths
from core.errors import UserError
from core.variants import LITERT, ONNXRUNTIME, OPENVINO
from core.settings import SETUPS, BASELINE, RENAMED_SETUPS
from core.system import describe_cpu

if TYPE_CHECKING:  # imported where a table is made: Home reads runs without it (core.measure.headline)
    import pandas as pd

EXAMPLE_RUN = paths.PROJECT_ROOT / "docs" / "benchmark"  # the reference run of docs/benchmarking.md, shown until one's own
RUN_VERSION = 3  # 3: setups spelled as their variant (openvino-int8, was ov-int8); 2: rows as {"settings", "load",
# "result"}, version 1 rows were flat


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
    if run.get("version", 1) < 3:
        old = RENAMED_SETUPS
        run["backends"] = {old.get(k, k): v for k, v in run.get("backends", {}).items()}
        run["config"]["backends"] = [old.get(k, k) for k in run["config"].get("backends", [])]
        for row in run["rows"]:
            row["settings"]["backend"] = old.get(row["settings"]["backend"], row["settings"]["backend"])
        run["version"] = RUN_VERSION
    return run


def _row_v1(row: dict[str, Any]) -> dict[str, Any]:
    """A flat version-1 row split into settings, load and result (missing entries are None)."""
    return {part: {k: row.get(k) for k in names}
            for part, names in (("settings", SETTINGS_COLUMNS), ("load", LOAD_COLUMNS), ("result", RESULT_COLUMNS))}


def cells(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's cells, each one flat dict of its settings, load and result."""
    return [r["settings"] | r["load"] | r["result"] for r in run["rows"]]


def frame(run: dict[str, Any]) -> pd.DataFrame:
    """The run's cells as one table with the fixed columns `COLUMNS`."""
    import pandas as pd

    df = pd.DataFrame(cells(run), columns=COLUMNS)
    # Streams and threads are a count or a word ("-", "auto"); older runs stored counts as numbers
    # (a column of both is not one Arrow type: the page's table would fall back on every rerun).
    # Pinning is "on", "off" or "-"; older runs stored OpenVINO's boolean, as such or as text.
    df["pinning"] = [{"True": "on", "False": "off"}.get(str(p), p) for p in df["pinning"]]
    return df.astype({"streams": str, "threads": str, "pinning": str})


def compared(loaded: list[dict[str, Any]]) -> pd.DataFrame:
    """One table of one or more runs; with several, each backend and label is prefixed by its run's
    id (its date and time), so the charts draw them side by side."""
    import pandas as pd

    frames = []
    for run in loaded:
        df = frame(run)
        if len(loaded) > 1:
            df["backend"] = run["id"][:15] + " · " + df["backend"]
            df["label"] = run["id"][:15] + " · " + df["label"]
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def described(run: dict[str, Any]) -> str:
    """A run's id, model, photos, repeats and machine in one line."""
    return (f"**{run['id']}** — model `{run['model']['name']}`, {run['images']['unique_images']} distinct photos from "
            f"{run['images']['origin']}, {run['config']['repeats']} repeats after {run['config']['warmup']} warm-up; "
            f"{describe_cpu(run['machine'])}")


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
    base_label = SETUPS[baseline].label
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


@dataclass(frozen=True)
class PeerComparison:
    """OpenVINO's fastest setup against the fastest peer, both within the accuracy budget, at one batch size."""

    batch: int
    size: int
    ours: str  # backend keys
    theirs: str
    ours_ips: float
    theirs_ips: float

    @property
    def ratio(self) -> float:
        """How many times OpenVINO's throughput is the peer's."""
        return self.ours_ips / self.theirs_ips


def _accuracy(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: info.get("accuracy", {"unknown": "not recorded (an older run)"}) for k, info in run["backends"].items()}


def against_peers(run: dict[str, Any], df: pd.DataFrame) -> list[PeerComparison]:
    """Per batch size, at the largest test size: OpenVINO's fastest setup against the fastest peer
    (ONNX Runtime, LiteRT), counting only backends within the accuracy budget."""
    within = {k for k, a in _accuracy(run).items() if a.get("eligible")}
    size = int(df["size"].max())
    comparisons = []
    for batch in sorted(df["batch"].unique()):
        cell = df[(df["batch"] == batch) & (df["size"] == size) & df["backend"].isin(within)]
        ov = cell[cell["runtime"] == OPENVINO.name]
        peer = cell[cell["runtime"].isin([ONNXRUNTIME.name, LITERT.name])]
        if ov.empty or peer.empty:
            continue
        ours, theirs = ov.loc[ov["throughput_ips"].idxmax()], peer.loc[peer["throughput_ips"].idxmax()]
        comparisons.append(PeerComparison(int(batch), size, ours["backend"], theirs["backend"],
                                          float(ours["throughput_ips"]), float(theirs["throughput_ips"])))
    return comparisons


def left_out_of_comparison(run: dict[str, Any], df: pd.DataFrame) -> dict[str, str]:
    """The measured backends not compared, each with why: outside the budget, or not scored as run."""
    measured = set(df["backend"])
    return {k: a.get("reason") or a.get("unknown") for k, a in _accuracy(run).items()
            if not a.get("eligible") and k in measured}


def peer_sentences(run: dict[str, Any], df: pd.DataFrame) -> list[str]:
    """`against_peers` and `left_out_of_comparison` in words."""
    lines = []
    for c in against_peers(run, df):
        faster = (f"{c.ratio:.1f}× faster than" if c.ratio >= 1.05 else f"{1 / c.ratio:.1f}× slower than"
                  if c.ratio <= 1 / 1.05 else "as fast as (within 5%)")
        lines.append(f"At batch {c.batch} ({c.size} images), within the accuracy budget, the fastest OpenVINO setup "
                     f"({run['backends'][c.ours]['label']}) is {faster} the best peer "
                     f"({run['backends'][c.theirs]['label']}): {c.ours_ips:.0f} vs {c.theirs_ips:.0f} images/s.")
    left_out = left_out_of_comparison(run, df)
    if lines and left_out:
        lines.append("Not compared, outside the accuracy budget or not scored as run: "
                     + "; ".join(f"{run['backends'][k]['label']} ({why})" for k, why in left_out.items()) + ".")
    return lines

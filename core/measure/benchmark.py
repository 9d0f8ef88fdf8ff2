"""Sweeps of model x backends x test sizes x batch sizes, each backend in its own process.

Equal work for every backend (the same decoded images, the same batches), warm-up
before timing, repeated runs reported as median, min, max and spread, and every setting
that changes a result stored with each row.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from core import atomic, paths
from core.model import artifacts, data, evaluate, registry
from core.runtimes import remote
from core.errors import UserError
from core.model.evaluate import Guard
from core.model.images import IMAGE_SUFFIXES
from core.model.model_card import ModelCard
from core.progress import Event, ProgressFn, ignore
from core.settings import BACKENDS, BASELINE, RENAMED_BACKENDS, BackendSpec, OVSettings, Plan, SweepConfig
from core.system import child_env, library_versions, machine_summary
from core.model.variants import CATALOGUE, PEER_VARIANTS, REMOTE_SETUP

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


def available_backends(model_dir: Path, make_peers: bool = True) -> list[str]:
    """Backends whose model file exists; with `make_peers`, also the files a sweep makes (into the
    model's folder) from the Keras model: the peers, and what a shipped folder leaves out."""
    variants = set(registry.available_variants(Path(model_dir))) | set(registry.present_peers(Path(model_dir)))
    if not make_peers:  # nothing is written into the folder: only the files that are there
        variants = {v for v in variants if v == registry.TF_VARIANT or artifacts.path(Path(model_dir), v).exists()}
    if remote.serves(Path(model_dir)):
        variants.add(REMOTE_SETUP)
    return [k for k, spec in BACKENDS.items()
            if spec.variant in variants or (make_peers and spec.variant in PEER_VARIANTS
                                            and registry.TF_VARIANT in variants)]


def prepare_images(cfg: SweepConfig, progress: ProgressFn = ignore) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode real photos once: every backend gets exactly these pixels."""
    card = registry.read_card(Path(cfg.model_dir))
    n = max(cfg.sizes)
    if cfg.images:
        root = data.resolve(cfg.images, progress=progress)
        items = [(f, 0) for f in sorted(root.rglob("*")) if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()]
        if not items:
            raise data.DatasetError(f"no photos found in {cfg.images}")
        origin = str(cfg.images)
    else:
        try:
            split = card.rebuild_split(progress=progress)
            items, origin = split.val + split.test, f"{card.data.source} (validation/held-out split)"
        except data.DatasetError:
            # The training data is not on this machine (e.g. a hosted demo): any real flower photos will do.
            info = data.scan(data.resolve(data.OFFICIAL_URL, progress=progress))
            items, origin = [(f, 0) for c in info.classes for f in info.files[c]], data.OFFICIAL_URL
            items = items[:: max(1, len(items) // n)]  # spread over all classes
    items = items[:n]
    images, _, _ = data.load_arrays(items, card.image_size, progress, "load benchmark images")
    unique = len(images)
    if unique < n:
        images = np.resize(images, (n, *images.shape[1:]))  # cycle through the photos
    return images, {"origin": origin, "unique_images": unique, "image_size": card.image_size}


def measure_backend(key: str, spec: BackendSpec, model_dir: str, plan: Plan, images_path: Path,
                    on_cell: Callable[[Cell], None], progress: ProgressFn = ignore) -> dict[str, Any]:
    """One backend's worker over the sizes and batches of `plan`, on the decoded photos in
    `images_path`: each measured cell goes to `on_cell`; returns what the worker reported when it
    had loaded (pid, import and load times, settings), with an `error` if it failed."""
    machine, versions = machine_summary(), library_versions()
    loaded: dict[str, Any] = {"label": spec.label}

    def on_line(msg: dict[str, Any]) -> None:
        if msg["event"] == "loaded":
            loaded.update({k: v for k, v in msg.items() if k != "event"})
            progress(Event("benchmark", None, None, f"{spec.label}: loaded, measuring"))
        else:
            on_cell(_cell(key, spec, plan, msg, loaded, machine, versions))

    error = _run_backend(spec, model_dir, plan, images_path, on_line)
    if error:
        loaded["error"] = error
    return loaded


def _run_backend(spec: BackendSpec, model_dir: str, plan: Plan, images_path: Path,
                 on_line: Callable[[dict[str, Any]], None]) -> str | None:
    """Run one backend's worker; returns an error message, or None on success."""
    job = {"spec": asdict(spec), "model_dir": model_dir, "images": str(images_path), "plan": asdict(plan)}
    env = child_env(TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen([sys.executable, "-m", "core.measure.bench_worker"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=paths.PROJECT_ROOT)
    proc.stdin.write(json.dumps(job))
    proc.stdin.close()
    for line in proc.stdout:
        if line.startswith("{"):
            on_line(json.loads(line))
    stderr = proc.stderr.read()
    if proc.wait() != 0:
        lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
        return lines[-1] if lines else f"worker exited with code {proc.returncode}"
    return None


def run_sweep(cfg: SweepConfig, progress: ProgressFn = ignore,
              on_cell: Callable[[dict[str, Any]], None] | None = None, out_root: Path | None = None) -> Path:
    """Run the sweep and save it under the results folder; returns the run's folder."""
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    images, image_info = prepare_images(cfg, progress)
    # Made here, once, before the workers start (each would otherwise make its own).
    for variant in dict.fromkeys(BACKENDS[k].variant for k in cfg.backends):
        if variant in CATALOGUE and variant != registry.TF_VARIANT:
            evaluate.ensure_scored(Path(cfg.model_dir), variant, progress)
    card = registry.read_card(Path(cfg.model_dir))
    cells: list[Cell] = []
    backends: dict[str, Any] = {}
    n_cells = len(cfg.backends) * len(cfg.sizes) * len(cfg.batches)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        images_path = Path(tmp) / "images.npy"
        np.save(images_path, images)
        for key in cfg.backends:
            spec = BACKENDS[key]
            progress(Event("benchmark", len(cells), n_cells, f"{spec.label}: starting its own process"))

            def on_measured(cell: Cell, spec: BackendSpec = spec) -> None:
                cells.append(cell)
                progress(Event("benchmark", len(cells), n_cells,
                               f"{spec.label}: batch {cell.settings.batch}, {cell.settings.size} images done"))
                if on_cell:
                    on_cell(cell.row())

            backends[key] = measure_backend(key, spec, str(cfg.model_dir), cfg.plan, images_path, on_measured,
                                            lambda ev: progress(Event("benchmark", len(cells), n_cells, ev.message)))
            if "error" in backends[key]:
                progress(Event("benchmark", len(cells), n_cells, f"{spec.label} failed: {backends[key]['error']}"))
    for key in backends:
        backends[key]["accuracy"] = accuracy_record(card, BACKENDS[key])
    run = {"version": RUN_VERSION, "started": started, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "config": asdict(cfg),
           "model": {"name": card.name, "arch": card.arch, "alpha": card.alpha, "image_size": card.image_size},
           "images": image_info, "machine": machine_summary(), "versions": library_versions(), "backends": backends,
           "rows": [c.to_json() for c in cells]}
    return save_run(run, out_root)


def accuracy_record(card: ModelCard, spec: BackendSpec) -> dict[str, Any]:
    """The backend's accuracy against TensorFlow's from the model's card, and whether it is within the
    accuracy budget; saved with the run, so its summary compares like with like."""
    scored_in = card.evaluated_with.get("INFERENCE_PRECISION_HINT", "f32")
    if spec.ov is not None and spec.ov.precision != scored_in:
        return {"unknown": f"scored in {scored_in}, run in {spec.ov.precision}"}
    guard = Guard.from_card(card, spec.variant)
    if guard is None:
        return {"unknown": "not scored on the model's card"}
    return asdict(guard) | {"eligible": guard.reason is None, "reason": guard.reason or ""}


def sweep_job(ctx, config: dict[str, Any], out_root: str) -> dict[str, Any]:
    """`run_sweep` as a job of `core.app.jobs` (run in its child process): measured cells become result rows."""
    run_dir = run_sweep(SweepConfig(**config), ctx.progress, on_cell=ctx.add_row, out_root=Path(out_root))
    return {"run_dir": str(run_dir)}


def _cell(key: str, spec: BackendSpec, plan: Plan, measured: dict[str, Any], loaded: dict[str, Any],
          machine: dict[str, Any], versions: dict[str, str]) -> Cell:
    """A worker's `cell` line, with what its `loaded` line reported, as one `Cell`."""
    s = loaded["settings"]
    settings = CellSettings(
        backend=key, label=spec.label, runtime=s["runtime"], variant=spec.variant, precision=str(s.get("precision")),
        hint=str(s.get("hint", "-")), streams=str(s.get("streams", "-")), requests=int(measured["requests"]),
        threads=str(s.get("threads", s.get("intra_op_threads"))), pinning=str(s.get("pinning", "-")),
        shape=str(measured["shape"]), mode=s.get("mode", "async" if spec.async_queue else "sync"),
        batch=int(measured["batch"]), size=int(measured["size"]), repeats=plan.repeats, warmup=plan.warmup,
        library_version=versions.get(s["runtime"], "?"), cpu=machine["cpu"], cores=int(machine["cores"]),
        cpu_quota_cores=machine.get("cpu_quota_cores"),
    )
    load = LoadResult(**{k: loaded[k] for k in LOAD_COLUMNS})
    return Cell(settings, load, CellResult(**{k: measured[k] for k in RESULT_COLUMNS}))


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


# ---------------------------------------------------------------- OpenVINO's benchmark_app as a cross-check

def run_benchmark_app(model_dir: Path, variant: str, hint: str, batch: int, seconds: int,
                      settings: OVSettings | None = None) -> dict[str, Any]:
    """OpenVINO's own benchmark_app on an IR of the model: with `settings`, exactly the properties we
    compile with (through a config file); without, benchmark_app's own defaults for the hint.
    It is fed the same real photos as our cells where it can read them (it needs OpenCV for
    that); otherwise it fills its requests with generated data, and the result says which."""
    size = registry.read_card(model_dir).image_size
    exe = shutil.which("benchmark_app") or str(Path(sys.executable).parent / "benchmark_app")
    cmd = [exe, "-m", str(registry.variant_path(model_dir, variant)), "-d", "CPU", "-hint", hint.lower(),
           "-shape", f"[{batch},{size},{size},3]", "-t", str(seconds)]
    inputs = "generated by benchmark_app (OpenCV, which it reads photos with, is not installed)"
    with tempfile.TemporaryDirectory(prefix="bench-app-") as tmp:
        if importlib.util.find_spec("cv2") is not None:
            from PIL import Image

            photos, info = prepare_images(SweepConfig(str(model_dir), sizes=[max(32, batch)]))
            folder = Path(tmp) / "photos"
            folder.mkdir()
            for i, photo in enumerate(photos):  # lossless, at the model's size: read back without resizing
                Image.fromarray(photo).save(folder / f"{i:04d}.png")
            cmd += ["-i", str(folder)]
            inputs = f"{len(photos)} real photos ({info['origin']}; OpenCV reads them as BGR: the same work)"
        if settings is not None:
            # benchmark_app refuses -pin next to -hint; a config file passes every setting as we compile with.
            config = Path(tmp) / "config.json"
            config.write_text(json.dumps({settings.device: settings.config_strings()}))
            cmd += ["-load_config", str(config)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 180)
    out = proc.stdout + proc.stderr
    throughput = re.search(r"Throughput:\s+([\d.]+)\s+FPS", out)
    median = re.search(r"Median:\s+([\d.]+)\s+(us|ms|s)\b", out)  # in us below a millisecond
    median_ms = float(median.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[median.group(2)] if median else None
    if proc.returncode != 0 or not throughput:
        raise RuntimeError(f"benchmark_app failed: {out[-1500:]}")
    requests = re.search(r"(\d+) inference requests", out)
    return {"command": " ".join(cmd), "inputs": inputs, "throughput_ips": float(throughput.group(1)), "batch": batch,
            "median_ms": median_ms,
            "requests": int(requests.group(1)) if requests else None}


def benchmark_app(model_dir: Path, spec: BackendSpec, batch: int, seconds: int = 15) -> dict[str, Any]:
    """benchmark_app on the same IR and settings as one of our backends."""
    return run_benchmark_app(model_dir, spec.variant, spec.ov.hint, batch, seconds, spec.ov)


def compare_with_benchmark_app(run_dir: Path, seconds: int, progress: ProgressFn = ignore) -> list[dict[str, Any]]:
    """Run benchmark_app on each THROUGHPUT (async) backend of a saved run and each of its batch sizes,
    compare its throughput with ours on the run's longest cell, and store the checks in run.json."""
    run = load_run(run_dir.name, run_dir.parent)
    df = frame(run)
    checks = []
    for key in [k for k in run["config"]["backends"] if BACKENDS[k].async_queue]:
        for batch in run["config"]["batches"]:
            theirs = benchmark_app(Path(run["config"]["model_dir"]), BACKENDS[key], batch, seconds)
            rows = df[(df["backend"] == key) & (df["batch"] == batch)]
            if rows.empty:
                continue
            ours = float(rows.loc[rows["size"].idxmax(), "throughput_ips"])  # the longest run, not the best
            checks.append(theirs | {"backend": key, "ours_throughput_ips": ours,
                                    "ratio": ours / theirs["throughput_ips"]})
            progress(Event("benchmark_app", len(checks), None,
                           f"{key} batch {batch}: ours {ours:.1f} img/s, benchmark_app "
                           f"{theirs['throughput_ips']:.1f} img/s ({ours / theirs['throughput_ips']:.0%})"))
    run["benchmark_app"] = checks
    atomic.write_json(run_dir / "run.json", run)
    return checks

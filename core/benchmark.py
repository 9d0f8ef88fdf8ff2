"""Sweeps of model x backends x test sizes x batch sizes, each backend in its own process.

Equal work for every backend (the same decoded images, the same batches), warm-up
before timing, repeated runs reported as median, min, max and spread, and every setting
that changes a result stored with each row.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from core import data, paths, registry
from core.backends import ONNX_VARIANT, OVSettings
from core.errors import UserError
from core.images import IMAGE_SUFFIXES
from core.progress import CancelToken, Event, ProgressFn, ignore
from core.system import library_versions, machine_summary

DEFAULT_SIZES = list(range(10, 101, 10))
DEFAULT_BATCHES = [1, 32]
BASELINE = "tf-serving"


@dataclass(frozen=True)
class BackendSpec:
    label: str
    variant: str
    tf_mode: str = "serving"
    ov: OVSettings | None = None
    async_queue: bool = False
    static: bool = False  # compile for each batch size (as benchmark_app does) instead of a dynamic batch


BACKENDS: dict[str, BackendSpec] = {
    "tf-predict": BackendSpec("TensorFlow model.predict (the study's loop)", "tensorflow", tf_mode="predict"),
    "tf-serving": BackendSpec("TensorFlow compiled function", "tensorflow"),
    "ov-fp32": BackendSpec("OpenVINO FP32 IR, f32", "openvino-fp32", ov=OVSettings("f32")),
    "ov-fp32-default": BackendSpec("OpenVINO FP32 IR, plugin default precision", "openvino-fp32",
                                   ov=OVSettings("default")),
    "ov-fp32-pinned": BackendSpec("OpenVINO FP32 IR, f32, CPU pinning on", "openvino-fp32",
                                  ov=OVSettings("f32", pinning=True)),
    "ov-fp16": BackendSpec("OpenVINO FP16 IR, f32 compute", "openvino-fp16", ov=OVSettings("f32")),
    "ov-int8": BackendSpec("OpenVINO INT8 IR", "openvino-int8", ov=OVSettings("f32")),
    "ov-fp32-tput": BackendSpec("OpenVINO FP32 IR, THROUGHPUT hint, async queue", "openvino-fp32",
                                ov=OVSettings("f32", hint="THROUGHPUT"), async_queue=True),
    "ov-int8-tput": BackendSpec("OpenVINO INT8 IR, THROUGHPUT hint, async queue", "openvino-int8",
                                ov=OVSettings("f32", hint="THROUGHPUT"), async_queue=True),
    "ov-int8-tput-static": BackendSpec("OpenVINO INT8 IR, THROUGHPUT hint, async queue, static shape",
                                       "openvino-int8", ov=OVSettings("f32", hint="THROUGHPUT"), async_queue=True,
                                       static=True),
    "onnxruntime": BackendSpec("ONNX Runtime (tf2onnx export), f32", ONNX_VARIANT),
}
DEFAULT_BACKENDS = ["tf-predict", "tf-serving", "ov-fp32", "ov-fp32-default", "ov-int8", "ov-int8-tput-static",
                    "onnxruntime"]


def parse_int_list(text: str, what: str) -> list[int]:
    """"10, 20,30" -> [10, 20, 30], for the page's and the CLI's comma-separated settings."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"{what} must be whole numbers separated by commas, not {text!r}") from None


def available_backends(model_dir: Path) -> list[str]:
    """Backends whose model file exists; the ONNX export is made on demand from the Keras model."""
    variants = set(registry.available_variants(Path(model_dir)))
    return [k for k, spec in BACKENDS.items()
            if spec.variant in variants or (spec.variant == ONNX_VARIANT and registry.TF_VARIANT in variants)]


@dataclass
class SweepConfig:
    model_dir: str
    backends: list[str] = field(default_factory=lambda: list(DEFAULT_BACKENDS))
    sizes: list[int] = field(default_factory=lambda: list(DEFAULT_SIZES))
    batches: list[int] = field(default_factory=lambda: list(DEFAULT_BATCHES))
    repeats: int = 3
    warmup: int = 1
    images: str | None = None  # dataset source; None: the model's own validation/test photos

    def __post_init__(self) -> None:
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown:
            raise UserError(f"unknown backend(s) {unknown}; choose from {', '.join(BACKENDS)}")
        if not self.backends or not self.sizes or not self.batches:
            raise UserError("choose at least one backend, test size and batch size")
        if min(self.sizes) < 1 or min(self.batches) < 1 or self.repeats < 1 or self.warmup < 0:
            raise UserError("sizes, batches and repeats must be positive")


def prepare_images(cfg: SweepConfig, progress: ProgressFn = ignore) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode real photos once: every backend gets exactly these pixels."""
    from core.evaluate import model_split

    meta = registry.read_metadata(Path(cfg.model_dir))
    n = max(cfg.sizes)
    if cfg.images:
        root = data.resolve(cfg.images, progress=progress)
        items = [(f, 0) for f in sorted(root.rglob("*")) if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()]
        if not items:
            raise data.DatasetError(f"no photos found in {cfg.images}")
        origin = str(cfg.images)
    else:
        try:
            parts = model_split(meta, progress)
            items, origin = parts.val + parts.test, f"{meta['data']['source']} (validation/held-out split)"
        except data.DatasetError:
            # The training data is not on this machine (e.g. a hosted demo): any real flower photos will do.
            info = data.scan(data.resolve(data.OFFICIAL_URL, progress=progress))
            items, origin = [(f, 0) for c in info.classes for f in info.files[c]], data.OFFICIAL_URL
            items = items[:: max(1, len(items) // n)]  # spread over all classes
    items = items[:n]
    images, _, _ = data.load_arrays(items, int(meta["image_size"]), progress, "load benchmark images")
    unique = len(images)
    if unique < n:
        images = np.resize(images, (n, *images.shape[1:]))  # cycle through the photos
    return images, {"origin": origin, "unique_images": unique, "image_size": int(meta["image_size"])}


def _run_backend(key: str, cfg: SweepConfig, images_path: Path, cancel: CancelToken | None,
                 on_line: Callable[[dict[str, Any]], None]) -> str | None:
    """Run one backend's worker; returns an error message, or None on success."""
    spec = BACKENDS[key]
    job = {"model_dir": str(cfg.model_dir), "variant": spec.variant, "tf_mode": spec.tf_mode,
           "ov_settings": asdict(spec.ov) if spec.ov else None, "async": spec.async_queue, "static": spec.static,
           "images": str(images_path), "sizes": cfg.sizes, "batches": cfg.batches,
           "repeats": cfg.repeats, "warmup": cfg.warmup}
    env = os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(paths.PROJECT_ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "core.bench_worker"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=paths.PROJECT_ROOT)
    proc.stdin.write(json.dumps(job))
    proc.stdin.close()
    if cancel is not None:
        # A cell can run for minutes: kill the worker as soon as the user cancels, not after it.
        def watch() -> None:
            while proc.poll() is None:
                if cancel.cancelled:
                    proc.kill()
                    return
                time.sleep(0.2)

        threading.Thread(target=watch, daemon=True).start()
    for line in proc.stdout:
        if line.startswith("{"):
            on_line(json.loads(line))
    if cancel is not None:
        proc.wait()
        cancel.check()
    stderr = proc.stderr.read()
    if proc.wait() != 0:
        lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
        return lines[-1] if lines else f"worker exited with code {proc.returncode}"
    return None


def run_sweep(cfg: SweepConfig, progress: ProgressFn = ignore, cancel: CancelToken | None = None,
              on_cell: Callable[[dict[str, Any]], None] | None = None, out_root: Path | None = None) -> Path:
    """Run the sweep and save it under the results folder; returns the run's folder."""
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    images, image_info = prepare_images(cfg, progress)
    if "onnxruntime" in cfg.backends:
        from core.convert import ensure_onnx

        progress(Event("benchmark", 0, None, "exporting the model to ONNX (once)"))
        ensure_onnx(Path(cfg.model_dir))
    meta = registry.read_metadata(Path(cfg.model_dir))
    machine, versions = machine_summary(), library_versions()
    rows: list[dict[str, Any]] = []
    backends: dict[str, Any] = {}
    n_cells = len(cfg.backends) * len(cfg.sizes) * len(cfg.batches)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        images_path = Path(tmp) / "images.npy"
        np.save(images_path, images)
        for key in cfg.backends:
            spec = BACKENDS[key]
            progress(Event("benchmark", len(rows), n_cells, f"{spec.label}: starting its own process"))

            def on_line(msg: dict[str, Any], key: str = key, spec: BackendSpec = spec) -> None:
                if msg["event"] == "loaded":
                    backends[key] = {k: v for k, v in msg.items() if k != "event"} | {"label": spec.label}
                    progress(Event("benchmark", len(rows), n_cells, f"{spec.label}: loaded, measuring"))
                    return
                row = _row(key, spec, msg, backends[key], machine, versions)
                rows.append(row)
                progress(Event("benchmark", len(rows), n_cells,
                               f"{spec.label}: batch {row['batch']}, {row['size']} images done"))
                if on_cell:
                    on_cell(row)

            error = _run_backend(key, cfg, images_path, cancel, on_line)
            if error:
                backends[key] = backends.get(key, {"label": spec.label}) | {"error": error}
                progress(Event("benchmark", len(rows), n_cells, f"{spec.label} failed: {error}"))
    run = {"started": started, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "config": asdict(cfg),
           "model": {"name": meta["name"], "arch": meta["arch"], "alpha": meta.get("alpha"),
                     "image_size": meta["image_size"]},
           "images": image_info, "machine": machine, "versions": versions, "backends": backends, "rows": rows}
    return save_run(run, out_root)


def sweep_job(ctx, config: dict[str, Any], out_root: str) -> dict[str, Any]:
    """`run_sweep` as a job of `core.jobs` (run in its child process): measured cells become result rows."""
    run_dir = run_sweep(SweepConfig(**config), ctx.progress, on_cell=ctx.add_row, out_root=Path(out_root))
    return {"run_dir": str(run_dir)}


def _row(key: str, spec: BackendSpec, cell: dict[str, Any], loaded: dict[str, Any], machine: dict[str, Any],
         versions: dict[str, str]) -> dict[str, Any]:
    s = loaded["settings"]
    runtime = s["runtime"]
    return {
        "backend": key, "label": spec.label, "runtime": runtime,
        "variant": spec.variant, "precision": s.get("precision"),
        "hint": s.get("hint", "-"), "streams": s.get("streams", "-"),
        "threads": s.get("threads", s.get("intra_op_threads")), "pinning": s.get("pinning", "-"),
        "mode": s.get("mode", "async" if spec.async_queue else "sync"),
        **{k: v for k, v in cell.items() if k != "event"},
        "import_s": loaded["import_s"], "load_s": loaded["load_s"], "first_inference_ms": loaded["first_inference_ms"],
        "rss_after_import_mb": loaded["rss_after_import_mb"], "rss_after_load_mb": loaded["rss_after_load_mb"],
        "cpu": machine["cpu"], "cores": machine["cores"], "library_version": versions.get(runtime, "?"),
    }


def save_run(run: dict[str, Any], out_root: Path | None = None) -> Path:
    """Write run.json and rows.csv into results/<id>/ atomically."""
    root = Path(out_root or paths.results_dir())
    root.mkdir(parents=True, exist_ok=True)
    run_id = time.strftime("%Y%m%d-%H%M%S") + f"-{run['model']['name']}"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-run-", dir=root))
    try:
        run["id"] = run_id
        (tmp / "run.json").write_text(json.dumps(run, indent=2, default=str))
        frame(run).to_csv(tmp / "rows.csv", index=False)
        os.chmod(tmp, 0o755)
        target = root / run_id
        suffix = 1
        while target.exists():
            target = root / f"{run_id}-{suffix}"
            suffix += 1
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def list_runs(root: Path | None = None) -> list[str]:
    """Saved runs, newest first (half-written ones are hidden temp folders and never listed)."""
    root = Path(root or paths.results_dir())
    if not root.is_dir():
        return []
    return sorted((p.name for p in root.iterdir() if (p / "run.json").exists() and not p.name.startswith(".")),
                  reverse=True)


def load_run(run_id: str, root: Path | None = None) -> dict[str, Any]:
    path = Path(root or paths.results_dir()) / run_id / "run.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read benchmark run {run_id!r}: {exc}") from exc


def frame(run: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(run["rows"])


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
    for key, info in run["backends"].items():
        if "error" in info:
            lines.append(f"{info['label']} failed: {info['error']}")
    return lines


def benchmark_app(model_dir: Path, variant: str, settings: OVSettings, batch: int, seconds: int = 15) -> dict[str, Any]:
    """OpenVINO's own benchmark_app on the same IR and settings, for a cross-check of our numbers."""
    meta = registry.read_metadata(model_dir)
    size = int(meta["image_size"])
    exe = shutil.which("benchmark_app") or str(Path(sys.executable).parent / "benchmark_app")
    # benchmark_app refuses -pin next to -hint; a config file passes every setting exactly as we compile with.
    config = Path(tempfile.mkdtemp(prefix="bench-app-")) / "config.json"
    config.write_text(json.dumps({settings.device: {k: str(v).upper() if isinstance(v, bool) else str(v)
                                                    for k, v in settings.config().items()}}))
    cmd = [exe, "-m", str(registry.variant_path(model_dir, variant)), "-d", settings.device,
           "-hint", settings.hint.lower(), "-shape", f"[{batch},{size},{size},3]", "-t", str(seconds),
           "-load_config", str(config)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 180)
    finally:
        shutil.rmtree(config.parent, ignore_errors=True)
    out = proc.stdout + proc.stderr
    match = re.search(r"Throughput:\s+([\d.]+)\s+FPS", out)
    if proc.returncode != 0 or not match:
        raise RuntimeError(f"benchmark_app failed: {out[-1500:]}")
    return {"command": " ".join(cmd), "throughput_ips": float(match.group(1)), "batch": batch,
            "requests": _int_after(r"Measuring performance on (\d+) inference requests|(\d+) inference requests", out)}


def _int_after(pattern: str, text: str) -> int | None:
    m = re.search(pattern, text)
    return int(next(g for g in m.groups() if g)) if m else None

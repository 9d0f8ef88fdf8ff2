"""Sweeps of model x backends x test sizes x batch sizes, each backend in its own process (the
saved run and its schema: `core.measure.runs`; OpenVINO's own tool beside it: `benchmark_app`).

Equal work for every backend (the same decoded images, the same batches), warm-up
before timing, repeated runs reported as median, min, max and spread, and every setting
that changes a result stored with each row.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from core import children
from core.model import data, registry
from core.quality import evaluate
from core.runtimes import remote
from core.measure.runs import (LOAD_COLUMNS, RESULT_COLUMNS, RUN_VERSION, Cell, CellResult, CellSettings,
                               LoadResult, save_run)
from core.quality.evaluate import Guard
from core.model.images import IMAGE_SUFFIXES
from core.model.model_card import ModelCard
from core.progress import Event, ProgressFn, ignore
from core.settings import SETUPS, RunSetup, Plan, SweepConfig
from core.system import library_versions, machine_summary
from core.variants import CATALOGUE, PEER_VARIANTS, REMOTE_SETUP




def available_backends(model_dir: Path, make_peers: bool = True) -> list[str]:
    """Backends whose model file exists; with `make_peers`, also the files a sweep makes (into the
    model's folder) from the Keras model: the peers, and what a shipped folder leaves out."""
    variants = set(registry.available_variants(Path(model_dir))) | set(registry.present_peers(Path(model_dir)))
    if not make_peers:  # nothing is written into the folder: only the files that are there
        variants = {v for v in variants if v == registry.TF_VARIANT or registry.variant_path(Path(model_dir), v).exists()}
    if remote.serves(Path(model_dir)):
        variants.add(REMOTE_SETUP)
    return [k for k, spec in SETUPS.items()
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


def measure_backend(key: str, spec: RunSetup, model_dir: str, plan: Plan, images_path: Path,
                    on_cell: Callable[[Cell], None], progress: ProgressFn = ignore) -> dict[str, Any]:
    """One backend's worker over the sizes and batches of `plan`, on the decoded photos in
    `images_path`: each measured cell goes to `on_cell`; returns what the worker reported when it
    had loaded (pid, import and load times, settings), with an `error` if it failed."""
    machine, versions = machine_summary(), library_versions()
    loaded: dict[str, Any] = {"label": spec.label}

    def on_line(msg: dict[str, Any]) -> None:
        if msg["type"] == "loaded":
            loaded.update({k: v for k, v in msg.items() if k != "type"})
            progress(Event("benchmark", None, None, f"{spec.label}: loaded, measuring"))
        else:
            on_cell(_cell(key, spec, plan, msg, loaded, machine, versions))

    error = _run_backend(spec, model_dir, plan, images_path, on_line)
    if error:
        loaded["error"] = error
    return loaded


def _run_backend(spec: RunSetup, model_dir: str, plan: Plan, images_path: Path,
                 on_line: Callable[[dict[str, Any]], None]) -> str | None:
    """Run one backend's worker; returns an error message, or None on success."""
    job = {"spec": asdict(spec), "model_dir": model_dir, "images": str(images_path), "plan": asdict(plan)}
    # In the job's process group: cancelling the job ends its worker too.
    proc = children.start("core.measure.bench_worker", job, own_group=False, TF_CPP_MIN_LOG_LEVEL="3")
    for msg in children.messages(proc):
        on_line(msg)
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
    for variant in dict.fromkeys(SETUPS[k].variant for k in cfg.backends):
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
            spec = SETUPS[key]
            progress(Event("benchmark", len(cells), n_cells, f"{spec.label}: starting its own process"))

            def on_measured(cell: Cell, spec: RunSetup = spec) -> None:
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
        backends[key]["accuracy"] = accuracy_record(card, SETUPS[key])
    run = {"version": RUN_VERSION, "started": started, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "config": asdict(cfg),
           "model": {"name": card.name, "arch": card.arch, "alpha": card.alpha, "image_size": card.image_size},
           "images": image_info, "machine": machine_summary(), "versions": library_versions(), "backends": backends,
           "rows": [c.to_json() for c in cells]}
    return save_run(run, out_root)


def accuracy_record(card: ModelCard, spec: RunSetup) -> dict[str, Any]:
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


def _cell(key: str, spec: RunSetup, plan: Plan, measured: dict[str, Any], loaded: dict[str, Any],
          machine: dict[str, Any], versions: dict[str, str]) -> Cell:
    """A worker's `cell` line, with what its `loaded` line reported, as one `Cell`."""
    s = loaded["settings"]
    settings = CellSettings(
        backend=key, label=spec.label, runtime=s["runtime"], variant=spec.variant, precision=str(s.get("precision")),
        hint=str(s.get("hint", "-")), streams=str(s.get("streams", "-")), requests=int(measured["requests"]),
        threads=str(s.get("threads", s.get("intra_op_threads"))), pinning=on_off(s.get("pinning")),
        shape=str(measured["shape"]), mode=s.get("mode", "async" if spec.async_queue else "sync"),
        batch=int(measured["batch"]), size=int(measured["size"]), repeats=plan.repeats, warmup=plan.warmup,
        library_version=versions.get(s["runtime"], "?"), cpu=machine["cpu"], cores=int(machine["cores"]),
        cpu_quota_cores=machine.get("cpu_quota_cores"),
    )
    load = LoadResult(**{k: loaded[k] for k in LOAD_COLUMNS})
    return Cell(settings, load, CellResult(**{k: measured[k] for k in RESULT_COLUMNS}))


def on_off(value: Any) -> str:
    """A setting a runtime reports as a boolean, as tables show it: "on", "off", or "-" where it has none."""
    return "-" if value is None else "on" if value else "off"

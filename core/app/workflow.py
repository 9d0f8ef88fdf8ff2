"""Train -> convert -> quantize -> validate -> calibrate, as one job (the Train page runs this)."""

from __future__ import annotations

import ctypes
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from core import paths
from core.model import convert, registry, training
from core.quality import calibrate, evaluate
from core.runtimes.backends import load_backend
from core.progress import Event, ProgressFn, ignore
from core.settings import CALIBRATION_SIZE
from core.model.recipes import TrainConfig
from core.timing import time_calls


def single_image_latency(model_dir: Path, repeats: int = 20) -> dict[str, float]:
    """Median warm latency (ms) of one-image calls, per variant, in this process."""
    size = registry.read_card(model_dir).image_size
    image = np.random.default_rng(0).integers(0, 256, (1, size, size, 3), dtype=np.uint8)
    out = {}
    for variant in registry.available_variants(model_dir):
        backend = load_backend(model_dir, variant)
        out[variant] = time_calls(lambda b=backend: b.predict(image), repeats, warmup=1).median_ms
    return out


def release_memory() -> None:
    """Between the job's phases: drop what the last one left (Keras's graphs, compiled models) and
    hand freed heap back to the system. Each phase otherwise started on top of the last one's
    leftovers, and the job's peak (in Cloud's memory, beside the server) came at its end."""
    import gc

    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session()
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc (Community Cloud's Debian); elsewhere nothing to do
    except (OSError, AttributeError):
        pass


def check_new_name(name: str, models_root: Path | None = None) -> None:
    """A valid name that no model has yet, in `models_root` nor among the shared models (a visitor's
    model must not shadow one of the owner's on the model picker)."""
    registry.check_name(name)
    if any((Path(root) / name).exists() for root in {Path(models_root or paths.models_dir()), paths.models_dir()}):
        raise registry.ModelError(f"a model named {name!r} already exists; choose another name")


def train_and_optimize(source: str | Path, cfg: TrainConfig, name: str,
                       models_root: Path | None = None, progress: ProgressFn = ignore) -> Path:
    """The whole path to a deployable model; returns its folder.

    The model is built in a hidden staging folder and published only when every variant
    exists and is validated, so a crash or a kill (a cancelled job is killed) never lists a half-made model.
    """
    check_new_name(name, models_root)
    staging = registry.staging_dir(models_root)
    try:
        built = training.train(source, cfg, name, staging, progress, command=f"Train page: {cfg}")
        release_memory()
        split = registry.read_card(built).rebuild_split(progress=progress)  # the split training used
        calibration = convert.calibration_images(split, cfg.image_size, CALIBRATION_SIZE, cfg.seed, progress)
        convert.convert(built, calibration, progress=progress)
        del calibration
        release_memory()
        evaluate.validate_and_record(built, split, progress)
        release_memory()
        calibrate.calibrate(built, progress)
        progress(Event("latency", 0, 1, "measuring single-image latency"))
        registry.update_card(built, single_image_latency_ms=single_image_latency(built))
        path = registry.publish(built, models_root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    progress(Event("done", 1, 1, f"{name} is ready"))
    return path


def train_job(ctx, source: str, config: dict[str, Any], name: str, models_root: str) -> dict[str, Any]:
    """`train_and_optimize` as a job of `core.app.jobs` (run in its child process): epochs become result rows."""

    def progress(event: Event) -> None:
        ctx.progress(event)
        if event.stage == "epoch":
            ctx.add_row(event.metrics)

    path = train_and_optimize(source, TrainConfig(**config), name, Path(models_root), progress)
    return {"path": str(path), "table": evaluate.variant_rows(path)}

"""Predict's latencies against isolated runs (`python -m core latency`): each variant timed as the
Predict page times it, every backend loaded in one process as in the app's server, beside a sweep's
batch-1 p50 of the same backend in a process of its own, in one sitting."""

from __future__ import annotations

import io
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from core.measure.benchmark import prepare_images, run_sweep
from core.measure.runs import frame, load_run
from core.model import registry
from core.progress import Event, ProgressFn, ignore
from core.runtimes.predict import Predictor
from core.settings import SweepConfig
from core.variants import IR_VARIANTS, TF_VARIANT


def _png(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, "PNG")
    return out.getvalue()


# The Predict page's variants; each is also the name of its default setup in a sweep (settings.SETUPS).
COMPARED = (TF_VARIANT, *IR_VARIANTS)


def page_vs_isolated(model_dir: Path, images: str | None, n: int = 20, repeats: int = 5,
                        progress: ProgressFn = ignore) -> pd.DataFrame:
    """Each variant's per-photo latency as the Predict page measures it (every backend loaded in
    one process, as in the server; per photo the median of warm calls; then the median over the
    photos) beside its batch-1 p50 from a sweep in the same sitting, each backend in its own process."""
    variants = [v for v in registry.available_variants(Path(model_dir)) if v in COMPARED]
    cfg = SweepConfig(str(model_dir), variants, sizes=[n], batches=[1],
                      repeats=repeats, images=images)
    run = load_run((run_dir := run_sweep(cfg, progress, out_root=Path(tempfile.mkdtemp(prefix="latency-")))).name,
                   run_dir.parent)
    isolated = frame(run).set_index("backend")["batch_latency_ms_p50"]
    shutil.rmtree(run_dir.parent, ignore_errors=True)
    photos, _ = prepare_images(cfg, progress)
    progress(Event("latency", 0, n, "loading every backend in this process, as the app's server does"))
    predictor = Predictor(Path(model_dir), variants)
    # Each photo as the page classifies it: decoded, judged by the ImageNet check, then every backend timed.
    per_photo = [predictor.classify(f"photo-{i}.png", _png(photos[i])).results for i in range(n)]
    rows = []
    for v in variants:
        page_ms = float(np.median([r[v].latency_ms for r in per_photo]))
        rows.append({"variant": v, "predict_page_ms": page_ms,
                     "first_call_ms_median": float(np.median([r[v].first_call_ms for r in per_photo])),
                     "isolated_p50_ms": float(isolated[v]),
                     "ratio": page_ms / float(isolated[v])})
    return pd.DataFrame(rows)

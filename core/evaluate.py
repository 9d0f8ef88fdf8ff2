"""Accuracy of every variant and its agreement with TensorFlow, on the same images."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core import data, paths, registry
from core.backends import Backend, OVSettings, load_backend
from core.progress import Event, ProgressFn, ignore

if TYPE_CHECKING:
    import pandas as pd


def predict_batched(backend: Backend, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    return np.concatenate([backend.predict(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def compare(
    model_dir: Path,
    images: np.ndarray,
    labels: np.ndarray | None,
    variants: list[str] | None = None,
    ov_settings: OVSettings | None = None,
    progress: ProgressFn = ignore,
) -> dict[str, Any]:
    """Run every variant on `images`; report accuracy (if labelled) and agreement with TF."""
    variants = variants or registry.available_variants(model_dir)
    if registry.TF_VARIANT not in variants:
        variants = [registry.TF_VARIANT, *variants]
    probs: dict[str, np.ndarray] = {}
    for i, variant in enumerate(variants):
        progress(Event("evaluate", i, len(variants), f"running {variant} on {len(images)} images"))
        probs[variant] = predict_batched(load_backend(model_dir, variant, ov_settings), images)
    reference = probs[registry.TF_VARIANT]
    report: dict[str, Any] = {"n_images": int(len(images)), "variants": {}}
    for variant, p in probs.items():
        row: dict[str, Any] = {}
        if labels is not None:
            row["accuracy"] = float(np.mean(np.argmax(p, 1) == labels))
        row["agreement_with_tf"] = float(np.mean(np.argmax(p, 1) == np.argmax(reference, 1)))
        row["max_prob_diff"] = float(np.max(np.abs(p - reference)))
        report["variants"][variant] = row
    progress(Event("evaluate", len(variants), len(variants), "evaluation done"))
    return report


def evaluate_source(model_dir: Path, source: str | Path, variants: list[str] | None = None,
                    ov_settings: OVSettings | None = None, progress: ProgressFn = ignore,
                    subset: str | None = None) -> dict[str, Any]:
    """Evaluate on a dataset folder or archive whose class folders are named like the model's classes.

    With `subset` ("train", "val" or "test"), only that part of the model's own seeded split of
    `source` is used, which reproduces the accuracies stored in metadata.json.
    """
    meta = registry.read_metadata(model_dir)
    classes = list(meta["classes"])
    if subset is not None:
        parts = model_split(meta | {"data": meta["data"] | {"source": str(source)}}, progress)
        items = getattr(parts, subset)
    else:
        info = data.scan(data.resolve(source, progress=progress), min_images=1)
        unknown = [c for c in info.classes if c not in classes]
        if unknown:
            raise data.DatasetError(
                f"class folder(s) {', '.join(unknown)} are not classes of this model ({', '.join(classes)})"
            )
        items = [(f, classes.index(c)) for c in info.classes for f in info.files[c]]
    images, labels, bad = data.load_arrays(items, int(meta["image_size"]), progress)
    report = compare(model_dir, images, labels, variants, ov_settings, progress)
    if subset is not None:
        report["subset"] = subset
    if bad:
        report["unreadable"] = bad
    return report


def model_split(meta: dict[str, Any], progress: ProgressFn = ignore) -> data.Split:
    """Rebuild the train/val/test split a model was trained with, from its metadata."""
    cfg, split_meta = meta["config"], meta["data"]["split"]
    source = meta["data"]["source"]
    if not data.is_url(source) and not Path(source).exists() and (paths.PROJECT_ROOT / source).exists():
        source = str(paths.PROJECT_ROOT / source)  # relative to the project, as recorded by the CLI
    info = data.scan(data.resolve(source, progress=progress))
    if info.classes != list(meta["classes"]):
        raise registry.ModelError(f"the dataset's classes {info.classes} differ from the model's {meta['classes']}")
    return data.split(info, split_meta["val_fraction"], split_meta["test_fraction"], cfg["seed"])


def validate(model_dir: Path, parts: data.Split | None = None, progress: ProgressFn = ignore) -> dict[str, Any]:
    """Evaluate every variant on the model's own validation (and held-out test) split; store it in metadata."""
    meta = registry.read_metadata(model_dir)
    parts = parts or model_split(meta, progress)
    size = int(meta["image_size"])
    accuracy: dict[str, Any] = {}
    agreement: dict[str, Any] = {}
    for subset in ("val", "test"):
        items = getattr(parts, subset)
        if not items:
            continue
        images, labels, _ = data.load_arrays(items, size, progress, f"load {subset}")
        report = compare(model_dir, images, labels, progress=progress)
        accuracy[subset] = {v: r["accuracy"] for v, r in report["variants"].items()}
        accuracy[subset]["n_images"] = report["n_images"]
        agreement[subset] = {v: {"top1": r["agreement_with_tf"], "max_prob_diff": r["max_prob_diff"]}
                             for v, r in report["variants"].items() if v != registry.TF_VARIANT}
    registry.update_metadata(model_dir, {"accuracy": accuracy, "agreement_with_tf": agreement,
                                         "evaluated_with": OVSettings().config()})
    return {"accuracy": accuracy, "agreement_with_tf": agreement}


def variant_table(model_dir: Path) -> pd.DataFrame:
    """One row per variant: size on disk and the accuracy/agreement recorded in metadata."""
    import pandas as pd

    meta = registry.read_metadata(model_dir)
    accuracy, agreement = meta.get("accuracy", {}), meta.get("agreement_with_tf", {})
    rows = []
    for variant in registry.available_variants(model_dir):
        row: dict[str, Any] = {"variant": variant,
                               "size (MB)": round(registry.variant_size_bytes(model_dir, variant) / 1e6, 2)}
        for subset, label in (("val", "val accuracy"), ("test", "held-out accuracy")):
            if variant in accuracy.get(subset, {}):
                row[label] = accuracy[subset][variant]
        for subset in ("val", "test"):
            if variant in agreement.get(subset, {}):
                row[f"top-1 agreement with TF ({subset})"] = agreement[subset][variant]["top1"]
        rows.append(row)
    return pd.DataFrame(rows)

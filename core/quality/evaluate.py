"""Accuracy of every variant and its agreement with TensorFlow, on the same images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.model import artifacts, data, registry
from core.runtimes.backends import Backend, load_backend
from core.model.model_card import ModelCard, Scores
from core.progress import Event, ProgressFn, ignore
from core.settings import OVSettings
from core.variants import CATALOGUE

# The accuracy budget: what a faster setup may cost, on the model's held-out split.
ACCURACY_BUDGET = 0.01  # at most 1 point below TensorFlow
MIN_AGREEMENT = 0.99  # top-1 class equal to TensorFlow's on at least this share of the photos


@dataclass(frozen=True)
class Guard:
    """One variant's accuracy against TensorFlow's on the same photos; `reason` says why it is
    outside the budget, or is None."""

    accuracy: float
    agreement_with_tf: float
    tf_accuracy: float
    n_images: int

    @property
    def reason(self) -> str | None:
        if self.accuracy < self.tf_accuracy - ACCURACY_BUDGET:
            return (f"accuracy {self.accuracy:.1%} is more than {ACCURACY_BUDGET:.0%} below TensorFlow's "
                    f"{self.tf_accuracy:.1%}")
        if self.agreement_with_tf < MIN_AGREEMENT:
            agreeing = round(self.agreement_with_tf * self.n_images)
            return (f"top-1 agreement with TensorFlow {agreeing} of {self.n_images} photos "
                    f"({self.agreement_with_tf:.2%}) < {MIN_AGREEMENT:.0%}")
        return None

    @classmethod
    def from_card(cls, card: ModelCard, variant: str) -> Guard | None:
        """From the scores on the card (held-out split, else validation), if `variant` was scored."""
        scores = card.scores.get("test") or card.scores.get("val")
        if scores is None or variant not in scores.accuracy or registry.TF_VARIANT not in scores.accuracy:
            return None
        agreement = 1.0 if variant == registry.TF_VARIANT else scores.agreement_with_tf[variant]
        return cls(scores.accuracy[variant], agreement, scores.accuracy[registry.TF_VARIANT], scores.n_images)


# Photos per inference call when scoring or calibrating: a training job does both inside Cloud's
# memory, and at 32 the runtimes' working memory for one call was the job's peak.
SCORING_BATCH = 8


def predict_batched(backend: Backend, images: np.ndarray, batch_size: int = SCORING_BATCH) -> np.ndarray:
    return np.concatenate([backend.predict(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def score_variants(
    model_dir: Path,
    images: np.ndarray,
    labels: np.ndarray,
    variants: list[str] | None = None,
    ov_settings: OVSettings | None = None,
    progress: ProgressFn = ignore,
    files: list[str] | None = None,
) -> Scores:
    """Run every variant (TensorFlow always) on `images`: accuracy, agreement with TensorFlow and the
    confusion matrix; with `files` (one name per image), TensorFlow's wrong answers too."""
    variants = variants or registry.available_variants(model_dir)
    if registry.TF_VARIANT not in variants:
        variants = [registry.TF_VARIANT, *variants]
    probs: dict[str, np.ndarray] = {}
    for i, variant in enumerate(variants):
        progress(Event("evaluate", i, len(variants), f"running {variant} on {len(images)} images"))
        probs[variant] = predict_batched(load_backend(model_dir, variant, ov_settings), images)
    progress(Event("evaluate", len(variants), len(variants), "evaluation done"))
    classes = registry.read_card(model_dir).classes
    reference = np.argmax(probs[registry.TF_VARIANT], 1)
    others = {v: p for v, p in probs.items() if v != registry.TF_VARIANT}
    wrong = np.flatnonzero(reference != labels) if files is not None else []
    return Scores(
        n_images=int(len(images)),
        accuracy={v: float(np.mean(np.argmax(p, 1) == labels)) for v, p in probs.items()},
        agreement_with_tf={v: float(np.mean(np.argmax(p, 1) == reference)) for v, p in others.items()},
        max_prob_diff={v: float(np.max(np.abs(p - probs[registry.TF_VARIANT]))) for v, p in others.items()},
        confusion={v: confusion_matrix(labels, np.argmax(p, 1), len(classes)) for v, p in probs.items()},
        misclassified=tuple({"file": files[i], "true": classes[labels[i]], "predicted": classes[reference[i]],
                             "probability": round(float(probs[registry.TF_VARIANT][i, reference[i]]), 4)}
                            for i in wrong),
    )


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> list[list[int]]:
    """Counts of [true class][predicted class]."""
    matrix = np.zeros((n_classes, n_classes), dtype=int)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix.tolist()


def evaluate_dataset(model_dir: Path, source: str | Path | None, variants: list[str] | None = None,
                     ov_settings: OVSettings | None = None, progress: ProgressFn = ignore,
                     subset: str | None = None) -> tuple[Scores, list[str]]:
    """Score every variant on a dataset whose class folders are named like the model's classes;
    returns the scores and the unreadable files.

    With `subset` ("train", "val" or "test"), only that part of the model's own seeded split of
    `source` (None: the data set recorded on its card) is used, which reproduces the card's scores.
    """
    card = registry.read_card(model_dir)
    if subset is not None:
        items = getattr(card.rebuild_split(None if source is None else str(source), progress), subset)
    elif source is None:
        raise data.DatasetError("name a data set, or a part of the model's own split (--split)")
    else:
        info = data.scan(data.resolve(source, progress=progress), min_images=1)
        unknown = [c for c in info.classes if c not in card.classes]
        if unknown:
            raise data.DatasetError(
                f"class folder(s) {', '.join(unknown)} are not classes of this model ({', '.join(card.classes)})"
            )
        items = [(f, card.classes.index(c)) for c in info.classes for f in info.files[c]]
    images, labels, bad = data.load_arrays(items, card.image_size, progress)
    return score_variants(model_dir, images, labels, variants, ov_settings, progress), bad


def ensure_scored(model_dir: Path, variant: str, progress: ProgressFn = ignore) -> Path:
    """The variant's file (`artifacts.ensure`), scored on the model's card if it never was."""
    path = artifacts.ensure(model_dir, variant, progress)
    if not any(variant in s.accuracy for s in registry.read_card(model_dir).scores.values()):
        validate_and_record(Path(model_dir), progress=progress, variants=[variant])
    return path


def validate_and_record(model_dir: Path, split: data.Split | None = None, progress: ProgressFn = ignore,
                        variants: list[str] | None = None) -> dict[str, Scores]:
    """Score every variant and every peer made so far (or just `variants`, added to what is there)
    on the model's own validation and held-out splits, and write the scores on its card (with the
    OpenVINO settings they ran with)."""
    card = registry.read_card(model_dir)
    split = split or card.rebuild_split(progress=progress)
    scored = variants or registry.available_variants(model_dir) + registry.present_peers(model_dir)
    scores = {}
    # A final fit trained on the validation photos: scores there would measure memory, not accuracy.
    subsets = ("test",) if card.config is not None and card.config.fit_on_val else ("val", "test")
    for subset in subsets:
        items = getattr(split, subset)
        if items:
            images, labels, bad = data.load_arrays(items, card.image_size, progress, f"load {subset}")
            # As `class/name` under the dataset's root: where the server still has the data, a page can show them.
            unreadable = {b.split(": ", 1)[0] for b in bad}
            files = [f"{Path(f).parent.name}/{Path(f).name}" for f, _ in items if Path(f).name not in unreadable]
            scores[subset] = score_variants(model_dir, images, labels, scored, progress=progress,
                                            files=files if len(files) == len(images) else None)
            if variants is not None and subset in card.scores:
                scores[subset] = card.scores[subset].merged(scores[subset])
    registry.update_card(model_dir, scores=scores, evaluated_with=OVSettings().config())
    return scores


def variant_rows(model_dir: Path, latency: bool = True) -> list[dict[str, Any]]:
    """One row per variant, in words a visitor reads: its label, size on disk and the scores
    recorded on the card as percentages (TensorFlow's agreement with itself is a dash, not a
    number). `latency`: the training job's single-image latency (all variants in its one process)."""
    card = registry.read_card(model_dir)
    rows = []
    for variant in registry.available_variants(model_dir):
        row: dict[str, Any] = {"variant": CATALOGUE[variant].label,
                               "size": f"{registry.variant_size_bytes(model_dir, variant) / 1e6:.1f} MB"}
        for subset, label in (("val", "validation"), ("test", "held-out")):
            scores = card.scores.get(subset)
            if scores is None or variant not in scores.accuracy:
                continue
            low, high = scores.accuracy_ci95[variant]
            row[f"{label} accuracy"] = f"{scores.accuracy[variant]:.1%} ({low:.1%}–{high:.1%})"
            agreement = scores.agreement_with_tf.get(variant)
            row[f"same answer as TensorFlow ({label})"] = (
                "—" if variant == registry.TF_VARIANT or agreement is None
                else f"{agreement:.1%} ({round(agreement * scores.n_images)} of {scores.n_images})")
        if latency and variant in card.single_image_latency_ms:
            row["one photo in the training job (ms)"] = round(card.single_image_latency_ms[variant], 2)
        rows.append(row)
    return rows

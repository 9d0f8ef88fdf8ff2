"""Is a photo one of the model's flowers, and how sure is the model? Fitted once, stored on the card.

1. Temperature scaling: one temperature T, fitted on the validation split by minimising the
   negative log-likelihood, so that a calibrated "80%" is right about 80% of the time. It works
   on probabilities: softmax(log p / T) equals softmax(logits / T), whatever the runtime.
2. Open-set score: the maximum calibrated probability. The threshold keeps `KEEP` of the
   correctly classified validation photos; below it the answer is "not one of the classes".
3. Measured on the held-out split and on photos that are not flowers (`non_flowers`): AUROC,
   the false-positive rate at 95% true-positive rate, the held-out flowers rejected, and the
   expected calibration error before and after.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core import data, registry
from core.images import to_model_input
from core.progress import Event, ProgressFn, ignore

KEEP = 0.95  # share of correctly classified validation flowers the threshold keeps
SCORE = "maximum softmax probability after temperature scaling"
TEMPERATURES = np.geomspace(0.25, 8.0, 241)


@dataclass(frozen=True)
class Calibration:
    temperature: float
    threshold: float  # on the calibrated maximum probability
    score: str = SCORE
    keep: float = KEEP
    fitted_on: str = "val"
    measured: dict[str, Any] = dataclasses.field(default_factory=dict)  # on the held-out split and non-flowers

    def known(self, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(score, known?) of each row of probabilities."""
        score = known_score(probs, self.temperature)
        return score, score >= self.threshold


def scale(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities as if the logits had been divided by `temperature`."""
    logits = np.log(np.clip(probs, 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=-1, keepdims=True)


def known_score(probs: np.ndarray, temperature: float) -> np.ndarray:
    return scale(np.atleast_2d(probs), temperature).max(axis=-1)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0))))


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature of least negative log-likelihood, on a fine log-spaced grid."""
    losses = [nll(scale(probs, t), labels) for t in TEMPERATURES]
    return float(TEMPERATURES[int(np.argmin(losses))])


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """The gap between confidence and accuracy, averaged over equal-width confidence bins."""
    confidence, predicted = probs.max(axis=-1), probs.argmax(axis=-1)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    gap = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            gap += mask.mean() * abs(np.mean(predicted[mask] == labels[mask]) - confidence[mask].mean())
    return float(gap)


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Per confidence bin: mean confidence, accuracy and photos (the reliability diagram's points)."""
    confidence, correct = probs.max(axis=-1), probs.argmax(axis=-1) == labels
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    return [{"confidence": float(confidence[which == b].mean()), "accuracy": float(correct[which == b].mean()),
             "photos": int((which == b).sum())} for b in range(bins) if (which == b).any()]


def auroc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    pos, neg = np.asarray(positives)[:, None], np.asarray(negatives)[None, :]
    return float(np.mean((pos > neg) + 0.5 * (pos == neg)))


def fpr_at_tpr(positives: np.ndarray, negatives: np.ndarray, tpr: float = 0.95) -> float:
    """Share of negatives accepted by the threshold that accepts `tpr` of the positives."""
    threshold = np.quantile(positives, 1 - tpr)
    return float(np.mean(np.asarray(negatives) >= threshold))


def non_flowers(image_size: int) -> tuple[np.ndarray, list[str]]:
    """Photos and pictures that are not flowers, from packages the project installs (scikit-learn's
    sample photos, scikit-image's where installed) and generated ones (noise, flat colours,
    gradients, and the charts in docs/). Small: a measurement, not a benchmark of open-set methods."""
    from PIL import Image

    pictures: list[tuple[str, Image.Image]] = []
    try:
        from sklearn.datasets import load_sample_images

        for name, array in zip(("sklearn china.jpg", "sklearn flower.jpg (a dahlia, not one of the classes)"),
                               load_sample_images().images):
            pictures.append((name, Image.fromarray(array)))
    except ImportError:
        pass
    try:
        import skimage.data

        for name in ("astronaut", "camera", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
                     "retina", "moon", "page", "text", "horse", "clock", "coins", "brick", "grass", "gravel"):
            try:
                array = getattr(skimage.data, name)()
            except Exception:  # not bundled with this version (some are fetched on demand): skip it
                continue
            pictures.append((f"skimage {name}", Image.fromarray(np.asarray(array)).convert("RGB")))
    except ImportError:
        pass
    rng = np.random.default_rng(0)
    for i in range(8):
        pictures.append((f"noise {i}", Image.fromarray(rng.integers(0, 256, (image_size, image_size, 3), np.uint8))))
    for colour in ((20, 60, 200), (240, 240, 240), (10, 10, 10), (200, 30, 30), (30, 160, 60), (250, 200, 0)):
        pictures.append((f"flat {colour}", Image.new("RGB", (image_size, image_size), colour)))
    ramp = np.linspace(0, 255, image_size, dtype=np.uint8)
    pictures.append(("gradient", Image.fromarray(np.stack([np.tile(ramp, (image_size, 1))] * 3, -1))))
    for png in sorted((Path(__file__).resolve().parent.parent / "docs").rglob("*.png")):
        pictures.append((f"chart {png.name}", Image.open(png).convert("RGB")))
    images = np.stack([to_model_input(img, image_size) for _, img in pictures])
    return images, [name for name, _ in pictures]


def calibrate(model_dir: Path, progress: ProgressFn = ignore) -> Calibration:
    """Fit the temperature and threshold on the validation split with TensorFlow, measure them on
    the held-out split and the non-flower pictures with every variant, and store them on the card."""
    from core.backends import load_backend
    from core.evaluate import predict_batched

    card = registry.read_card(model_dir)
    split = card.rebuild_split(progress=progress)
    tf = load_backend(model_dir, registry.TF_VARIANT)
    progress(Event("calibrate", 0, 3, "fitting the temperature and threshold on the validation split"))
    x_val, y_val, _ = data.load_arrays(split.val, card.image_size, progress, "load val")
    p_val = predict_batched(tf, x_val)
    temperature = fit_temperature(p_val, y_val)
    correct = known_score(p_val, temperature)[p_val.argmax(1) == y_val]
    threshold = float(np.quantile(correct, 1 - KEEP))
    progress(Event("calibrate", 1, 3, "measuring on the held-out split and on pictures that are not flowers"))
    x_test, y_test, _ = data.load_arrays(split.test or split.val, card.image_size, progress, "load held-out")
    junk, names = non_flowers(card.image_size)
    measured: dict[str, Any] = {"split": "test" if split.test else "val", "flowers": len(x_test),
                                "non_flowers": len(junk), "non_flower_names": names, "variants": {}}
    for variant in registry.available_variants(model_dir):
        backend = tf if variant == registry.TF_VARIANT else load_backend(model_dir, variant)
        p_test, p_junk = predict_batched(backend, x_test), predict_batched(backend, junk)
        flowers, others = known_score(p_test, temperature), known_score(p_junk, temperature)
        measured["variants"][variant] = {
            "auroc": auroc(flowers, others), "fpr_at_95_tpr": fpr_at_tpr(flowers, others),
            "flowers_rejected": int(np.sum(flowers < threshold)),
            "non_flowers_accepted": [n for n, s in zip(names, others) if s >= threshold],
            "ece_before": expected_calibration_error(p_test, y_test),
            "ece_after": expected_calibration_error(scale(p_test, temperature), y_test),
        }
        if variant == registry.TF_VARIANT:
            measured["reliability_before"] = reliability(p_test, y_test)
            measured["reliability_after"] = reliability(scale(p_test, temperature), y_test)
    calibration = Calibration(temperature, threshold, measured=measured)
    registry.update_card(model_dir, openset=dataclasses.asdict(calibration))
    progress(Event("calibrate", 3, 3, f"temperature {temperature:.2f}, threshold {threshold:.3f}"))
    return calibration


def from_card(openset: dict[str, Any]) -> Calibration | None:
    return Calibration(**openset) if openset else None

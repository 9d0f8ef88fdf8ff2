"""Is a photo one of the model's flowers, and how sure is the model? Fitted once, stored with the model.

1. Temperature scaling: one temperature T, fitted on the validation split by minimising the
   negative log-likelihood, so that a calibrated "80%" is right about 80% of the time. It works
   on probabilities: softmax(log p / T) equals softmax(logits / T), whatever the runtime.
2. Open-set score, chosen by measurement among the maximum calibrated probability, the energy
   of the logits and the Mahalanobis distance on the penultimate features: the distance to the
   nearest class mean (`Distance`), fitted on the training split, in the `SUBSPACE` directions
   in which training flowers vary least (where a picture that is not a flower stands out; the
   whole 1280-dimensional covariance measured the same and would not fit the model's folder).
   It is shown as a typicality: the share of correctly classified validation flowers at least
   as far from their nearest class. Under 1 - `KEEP` the answer is "not one of the classes".
   Models whose IR has no features output fall back to the calibrated probability.
   Where an ImageNet classifier can run (`core.model.imagenet`), it decides instead
   (`ImageNetCheck`): how close the photo is, in that network's features, to its nearest training
   photos. It knows cats, people and pizzas, which the model's own features cannot tell apart
   from flowers, and its verdict is the same whichever backend answers the flower question.
3. Measured on the held-out split and on photos that are not flowers (`non_flowers`): AUROC,
   the false-positive rate at 95% true-positive rate, the held-out flowers rejected, and the
   expected calibration error before and after.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core import atomic, paths
from core.errors import UserError
from core.model import data, imagenet, registry
from core.model.evaluate import SCORING_BATCH
from core.model.images import to_model_input
from core.progress import Event, ProgressFn, ignore

KEEP = 0.95  # share of correctly classified validation flowers the threshold keeps
MSP, MAHALANOBIS = "msp", "mahalanobis"
SUBSPACE = 128  # of 1280 feature directions; measured against all of them on every calibration (docs/model.md)
IMAGENET = "imagenet-neighbours"
SCORE_NAMES = {MSP: "maximum softmax probability after temperature scaling",
               "energy": "energy of the logits (log-sum-exp)",
               MAHALANOBIS: f"Mahalanobis distance to the nearest class, penultimate features, {SUBSPACE} least-varying "
                            "directions",
               "mahalanobis-all": "the same in all feature directions (measured, not stored: 6.5 MB)",
               IMAGENET: "an ImageNet classifier's features: mean cosine similarity to the 5 nearest training photos"}
DISTANCE_FILE = "openset.npz"
NEIGHBOURS_FILE = "imagenet-neighbours.npz"  # the ImageNet check's training photos
# The kinds of other things the check is known to let through (docs/model.md): Predict names them.
PASSING_KINDS = ("other flowers", "plants")
TEMPERATURES = np.geomspace(0.25, 8.0, 241)
_FEATURE_CHUNK = 64  # training photos decoded at a time while fitting the distance
IMAGENET_TRAINING_SAMPLE = 600  # training photos (seeded) the ImageNet check compares a photo with
IMAGENET_THRESHOLD_SAMPLE = 1000  # other training photos (seeded) that, with the validation flowers, set its threshold
NEIGHBOURS = 5  # nearest of them whose similarity counts
QUANTILES = 201  # of the flowers' similarity the card keeps, every half percent


@dataclass(frozen=True)
class Distance:
    """Squared Mahalanobis distance to the nearest class mean, with one covariance shared by the
    classes, in the directions of least within-class variance; `reference` holds the distances of
    the correctly classified validation flowers, sorted, to turn a distance into a typicality."""

    projection: np.ndarray  # (features, SUBSPACE): eigenvectors / sqrt(eigenvalues)
    means: np.ndarray  # (classes, SUBSPACE): class means, projected
    reference: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))

    def distance(self, features: np.ndarray) -> np.ndarray:
        z = np.atleast_2d(features).astype(np.float32) @ self.projection
        return ((z[:, None, :] - self.means[None]) ** 2).sum(-1).min(1)

    def typicality(self, features: np.ndarray) -> np.ndarray:
        """Share of the reference flowers at least as far from their class as each photo (0 to 1)."""
        d = self.distance(features)
        return 1.0 - np.searchsorted(self.reference, d, side="left") / len(self.reference)

    def save(self, path: Path) -> None:
        atomic.write_bytes(path, lambda f: np.savez(f, projection=self.projection.astype(np.float16),
                                                    means=self.means, reference=self.reference))

    @classmethod
    def load(cls, path: Path) -> Distance:
        with np.load(path) as z:
            return cls(z["projection"].astype(np.float32), z["means"], z["reference"])


def fit_distance(features: np.ndarray, labels: np.ndarray, n_classes: int, k: int = SUBSPACE) -> Distance:
    means = np.stack([features[labels == c].mean(0) for c in range(n_classes)])
    centred = features - means[labels]
    eigenvalues, vectors = np.linalg.eigh(centred.T @ centred / len(centred))  # ascending
    floor = 1e-6 * eigenvalues[-1]  # a direction with no variance at all would divide by zero
    projection = (vectors[:, :k] / np.sqrt(np.maximum(eigenvalues[:k], floor))).astype(np.float32)
    return Distance(projection, (means @ projection).astype(np.float32))


@dataclass(frozen=True)
class ImageNetCheck:
    """Does a photo look like the model's training photos to a network that knows 1000 other
    things? Its score is the mean cosine similarity of the photo's ImageNet features to those of
    its `NEIGHBOURS` nearest training photos (a sample of them, kept in the model's folder), shown
    as a typicality: the share of flowers that are no closer (validation flowers and other
    training photos: the ImageNet network never trained on them, so they are new photos to it, and
    with about 1300 of them instead of about 280 validation flowers, the share of held-out flowers
    the threshold keeps varies less: 93-97% with the validation flowers alone, 96-97% pooled, 5th to
    95th percentile of a bootstrap on the shipped model).

    Chosen on a tuning set of real photos (docs/model.md, "Photos that are not flowers"): it took
    7.3% of them for a flower at 95% of flowers kept (1.9% of those that are not other flowers),
    against 9.9% (4.0%) for its predecessor here, the product of the model's own Mahalanobis
    typicality and the ImageNet probability of the classes flowers look like; and it rejects every
    synthetic picture as that did. Nearest neighbours rather than a class mean: training photos of
    one class are many kinds of picture (a close-up, a field, a bouquet on a table), and a photo
    needs to be close to some of them, not to their average."""

    kin: tuple[int, ...]  # ImageNet classes the training photos look like: never named as what a photo is instead
    reference: tuple[float, ...]  # QUANTILES of the flowers' similarity, from the least similar to the most
    threshold: float = 1 - KEEP  # on the typicality: keeps KEEP of those flowers
    neighbours: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 0), np.float32), compare=False,
                                               repr=False)  # unit features of the training photos; its own file

    def similarity(self, judged: imagenet.Opinion) -> np.ndarray:
        cosine = _unit(judged.features) @ self.neighbours.T
        return np.sort(cosine, axis=1)[:, -NEIGHBOURS:].mean(1)

    def typicality(self, judged: imagenet.Opinion) -> np.ndarray:
        """The share of the reference flowers no closer to their neighbours, interpolated between the
        quantiles (a count would move in steps, and photos of plants crowd the threshold)."""
        return np.interp(self.similarity(judged), self.reference, np.linspace(0.0, 1.0, len(self.reference)))

    def looks_like(self, judged: imagenet.Opinion) -> imagenet.LooksLike | None:
        """What the first photo of `judged` looks like instead, if ImageNet is confident."""
        return imagenet.looks_like(judged.probabilities[0], self.kin)

    @classmethod
    def fit(cls, training: imagenet.Opinion, flowers: imagenet.Opinion) -> ImageNetCheck:
        """From the network's opinion of the training photos to compare with, and of other flower
        photos of the classes (none of those) that set the threshold."""
        check = cls(imagenet.kin_classes(training.probabilities), (), neighbours=_stored(_unit(training.features)))
        reference = np.quantile(check.similarity(flowers), np.linspace(0.0, 1.0, QUANTILES))
        return dataclasses.replace(check, reference=tuple(float(q) for q in reference))

    def save(self, path: Path) -> None:
        # Unit vectors of non-negative features (ReLU6, then an average), 8 bits each: 0.4 MB for 600
        # photos, and the same verdicts as float32 on the tuning photos.
        atomic.write_bytes(path, lambda f: np.savez_compressed(f, neighbours=_to_uint8(self.neighbours)))

    @staticmethod
    def load_neighbours(path: Path) -> np.ndarray:
        with np.load(path) as z:
            return _unit(z["neighbours"].astype(np.float32))


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.atleast_2d(x).astype(np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _to_uint8(unit: np.ndarray) -> np.ndarray:
    return np.round(np.clip(unit, 0, None) * (255 / max(float(unit.max()), 1e-12))).astype(np.uint8)


def _stored(unit: np.ndarray) -> np.ndarray:
    """`unit` as it reads back from its file, so that what calibration measures is what Predict uses."""
    return _unit(_to_uint8(unit).astype(np.float32))


@dataclass(frozen=True)
class Calibration:
    temperature: float
    threshold: float  # on the score: a calibrated probability (msp) or a typicality (mahalanobis)
    score: str = MSP
    keep: float = KEEP
    fitted_on: str = "val"
    measured: dict[str, Any] = dataclasses.field(default_factory=dict)  # on the held-out split and non-flowers
    imagenet: ImageNetCheck | None = None  # decides instead of `score` where the ImageNet classifier runs
    evaluated: dict[str, Any] = dataclasses.field(default_factory=dict)  # `record_evaluation`: photos of other things
    distance: Distance | None = dataclasses.field(default=None, compare=False, repr=False)  # its own file

    @property
    def in_use(self) -> str:
        """The score Predict decides by where everything it needs runs."""
        return IMAGENET if self.imagenet is not None else self.score

    @property
    def threshold_in_use(self) -> float:
        """The threshold of `in_use`."""
        return self.imagenet.threshold if self.imagenet is not None else self.threshold

    def rule(self, imagenet_runs: bool) -> str:
        """When a photo is called not one of the classes, as the pages say it ("a photo that …"):
        by the ImageNet check where it runs, else by the model's own score."""
        if self.imagenet is not None and imagenet_runs:
            return (f"is farther from its nearest training photos than {self.keep:.0%} of other photos of these "
                    "flowers are (validation photos, and training photos it is not compared with), in the features "
                    "of an ImageNet classifier (EfficientNet-Lite0, which knows 1000 kinds of thing)")
        if self.score == MAHALANOBIS:
            return (f"is farther from every class (Mahalanobis distance on the penultimate features) than "
                    f"{self.keep:.0%} of correctly classified validation flowers")
        return (f"has a top calibrated probability under {self.threshold:.2f} (what {1 - self.keep:.0%} of "
                "correctly classified validation flowers score)")

    def taken_for_a_class(self) -> dict[str, float]:
        """Per kind of other thing, the share the check in use took for one of the classes at the
        model's threshold, as `python -m core openset-eval --record` measured it (empty if never)."""
        report = self.evaluated.get("report")
        used = next((s for s in report["scores"] if s["in_use"]), None) if report else None
        return {r["kind"]: r["accepted"] for r in used["at_model"]} if used else {}

    def scope(self, classes: tuple[str, ...] | list[str]) -> str:
        """What an answer means and what passes for one of the classes, in a sentence for visitors."""
        taken = self.taken_for_a_class()
        known = (f"This model knows only {len(classes)} kinds: {', '.join(classes)}. An answer says which of "
                 "them a photo looks most like.")
        passed = [f"{share:.0%} of {kind}" for kind, share in taken.items() if kind in PASSING_KINDS]
        if not passed:
            return known
        return (f"{known} Its check of \"not one of them\" tells them from most other things, but not from other "
                f"flowers or many plants: in a test on photos it had never seen, {' and '.join(passed)} passed "
                "for one of them (docs/model.md).")

    def known(self, probs: np.ndarray, features: np.ndarray | None = None,
              judged: imagenet.Opinion | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """(score, known?) of each row, or None where the score needs features the backend lacks.
        `judged`: the ImageNet classifier's opinion of the same photos, which decides where it is
        given; without it (it could not be made here) the model's own score decides."""
        if self.imagenet is not None and judged is not None:
            score = self.imagenet.typicality(judged)
            return score, score >= self.imagenet.threshold
        if self.score == MAHALANOBIS:
            if features is None or self.distance is None:
                return None
            score = self.distance.typicality(features)
        else:
            score = known_score(probs, self.temperature)
        return score, score >= self.threshold

    def to_card(self) -> dict[str, Any]:
        card = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("distance", "imagenet")}
        if self.imagenet is None:
            return card
        check = self.imagenet
        return card | {"imagenet": {"kin": check.kin, "reference": check.reference, "threshold": check.threshold,
                                    "neighbours": len(check.neighbours)}}


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
    for png in sorted((paths.PROJECT_ROOT / "docs" / "benchmark").glob("*.png")):  # the study's charts
        pictures.append((f"chart {png.name}", Image.open(png).convert("RGB")))
    images = np.stack([to_model_input(img, image_size) for _, img in pictures])
    return images, [name for name, _ in pictures]


def infer_batched(backend, images: np.ndarray, batch_size: int = SCORING_BATCH) -> tuple[np.ndarray, np.ndarray | None]:
    parts = [backend.infer(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
    features = None if parts[0][1] is None else np.concatenate([f for _, f in parts])
    return np.concatenate([p for p, _ in parts]), features


def training_features(backend, items: list, image_size: int, progress: ProgressFn = ignore) -> tuple[np.ndarray, np.ndarray]:
    """Penultimate features of the training photos, decoded a chunk at a time (the photos are
    never all in memory: on Community Cloud the job shares 2.7 GB with the server)."""
    features, labels = [], []
    for i in range(0, len(items), _FEATURE_CHUNK):
        x, y, _ = data.load_arrays(items[i:i + _FEATURE_CHUNK], image_size)
        features.append(infer_batched(backend, x)[1])
        labels.append(y)
        progress(Event("calibrate", i + len(x), len(items), "features of the training photos"))
    return np.concatenate(features), np.concatenate(labels)


def energy(logits: np.ndarray) -> np.ndarray:
    """The negative free energy, log-sum-exp of the logits: higher for what the model knows."""
    top = logits.max(1)
    return top + np.log(np.exp(logits - top[:, None]).sum(1))


def _separation(flowers: np.ndarray, others: np.ndarray, threshold: float, names: list[str]) -> dict[str, Any]:
    return {"auroc": auroc(flowers, others), "fpr_at_95_tpr": fpr_at_tpr(flowers, others),
            "flowers_rejected": int(np.sum(flowers < threshold)),
            "non_flowers_accepted": [n for n, s in zip(names, others) if s >= threshold]}


def _judged(items: list, progress: ProgressFn) -> imagenet.Opinion:
    """The ImageNet classifier's opinion of dataset photos, decoded at its own size a chunk at a
    time (in a training job the photos would otherwise add about 180 MB to its peak)."""
    answers = []
    for i in range(0, len(items), _FEATURE_CHUNK):
        x, _, _ = data.load_arrays(items[i:i + _FEATURE_CHUNK], imagenet.SIZE)
        answers.append(imagenet.judge_each(x))
        progress(Event("calibrate", i + len(x), len(items), "asking the ImageNet classifier"))
    return imagenet.Opinion.concatenate(answers)


def imagenet_check_photos(split: data.Split) -> tuple[list, list]:
    """The training photos the ImageNet check compares a photo with, and the other training photos
    that, with the validation flowers, set its threshold (seeded)."""
    shuffled = random.Random(0).sample(split.train, len(split.train))
    return (shuffled[:IMAGENET_TRAINING_SAMPLE],
            shuffled[IMAGENET_TRAINING_SAMPLE:IMAGENET_TRAINING_SAMPLE + IMAGENET_THRESHOLD_SAMPLE])


def _fit_imagenet_check(split: data.Split, correct: np.ndarray,
                        progress: ProgressFn) -> tuple[ImageNetCheck | None, imagenet.Opinion | None, str]:
    """The ImageNet check, the validation photos' ImageNet opinion, and why not where it cannot be made."""
    try:
        imagenet.judge()
    except (UserError, registry.ModelError) as exc:
        return None, None, str(exc)
    progress(Event("calibrate", 1, 4, "asking an ImageNet classifier about the training and validation photos"))
    neighbours, others = imagenet_check_photos(split)
    j_val = _judged(split.val, progress)
    flowers = imagenet.Opinion.concatenate([j_val.take(correct)] + ([_judged(others, progress)] if others else []))
    return ImageNetCheck.fit(_judged(neighbours, progress), flowers), j_val, ""


def calibrate(model_dir: Path, progress: ProgressFn = ignore) -> Calibration:
    """Fit the temperature, the distance (on the training split) and the threshold (on the
    validation split) with TensorFlow; compare the candidate scores; join the ImageNet check to the
    distance where it can run; measure the chosen score on the held-out split and the non-flower
    pictures with every variant; store them with the model."""
    from core.runtimes.backends import load_backend

    card = registry.read_card(model_dir)
    split = card.rebuild_split(progress=progress)
    tf = load_backend(model_dir, registry.TF_VARIANT)
    progress(Event("calibrate", 0, 4, "fitting the temperature and the distance"))
    x_val, y_val, _ = data.load_arrays(split.val, card.image_size, progress, "load val")
    p_val, f_val = infer_batched(tf, x_val)
    temperature = fit_temperature(p_val, y_val)
    correct = p_val.argmax(1) == y_val
    f_train, y_train = training_features(tf, split.train, card.image_size, progress)
    distance = fit_distance(f_train, y_train, len(card.classes))
    everywhere = fit_distance(f_train, y_train, len(card.classes), k=f_train.shape[1])
    distance = dataclasses.replace(distance, reference=np.sort(distance.distance(f_val[correct])))
    thresholds = {MSP: float(np.quantile(known_score(p_val, temperature)[correct], 1 - KEEP)),
                  MAHALANOBIS: 1 - KEEP}
    check, j_val, no_check = _fit_imagenet_check(split, correct, progress)
    progress(Event("calibrate", 2, 4, "measuring on the held-out split and on pictures that are not flowers"))
    held_out = split.test or split.val
    x_test, y_test, _ = data.load_arrays(held_out, card.image_size, progress, "load held-out")
    junk, names = non_flowers(card.image_size)
    j_test = j_junk = None
    if check is not None:
        j_test, j_junk = _judged(held_out, progress), imagenet.judge_each(non_flowers(imagenet.SIZE)[0])
    measured: dict[str, Any] = {"split": "test" if split.test else "val", "flowers": len(x_test),
                                "non_flowers": len(junk), "non_flower_names": names, "variants": {}}
    if no_check:
        measured["imagenet_check"] = f"not used: {no_check}"
    # The candidates, on TensorFlow: each with a threshold that keeps KEEP of the correct validation flowers
    # (the ImageNet check: its own, which keeps KEEP of those and of other training photos).
    answers = {registry.TF_VARIANT: (infer_batched(tf, x_test), infer_batched(tf, junk))}
    (p_test, f_test), (p_junk, f_junk) = answers[registry.TF_VARIANT]
    weights, bias = tf.model.get_layer(registry.CLASSIFIER_LAYER).get_weights()
    candidates = {MSP: lambda p, f, j: known_score(p, temperature), "energy": lambda p, f, j: energy(f @ weights + bias),
                  MAHALANOBIS: lambda p, f, j: -distance.distance(f), "mahalanobis-all": lambda p, f, j: -everywhere.distance(f)}
    if check is not None:
        candidates[IMAGENET] = lambda p, f, j: check.typicality(j)
    measured["candidates"] = {
        name: _separation(score(p_test, f_test, j_test), score(p_junk, f_junk, j_junk),
                          check.threshold if name == IMAGENET else
                          float(np.quantile(score(p_val, f_val, j_val)[correct], 1 - KEEP)), names)
        for name, score in candidates.items()}
    chosen = max((MSP, MAHALANOBIS), key=lambda name: measured["candidates"][name]["auroc"])
    # A final fit (TrainConfig.fit_on_val) has seen these photos; the held-out measurement below shows what that costs.
    fitted_on = "val (seen in training: a final fit)" if card.config is not None and card.config.fit_on_val else "val"
    calibration = Calibration(temperature, thresholds[chosen], chosen, fitted_on=fitted_on, imagenet=check,
                              distance=distance)
    for variant in registry.available_variants(model_dir):
        if variant not in answers:
            backend = load_backend(model_dir, variant)
            answers[variant] = (infer_batched(backend, x_test), infer_batched(backend, junk))
        (p_test, f_test), (p_junk, f_junk) = answers[variant]
        flowers, others = calibration.known(p_test, f_test, j_test), calibration.known(p_junk, f_junk, j_junk)
        if flowers is None:
            continue  # an IR converted before it had a features output: no verdict from it
        measured["variants"][variant] = _separation(flowers[0], others[0], calibration.threshold_in_use, names) | {
            "ece_before": expected_calibration_error(p_test, y_test),
            "ece_after": expected_calibration_error(scale(p_test, temperature), y_test),
        }
        if variant == registry.TF_VARIANT:
            measured["reliability_before"] = reliability(p_test, y_test)
            measured["reliability_after"] = reliability(scale(p_test, temperature), y_test)
    calibration = dataclasses.replace(calibration, measured=measured)
    distance.save(Path(model_dir) / DISTANCE_FILE)
    if check is not None:
        check.save(Path(model_dir) / NEIGHBOURS_FILE)
    registry.update_card(model_dir, openset=calibration.to_card())
    progress(Event("calibrate", 4, 4, f"temperature {temperature:.2f}, {chosen} threshold {calibration.threshold:.3f}"
                                      + (f"; the ImageNet check decides where it runs (threshold {check.threshold:.3f})"
                                         if check is not None else "")))
    return calibration


def from_card(openset: dict[str, Any], model_dir: Path | None = None) -> Calibration | None:
    """The card's calibration, with its distance from the model's folder when it uses one."""
    if not openset:
        return None
    fields = dict(openset)
    if fields.get("score") not in SCORE_NAMES:  # cards written before the score had a short name
        fields["score"] = MSP
    folder = Path(model_dir) if model_dir is not None else None
    distance = Distance.load(folder / DISTANCE_FILE) if folder is not None and (folder / DISTANCE_FILE).exists() else None
    check = fields.pop("imagenet", None)
    # A check without its file (a card read alone) or from before the ImageNet features decided is left out:
    # the model's own score decides, as where the ImageNet classifier cannot run.
    if check is not None and "neighbours" in check and folder is not None and (folder / NEIGHBOURS_FILE).exists():
        fields["imagenet"] = ImageNetCheck(tuple(check["kin"]), tuple(check["reference"]), check["threshold"],
                                           ImageNetCheck.load_neighbours(folder / NEIGHBOURS_FILE))
    return Calibration(**fields, distance=distance)


# ---------------------------------------------------------------- measured on photos of other things

@dataclass(frozen=True)
class KindRate:
    kind: str  # a folder of the evaluation set: animals, people, food, ...
    photos: int
    accepted: float  # the share taken for one of the classes


@dataclass(frozen=True)
class ScoreOnSet:
    """One score on held-out flowers against an evaluation set of photos that are not these flowers."""

    score: str
    auroc: float
    at_95: tuple[KindRate, ...]  # at the threshold that keeps 95% of the held-out flowers
    in_use: bool = False  # the model's own score: `at_model`, at its own threshold, as Predict says it
    flowers_kept_at_model: float | None = None
    at_model: tuple[KindRate, ...] = ()


@dataclass(frozen=True)
class OpenSetReport:
    model: str
    variant: str
    flowers: int  # held-out photos of the model's classes
    scores: tuple[ScoreOnSet, ...]


def _rates(score: np.ndarray, kinds: np.ndarray, names: list[str], threshold: float) -> tuple[KindRate, ...]:
    accepted = score >= threshold
    per_kind = [KindRate(name, int(np.sum(kinds == i)), float(np.mean(accepted[kinds == i])))
                for i, name in enumerate(names) if np.any(kinds == i)]
    return (*per_kind, KindRate("all", len(score), float(np.mean(accepted))))


def evaluate_on(model_dir: Path, source: str | Path, variant: str = registry.TF_VARIANT,
                progress: ProgressFn = ignore) -> OpenSetReport:
    """Every score this model can compute, on its held-out flowers against `source`: a folder (or
    archive) of photos that are not these flowers, one subfolder per kind. Nothing is fitted here:
    the set is for measuring, kept out of every choice."""
    from core.runtimes.backends import load_backend

    card = registry.read_card(model_dir)
    calibration = from_card(card.openset, model_dir)
    if calibration is None:
        raise registry.ModelError(f"{card.name} is not calibrated; run `python -m core calibrate` first")
    info = data.scan(data.resolve(source, progress=progress), min_images=1)
    items = [(f, i) for i, kind in enumerate(info.classes) for f in info.files[kind]]
    others, kinds, _ = data.load_arrays(items, card.image_size, progress, "load the evaluation set")
    split = card.rebuild_split(progress=progress)
    flowers_x, _, _ = data.load_arrays(split.test or split.val, card.image_size, progress, "load held-out")
    backend = load_backend(model_dir, variant)
    (p_flowers, f_flowers), (p_others, f_others) = infer_batched(backend, flowers_x), infer_batched(backend, others)
    scores = {MSP: (known_score(p_flowers, calibration.temperature), known_score(p_others, calibration.temperature))}
    in_use, threshold = calibration.score, calibration.threshold  # unless the ImageNet check decides, below
    if calibration.distance is not None and f_flowers is not None:
        scores[MAHALANOBIS] = calibration.distance.typicality(f_flowers), calibration.distance.typicality(f_others)
    if (check := calibration.imagenet) is not None:
        judged = _judged(split.test or split.val, progress), _judged(items, progress)
        scores[IMAGENET] = check.typicality(judged[0]), check.typicality(judged[1])
        in_use, threshold = calibration.in_use, calibration.threshold_in_use
    results = []
    for name, (flowers, other) in scores.items():
        at_95 = _rates(other, kinds, info.classes, float(np.quantile(flowers, 1 - KEEP)))
        used = name == in_use
        results.append(ScoreOnSet(
            name, auroc(flowers, other), at_95, used,
            float(np.mean(flowers >= threshold)) if used else None,
            _rates(other, kinds, info.classes, threshold) if used else ()))
    return OpenSetReport(card.name, variant, len(flowers_x), tuple(results))


def record_evaluation(model_dir: Path, report: OpenSetReport, described_as: str) -> None:
    """Keep `report` on the model's card (until the next calibration), for the Home page."""
    card = registry.read_card(model_dir)
    registry.update_card(model_dir, openset=card.openset | {
        "evaluated": {"set": described_as, "report": dataclasses.asdict(report)}})

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
   expected calibration error before and after (`core.quality.calibrate`, which runs the model).
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core import atomic, paths
from core.model import data, imagenet, registry
from core.model.images import to_model_input

KEEP = 0.95  # share of correctly classified validation flowers the threshold keeps
MSP, MAHALANOBIS = "msp", "mahalanobis"
SUBSPACE = 128  # of 1280 feature directions; measured against all of them on every calibration (docs/lab-log.md)
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

    Chosen on a tuning set of real photos (docs/lab-log.md, "Photos that are not flowers"): it took
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

    @property
    def in_use(self) -> ScoreOnSet | None:
        """The score the model decides by, measured at its own threshold."""
        return next((s for s in self.scores if s.in_use), None)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OpenSetReport:
        def rates(rows: list[dict[str, Any]]) -> tuple[KindRate, ...]:
            return tuple(KindRate(**r) for r in rows)

        scores = tuple(ScoreOnSet(**(s | {"at_95": rates(s["at_95"]), "at_model": rates(s.get("at_model", ()))}))
                       for s in d["scores"])
        return cls(d["model"], d["variant"], d["flowers"], scores)


@dataclass(frozen=True)
class Evaluation:
    """An `OpenSetReport` kept on the card (`python -m core openset-eval --record`), with what the set was."""

    set: str  # described in words, e.g. "1,200 photos of animals, food, people and scenes"
    report: OpenSetReport

    def summary(self) -> str:
        used = self.report.in_use
        if used is None:
            return f"Measured on real photos that are not these flowers ({self.set})."
        return (f"On real photos that are not these flowers ({self.set}): AUROC **{used.auroc:.3f}**; at the model's "
                f"threshold it keeps {used.flowers_kept_at_model:.1%} of the {self.report.flowers} held-out flowers "
                "and takes these shares of other photos for a flower:")

    def rows(self) -> list[dict[str, Any]]:
        """Per kind: photos, the share taken for a flower at the model's threshold and at the one that keeps 95%."""
        used = self.report.in_use
        if used is None:
            return []
        at_95 = {r.kind: r.accepted for r in used.at_95}
        return [{"kind": r.kind, "photos": r.photos, "taken for a flower": r.accepted,
                 "keeping 95% of flowers": at_95.get(r.kind)} for r in used.at_model]




@dataclass(frozen=True)
class Calibration:
    temperature: float
    threshold: float  # on the score: a calibrated probability (msp) or a typicality (mahalanobis)
    score: str = MSP
    keep: float = KEEP
    fitted_on: str = "val"
    measured: dict[str, Any] = dataclasses.field(default_factory=dict)  # on the held-out split and non-flowers
    imagenet: ImageNetCheck | None = None  # decides instead of `score` where the ImageNet classifier runs
    evaluated: Evaluation | None = None  # `record_evaluation`: measured on photos of other things
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
        used = self.evaluated.report.in_use if self.evaluated is not None else None
        return {r.kind: r.accepted for r in used.at_model} if used is not None else {}

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

    def confidence_summary(self) -> str:
        """The card's calibration and check as measured with TensorFlow, in a paragraph for the Home page."""
        measured = self.measured
        tf = measured.get("variants", {}).get("tensorflow", {})
        accepted = tf.get("non_flowers_accepted", [])
        return (f"Temperature **{self.temperature:.2f}** (fitted on the validation split) brings the expected "
                f"calibration error on the held-out split from {tf.get('ece_before', 0):.3f} to "
                f"**{tf.get('ece_after', 0):.3f}**. A photo that {self.rule(imagenet_runs=True)} is called not one of "
                f"the classes: that rejects {tf.get('flowers_rejected', 0)} of {measured.get('flowers', 0)} held-out "
                f"flowers and accepts {len(accepted)} of {measured.get('non_flowers', 0)} pictures that are not "
                f"flowers (AUROC {tf.get('auroc', 0):.3f}; a small set: photos shipped with scikit-learn and "
                "scikit-image, noise, flat colours and charts)" + (f"; accepted: {', '.join(accepted)}." if accepted
                                                                  else "."))

    def candidate_rows(self) -> list[dict[str, Any]]:
        """The candidate scores as calibration measured them with TensorFlow, the one in use marked."""
        return [{"score": SCORE_NAMES[name], "AUROC": m["auroc"], "false positives at 95% true positives": m["fpr_at_95_tpr"],
                 "held-out flowers rejected": m["flowers_rejected"], "non-flowers accepted": len(m["non_flowers_accepted"]),
                 "used": name == self.in_use}
                for name, m in self.measured.get("candidates", {}).items()]

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
        card = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in ("distance", "imagenet", "evaluated")}
        if self.evaluated is not None:
            card["evaluated"] = dataclasses.asdict(self.evaluated)
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


def energy(logits: np.ndarray) -> np.ndarray:
    """The negative free energy, log-sum-exp of the logits: higher for what the model knows."""
    top = logits.max(1)
    return top + np.log(np.exp(logits - top[:, None]).sum(1))


def imagenet_check_photos(split: data.Split) -> tuple[list, list]:
    """The training photos the ImageNet check compares a photo with, and the other training photos
    that, with the validation flowers, set its threshold (seeded)."""
    shuffled = random.Random(0).sample(split.train, len(split.train))
    return (shuffled[:IMAGENET_TRAINING_SAMPLE],
            shuffled[IMAGENET_TRAINING_SAMPLE:IMAGENET_TRAINING_SAMPLE + IMAGENET_THRESHOLD_SAMPLE])


def from_card(openset: dict[str, Any], model_dir: Path | None = None) -> Calibration | None:
    """The card's calibration, with its distance from the model's folder when it uses one."""
    if not openset:
        return None
    fields = dict(openset)
    if fields.get("score") not in SCORE_NAMES:  # cards written before the score had a short name
        fields["score"] = MSP
    folder = Path(model_dir) if model_dir is not None else None
    distance = Distance.load(folder / DISTANCE_FILE) if folder is not None and (folder / DISTANCE_FILE).exists() else None
    if (evaluated := fields.pop("evaluated", None)):
        fields["evaluated"] = Evaluation(evaluated["set"], OpenSetReport.from_dict(evaluated["report"]))
    check = fields.pop("imagenet", None)
    # A check without its file (a card read alone) or from before the ImageNet features decided is left out:
    # the model's own score decides, as where the ImageNet classifier cannot run.
    if check is not None and "neighbours" in check and folder is not None and (folder / NEIGHBOURS_FILE).exists():
        fields["imagenet"] = ImageNetCheck(tuple(check["kin"]), tuple(check["reference"]), check["threshold"],
                                           ImageNetCheck.load_neighbours(folder / NEIGHBOURS_FILE))
    return Calibration(**fields, distance=distance)


def record_evaluation(model_dir: Path, report: OpenSetReport, described_as: str) -> None:
    """Keep `report` on the model's card (until the next calibration), for the Home page."""
    card = registry.read_card(model_dir)
    registry.update_card(model_dir, openset=card.openset | {
        "evaluated": dataclasses.asdict(Evaluation(described_as, report))})

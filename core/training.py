"""Training the two architectures behind one API, with progress and cancellation.

`tutorial_cnn` is the original study's network; `mobilenet_v2` is ImageNet transfer
learning: a frozen-backbone phase, then fine-tuning the top of the backbone.
Preprocessing (scaling pixels) lives inside the model, so every runtime is fed the same
uint8-valued images.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core import data, registry
from core.errors import UserError
from core.progress import CancelToken, Event, ProgressFn, ignore
from core.system import library_versions, machine_summary

ARCHS = ("tutorial_cnn", "mobilenet_v2")
MOBILENET_ALPHAS = (0.35, 0.5)
PREPROCESSING = {
    "tutorial_cnn": "RGB, resized (bilinear, stretched) to image_size, pixels/255 inside the model",
    "mobilenet_v2": "RGB, resized (bilinear, stretched) to image_size, pixels/127.5-1 inside the model",
}


class WeightsUnavailable(UserError):
    """ImageNet weights could not be found offline nor downloaded."""


@dataclass
class TrainConfig:
    arch: str = "mobilenet_v2"
    alpha: float = 0.5
    image_size: int | None = None  # None: 224 for MobileNetV2, 180 for the tutorial CNN
    epochs: int = 5  # the tutorial CNN's epochs, or MobileNetV2's frozen-backbone epochs
    fine_tune_epochs: int = 0
    fine_tune_layers: int = 30  # backbone layers unfrozen from the top when fine-tuning
    batch_size: int = 32
    learning_rate: float = 1e-3
    fine_tune_learning_rate: float = 1e-4
    augment: bool = True
    dropout: float = 0.2
    label_smoothing: float = 0.0
    patience: int = 3
    val_fraction: float = 0.2
    test_fraction: float = 0.0
    seed: int = 123
    weights: str | None = "imagenet"

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise UserError(f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHS)}")
        if self.arch == "mobilenet_v2" and self.alpha not in MOBILENET_ALPHAS:
            raise UserError(f"MobileNetV2 alpha must be one of {MOBILENET_ALPHAS}")
        if self.image_size is None:
            self.image_size = 224 if self.arch == "mobilenet_v2" else 180
        if self.epochs < 1 or self.fine_tune_epochs < 0 or self.batch_size < 1:
            raise UserError("epochs and batch size must be at least 1, fine-tune epochs at least 0")


@dataclass(frozen=True)
class Recipe:
    summary: str
    config: TrainConfig


_MOBILENET = dict(arch="mobilenet_v2", alpha=0.5, learning_rate=1e-3,
                  fine_tune_learning_rate=1e-4, label_smoothing=0.1, dropout=0.3, val_fraction=0.1, test_fraction=0.1)
# The Train page's choices; the first is its default. Memory figures are `estimate_peak_mb` on the
# full flower_photos (2346 training photos), measured as the README's "Cloud memory" section says.
RECIPES: dict[str, Recipe] = {
    "Recommended": Recipe(
        "MobileNetV2 α0.5 at 224 px, 3 head + 6 epochs fine-tuning the top 100 layers, batch 16 (fits Community Cloud)",
        TrainConfig(**_MOBILENET, image_size=224, epochs=3, fine_tune_epochs=6, fine_tune_layers=100, batch_size=16,
                    patience=3)),
    "Quick": Recipe(
        "MobileNetV2 α0.5 at 224 px, 2 head + 1 epoch fine-tuning the top 100 layers, batch 16",
        TrainConfig(**_MOBILENET, image_size=224, epochs=2, fine_tune_epochs=1, fine_tune_layers=100, batch_size=16,
                    patience=2)),
    "As shipped": Recipe(
        "MobileNetV2 α0.5 at 288 px, 3 head + 10 fine-tuning epochs, batch 32 (the shipped model; too big for Cloud)",
        TrainConfig(**_MOBILENET, image_size=288, epochs=3, fine_tune_epochs=10, fine_tune_layers=200, batch_size=32,
                    patience=4)),
    "Tutorial CNN": Recipe(
        "the original study's small CNN at 180 px, 15 epochs, batch 32 (no ImageNet weights needed)",
        TrainConfig(arch="tutorial_cnn", image_size=180, epochs=15, batch_size=32, patience=15,
                    val_fraction=0.1, test_fraction=0.1)),
}

# Peak resident memory of the whole app (the server with every Predict backend loaded, plus the
# training job) while a MobileNetV2 job fine-tunes: a fixed part, the decoded training photos
# (a file-backed array, counted while mapped), and activations that grow with batch x pixels and
# with how deep fine-tuning reaches (most of them sit in the early, high-resolution layers).
# Fitted on the 2700 MB cgroup run in the README ("Cloud memory") and on per-recipe peaks of the
# training process measured with /usr/bin/time.
_APP_BASE_MB = 1870.0
_MB_PER_BATCH_PIXEL = {"mobilenet_v2": 3.9e-4, "tutorial_cnn": 1.0e-4}
_MOBILENET_V2_LAYERS = 154


def estimate_peak_mb(cfg: TrainConfig, n_train: int) -> float:
    """An estimate of the app's peak memory (server and job) during this training, before it starts."""
    depth = min(1.0, cfg.fine_tune_layers / _MOBILENET_V2_LAYERS) ** 2 if cfg.arch == "mobilenet_v2" else 1.0
    if cfg.arch == "mobilenet_v2" and cfg.fine_tune_epochs == 0:
        depth = 0.1  # the frozen backbone only runs forward
    activations = _MB_PER_BATCH_PIXEL[cfg.arch] * cfg.batch_size * cfg.image_size**2 * depth
    photos = n_train * cfg.image_size**2 * 3 / 2**20
    return _APP_BASE_MB + photos + activations


def closest_fitting_recipe(n_train: int, budget_mb: float) -> str | None:
    """The first recipe (in the page's order of preference) whose estimate fits `budget_mb`."""
    return next((name for name, r in RECIPES.items() if estimate_peak_mb(r.config, n_train) <= budget_mb), None)


def augmentation():
    import keras

    return keras.Sequential(
        [keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.1), keras.layers.RandomZoom(0.1)],
        name="augmentation",
    )


def build_model(cfg: TrainConfig, num_classes: int):
    """The Keras model: float 0-255 RGB in, class probabilities out."""
    import keras
    from keras import layers

    size = cfg.image_size
    inputs = keras.Input((size, size, 3), name="image")
    if cfg.arch == "tutorial_cnn":
        x = layers.Rescaling(1.0 / 255)(inputs)
        for filters in (16, 32, 64):
            x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
            x = layers.MaxPooling2D()(x)
        x = layers.Dropout(cfg.dropout)(x)
        x = layers.Flatten()(x)
        x = layers.Dense(128, activation="relu")(x)
    else:
        x = layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs)
        backbone = _mobilenet_v2(cfg)
        backbone.trainable = False
        # training=False keeps BatchNorm statistics frozen, also while fine-tuning.
        x = backbone(x, training=False)
        x = layers.Dropout(cfg.dropout)(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=cfg.arch)


def _mobilenet_v2(cfg: TrainConfig):
    import keras

    try:
        return keras.applications.MobileNetV2(
            input_shape=(cfg.image_size, cfg.image_size, 3), alpha=cfg.alpha, include_top=False,
            weights=cfg.weights, pooling="avg",
        )
    except Exception as exc:  # Keras raises URLError/OSError/ValueError/Exception depending on the failure
        if cfg.weights is None:
            raise
        raise WeightsUnavailable(
            f"MobileNetV2 alpha {cfg.alpha} ImageNet weights are not in $KERAS_HOME/models and could not be "
            f"downloaded ({exc}). Go online, copy the weights file there, or train 'tutorial_cnn'."
        ) from exc


def _backbone(model):
    return next(layer for layer in model.layers if layer.name.startswith("mobilenetv2"))


def _keras_callback(progress: ProgressFn, cancel: CancelToken | None, total_epochs: int, phase: str,
                    history: list[dict[str, Any]]):
    """Adapts Keras's callback hooks to our progress events and cancellation."""
    import keras

    class ProgressCallback(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if cancel is not None and cancel.cancelled:
                self.model.stop_training = True
                return
            progress(Event("batch", batch + 1, self.params.get("steps"), phase, dict(logs or {})))

        def on_epoch_end(self, epoch, logs=None):
            row = {"epoch": epoch + 1, "phase": phase} | {k: float(v) for k, v in (logs or {}).items()}
            history.append(row)
            progress(Event("epoch", epoch + 1, total_epochs, phase, row))

    return ProgressCallback()


@dataclass
class Prepared:
    """The data of one training run: the split, and the decoded uint8 photos of train and val."""

    info: data.DatasetInfo
    split: data.Split
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    unreadable: list[str]


def load_and_split(source: str | Path, cfg: TrainConfig, scratch: Path, progress: ProgressFn = ignore,
                   cancel: CancelToken | None = None) -> Prepared:
    """Phase 1: find the photos, split them with the seed, decode train and val once.

    The training photos are decoded into a file-backed array in `scratch`: its pages are
    page cache, which the kernel can drop and re-read under memory pressure, so the data set
    costs no private memory (2346 photos at 288 px are 584 MB)."""
    info = data.scan(data.resolve(source, progress=progress))
    split = data.split(info, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    x_train, y_train, bad_train = data.load_arrays(split.train, cfg.image_size, progress, "load train", cancel,
                                                   backing=scratch / "train.npy")
    x_val, y_val, bad_val = data.load_arrays(split.val, cfg.image_size, progress, "load val", cancel)
    return Prepared(info, split, x_train, y_train, x_val, y_val, bad_train + bad_val)


def _datasets(prepared: Prepared, cfg: TrainConfig):
    """tf.data pipelines; with label smoothing the labels become one-hot (Keras's sparse loss has none)."""
    import keras
    import tensorflow as tf

    augment = augmentation() if cfg.augment else None
    train_ds = data.tf_dataset(prepared.x_train, prepared.y_train, cfg.batch_size, True, augment, cfg.seed)
    val_ds = data.tf_dataset(prepared.x_val, prepared.y_val, cfg.batch_size, False)
    if not cfg.label_smoothing:
        return train_ds, val_ds, keras.losses.SparseCategoricalCrossentropy()
    n = len(prepared.info.classes)
    return (train_ds.map(lambda x, y: (x, tf.one_hot(y, n))), val_ds.map(lambda x, y: (x, tf.one_hot(y, n))),
            keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing))


def _fit(model, train_ds, val_ds, loss, cfg: TrainConfig, epochs: int, lr: float, phase: str,
         history: list[dict[str, Any]], progress: ProgressFn, cancel: CancelToken | None) -> None:
    """Compile and fit for `epochs` more epochs, keeping the best validation epoch."""
    import keras

    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss, metrics=["accuracy"])
    initial = len(history)
    total = initial + epochs
    progress(Event("fit", initial, total, phase))
    model.fit(
        train_ds, validation_data=val_ds, epochs=total, initial_epoch=initial, verbose=0,
        shuffle=False,  # the tf.data pipeline shuffles each epoch itself
        callbacks=[
            _keras_callback(progress, cancel, total, phase, history),
            keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=cfg.patience, restore_best_weights=True),
        ],
    )
    if cancel is not None:
        cancel.check()


def unfreeze_top(model, n_layers: int) -> None:
    """Make the top `n_layers` of the backbone trainable. BatchNorm stays frozen: in Keras 3 a
    non-trainable BN runs in inference mode, so small batches cannot wreck the ImageNet statistics."""
    import keras

    backbone = _backbone(model)
    backbone.trainable = True
    for i, layer in enumerate(backbone.layers):
        layer.trainable = (i >= len(backbone.layers) - n_layers
                           and not isinstance(layer, keras.layers.BatchNormalization))


def train(
    source: str | Path,
    cfg: TrainConfig,
    name: str,
    models_root: Path | None = None,
    progress: ProgressFn = ignore,
    cancel: CancelToken | None = None,
    overwrite: bool = False,
    command: str | None = None,
) -> Path:
    """Train on a dataset source and save models/<name> (Keras model + metadata)."""
    import keras

    registry.check_name(name)
    started = time.time()
    with registry.scratch_dir(models_root) as scratch:
        prepared = load_and_split(source, cfg, scratch, progress, cancel)
        keras.utils.set_random_seed(cfg.seed)
        model = build_model(cfg, len(prepared.info.classes))
        train_ds, val_ds, loss = _datasets(prepared, cfg)
        history: list[dict[str, Any]] = []
        # Phase 2: the new head on a frozen backbone (or the whole tutorial CNN).
        _fit(model, train_ds, val_ds, loss, cfg, cfg.epochs, cfg.learning_rate,
             "train" if cfg.arch == "tutorial_cnn" else "head", history, progress, cancel)
        # Phase 3: fine-tune the top of the backbone at a lower learning rate.
        if cfg.arch == "mobilenet_v2" and cfg.fine_tune_epochs > 0:
            unfreeze_top(model, cfg.fine_tune_layers)
            _fit(model, train_ds, val_ds, loss, cfg, cfg.fine_tune_epochs, cfg.fine_tune_learning_rate, "fine-tune",
                 history, progress, cancel)
        progress(Event("evaluate", 0, 1, "measuring validation accuracy"))
        val_probs = model.predict(prepared.x_val, batch_size=64, verbose=0)
        val_acc = float(np.mean(np.argmax(val_probs, 1) == prepared.y_val))
    # Phase 4: record. A clone without optimizer state makes a smaller file.
    inference_model = keras.models.clone_model(model)
    inference_model.set_weights(model.get_weights())
    info, split = prepared.info, prepared.split
    meta: dict[str, Any] = {
        "name": name,
        "arch": cfg.arch,
        "alpha": cfg.alpha if cfg.arch == "mobilenet_v2" else None,
        "classes": info.classes,
        "image_size": cfg.image_size,
        "input": {"shape": [None, cfg.image_size, cfg.image_size, 3], "dtype": "uint8 values (0-255)", "layout": "NHWC"},
        "preprocessing": PREPROCESSING[cfg.arch],
        "config": asdict(cfg),
        "data": {
            "source": str(source),
            "n_images": info.n_images,
            "counts": info.counts,
            "split": split.sizes() | {"seed": cfg.seed, "val_fraction": cfg.val_fraction,
                                       "test_fraction": cfg.test_fraction},
            "unreadable": prepared.unreadable,
            "skipped_non_images": len(info.skipped),
        },
        "history": history,
        "training": {
            "seconds": round(time.time() - started, 1),
            "command": command or " ".join(shlex.quote(a) for a in sys.argv),
            "epochs_run": len(history),
        },
        "accuracy": {"val": {registry.TF_VARIANT: val_acc}},
        "versions": library_versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_summary(),
    }
    if cancel is not None:
        cancel.check()

    def fill(tmp: Path) -> None:
        inference_model.save(tmp / registry.KERAS_FILE)
        registry.write_json_atomic(tmp / registry.METADATA_FILE, meta)

    path = registry.save_model(name, fill, models_root, overwrite=overwrite)
    progress(Event("saved", 1, 1, f"saved {path}", {"val_accuracy": val_acc}))
    return path


def load_keras(model_dir: Path):
    """Load the Keras model with `safe_mode` on: no arbitrary code from the file runs."""
    import keras

    path = registry.variant_path(model_dir, registry.TF_VARIANT)
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:
        raise registry.ModelError(f"could not load {path}: {exc}") from exc


def weights_file(alpha: float) -> str:
    """The file name Keras looks for in $KERAS_HOME/models for MobileNetV2 'no top' weights at 224."""
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_224_no_top.h5"


def weights_available_offline(alpha: float) -> bool:
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return (home / "models" / weights_file(alpha)).exists()

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
from core.progress import CancelToken, Event, ProgressFn, ignore
from core.system import library_versions, machine_summary

ARCHS = ("tutorial_cnn", "mobilenet_v2")
MOBILENET_ALPHAS = (0.35, 0.5)
PREPROCESSING = {
    "tutorial_cnn": "RGB, resized (bilinear, stretched) to image_size, pixels/255 inside the model",
    "mobilenet_v2": "RGB, resized (bilinear, stretched) to image_size, pixels/127.5-1 inside the model",
}


class WeightsUnavailable(RuntimeError):
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
            raise ValueError(f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHS)}")
        if self.arch == "mobilenet_v2" and self.alpha not in MOBILENET_ALPHAS:
            raise ValueError(f"MobileNetV2 alpha must be one of {MOBILENET_ALPHAS}")
        if self.image_size is None:
            self.image_size = 224 if self.arch == "mobilenet_v2" else 180
        if self.epochs < 1 or self.fine_tune_epochs < 0 or self.batch_size < 1:
            raise ValueError("epochs and batch size must be at least 1, fine-tune epochs at least 0")


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
    import tensorflow as tf

    registry.check_name(name)
    started = time.time()
    root = data.resolve(source, progress=progress)
    info = data.scan(root)
    parts = data.split(info, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    x_train, y_train, bad_train = data.load_arrays(parts.train, cfg.image_size, progress, "load train", cancel)
    x_val, y_val, bad_val = data.load_arrays(parts.val, cfg.image_size, progress, "load val", cancel)
    keras.utils.set_random_seed(cfg.seed)

    model = build_model(cfg, len(info.classes))
    train_ds = data.tf_dataset(x_train, y_train, cfg.batch_size, True, augmentation() if cfg.augment else None, cfg.seed)
    val_ds = data.tf_dataset(x_val, y_val, cfg.batch_size, False)
    history: list[dict[str, Any]] = []
    loss = keras.losses.SparseCategoricalCrossentropy()
    if cfg.label_smoothing:
        # Keras's sparse loss has no smoothing; one-hot labels let us use it.
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing)
        n = len(info.classes)
        train_ds = train_ds.map(lambda x, y: (x, tf.one_hot(y, n)))
        val_ds = val_ds.map(lambda x, y: (x, tf.one_hot(y, n)))

    def fit(epochs: int, initial_epoch: int, lr: float, phase: str) -> None:
        model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss, metrics=["accuracy"])
        total = initial_epoch + epochs
        progress(Event("fit", initial_epoch, total, phase))
        model.fit(
            train_ds, validation_data=val_ds, epochs=total, initial_epoch=initial_epoch, verbose=0,
            shuffle=False,  # the tf.data pipeline shuffles each epoch itself
            callbacks=[
                _keras_callback(progress, cancel, total, phase, history),
                keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=cfg.patience, restore_best_weights=True),
            ],
        )
        if cancel is not None:
            cancel.check()

    fit(cfg.epochs, 0, cfg.learning_rate, "train" if cfg.arch == "tutorial_cnn" else "head")
    if cfg.arch == "mobilenet_v2" and cfg.fine_tune_epochs > 0:
        backbone = _backbone(model)
        backbone.trainable = True
        for i, layer in enumerate(backbone.layers):
            # BatchNorm stays frozen: in Keras 3 a non-trainable BN runs in inference mode, so
            # small fine-tuning batches cannot wreck the ImageNet statistics.
            layer.trainable = (i >= len(backbone.layers) - cfg.fine_tune_layers
                               and not isinstance(layer, keras.layers.BatchNormalization))
        fit(cfg.fine_tune_epochs, len(history), cfg.fine_tune_learning_rate, "fine-tune")

    progress(Event("evaluate", 0, 1, "measuring validation accuracy"))
    val_probs = model.predict(x_val, batch_size=64, verbose=0)
    val_acc = float(np.mean(np.argmax(val_probs, 1) == y_val))
    inference_model = keras.models.clone_model(model)  # no optimizer state: a smaller file
    inference_model.set_weights(model.get_weights())

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
            "split": parts.sizes() | {"seed": cfg.seed, "val_fraction": cfg.val_fraction,
                                       "test_fraction": cfg.test_fraction},
            "unreadable": bad_train + bad_val,
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

"""Training the two architectures behind one API, with progress.

`tutorial_cnn` is the original study's network; the others (`core.model.architectures`) are
ImageNet transfer learning: a frozen-backbone phase, then fine-tuning the top of the backbone.
Preprocessing (scaling pixels) lives inside the model, so every runtime is fed the same
uint8-valued images.
"""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.model import architectures, data, registry
from core import availability
from core.errors import UserError
from core.model.model_card import DataRecord, ModelCard, Scores, SplitSpec, TrainingRecord
from core.progress import Event, ProgressFn, ignore
from core.model.recipes import RECIPES, TrainConfig
from core.system import library_versions, machine_summary


# Peak resident memory of the whole app while a transfer-learning job fine-tunes: the server with
# the default model's Predict backends loaded, the job's fixed part (TensorFlow, the model, the
# pipeline), the validation photos it holds, and activations that grow with batch x pixels and
# with how deep fine-tuning reaches (most of them sit in the early, high-resolution layers; each
# architecture's factor is in `architectures`, from training-process peaks). The fixed part is
# fitted on the 2700 MB cgroup run of "Recommended" (EfficientNet-Lite1, batch 8: 2299 MB) after
# the job began to release memory between its phases (docs/safety.md, "Memory"); the job's peak
# is now its conversion, so the activation term makes the estimate conservative. The training
# photos are read from a file a batch at a time (`data.RowFile`): page cache, not resident.
_SERVER_MB = 607.0
_JOB_BASE_MB = 1485.0


def estimate_peak_mb(cfg: TrainConfig, n_train: int) -> float:
    """An estimate of the app's peak memory (server and job) during this training, before it starts."""
    arch = architectures.get(cfg.arch)
    depth = min(1.0, cfg.fine_tune_layers / arch.backbone_layers) ** 2 if arch.transfer else 1.0
    if arch.transfer and cfg.fine_tune_epochs == 0:
        depth = 0.1  # the frozen backbone only runs forward
    activations = arch.mb_per_batch_pixel * cfg.batch_size * cfg.image_size**2 * depth
    n_val = 0 if cfg.fit_on_val else n_train * cfg.val_fraction / max(1e-9, 1 - cfg.val_fraction - cfg.test_fraction)
    return _SERVER_MB + _JOB_BASE_MB + n_val * cfg.image_size**2 * 3 / 2**20 + activations


def closest_fitting_recipe(n_train: int, budget_mb: float) -> str | None:
    """The first recipe (in the page's order of preference) whose estimate fits `budget_mb`."""
    return next((name for name, r in RECIPES.items() if estimate_peak_mb(r.config, n_train) <= budget_mb), None)


def augmentation(strong: bool = False):
    """Random flip, rotation and zoom; `strong` adds random crops (zoom and shift) and colour jitter."""
    import keras
    from keras import layers

    if not strong:
        return keras.Sequential([layers.RandomFlip("horizontal"), layers.RandomRotation(0.1), layers.RandomZoom(0.1)],
                                name="augmentation")
    return keras.Sequential(
        [layers.RandomFlip("horizontal"), layers.RandomRotation(0.1), layers.RandomZoom((-0.2, 0.1)),
         layers.RandomTranslation(0.1, 0.1),
         # value_range: the pipeline feeds 0-255 floats, the model's own Rescaling comes later.
         layers.RandomColorJitter(value_range=(0, 255), brightness_factor=0.2, contrast_factor=0.2,
                                  saturation_factor=(0.4, 0.6))],
        name="augmentation",
    )


def build_model(cfg: TrainConfig, num_classes: int):
    """The Keras model: float 0-255 RGB in, class probabilities out."""
    import keras
    from keras import layers

    arch = architectures.get(cfg.arch)
    inputs = keras.Input((cfg.image_size, cfg.image_size, 3), name="image")
    x = layers.Rescaling(arch.pixel_scale, offset=arch.pixel_offset)(inputs)
    if arch.transfer:
        backbone = architectures.backbone(cfg.arch, cfg.image_size, cfg.alpha, cfg.weights)
        backbone.trainable = False
        # training=False keeps BatchNorm statistics frozen, also while fine-tuning.
        x = backbone(x, training=False)
    else:
        for filters in (16, 32, 64):
            x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
            x = layers.MaxPooling2D()(x)
        x = layers.Dropout(cfg.dropout)(x)
        x = layers.Flatten()(x)
        x = layers.Dense(128, activation="relu")(x)
    if arch.transfer:
        x = layers.Dropout(cfg.dropout)(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=cfg.arch)


def _keras_callback(progress: ProgressFn, total_epochs: int, phase: str,
                    history: list[dict[str, Any]]):
    """Adapts Keras's callback hooks to our progress events."""
    import keras

    class ProgressCallback(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
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
    x_train: data.RowFile
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    unreadable: list[str]


def load_and_split(source: str | Path, cfg: TrainConfig, scratch: Path, progress: ProgressFn = ignore) -> Prepared:
    """Phase 1: find the photos, split them with the seed, decode train and val once (with
    `fit_on_val`, the validation photos are training photos too and nothing is kept apart).

    The training photos are decoded into a file in `scratch` and read back a batch at a time
    (`data.RowFile`): its pages are page cache, which the kernel can drop and re-read under memory
    pressure, so the data set costs the job no memory of its own (2346 photos at 288 px are 584 MB)."""
    info = data.scan(data.resolve(source, progress=progress))
    split = data.split(info, cfg.val_fraction, cfg.test_fraction, cfg.seed, cfg.val_fold)
    fitted = split.train + split.val if cfg.fit_on_val else split.train
    x_train, y_train, bad_train = data.load_arrays(fitted, cfg.image_size, progress, "load train",
                                                   backing=scratch / "train.npy")
    if cfg.fit_on_val:
        x_val, y_val, bad_val = np.empty((0, cfg.image_size, cfg.image_size, 3), np.uint8), np.empty(0, np.int32), []
    else:
        x_val, y_val, bad_val = data.load_arrays(split.val, cfg.image_size, progress, "load val")
    return Prepared(info, split, x_train, y_train, x_val, y_val, bad_train + bad_val)


def _datasets(prepared: Prepared, cfg: TrainConfig):
    """tf.data pipelines. With label smoothing or mixing the labels become one-hot (Keras's sparse
    loss has no smoothing, and mixing blends two labels)."""
    import keras
    import tensorflow as tf

    augment = augmentation(cfg.strong_augment) if cfg.augment else None
    train_ds = data.tf_dataset(prepared.x_train, prepared.y_train, cfg.batch_size, True, augment, cfg.training_seed)
    val_ds = None if cfg.fit_on_val else data.tf_dataset(prepared.x_val, prepared.y_val, cfg.batch_size, False)
    if not cfg.label_smoothing and cfg.mix == "none":
        return train_ds, val_ds, keras.losses.SparseCategoricalCrossentropy()
    n = len(prepared.info.classes)

    def one_hot(x, y):  # a named function: AutoGraph cannot read two identical lambdas on one line
        return x, tf.one_hot(y, n)

    train_ds = train_ds.map(one_hot)
    if cfg.mix != "none":
        mixer = {"mixup": keras.layers.MixUp, "cutmix": keras.layers.CutMix}[cfg.mix](seed=cfg.training_seed)

        def mix(x, y):
            mixed = mixer({"images": x, "labels": y}, training=True)
            return mixed["images"], mixed["labels"]

        train_ds = train_ds.map(mix, num_parallel_calls=tf.data.AUTOTUNE)
    # Prefetch again: these maps come after tf_dataset's own prefetch and would otherwise run on
    # the training loop's thread.
    return (train_ds.prefetch(tf.data.AUTOTUNE), val_ds and val_ds.map(one_hot),
            keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing))


def learning_rate(lr: float, schedule: str, epochs: int, steps_per_epoch: int):
    """A constant rate, or one epoch of linear warm-up to `lr` and a cosine decay to zero."""
    import keras

    if schedule == "constant" or epochs < 2:
        return lr
    return keras.optimizers.schedules.CosineDecay(0.0, (epochs - 1) * steps_per_epoch, warmup_target=lr,
                                                  warmup_steps=steps_per_epoch)


def _fit(model, train_ds, val_ds, loss, cfg: TrainConfig, epochs: int, lr: float, phase: str,
         history: list[dict[str, Any]], progress: ProgressFn, schedule: str = "constant", ema: float = 0.0) -> None:
    """Compile and fit for `epochs` more epochs, keeping the best validation epoch (without
    validation photos, a final fit: every epoch runs and the last one is kept). With `ema`, the
    optimizer keeps a moving average of the weights: each epoch is validated on it, and it is what
    the model keeps at the end."""
    import keras

    rate = learning_rate(lr, schedule, epochs, int(train_ds.cardinality()))
    optimizer = keras.optimizers.Adam(rate, use_ema=ema > 0, ema_momentum=ema or 0.99)
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    initial = len(history)
    total = initial + epochs
    progress(Event("fit", initial, total, phase))
    # Swapped in for each epoch's end, so the history, the progress and early stopping see the average.
    callbacks = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if ema > 0 else []
    callbacks.append(_keras_callback(progress, total, phase, history))
    if val_ds is not None:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=cfg.patience,
                                                       restore_best_weights=True))
    model.fit(
        train_ds, validation_data=val_ds, epochs=total, initial_epoch=initial, verbose=0,
        shuffle=False,  # the tf.data pipeline shuffles each epoch itself
        callbacks=callbacks,
    )


def unfreeze_top(model, n_layers: int) -> None:
    """Make the top `n_layers` of the backbone trainable. BatchNorm stays frozen: in Keras 3 a
    non-trainable BN runs in inference mode, so small batches cannot wreck the ImageNet statistics."""
    import keras

    backbone = architectures.find_backbone(model)
    backbone.trainable = True
    for i, layer in enumerate(backbone.layers):
        layer.trainable = (i >= len(backbone.layers) - n_layers
                           and not isinstance(layer, keras.layers.BatchNormalization))


def record(name: str, cfg: TrainConfig, source: str | Path, prepared: Prepared, history: list[dict[str, Any]],
           val_accuracy: float | None, seconds: float, command: str) -> ModelCard:
    """Phase 5: the model card of a freshly trained model (conversion and validation add to it)."""
    info, split = prepared.info, prepared.split
    sizes = split.sizes()
    return ModelCard(
        name=name, arch=cfg.arch, classes=tuple(info.classes), image_size=int(cfg.image_size),
        alpha=cfg.alpha if cfg.arch == "mobilenet_v2" else None, config=cfg,
        data=DataRecord(str(source), SplitSpec(cfg.val_fraction, cfg.test_fraction, cfg.seed, val_fold=cfg.val_fold, **sizes),
                        info.n_images, info.counts, tuple(prepared.unreadable), len(info.skipped)),
        training=TrainingRecord(round(seconds, 1), command, len(history), tuple(history)),
        scores={} if val_accuracy is None else {"val": Scores(sizes["val"], {registry.TF_VARIANT: val_accuracy})},
        versions=library_versions(), machine=machine_summary(), created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )


def train(
    source: str | Path,
    cfg: TrainConfig,
    name: str,
    models_root: Path | None = None,
    progress: ProgressFn = ignore,
    overwrite: bool = False,
    command: str | None = None,
) -> Path:
    """Train on a dataset source and save models/<name> (Keras model + card), phase by phase."""
    if (missing := availability.tensorflow_missing()) is not None:
        raise UserError(missing)
    registry.check_name(name)
    started = time.time()
    with registry.scratch_dir(models_root) as scratch:
        # Phase 1: load and split, before TensorFlow's import (seconds): a dataset's mistake is said at once.
        prepared = load_and_split(source, cfg, scratch, progress)
        availability.require_tensorflow()
        import keras

        train_ds, val_ds, loss = _datasets(prepared, cfg)
        # Phase 2: build.
        keras.utils.set_random_seed(cfg.training_seed)
        model = build_model(cfg, len(prepared.info.classes))
        history: list[dict[str, Any]] = []
        # Phase 3: fit the new head on a frozen backbone (or the whole tutorial CNN).
        _fit(model, train_ds, val_ds, loss, cfg, cfg.epochs, cfg.learning_rate,
             "head" if architectures.get(cfg.arch).transfer else "train", history, progress)
        # Phase 4: fine-tune the top of the backbone at a lower learning rate.
        if architectures.get(cfg.arch).transfer and cfg.fine_tune_epochs > 0:
            unfreeze_top(model, cfg.fine_tune_layers)
            _fit(model, train_ds, val_ds, loss, cfg, cfg.fine_tune_epochs, cfg.fine_tune_learning_rate, "fine-tune",
                 history, progress, cfg.schedule, cfg.ema)
        val_acc = None  # a final fit has trained on the validation photos: no honest score there
        if not cfg.fit_on_val:
            progress(Event("evaluate", 0, 1, "measuring validation accuracy"))
            val_probs = model.predict(prepared.x_val, batch_size=cfg.batch_size, verbose=0)  # no bigger peak than training
            val_acc = float(np.mean(np.argmax(val_probs, 1) == prepared.y_val))
    # Phase 5: record. A new, uncompiled Model over the same layers is saved without the optimizer's
    # state (5.4 MB of the shipped model's 8.9; keras.models.clone_model compiles its clone again).
    card = record(name, cfg, source, prepared, history, val_acc, time.time() - started,
                  command or " ".join(shlex.quote(a) for a in sys.argv))
    inference_model = keras.Model(model.input, model.output, name=model.name)

    def fill(tmp: Path) -> None:
        inference_model.save(tmp / registry.KERAS_FILE)
        registry.write_card(tmp, card)

    path = registry.save_model(name, fill, models_root, overwrite=overwrite)
    progress(Event("saved", 1, 1, f"saved {path}", {} if val_acc is None else {"val_accuracy": val_acc}))
    return path

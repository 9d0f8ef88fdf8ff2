"""What a user chooses when training: `TrainConfig` (every field a CLI flag and a Train page
default) and the recipes, the tried configurations the Train page offers by name."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.errors import UserError
from core.model.architectures import ARCHS, MOBILENET_ALPHAS, get as architecture
from core.settings import cli_help

SCHEDULES = ("constant", "cosine")
MIXES = ("none", "mixup", "cutmix")


@dataclass(frozen=True)
class TrainConfig:
    arch: str = field(default="efficientnet_lite0", metadata=cli_help(f"one of {', '.join(ARCHS)}"))
    alpha: float = field(default=0.5, metadata=cli_help("MobileNetV2 width multiplier"))
    image_size: int | None = field(default=None, metadata=cli_help("pixels; by default the backbone's own (224 for "
                                                                "MobileNetV2 and EfficientNet-Lite0), 180 for the CNN"))
    epochs: int = field(default=5, metadata=cli_help("the CNN's epochs, or a backbone's frozen-backbone epochs"))
    fine_tune_epochs: int = 0
    fine_tune_layers: int = field(default=30, metadata=cli_help("backbone layers unfrozen from the top when fine-tuning"))
    batch_size: int = 32
    learning_rate: float = 1e-3
    fine_tune_learning_rate: float = 1e-4
    augment: bool = field(default=True, metadata=cli_help("random flip, rotation and zoom"))
    strong_augment: bool = field(default=False, metadata=cli_help("also random crops (zoom and shift up to 20%%) "
                                                              "and colour jitter (brightness, contrast, saturation)"))
    mix: str = field(default="none", metadata=cli_help("mix pairs of training photos and their labels: none, mixup "
                                                    "(blend whole photos) or cutmix (paste a patch of one into another)"))
    schedule: str = field(default="constant", metadata=cli_help("fine-tuning learning rate: constant, or cosine "
                                                             "(one epoch of warm-up, then cosine decay to zero)"))
    ema: float = field(default=0.0, metadata=cli_help(
        "fine-tuning keeps an exponential moving average of the weights with this momentum (e.g. 0.99) and "
        "validates and saves the average; 0: off"))
    dropout: float = 0.2
    label_smoothing: float = 0.0
    patience: int = field(default=3, metadata=cli_help("epochs without a better val accuracy before stopping"))
    fit_on_val: bool = field(default=False, metadata=cli_help(
        "final fit: train on the training and validation photos for exactly the epochs given (nothing is left "
        "to stop early on); fix the recipe on validation first. The held-out split stays untouched"))
    val_fraction: float = 0.2
    test_fraction: float = field(default=0.0, metadata=cli_help("held-out share, never used for model selection"))
    val_fold: int = field(default=0, metadata=cli_help(
        "validate on another slice of the photos that are not held out (1, 2, ...; 0: the plain split): "
        "compare recipes over several validation sets, the held-out split untouched"))
    seed: int = field(default=123, metadata=cli_help("draws the train / val / held-out split (and, unless "
                                                  "--train-seed is given, the training's randomness)"))
    train_seed: int | None = field(default=None, metadata=cli_help(
        "seed of the weights' initialisation, shuffling, augmentation and mixing, apart from the split: "
        "repeat a recipe with other values to see its run-to-run spread on the same held-out photos"))
    weights: str | None = field(default="imagenet", metadata=cli_help("'imagenet', or 'none' for random init"))

    @property
    def training_seed(self) -> int:
        """The seed of everything random in training but the split (kept apart so `replace(seed=...)` moves both)."""
        return self.seed if self.train_seed is None else self.train_seed

    def training_photos(self, n_images: int) -> int:
        """About how many of `n_images` photos train: the held-out share and (unless a final fit trains on
        it too) the validation share stay out."""
        return round(n_images * (1 - self.test_fraction - (0 if self.fit_on_val else self.val_fraction)))

    def __post_init__(self) -> None:
        if self.weights in ("none", ""):
            object.__setattr__(self, "weights", None)  # frozen: the one normalisation happens here
        arch = architecture(self.arch)  # raises on an unknown one
        if self.arch == "mobilenet_v2" and self.alpha not in MOBILENET_ALPHAS:
            raise UserError(f"MobileNetV2 alpha must be one of {MOBILENET_ALPHAS}")
        if self.image_size is None:
            object.__setattr__(self, "image_size", arch.default_size)
        if self.schedule not in SCHEDULES:
            raise UserError(f"schedule must be one of {', '.join(SCHEDULES)}")
        if not 0.0 <= self.ema < 1.0:
            raise UserError("ema must be at least 0 (off) and below 1")
        if self.mix not in MIXES:
            raise UserError(f"mix must be one of {', '.join(MIXES)}")
        if self.epochs < 1 or self.fine_tune_epochs < 0 or self.batch_size < 1:
            raise UserError("epochs and batch size must be at least 1, fine-tune epochs at least 0")
        if self.val_fold < 0:
            raise UserError("the validation fold must be 0 (the plain split) or more")


@dataclass(frozen=True)
class Recipe:
    summary: str
    config: TrainConfig


_TRANSFER = dict(learning_rate=1e-3, fine_tune_learning_rate=1e-4, label_smoothing=0.1, dropout=0.3,
                 schedule="cosine", val_fraction=0.1, test_fraction=0.1)
_LITE0 = dict(_TRANSFER, arch="efficientnet_lite0", image_size=224, epochs=2, fine_tune_layers=90, batch_size=16)
# The Train page's choices and the CLI's --recipe; the first is the default. Chosen on validation
# accuracy, repeated over three training seeds and scored on the held-out split (docs/lab-log.md);
# memory figures are `training.estimate_peak_mb` on the full flower_photos, measured as
# docs/safety.md ("Memory") says.
RECIPES: dict[str, Recipe] = {
    "Recommended": Recipe(
        "EfficientNet-Lite1 at 240 px, 2 head + 6 epochs fine-tuning the top 120 of 187 layers (cosine), cutmix, "
        "batch 8 (fits Community Cloud)",
        TrainConfig(**(_LITE0 | dict(arch="efficientnet_lite1", image_size=240, fine_tune_layers=120, batch_size=8)),
                    fine_tune_epochs=6, patience=8, mix="cutmix")),
    "Quick": Recipe(
        "EfficientNet-Lite0 at 224 px, 2 head + 4 epochs fine-tuning the top 90 of 142 layers (cosine), batch 16",
        TrainConfig(**_LITE0, fine_tune_epochs=4, patience=6)),
    "As shipped": Recipe(
        "EfficientNet-Lite0 at 288 px, 3 head + 8 cosine fine-tuning epochs of the top 100 layers on train + "
        "validation (a final fit), batch 32 (the shipped model; too big for Cloud)",
        TrainConfig(**(_LITE0 | dict(image_size=288, epochs=3, fine_tune_epochs=8, fine_tune_layers=100,
                                     batch_size=32, patience=8, fit_on_val=True)))),
    "MobileNetV2 (lighter)": Recipe(
        "MobileNetV2 α0.5 at 224 px, 3 head + 8 epochs fine-tuning the top 100 layers (cosine), cutmix, batch 16: "
        "the Recommended before EfficientNet, for a server with less memory (about 4× less compute than Lite0, 4 points less accurate than Recommended)",
        TrainConfig(**_TRANSFER, arch="mobilenet_v2", alpha=0.5, image_size=224, epochs=3, fine_tune_epochs=8,
                    fine_tune_layers=100, batch_size=16, patience=8, mix="cutmix")),
    "Tutorial CNN": Recipe(
        "the original study's small CNN at 180 px, 15 epochs, batch 32 (no ImageNet weights needed)",
        TrainConfig(arch="tutorial_cnn", image_size=180, epochs=15, batch_size=32, patience=15,
                    val_fraction=0.1, test_fraction=0.1)),
}

"""The example photos Predict offers with one tap, for a visitor with no photo at hand: one
held-out photo per class of the shipped models' split and one photo that is not a flower, each
with its credit and licence (`examples/`, made by `scripts/example_photos.py`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from core import paths
from core.model.model_card import ModelCard

EXAMPLES_DIR = paths.PROJECT_ROOT / "examples"
MANIFEST = "examples.json"
NOT_A_FLOWER = "not a flower"  # the label of the example that is none of the classes


@dataclass(frozen=True)
class Example:
    path: Path
    true_class: str | None  # None: not one of the classes
    credit: str
    link: str
    licence: str
    licence_link: str

    @property
    def label(self) -> str:
        """What the visitor taps: the class, or that it is not a flower."""
        return self.true_class or NOT_A_FLOWER

    @property
    def credit_line(self) -> str:
        """The credit in Markdown, as shown under the photo."""
        return f"Photo: [{self.credit}]({self.link}), [{self.licence}]({self.licence_link})"


@dataclass(frozen=True)
class Examples:
    photos: tuple[Example, ...]
    classes: tuple[str, ...]
    n_images: int  # the data set the split was drawn from: the 2934-photo copy of flower_photos
    split: dict[str, float | int]

    def for_model(self, card: ModelCard) -> tuple[list[Example], bool]:
        """The photos to offer for a model of these classes (none for other classes), and whether
        the flowers among them were held out of its training: true only for a model split from
        the same data set in the same way; another model may have trained on them."""
        if tuple(card.classes) != self.classes:
            return [], False
        spec = card.data.split if card.data else None
        held_out = (spec is not None and card.data.n_images == self.n_images
                    and all(getattr(spec, k) == v for k, v in self.split.items()))
        return list(self.photos), held_out

    def by_label(self, label: str) -> Example | None:
        return next((e for e in self.photos if e.label == label), None)


@cache
def load(root: Path = EXAMPLES_DIR) -> Examples | None:
    """The examples, or None where the folder is missing (an install without them)."""
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    photos = tuple(Example(root / p["file"], p["true_class"], p["credit"], p["link"], p["licence"], p["licence_link"])
                   for p in manifest["photos"] if (root / p["file"]).is_file())
    return Examples(photos, tuple(manifest["classes"]), manifest["n_images"], manifest["split"])

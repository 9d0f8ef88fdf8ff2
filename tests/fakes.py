"""A stand-in predictor for page tests about layout and messages: no runtime is loaded, and
every photo gets the same answer. Decoding is the real one, so a bad file fails as it would."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from core.model import registry
from core.runtimes.backends import Backend
from core.runtimes.predict import Predictor
from core.settings import OVSettings


class FixedBackend(Backend):
    """Always the first class, with probability 0.9."""

    def __init__(self, variant: str, image_size: int, n_classes: int) -> None:
        self.variant, self.image_size = variant, image_size
        self._probs = np.full(n_classes, 0.1 / max(1, n_classes - 1), np.float32)
        self._probs[0] = 0.9

    def predict(self, images: np.ndarray) -> np.ndarray:
        return np.tile(self._probs, (len(self._check(images)), 1))

    def settings(self) -> dict:
        return {"runtime": "fake", "precision": "f32", "hint": "-", "streams": 1, "threads": 1, "pinning": False}


class FakePredictor(Predictor):
    def __init__(self, model_dir: Path, variants: list[str] | None = None, ov_settings: OVSettings | None = None):
        self.model_dir = Path(model_dir)
        self.card = registry.read_card(self.model_dir)
        self.classes, self.image_size = list(self.card.classes), self.card.image_size
        self.ov_settings = ov_settings or OVSettings()
        variants = variants or registry.available_variants(self.model_dir)
        self.backends = {v: FixedBackend(v, self.image_size, len(self.classes)) for v in variants}
        self.first_inference_ms = dict.fromkeys(variants, 0.0)
        self.unavailable, self._lock = {}, threading.Lock()
        self.calibration = None  # no open-set verdict: these tests are about layout and messages


@pytest.fixture
def fake_predictor(monkeypatch):
    """Pages get `FakePredictor`s (Streamlit's resource cache is cleared before and after)."""
    import streamlit as st

    import app_pages.common as common

    st.cache_resource.clear()
    monkeypatch.setattr(common, "Predictor", FakePredictor)
    yield FakePredictor
    st.cache_resource.clear()

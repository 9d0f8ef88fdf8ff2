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
from core.model.tuned import Candidate, Reported
from core.settings import OVSettings, RunSetup


def candidate(variant: str = "openvino-fp32", objective: str = "throughput", batch: int = 8, static: bool = False,
              ov: OVSettings | None = None, requests: int = 2, streams: str = "2", **figures) -> Candidate:
    """A tuning's candidate with made-up figures, for tests of how tunings are read (tests/test_tune.py
    makes real ones)."""
    ov = ov or OVSettings("f32", objective.upper())
    figures = {"p50_ms": 1.0, "p99_ms": 2.0, "throughput_ips": 100.0, "photos": 64, "repeats": 3, "accuracy": 0.9,
               "agreement_with_tf": 1.0, "tf_accuracy": 0.9, "eligible": True} | figures
    return Candidate(objective, RunSetup("", variant, ov=ov, async_queue=objective == "throughput", static=static),
                     batch, Reported(streams, requests, ov.precision, "2"), **figures)


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
    def __init__(self, model_dir: Path, setups: list[str] | None = None, ov_settings: OVSettings | None = None,
                 background: bool = False):
        self.model_dir = Path(model_dir)
        self.card = registry.read_card(self.model_dir)
        self.classes, self.image_size = list(self.card.classes), self.card.image_size
        self.ov_settings = ov_settings or OVSettings()
        setups = setups or registry.available_variants(self.model_dir)
        self.backends = {v: FixedBackend(v, self.image_size, len(self.classes)) for v in setups}
        self.first_inference_ms = dict.fromkeys(setups, 0.0)
        self.unavailable, self.failed, self.pending, self._lock = {}, {}, set(), threading.RLock()
        self._order, self._answered = list(setups), threading.Event()
        self.calibration = None  # no open-set verdict: these tests are about layout and messages
        self.judge, self.judge_load_s, self.judge_missing = None, None, ""


@pytest.fixture
def fake_predictor(monkeypatch):
    """Pages get `FakePredictor`s (Streamlit's resource cache is cleared before and after)."""
    import streamlit as st

    import app_pages.predictors as predictors

    st.cache_resource.clear()
    monkeypatch.setattr(predictors, "Predictor", FakePredictor)
    yield FakePredictor
    st.cache_resource.clear()

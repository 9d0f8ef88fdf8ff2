"""The loaded models every session shares: a `Predictor` per model and settings, loaded and warmed
in one background thread per server, and this session's results kept per photo."""

from __future__ import annotations

import gc
import hashlib
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path

import streamlit as st

from app_pages.models import model_stamp
from core.model import registry
from core.runtimes.backends import load_backend
from core.runtimes.predict import ImageResult, Predictor, default_setups
from core.settings import OVSettings

def _load_predictor(model_dir: str, setups: tuple[str, ...], settings: OVSettings) -> Predictor:
    # Importing TensorFlow makes millions of objects, and the collector's passes meanwhile scanned
    # the whole heap again and again: paused during the load, it took 0.6 s less (2.0 → 1.4 s).
    gc.disable()
    try:
        predictor = Predictor(Path(model_dir), list(setups), settings, background=True)
    finally:
        gc.enable()
    # (TensorFlow's own objects are made in the Predictor's loading thread after this returns: it
    # freezes them itself once they are loaded.)
    # Streamlit runs a full garbage collection after every script run (twice once Keras is
    # imported: its clear_session collects too). With TensorFlow's object graph in the process
    # each took long enough to stall every session; frozen objects are skipped by the collector.
    gc.freeze()
    return predictor


# One loader thread per server: models load in the background, one configuration at a time.
_LOADER = ThreadPoolExecutor(1, thread_name_prefix="predictor-loader")


@st.cache_resource(max_entries=8, show_spinner=False)


def _loading(model_dir: str, setups: tuple[str, ...], settings: OVSettings, stamp: float) -> Future[Predictor]:
    return _LOADER.submit(_load_predictor, model_dir, setups, settings)


def start_loading(entry: registry.ModelEntry, setups: list[str], settings: OVSettings) -> None:
    """Begin loading and warming these backends in the background (once per server and setting),
    so that a first visitor's first photo does not wait for TensorFlow's import."""
    _loading(str(entry.path), tuple(setups), settings, model_stamp(entry.path))


def predict_defaults(entry: registry.ModelEntry) -> tuple[list[str], OVSettings]:
    """What the Predict page runs until a visitor changes it: every backend offered whose file is
    there (`predict.default_setups`), in f32."""
    return default_setups(entry.path), OVSettings(precision="f32")


@st.cache_resource(max_entries=8, show_spinner=False)


def _openvino_settings(model_dir: str, variant: str, settings: OVSettings, stamp: float) -> Future[dict]:
    return _LOADER.submit(lambda: load_backend(Path(model_dir), variant, settings).settings())


def _settled(loader, *key):
    """The result of the loader's future for `key`; a failure is not kept: the next run tries again."""
    future = loader(*key)
    wait([future])
    if future.exception() is not None:
        loader.clear(*key)
    return future.result()


def openvino_settings(entry: registry.ModelEntry, variant: str, settings: OVSettings) -> dict:
    """What OpenVINO's CPU plugin chose for one of the model's IRs under `settings` (precision,
    streams, threads): compiled once per server on the loader thread, without a whole Predictor."""
    return _settled(_openvino_settings, str(entry.path), variant, settings, model_stamp(entry.path))


def predictor(entry: registry.ModelEntry, setups: list[str], settings: OVSettings) -> Predictor:
    """The loaded backends, shared by every session (waiting for the background load if it runs)."""
    key = (str(entry.path), tuple(setups), settings, model_stamp(entry.path))
    if _loading(*key).done():
        return _settled(_loading, *key)
    with st.spinner("Loading and compiling the model (once per server)..."):
        return _settled(_loading, *key)


_PREDICTIONS_KEY = "predictions"


def classify_all(model: Predictor, files: list[tuple[str, bytes]], again: bool = False) -> list[ImageResult]:
    """Every photo's result, measured once per photo, model and settings and then kept in this
    session: a widget change that does not change the prediction (top-k, say) only redraws.
    Only the current photos' results are kept; `again` measures them anew."""
    model_key = (str(model.model_dir), model_stamp(model.model_dir), tuple(model.backends), model.ov_settings)
    cache = {} if again else st.session_state.get(_PREDICTIONS_KEY, {})
    keys = [(name, hashlib.sha256(data).hexdigest(), model_key) for name, data in files]
    results = {k: cache[k] if k in cache else model.classify(name, data) for k, (name, data) in zip(keys, files)}
    st.session_state[_PREDICTIONS_KEY] = results
    return list(results.values())

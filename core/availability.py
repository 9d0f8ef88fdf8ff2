"""Which runtimes this server has. TensorFlow publishes no wheel for every Python Streamlit
Community Cloud offers (2.21: none for 3.14), so requirements.txt leaves the TensorFlow stack out
there; everything that does not need it (OpenVINO, the peers on their shipped files) still runs,
and the app says what is missing and how to fix it."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import platform
import sys
import threading
from collections.abc import Sequence
from functools import cache
from types import ModuleType

TF_SUPPORTED_PYTHONS = "3.11–3.13"  # TensorFlow 2.21's wheels (cp310–cp313) within what Cloud offers


@cache
def has_tensorflow() -> bool:
    """TensorFlow and Keras importable (looked up without importing: that takes seconds)."""
    return all(importlib.util.find_spec(name) is not None for name in ("tensorflow", "keras"))


def tensorflow_missing() -> str | None:
    """Why TensorFlow is missing and the fix, in a sentence a deployer can act on; None when it is there."""
    if has_tensorflow():
        return None
    python = platform.python_version()
    why = (f"TensorFlow has no release for Python {python} yet (TensorFlow 2.21 supports {TF_SUPPORTED_PYTHONS})"
           if tuple(map(int, python.split(".")[:2])) >= (3, 14) else "it is not in this Python environment")
    return (f"TensorFlow is not installed on this server: {why}. OpenVINO, ONNX Runtime and LiteRT run the "
            "shipped model as usual; training, conversion, tuning and the TensorFlow backend need TensorFlow. "
            "Fix: on Streamlit Community Cloud, delete the app and deploy it again choosing Python 3.12 or 3.13 "
            "under Advanced settings (an app's Python cannot be changed after deployment); elsewhere, "
            "`pip install -r requirements.txt` on Python 3.11–3.13.")


_IMPORT_LOCK = threading.Lock()


def require_tensorflow() -> None:
    """Before anything that needs TensorFlow: raise the user-facing reason where it is missing,
    else import TensorFlow and Keras, once per process. The lock matters: two threads importing
    TensorFlow at once (the Predictor's loader beside a remake of the FP32 IR) see its modules
    half-initialised and fail (`dataset_ops` has no attribute `DatasetV2`)."""
    from core.errors import UserError

    if (why := tensorflow_missing()) is not None:
        raise UserError(why)
    with _IMPORT_LOCK:
        skip = _NoScikitLearnForKeras()
        sys.meta_path.insert(0, skip)
        try:  # once imported, these return at once (or wait for another thread's import to finish)
            importlib.import_module("tensorflow")
            importlib.import_module("keras")
        finally:
            sys.meta_path.remove(skip)


class _NoScikitLearnForKeras(importlib.abc.MetaPathFinder):
    """TensorFlow imports Keras, which imports scikit-learn (and SciPy's stats with it) for its
    scikit-learn wrappers, unused here: 0.8-1.0 s of TensorFlow's 4-5 s import (measured with
    `python -X importtime`). Refused to the importing thread only, while it imports TensorFlow; Keras
    then leaves its wrappers out, and NNCF or any other thread imports scikit-learn as usual."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()

    def find_spec(self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None) -> None:
        if name == "sklearn" and threading.get_ident() == self.thread:
            raise ModuleNotFoundError("left out while TensorFlow imports", name=name)
        return None

"""Classifying photos with several backends side by side."""

from __future__ import annotations

import dataclasses
import gc
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from core.errors import UserError
from core.model import artifacts, imagenet, openset, registry, tuned
from core.model.images import ImageError, open_image, to_model_input
from core.runtimes import remote
from core.runtimes.backends import Backend, device_info, load_backend, load_setup, native_precisions
from core.settings import OVSettings
from core.timing import Timing, time_calls, time_once
from core.variants import CATALOGUE, OPENVINO, TF_VARIANT

REPEATS = 5  # timed calls per photo and backend, after one warm-up call; the median is shown
RETRY_S = 30  # between attempts to reach a remote server that did not answer
# In the background, TensorFlow's import (seconds of CPU, holding the GIL) waits for the first photo
# to be answered, or this long: on a cold server it had doubled the first answer's time.
TENSORFLOW_DELAY_S = 3.0
# ... and once a photo is answered, this long more: the page that asked draws the rest of its answer
# first (the import had held it back by about 0.8 s).
ANSWER_GRACE_S = 1.5
TUNED_LATENCY = "tuned-latency"  # the setup `python -m core tune` found fastest for one photo at a time
IMAGENET_CHECK = "imagenet-check"  # not a backend: the open-set check's ImageNet classifier, in load times
NAMED_SETUPS = {IMAGENET_CHECK: "ImageNet check (EfficientNet-Lite0, OpenVINO f32)", TUNED_LATENCY: "OpenVINO, tuned for latency", remote.REMOTE_SETUP: "OpenVINO (remote server)"}


def setup_label(name: str) -> str:
    """What Predict offers, in words: a variant's label, or a named setup's."""
    return NAMED_SETUPS.get(name) or CATALOGUE[name].label


def setup_runtime(name: str) -> str:
    """The runtime that answers for an offered setup (every named setup runs in OpenVINO)."""
    return OPENVINO.name if name in NAMED_SETUPS else CATALOGUE[name].runtime.name


def offered_setups(model_dir: Path) -> list[str]:
    """What Predict offers, by name: each variant (a model file, in its default setup) this server
    can run, and two named setups: the tuned latency setup when the model has one, and the remote
    server when the owner configured one for this model."""
    tuning = tuned.load(model_dir)
    winner = tuning.winner("latency") if tuning else None
    # A tuning is machine-specific: offer it only where its precision runs natively (a bf16 setup
    # tuned on a CPU with BF16 is not offered on one without).
    usable = winner is not None and winner.setup.precision in native_precisions(device_info()["capabilities"])
    return (registry.available_variants(model_dir) + ([TUNED_LATENCY] if usable else [])
            + ([remote.REMOTE_SETUP] if remote.serves(model_dir) else []))


def default_setups(model_dir: Path) -> list[str]:
    """What Predict runs until a visitor chooses: every offered setup whose file is there. A file a
    shipped folder leaves out (the FP32 IR) is remade from model.keras only when someone picks it,
    so a cold start does not wait for a conversion."""
    return [v for v in offered_setups(model_dir)
            if v not in CATALOGUE or registry.variant_path(model_dir, v).exists()]


NOT_ONE_OF_THEM = "not one of the classes"


def _markdown_text(text: str) -> str:
    """A class name (a visitor's folder name, for a model trained on their photos) shown as itself."""
    return "".join("\\" + ch if ch in "\\`*_[]<>|#~$" else ch for ch in text)


@dataclass
class SetupResult:
    setup: str
    probabilities: dict[str, float]
    timing: Timing
    known_score: float | None = None  # the open-set score (core.model.openset), if the model is calibrated
    known: bool | None = None  # the score is at or above the model's threshold
    calibrated: dict[str, float] | None = None  # the probabilities after temperature scaling, if calibrated

    @property
    def shown(self) -> dict[str, float]:
        """What the page and tables show: calibrated probabilities where the model has them."""
        return self.calibrated or self.probabilities

    @property
    def latency_ms(self) -> float:
        """Median of the warm, timed calls."""
        return self.timing.median_ms

    @property
    def first_call_ms(self) -> float | None:
        """The photo's first call, apart: in the app it is cold after every page run, because
        Streamlit calls keras.backend.clear_session() after each run, which clears TensorFlow's
        kernel cache (hundreds of ms for TensorFlow, a few for OpenVINO)."""
        return self.timing.first_ms

    @property
    def top_class(self) -> str:
        return max(self.probabilities, key=self.probabilities.get)

    def top_k(self, k: int) -> list[tuple[str, float]]:
        return sorted(self.probabilities.items(), key=lambda kv: -kv[1])[:k]


@dataclass
class ImageResult:
    name: str
    results: dict[str, SetupResult] = field(default_factory=dict)
    error: str | None = None
    failed: dict[str, str] = field(default_factory=dict)  # backends that could not answer (a remote server down)
    image: Any = None  # the decoded, upright PIL image, for display
    looks_like: imagenet.LooksLike | None = None  # the ImageNet check's confident answer, if any
    imagenet_ms: float | None = None  # the ImageNet check's time for this photo (once, whatever the backends)

    @property
    def agree(self) -> bool | None:
        classes = {r.top_class for r in self.results.values()}
        return None if not classes else len(classes) == 1

    @property
    def known(self) -> bool | None:
        """One of the model's classes by every backend's open-set verdict; None if uncalibrated.
        One doubting backend is enough to say so: a stranger's photo must not get a confident
        wrong answer."""
        verdicts = [r.known for r in self.results.values() if r.known is not None]
        return all(verdicts) if verdicts else None

    @property
    def verdict(self) -> str:
        """The page's answer in a word or three: the class every backend agrees on, "not one of the
        classes" (the open-set check), or "backends disagree"."""
        if self.error:
            return "error"
        if self.known is False:
            return NOT_ONE_OF_THEM
        return next(iter(self.results.values())).top_class if self.agree else "backends disagree"

    def top_k_table(self, k: int) -> str:
        """The top-k classes (by the first backend) and every backend's probability for each, as a
        text table: the answer's details on a phone's screen, with no chart library for its browser
        to load (plotly.js, 4.7 MB: ten visitors' browsers spent 10 s less CPU; docs/results.md)."""
        first = next(iter(self.results.values()))
        header = "| class | " + " | ".join(setup_label(s) for s in self.results) + " |"
        rows = [f"| {_markdown_text(c)} | " + " | ".join(f"{r.shown[c]:.1%}" for r in self.results.values()) + " |"
                for c, _ in first.top_k(k)]
        return "\n".join([header, "| --- |" + " ---: |" * len(self.results), *rows])

    def table_row(self) -> dict[str, Any]:
        """A flat row for the results table and its CSV download: the verdict first, then each backend's."""
        row: dict[str, Any] = {"file": self.name, "verdict": self.verdict}
        if self.error:
            return row | {"error": self.error}
        for setup, r in self.results.items():
            row[f"{setup} class"] = r.top_class
            row[f"{setup} confidence"] = round(r.shown[r.top_class], 4)
        row["agree"] = self.agree
        row["known flower"] = self.known
        row["looks like (ImageNet)"] = self.looks_like.label if self.known is False and self.looks_like else None
        for setup, r in self.results.items():
            row[f"{setup} ms"] = round(r.latency_ms, 2)
        for setup, r in self.results.items():
            row[f"{setup} first call ms"] = round(r.first_call_ms, 2)
        return row

    def to_dict(self) -> dict[str, Any]:
        if self.error:
            return {"file": self.name, "error": self.error}
        return {
            "file": self.name,
            "agree": self.agree,
            "known": self.known,
            "looks_like": None if self.looks_like is None else dataclasses.asdict(self.looks_like),
            "imagenet_ms": self.imagenet_ms,
            "results": {v: {"top_class": r.top_class, "probabilities": r.probabilities,
                            "calibrated_probabilities": r.calibrated, "known_score": r.known_score, "known": r.known,
                            "latency_ms": round(r.latency_ms, 3), "first_call_ms": round(r.first_call_ms, 3)}
                        for v, r in self.results.items()},
        }


class Predictor:
    """Loaded, warmed-up backends of one model; safe to share between app sessions."""

    def __init__(self, model_dir: Path, setups: list[str] | None = None, ov_settings: OVSettings | None = None,
                 background: bool = False):
        """Load and warm every backend of `setups`. What needs TensorFlow (its backend, and a file
        a shipped folder leaves out, remade from model.keras) loads in a thread of its own, started
        first: `background` returns as soon as the rest is ready and lets it join when it is
        (`pending` says what is still coming), so a cold server's first answer does not wait for
        TensorFlow's import; otherwise this waits for it."""
        # The open-set check's numpy work is a few small matmuls per photo; OpenBLAS's worker threads
        # then spin for milliseconds and took the cores from the call timed next: OpenVINO FP16 18.9 ms
        # instead of 10.0 on the page (docs/benchmarking.md). One BLAS thread in this process.
        threadpool_limits(1, user_api="blas")
        self.model_dir = Path(model_dir)
        self.card = registry.read_card(self.model_dir)
        self.classes: list[str] = list(self.card.classes)
        self.image_size = self.card.image_size
        self.ov_settings = ov_settings or OVSettings()
        self.calibration = openset.from_card(self.card.openset, self.model_dir)
        setups = setups or registry.available_variants(self.model_dir)
        self.backends: dict[str, Backend] = {}
        self.unavailable: dict[str, str] = {}  # a remote server that did not answer: the local backends go on
        self.failed: dict[str, str] = {}  # what could not load in the background, and why
        self.first_inference_ms: dict[str, float] = {}
        self._order = list(setups)
        self._lock = threading.RLock()  # retry_unavailable holds it while _add takes it
        self._retry_at = time.monotonic() + RETRY_S  # a failure at load was just seen
        with_tensorflow = [v for v in setups if v == TF_VARIANT
                           or (v in CATALOGUE and not registry.variant_path(self.model_dir, v).exists())]
        self.pending: set[str] = set(with_tensorflow)
        self._background = background
        self._answered = threading.Event()  # a photo was answered: TensorFlow may load now
        # Two first OpenVINO calls at once can deadlock in pybind11's numpy set-up: the thread warms
        # an IR it made only once the OpenVINO backends here have made theirs.
        openvino_warm = threading.Event()
        thread = threading.Thread(target=self._load_with_tensorflow, args=(with_tensorflow, openvino_warm),
                                  name="load-tensorflow", daemon=True)
        # Waiting for everything, TensorFlow's import overlaps the rest; in the background it starts
        # after them, so that it does not slow the first answer (it holds the GIL for seconds).
        if with_tensorflow and not background:
            thread.start()
        try:
            for setup in setups:
                if setup not in with_tensorflow:
                    self._add(setup, self._warm(setup))
            # The ImageNet check is an OpenVINO network too.
            self.judge, self.judge_load_s, self.judge_missing = self._load_judge()
        finally:
            openvino_warm.set()
        if with_tensorflow and background:
            thread.start()
        elif with_tensorflow:
            thread.join()
            if self.failed:
                raise registry.ModelError("; ".join(f"{v}: {why}" for v, why in self.failed.items()))

    def _load_with_tensorflow(self, setups: list[str], openvino_warm: threading.Event) -> None:
        """In the loading thread: make the missing files, load TensorFlow, then warm what was made."""
        if self._background and self._answered.wait(TENSORFLOW_DELAY_S):
            time.sleep(ANSWER_GRACE_S)
        for setup in sorted(setups, key=lambda v: v != TF_VARIANT):
            try:
                if setup == TF_VARIANT:
                    outcome = self._warm(setup)
                else:
                    artifacts.ensure(self.model_dir, setup)
                    openvino_warm.wait()
                    outcome = self._warm(setup)
                self._add(setup, outcome)
            except Exception as exc:  # kept for the page and the caller; the other backends go on
                self.failed[setup] = str(exc) or type(exc).__name__
        if self._background:
            # TensorFlow's millions of objects, made after the app froze its heap: frozen too, or every
            # full collection (Streamlit runs one after each script run) scans them again (0.7 s of CPU
            # per run, measured).
            gc.freeze()
        self.pending.clear()

    @property
    def threshold(self) -> float | None:
        """The score a photo needs to be called one of the classes, as this process decides: the
        ImageNet check's where it runs here, else the model's own score's."""
        if self.calibration is None:
            return None
        return self.calibration.threshold_in_use if self.judge is not None else self.calibration.threshold

    def _load_judge(self) -> tuple[imagenet.Judge | None, float | None, str]:
        """The ImageNet check where the calibration uses it; where it cannot be made here, the
        distance decides alone, and the reason is kept for the page."""
        if self.calibration is None or self.calibration.imagenet is None:
            return None, None, ""
        try:
            seconds, judge = time_once(imagenet.judge)
        except (UserError, registry.ModelError) as exc:
            return None, None, str(exc)
        return judge, seconds, ""

    def _warm(self, setup: str) -> tuple[Backend, float] | str:
        """Load one backend and make its first call, the one `measure` makes (for TensorFlow that
        traces the function, hundreds of ms); a remote one that fails: its message."""
        warmup = np.zeros((1, self.image_size, self.image_size, 3), np.uint8)
        try:
            backend = self._load(setup)
            first_s, (probs, _) = time_once(lambda: backend.infer(warmup))
        except remote.RemoteError as exc:
            return str(exc)
        if probs.shape != (1, len(self.classes)):
            raise registry.ModelError(
                f"{setup} returns {probs.shape[1]} classes but the card lists {len(self.classes)}"
            )
        return backend, first_s

    def _add(self, setup: str, outcome: tuple[Backend, float] | str) -> None:
        """Keep a warmed-up backend (in the order asked for), or note why a remote one is unavailable."""
        if isinstance(outcome, str):
            self.unavailable[setup] = outcome
            return
        backend, first_s = outcome
        with self._lock:
            self.first_inference_ms[setup] = first_s * 1000
            loaded = self.backends | {setup: backend}
            self.backends = {v: loaded[v] for v in self._order if v in loaded}
            self.unavailable.pop(setup, None)

    def retry_unavailable(self) -> None:
        """Try the remote backends that failed again, at most every RETRY_S (every page run calls
        this, and an unreachable host takes the connect timeout), so a server that comes back is
        used without reloading the local ones. This object is shared by sessions: locked."""
        with self._lock:
            if not self.unavailable or time.monotonic() < self._retry_at:
                return
            self._retry_at = time.monotonic() + RETRY_S
            for setup in list(self.unavailable):
                self._add(setup, self._warm(setup))

    def _load(self, setup: str) -> Backend:
        if setup != TUNED_LATENCY:
            return load_backend(self.model_dir, setup, self.ov_settings)
        tuning = tuned.load(self.model_dir)
        winner = tuning.winner("latency") if tuning else None
        if winner is None:
            raise registry.ModelError(f"{self.model_dir.name} has no tuned latency setup; run `python -m core tune`")
        return load_setup(self.model_dir, winner.setup, winner.batch)

    def load_times(self) -> dict[str, dict[str, float]]:
        times = {v: {"load_s": b.load_seconds, "first_inference_ms": self.first_inference_ms[v]}
                 for v, b in self.backends.items()}
        if self.judge_load_s is not None:  # making its IR the first time, reading and compiling it
            times[IMAGENET_CHECK] = {"load_s": self.judge_load_s}
        return times

    def classify(self, name: str, source: bytes | str | Path, repeats: int = REPEATS) -> ImageResult:
        """Classify one photo with every backend, timing `repeats` warm calls each; a bad file
        yields `error`, never an exception."""
        try:
            img = open_image(source)
        except ImageError as exc:
            return ImageResult(name, error=str(exc))
        result = ImageResult(name, image=img)
        judged = None
        if self.judge is not None:
            seconds, judged = time_once(lambda: self.judge.opinion(to_model_input(img, imagenet.SIZE)[None]))
            result.imagenet_ms = seconds * 1000
            result.looks_like = self.calibration.imagenet.looks_like(judged)
        result.results = self.time_every_backend(to_model_input(img, self.image_size)[None], repeats, result.failed,
                                                 judged)
        self._answered.set()
        return result

    def time_every_backend(self, batch: np.ndarray, repeats: int = REPEATS, failed: dict[str, str] | None = None,
                           judged: imagenet.Opinion | None = None) -> dict[str, SetupResult]:
        """Every backend on one uint8 batch: one first call, then `repeats` timed calls. A remote
        backend that fails is left out, with its message in `failed`. `judged`: the ImageNet
        check's opinion of the batch, which decides every backend's verdict where it is given."""
        results = {}
        for setup, backend in self.backends.items():  # replaced whole when a backend joins, never changed
            try:
                timing = time_calls(lambda b=backend: b.infer(batch), repeats, warmup=1)
            except remote.RemoteError as exc:
                if failed is not None:
                    failed[setup] = str(exc)
                continue
            probs, features = timing.result
            result = SetupResult(setup, dict(zip(self.classes, map(float, probs[0]))), timing)
            if self.calibration is not None:
                verdict = self.calibration.known(probs[:1], None if features is None else features[:1], judged)
                if verdict is not None:  # None: a backend without the features the score needs
                    result.known_score, result.known = float(verdict[0][0]), bool(verdict[1][0])
                scaled = openset.scale(probs[:1], self.calibration.temperature)[0]
                result.calibrated = dict(zip(self.classes, map(float, scaled)))
            results[setup] = result
        return results

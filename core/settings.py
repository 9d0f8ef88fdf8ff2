"""Every setting a user chooses for running and measuring a model, with its default, in one place
(training's are `core.model.recipes`).

The CLI's flags are made from these dataclasses' fields (their `help` metadata included),
and the pages take their defaults and choices from here too. What a run *measured* lives
elsewhere (`model_card`, `runs.Cell`); this module holds only what was *asked for*.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from core.errors import UserError
from core.variants import (CATALOGUE, LITERT_INT8_VARIANT, LITERT_VARIANT, ONNX_INT8_VARIANT, ONNX_VARIANT, REMOTE_SETUP, ir_variant)

CALIBRATION_SIZE = 300  # training photos NNCF calibrates INT8 on


def cli_help(text: str, *flags: str) -> dict[str, Any]:
    """A field's CLI help (and, if given, its flag names; the default is --field-name)."""
    return {"help": text, "flags": flags}


# ---------------------------------------------------------------- runtimes

TF_MODES = ("function", "predict")  # a compiled tf.function vs Keras model.predict
PRECISIONS = ("f32", "bf16", "f16", "default")  # "default": whatever the CPU plugin picks
HINTS = ("LATENCY", "THROUGHPUT")


@dataclass(frozen=True)
class OVSettings:
    """OpenVINO CPU settings. Defaults were chosen by measurement on a 2-vCPU machine:
    CPU pinning made batch-1 latency bimodal there, so it is off; f32 keeps results
    identical to TensorFlow's, bf16 is one explicit choice away."""

    precision: str = field(default="f32", metadata=cli_help("OpenVINO inference precision hint"))
    hint: str = field(default="LATENCY", metadata=cli_help("OpenVINO performance hint"))
    streams: int | None = None
    threads: int | None = None
    pinning: bool = field(default=False, metadata=cli_help("OpenVINO CPU pinning"))
    device: str = "CPU"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UserError(f"precision must be one of {PRECISIONS}")
        if self.hint not in HINTS:
            raise UserError(f"hint must be one of {HINTS}")

    def config(self) -> dict[str, Any]:
        """The properties `Core.compile_model` gets."""
        cfg: dict[str, Any] = {"PERFORMANCE_HINT": self.hint, "ENABLE_CPU_PINNING": self.pinning}
        if self.precision != "default":
            cfg["INFERENCE_PRECISION_HINT"] = self.precision
        if self.streams is not None:
            cfg["NUM_STREAMS"] = self.streams
        if self.threads is not None:
            cfg["INFERENCE_NUM_THREADS"] = self.threads
        return cfg

    def config_strings(self) -> dict[str, str]:
        """The same properties as strings, the one spelling of a config file: OpenVINO Model Server's
        `plugin_config` and benchmark_app's `-load_config` (booleans as OpenVINO writes them, YES / NO)."""
        return {k: ("YES" if v else "NO") if isinstance(v, bool) else str(v) for k, v in self.config().items()}


# ---------------------------------------------------------------- benchmark sweeps



@dataclass(frozen=True)
class RunSetup:
    """How one variant is run, the one shape every part of the app uses: a benchmark backend, a
    point of the tuning's search, a tuned winner Predict loads, what the model server compiles.
    `ov` holds OpenVINO's properties as asked (streams included: what the plugin then chose is a
    measurement, not a setting); `threads` is a peer's; `static` compiles for the batch size it is
    run at (as benchmark_app does) instead of a dynamic batch."""

    label: str
    variant: str
    tf_mode: str = "function"
    ov: OVSettings | None = None
    async_queue: bool = False
    static: bool = False
    threads: int | None = None  # a peer's thread count (None: its runtime's default)

    @property
    def runtime(self) -> str:
        return REMOTE_SETUP if self.variant == REMOTE_SETUP else CATALOGUE[self.variant].runtime.name

    @property
    def precision(self) -> str:
        """OpenVINO's inference precision, or the precision of a peer's file."""
        return self.ov.precision if self.ov is not None else CATALOGUE[self.variant].precision

    def describe(self) -> str:
        """The setup in one line, from its settings (a tuning's points have no hand-written label)."""
        if self.ov is None:
            return f"{self.variant} {self.precision} threads {self.threads or 'auto'}"
        streams = "auto" if self.ov.streams is None else self.ov.streams
        return (f"{self.variant} {self.ov.precision} {self.ov.hint} streams {streams}, "
                f"{'static' if self.static else 'dynamic'} shape, pinning {'on' if self.ov.pinning else 'off'}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunSetup:
        return cls(**(d | {"ov": OVSettings(**d["ov"]) if d.get("ov") else None}))


SETUPS: dict[str, RunSetup] = {
    "tensorflow-predict": RunSetup("TensorFlow model.predict (the study's loop)", "tensorflow", tf_mode="predict"),
    "tensorflow": RunSetup("TensorFlow compiled tf.function", "tensorflow"),
    "openvino-fp32": RunSetup("OpenVINO FP32 IR, f32", ir_variant("fp32"), ov=OVSettings("f32")),
    "openvino-fp32-default": RunSetup("OpenVINO FP32 IR, plugin default precision", ir_variant("fp32"),
                                   ov=OVSettings("default")),
    "openvino-fp32-pinned": RunSetup("OpenVINO FP32 IR, f32, CPU pinning on", ir_variant("fp32"),
                                  ov=OVSettings("f32", pinning=True)),
    "openvino-fp16": RunSetup("OpenVINO FP16 IR, f32 compute", ir_variant("fp16"), ov=OVSettings("f32")),
    "openvino-int8": RunSetup("OpenVINO INT8 IR", ir_variant("int8"), ov=OVSettings("f32")),
    "openvino-fp32-tput": RunSetup("OpenVINO FP32 IR, THROUGHPUT hint, async queue", ir_variant("fp32"),
                                ov=OVSettings("f32", hint="THROUGHPUT"), async_queue=True),
    "openvino-int8-tput": RunSetup("OpenVINO INT8 IR, THROUGHPUT hint, async queue", ir_variant("int8"),
                                ov=OVSettings("f32", hint="THROUGHPUT"), async_queue=True),
    "openvino-int8-tput-static": RunSetup("OpenVINO INT8 IR, THROUGHPUT hint, async queue, static shape",
                                       ir_variant("int8"), ov=OVSettings("f32", hint="THROUGHPUT"), async_queue=True,
                                       static=True),
    "onnxruntime": RunSetup("ONNX Runtime (tf2onnx export), f32", ONNX_VARIANT),
    "onnxruntime-int8": RunSetup("ONNX Runtime INT8 (static QDQ, same calibration photos)", ONNX_INT8_VARIANT),
    # LiteRT's own default is one thread; the other runtimes use every core unless told, so it does too.
    "litert": RunSetup("LiteRT (XNNPACK), f32, a thread per core", LITERT_VARIANT, threads=os.cpu_count() or 1),
    "litert-int8": RunSetup("LiteRT INT8 (full integer, same calibration photos), a thread per core",
                               LITERT_INT8_VARIANT, threads=os.cpu_count() or 1),
    # Offered only where the owner configured a server for the model (core.runtimes.remote.serves).
    REMOTE_SETUP: RunSetup("OpenVINO on the remote model server (KServe v2 REST; includes the network, "
                                "serialization and the server's queue)", REMOTE_SETUP),
}
BASELINE = "tensorflow"  # speed-ups are ratios over this backend, measured in the same run
# Older names (saved runs, a user's habits): a setup is now spelled as its variant (docs/architecture.md, "Words").
RENAMED_SETUPS = {"tf-serving": "tensorflow", "tf-function": "tensorflow", "tf-predict": "tensorflow-predict",
                  **{f"ov-{rest}": f"openvino-{rest}" for rest in ("fp32", "fp32-default", "fp32-pinned", "fp16", "int8",
                                                                   "fp32-tput", "int8-tput", "int8-tput-static")}}


def renamed(names: list[str]) -> list[str]:
    """What the user typed in older spellings, in sentences ("'ov-int8' is now 'openvino-int8'")."""
    return [f"{name!r} is now {RENAMED_SETUPS[name]!r}" for name in names if name in RENAMED_SETUPS]


DEFAULT_SETUPS = ["tensorflow-predict", "tensorflow", "openvino-fp32", "openvino-fp32-default", "openvino-int8", "openvino-int8-tput-static",
                    "onnxruntime"]
BATCH_CHOICES = [1, 8, 16, 32, 64]


@dataclass(frozen=True)
class Plan:
    """What one backend's worker measures: every batch size over every test size, `repeats` timed runs
    after `warmup` untimed ones."""

    sizes: tuple[int, ...]
    batches: tuple[int, ...]
    repeats: int = 3
    warmup: int = 1


@dataclass
class SweepConfig:
    model_dir: str = field(default="", metadata=cli_help("model folder or name (default: the default model)"))
    backends: list[str] = field(default_factory=lambda: list(DEFAULT_SETUPS),
                                metadata=cli_help(f"comma-separated, from: {', '.join(SETUPS)}"))
    sizes: list[int] = field(default_factory=lambda: list(range(10, 101, 10)),
                             metadata=cli_help("test sizes: images per timed run"))
    batches: list[int] = field(default_factory=lambda: [1, 32], metadata=cli_help("batch sizes", "--batches", "--batch"))
    repeats: int = field(default=3, metadata=cli_help("timed runs per cell; the median is reported"))
    warmup: int = field(default=1, metadata=cli_help("untimed runs before the timed ones"))
    images: str | None = field(default=None, metadata=cli_help("dataset source of the photos "
                                                            "(default: the model's own validation/held-out split)"))

    def __post_init__(self) -> None:
        self.backends = [RENAMED_SETUPS.get(b, b) for b in self.backends]
        unknown = [b for b in self.backends if b not in SETUPS]
        if unknown:
            raise UserError(f"unknown backend(s) {unknown}; choose from {', '.join(SETUPS)}")
        if not self.backends or not self.sizes or not self.batches:
            raise UserError("choose at least one backend, test size and batch size")
        if min(self.sizes) < 1 or min(self.batches) < 1 or self.repeats < 1 or self.warmup < 0:
            raise UserError("sizes, batches and repeats must be positive")

    @property
    def plan(self) -> Plan:
        return Plan(tuple(self.sizes), tuple(self.batches), self.repeats, self.warmup)


# The Benchmark page's presets; the first is its default. "Quick" took 35 s on the AMD EPYC machine
# (`python -m core benchmark --backends tensorflow,openvino-fp32,openvino-int8 --sizes 10,50 --batches 1,8`).
SWEEP_PRESETS: dict[str, SweepConfig] = {
    "Quick (about 35 s)": SweepConfig(backends=["tensorflow", "openvino-fp32", "openvino-int8"], sizes=[10, 50], batches=[1, 8]),
    "Full (the documented study)": SweepConfig(),
}


def parse_int_list(text: str, what: str) -> list[int]:
    """"10, 20,30" -> [10, 20, 30], for the page's and the CLI's comma-separated settings."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"{what} must be whole numbers separated by commas, not {text!r}") from None

"""The files of a model folder made from model.keras after training, and `ensure`, which makes a
missing one on first use.

A shipped folder carries what cannot be remade where the app runs: model.keras, the INT8 files
(calibrated on the training photos) and the FP16 IR (a float model for servers without
TensorFlow). The FP32 IR and the float peers are remade from model.keras by the same code that
made them after training, so a deployment with TensorFlow has every variant while the folder
stays within its size budget (docs/model.md, "The shipped model").
"""

from __future__ import annotations

from pathlib import Path

from core.model import convert, peers, registry
from core.variants import CATALOGUE, IR_VARIANTS, ONNX_INT8_VARIANT, ONNX_VARIANT
from core.progress import Event, ProgressFn, ignore
from core import availability

SOURCES = {ONNX_INT8_VARIANT: ONNX_VARIANT}  # quantized from that file, so made after it


def ensure(model_dir: Path, variant: str, progress: ProgressFn = ignore) -> Path:
    """The variant's file, made (atomically) if it is not there yet. A remade file (a shipped
    folder's) keeps the card's scores, as the same code made it from the same model.keras; a file
    made for the first time is scored by `evaluate.ensure_scored`."""
    model_dir = Path(model_dir)
    target = registry.variant_path(model_dir, variant)
    if target.exists():
        return target
    if variant in IR_VARIANTS and CATALOGUE[variant].calibrated:
        raise registry.ModelError(f"{target} is missing; the INT8 IR is made with the training photos by "
                                  "`python -m core convert`")
    availability.require_tensorflow()
    if variant in SOURCES:
        ensure(model_dir, SOURCES[variant], progress)
    progress(Event("artifacts", 0, None, f"making the {variant} model from the Keras model (once)"))
    if variant in IR_VARIANTS:
        registry.save_artifact(target.parent, lambda tmp: convert.make_ir(model_dir, tmp, CATALOGUE[variant].precision),
                               target.name)
    else:
        registry.save_artifact(target.parent, lambda tmp: peers.MAKERS[variant](model_dir, tmp, progress), target.name)
    return target

"""Models on disk: one folder per model, written atomically (see `core.atomic`).

    models/<name>/metadata.json        the model card (`core.model.model_card.ModelCard`)
    models/<name>/model.keras
    models/<name>/openvino/{fp32,fp16,int8}/model.{xml,bin}
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import atomic, paths, system
from core import availability
from core.variants import CATALOGUE, IR_PRECISIONS, MODEL_VARIANTS, PEER_VARIANTS, TF_VARIANT, ir_variant
from core.model.model_card import ModelCard, ModelError

DEFAULT_MODEL = "flowers-efficientnet-lite0"
# The previous model, kept for small servers: with every Predict backend loaded it fits Community
# Cloud's smallest app (690 MB), which the default does not (docs/model.md, "Two shipped models").
LIGHT_MODEL = "flowers-mobilenetv2"
LIGHT_BELOW_MB = 1500  # a memory limit under this makes the light model the default
KERAS_FILE = CATALOGUE[TF_VARIANT].file
METADATA_FILE = "metadata.json"
VARIANTS = MODEL_VARIANTS  # the Keras model and its IRs; the peers' files are core.model.peers'
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

__all__ = ["IR_PRECISIONS", "TF_VARIANT", "ModelCard", "ModelError"]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: Path
    card: ModelCard
    private: bool = False  # in a visitor's workspace, not the shared models folder

    @property
    def variants(self) -> list[str]:
        return available_variants(self.path)


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise ModelError(
            f"invalid model name {name!r}: use letters, digits, '.', '_' or '-' (at most 64, not starting with a symbol)"
        )
    return name


def variant_path(model_dir: Path, variant: str) -> Path:
    """Where a variant's file lives in a model folder: the one place that says it (the catalogue's
    `file`), for the model's own variants and the peers' alike."""
    if variant not in CATALOGUE:
        raise ModelError(f"unknown variant {variant!r}; known: {', '.join(CATALOGUE)}")
    return Path(model_dir) / CATALOGUE[variant].file


def available_variants(model_dir: Path) -> list[str]:
    """The variants this server can run: its runtime is here, and so is its file, or (for a folder
    shipped without it) TensorFlow to remake it from model.keras on first use."""
    return [v for v in VARIANTS if (v != TF_VARIANT or availability.has_tensorflow()) and _present(model_dir, v)]


def ready_variants(model_dir: Path) -> list[str]:
    """The available variants whose file is there now: none of them waits for a remake."""
    return [v for v in available_variants(model_dir) if variant_path(model_dir, v).exists()]


def present_peers(model_dir: Path) -> list[str]:
    """The peers (core.model.peers) whose files have been made for this model (or can be remade)."""
    return [v for v in PEER_VARIANTS if _present(model_dir, v)]


def _present(model_dir: Path, variant: str) -> bool:
    """Its file is there, or it was made and scored once (the card says so) and can be remade here
    (`core.model.artifacts.ensure`): a shipped folder leaves out what model.keras remakes."""
    if (Path(model_dir) / CATALOGUE[variant].file).exists():
        return True
    if not (CATALOGUE[variant].rebuildable and availability.has_tensorflow()):
        return False
    try:
        scores = read_card(model_dir).scores
    except ModelError:
        return False
    return any(variant in s.accuracy for s in scores.values())


def variant_size_bytes(model_dir: Path, variant: str) -> int:
    """Its files' size; for an IR a shipped folder left out, the size conversion recorded."""
    path = variant_path(model_dir, variant)
    if variant == TF_VARIANT:
        return path.stat().st_size
    if not path.exists():
        return int(read_card(model_dir).conversion.get(CATALOGUE[variant].precision, {}).get("size_bytes", 0))
    return sum(f.stat().st_size for f in path.parent.iterdir() if f.is_file())


def read_card(model_dir: Path) -> ModelCard:
    """The model's card; a folder without a loadable card and Keras file is not a model."""
    model_dir = Path(model_dir)
    path = model_dir / METADATA_FILE
    if not path.exists():
        raise ModelError(f"{model_dir} is not a model folder (no {METADATA_FILE})")
    try:
        card = ModelCard.from_json(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError, ModelError) as exc:
        raise ModelError(f"{path} is unreadable: {exc}") from exc
    if not (model_dir / KERAS_FILE).exists():
        raise ModelError(f"{model_dir} has a card but no {KERAS_FILE}")
    return card


def write_card(model_dir: Path, card: ModelCard) -> None:
    atomic.write_json(Path(model_dir) / METADATA_FILE, card.to_json())


def update_card(model_dir: Path, **changes: Any) -> ModelCard:
    card = read_card(model_dir).replace(**changes)
    write_card(model_dir, card)
    return card


def load_keras(model_dir: Path):
    """Load the Keras model with `safe_mode` on: no arbitrary code from the file runs."""
    availability.require_tensorflow()
    import keras

    path = variant_path(model_dir, TF_VARIANT)
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:
        raise ModelError(f"could not load {path}: {exc}") from exc


CLASSIFIER_LAYER = "probabilities"  # the final Dense layer of every architecture (core.model.training.build_model)


def with_features(model):
    """The Keras model with two outputs: probabilities, and the classifier's input (the penultimate
    features, which the open-set score measures distances on). Same layers, no copy."""
    import keras

    return keras.Model(model.inputs, [model.output, model.get_layer(CLASSIFIER_LAYER).input],
                       name=f"{model.name}_with_features")


def save_model(name: str, fill: Callable[[Path], None], root: Path | None = None, overwrite: bool = False) -> Path:
    """Create models/<name>: `fill(tmp_dir)` writes everything, then it is renamed in place."""
    target = Path(root or paths.models_dir()) / check_name(name)
    if target.exists() and not overwrite:
        raise ModelError(f"a model named {name!r} already exists")
    with atomic.atomic_dir(target, replace=overwrite) as tmp:
        fill(tmp)
        read_card(tmp)  # refuse to publish a folder that would not load
    return target


def publish(folder: Path, root: Path | None = None, overwrite: bool = False) -> Path:
    """Move a finished model folder (built in a hidden staging folder) into the registry at once."""
    folder = Path(folder)
    read_card(folder)
    target = Path(root or paths.models_dir()) / check_name(folder.name)
    if target.exists() and not overwrite:
        raise ModelError(f"a model named {folder.name!r} already exists")
    atomic.move_into_place(folder, target)
    return target


def staging_dir(root: Path | None = None) -> Path:
    """A hidden folder beside the models to build one in; never listed, removed if left by a crash."""
    root = Path(root or paths.models_dir())
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".tmp-build-", dir=root))


@contextmanager
def scratch_dir(root: Path | None = None) -> Iterator[Path]:
    """A hidden temporary folder beside the models for a job's intermediate files; removed after,
    and by `remove_stale` if the process was killed."""
    root = Path(root or paths.models_dir())
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-scratch-", dir=root))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_artifact(target: Path, fill: Callable[[Path], None], required: str) -> Path:
    """Write the folder `target` atomically: `fill(tmp_dir)` must create `required` there."""
    with atomic.atomic_dir(target, replace=True) as tmp:
        fill(tmp)
        if not (tmp / required).exists():
            raise ModelError(f"writing {Path(target).name} produced no {required}")
    return Path(target)


def save_variant(model_dir: Path, precision: str, fill: Callable[[Path], None]) -> Path:
    """Write the IR of `precision` (its folder in the catalogue) atomically; `fill(tmp_dir)` must create model.xml there."""
    return save_artifact(Path(model_dir) / Path(CATALOGUE[ir_variant(precision)].file).parent, fill, "model.xml")


def remove_stale(root: Path | None = None) -> list[Path]:
    """Delete temporary folders left behind by a killed process."""
    root = Path(root or paths.models_dir())
    if not root.is_dir():
        return []
    stale = [*root.rglob(".tmp-*"), *root.rglob(".old-*")]
    for p in stale:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return stale


DEFAULT_FILE = ".default-model"  # the owner's choice of default model, if any


def default_model_name(root: Path | None = None) -> str:
    """The owner's choice; without one, the shipped default, or the light model where the server's
    memory limit is too small for the default (and the light model is there)."""
    root = Path(root or paths.models_dir())
    if (root / DEFAULT_FILE).exists():
        return (root / DEFAULT_FILE).read_text().strip()
    limit = system.memory_limit_mb()
    if limit is not None and limit < LIGHT_BELOW_MB and (root / LIGHT_MODEL).is_dir():
        return LIGHT_MODEL
    return DEFAULT_MODEL


def set_default_model(name: str, root: Path | None = None) -> None:
    root = Path(root or paths.models_dir())
    if not (root / check_name(name)).is_dir():
        raise ModelError(f"no model named {name!r}")
    atomic.write_text(root / DEFAULT_FILE, name)


def list_models(root: Path | None = None, private: bool = False) -> list[ModelEntry]:
    """Complete models only, the default first; broken folders are skipped."""
    root = Path(root or paths.models_dir())
    default = default_model_name(root)
    entries = []
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if not d.is_dir() or d.name.startswith("."):
                continue
            try:
                entries.append(ModelEntry(d.name, d, read_card(d), private))
            except ModelError:
                continue
    return sorted(entries, key=lambda e: (e.name != default, e.name))


def publish_copy(model_dir: Path, root: Path | None = None) -> Path:
    """Copy a finished model (e.g. a visitor's, in another file system) into the shared folder at once."""
    read_card(model_dir)
    return save_model(Path(model_dir).name, lambda tmp: shutil.copytree(model_dir, tmp, dirs_exist_ok=True), root)


def resolve_model_dir(name_or_path: str | Path | None = None, root: Path | None = None) -> Path:
    """A model folder from a name in the registry or a path; the default model if None."""
    if name_or_path is None:
        name_or_path = default_model_name(root)
    candidate = Path(name_or_path)
    if not candidate.is_dir():
        candidate = Path(root or paths.models_dir()) / str(name_or_path)
    read_card(candidate)
    return candidate


def delete_model(name: str, root: Path | None = None) -> None:
    target = Path(root or paths.models_dir()) / check_name(name)
    if not target.is_dir():
        raise ModelError(f"no model named {name!r}")
    trash = target.with_name(f".old-{name}-{os.getpid()}")
    os.replace(target, trash)  # unlisted at once, even if the removal below is interrupted
    shutil.rmtree(trash, ignore_errors=True)


def zip_model(model_dir: Path) -> bytes:
    """The whole model folder (Keras, IR variants, metadata) as zip bytes, for download."""
    model_dir = Path(model_dir)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(model_dir.rglob("*")):
            rel = f.relative_to(model_dir)
            if f.is_file() and not any(part.startswith(".") for part in rel.parts):
                zf.write(f, Path(model_dir.name) / rel)
    return buf.getvalue()

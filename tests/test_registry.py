import io
import json
import zipfile
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from core import atomic
from core.model import registry
from core.model.model_card import CARD_VERSION, ModelCard, Scores
from core.model.registry import ModelError

V1_CARD = Path(__file__).parent / "data" / "metadata_v1.json"  # the shipped model's card before version 2


def write_minimal(tmp, name="m"):
    (tmp / registry.KERAS_FILE).write_bytes(b"weights")
    atomic.write_json(tmp / registry.METADATA_FILE,
                      {"name": name, "arch": "tutorial_cnn", "classes": ["a", "b"], "image_size": 32})


def test_save_then_list(tmp_path):
    registry.save_model("m", write_minimal, tmp_path)
    entries = registry.list_models(tmp_path)
    assert [e.name for e in entries] == ["m"] and entries[0].variants == ["tensorflow"]


def test_interrupted_save_leaves_nothing_listed(tmp_path):
    def crash(tmp):
        write_minimal(tmp)
        raise KeyboardInterrupt  # a kill between writing files and publishing them

    with pytest.raises(KeyboardInterrupt):
        registry.save_model("m", crash, tmp_path)
    assert registry.list_models(tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_a_folder_without_a_model_is_never_published(tmp_path):
    with pytest.raises(ModelError, match="no metadata.json"):
        registry.save_model("m", lambda tmp: None, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_existing_model_is_kept_unless_overwrite(tmp_path):
    registry.save_model("m", write_minimal, tmp_path)
    with pytest.raises(ModelError, match="already exists"):
        registry.save_model("m", write_minimal, tmp_path)
    registry.save_model("m", write_minimal, tmp_path, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


@pytest.mark.parametrize("bad", ["../x", "a/b", "", ".hidden", "x" * 65])
def test_unsafe_names_are_refused(tmp_path, bad):
    with pytest.raises(ModelError, match="invalid model name"):
        registry.save_model(bad, write_minimal, tmp_path)


def test_broken_folders_are_skipped_and_stale_temps_removed(tmp_path):
    registry.save_model("good", write_minimal, tmp_path)
    (tmp_path / "no-meta").mkdir()
    (tmp_path / "bad-json").mkdir()
    (tmp_path / "bad-json" / registry.METADATA_FILE).write_text("{")
    (tmp_path / ".tmp-half-abc").mkdir()
    assert [e.name for e in registry.list_models(tmp_path)] == ["good"]
    removed = registry.remove_stale(tmp_path)
    assert [p.name for p in removed] == [".tmp-half-abc"]
    with pytest.raises(ModelError, match="unreadable"):
        registry.read_card(tmp_path / "bad-json")


def test_card_update_is_atomic_and_keeps_the_rest(tmp_path):
    path = registry.save_model("m", write_minimal, tmp_path)
    registry.update_card(path, scores={"val": Scores(10, {"tensorflow": 0.9})})
    card = registry.read_card(path)
    assert card.scores["val"].accuracy == {"tensorflow": 0.9} and card.classes == ("a", "b")
    assert json.loads((path / registry.METADATA_FILE).read_text())["card_version"] == CARD_VERSION
    assert sorted(p.name for p in path.iterdir()) == [registry.METADATA_FILE, registry.KERAS_FILE]
    with pytest.raises(FrozenInstanceError):
        card.image_size = 64


def test_a_version_1_card_still_loads_with_the_same_numbers():
    old = json.loads(V1_CARD.read_text())
    card = ModelCard.from_json(old)
    assert card.image_size == old["image_size"] and card.classes == tuple(old["classes"])
    assert card.config.fine_tune_layers == old["config"]["fine_tune_layers"]
    assert card.data.split.val == old["data"]["split"]["val"] and card.data.split.seed == old["config"]["seed"]
    for subset in ("val", "test"):
        scores = card.scores[subset]
        assert scores.n_images == old["accuracy"][subset]["n_images"]
        assert scores.accuracy["openvino-int8"] == old["accuracy"][subset]["openvino-int8"]
        assert scores.agreement_with_tf["openvino-int8"] == old["agreement_with_tf"][subset]["openvino-int8"]["top1"]
        assert "n_images" not in scores.accuracy
    assert card.conversion["int8"]["calibration_images"] == old["openvino"]["int8"]["calibration_images"]
    assert len(card.training.history) == old["training"]["epochs_run"]
    # Written again it is a version-2 card that reads back equal.
    assert ModelCard.from_json(json.loads(json.dumps(card.to_json()))) == card


def test_a_card_from_a_newer_app_or_without_its_keys_is_refused_clearly():
    with pytest.raises(ModelError, match="newer than this app"):
        ModelCard.from_json({"card_version": CARD_VERSION + 1, "name": "m", "arch": "tutorial_cnn",
                             "classes": ["a"], "image_size": 32})
    with pytest.raises(ModelError, match="lacks classes, image_size"):
        ModelCard.from_json({"name": "m", "arch": "tutorial_cnn"})


def test_variant_written_atomically(tmp_path):
    path = registry.save_model("m", write_minimal, tmp_path)

    def fail(tmp):
        (tmp / "model.xml").write_text("<half/>")
        raise RuntimeError("conversion crashed")

    with pytest.raises(RuntimeError):
        registry.save_variant(path, "int8", fail)
    assert registry.available_variants(path) == ["tensorflow"]


def test_delete_and_zip(tmp_path):
    path = registry.save_model("m", write_minimal, tmp_path)
    names = zipfile.ZipFile(io.BytesIO(registry.zip_model(path))).namelist()
    assert sorted(names) == ["m/metadata.json", "m/model.keras"]
    registry.delete_model("m", tmp_path)
    assert registry.list_models(tmp_path) == []
    with pytest.raises(ModelError, match="no model named"):
        registry.delete_model("m", tmp_path)


def test_the_catalogue_is_the_one_list_of_variants_and_runtimes():
    """Every variant's file, runtime and precision come from core.variants; each peer has a maker,
    each runtime a module a benchmark worker imports, and every variant a backend in the sweeps."""
    from core import settings
    from core.measure import bench_worker
    from core.model import peers
    from core import variants

    assert set(peers.MAKERS) == set(variants.PEER_VARIANTS)
    assert registry.VARIANTS == variants.MODEL_VARIANTS
    assert {spec.variant for spec in settings.SETUPS.values()} == set(variants.CATALOGUE) | {variants.REMOTE_SETUP}
    assert set(bench_worker.RUNTIME_MODULES) == set(variants.CATALOGUE) | {variants.REMOTE_SETUP}
    for name, variant in variants.CATALOGUE.items():
        assert variant.runtime in variants.RUNTIMES.values()
        if not variant.peer:
            assert registry.variant_path(Path("m"), name) == Path("m") / variant.file


def test_the_default_model_is_the_light_one_where_memory_is_small(tmp_path, monkeypatch):
    from core import system

    for name in (registry.DEFAULT_MODEL, registry.LIGHT_MODEL):
        (tmp_path / name).mkdir()
    monkeypatch.setattr(system, "memory_limit_mb", lambda: None)
    assert registry.default_model_name(tmp_path) == registry.DEFAULT_MODEL
    monkeypatch.setattr(system, "memory_limit_mb", lambda: 2700)
    assert registry.default_model_name(tmp_path) == registry.DEFAULT_MODEL
    monkeypatch.setattr(system, "memory_limit_mb", lambda: 690)
    assert registry.default_model_name(tmp_path) == registry.LIGHT_MODEL
    registry.set_default_model(registry.DEFAULT_MODEL, tmp_path)  # the owner's choice wins
    assert registry.default_model_name(tmp_path) == registry.DEFAULT_MODEL

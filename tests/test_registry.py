import json
import zipfile
import io

import pytest

from core import registry
from core.registry import ModelError


def write_minimal(tmp, name="m"):
    (tmp / registry.KERAS_FILE).write_bytes(b"weights")
    registry.write_json_atomic(tmp / registry.METADATA_FILE,
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
        registry.read_metadata(tmp_path / "bad-json")


def test_metadata_update_is_atomic_and_merges(tmp_path):
    path = registry.save_model("m", write_minimal, tmp_path)
    registry.update_metadata(path, {"accuracy": {"val": {"tensorflow": 0.9}}})
    meta = json.loads((path / registry.METADATA_FILE).read_text())
    assert meta["accuracy"]["val"]["tensorflow"] == 0.9 and meta["classes"] == ["a", "b"]
    assert sorted(p.name for p in path.iterdir()) == [registry.METADATA_FILE, registry.KERAS_FILE]


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

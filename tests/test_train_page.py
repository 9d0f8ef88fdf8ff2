"""The Train & Optimize page: a real (tiny) training, conversion and validation through AppTest."""

import zipfile

from conftest import app_test, make_dataset
from core import registry
from core.jobs import RUNNER


def open_train_page(monkeypatch, models):
    monkeypatch.setenv("FLOWERS_MODELS_DIR", str(models))
    return app_test("pages/train.py")


def test_train_tutorial_cnn_through_the_page(tiny_dataset, tmp_path, monkeypatch):
    models = tmp_path / "models"
    at = open_train_page(monkeypatch, models)
    at.radio(key="data_kind").set_value("Folder on the server").run()
    at.text_input(key="folder").set_value(str(tiny_dataset)).run()
    assert at.subheader[0].value == "36 images in 3 classes"
    at.selectbox(key="arch").set_value("tutorial_cnn")
    at.number_input(key="image_size").set_value(64)
    at.number_input(key="epochs").set_value(1)
    at.text_input(key="name").set_value("page-cnn")
    at.button[0].click().run()
    assert not at.exception, at.exception
    job = RUNNER.wait(600)
    assert job.kind == "training" and job.status == "done", job.error
    at.run()
    assert any("`page-cnn` is ready" in s.value for s in at.success)
    table = at.dataframe[0].value
    assert list(table["variant"]) == list(registry.VARIANTS)
    assert {"val accuracy", "single-image latency (ms)", "size (MB)"} <= set(table.columns)
    assert "page-cnn" in at.sidebar.selectbox[0].options
    assert len(job.rows) == 1 and "val_accuracy" in job.rows[0]


def test_bad_zip_and_one_class_folder_are_refused_with_a_reason(tmp_path, monkeypatch):
    at = open_train_page(monkeypatch, tmp_path / "models")
    make_dataset(tmp_path / "single", per_class=3, classes={"only": (1, 2, 3)})
    at.radio(key="data_kind").set_value("Folder on the server").run()
    at.text_input(key="folder").set_value(str(tmp_path / "single")).run()
    assert "at least 2 class folders" in at.error[0].value

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("a/x.jpg", b"x")
        zf.writestr("../../escape.jpg", b"x")
    at.radio(key="data_kind").set_value("Upload an archive of class folders").run()
    at.file_uploader[0].set_value(("evil.zip", evil.read_bytes(), "application/zip")).run()
    assert not at.exception
    assert "unsafe path" in at.error[0].value
    assert not list(tmp_path.rglob("escape.jpg"))

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import MINI_ARCHIVE, make_dataset, needs_mini
from core.model import data
from core.errors import UserError
from core.model.data import DatasetError
from core.model.recipes import TrainConfig


def test_scan_lists_classes_and_skips_non_images(tmp_path):
    root = make_dataset(tmp_path / "ds", per_class=3)
    (root / "reds" / "notes.txt").write_text("not a photo")
    (root / ".DS_Store").write_text("x")
    info = data.scan(root)
    assert info.classes == ["blues", "greens", "reds"]
    assert info.counts == {"blues": 3, "greens": 3, "reds": 3}
    assert info.skipped == ["reds/notes.txt"]


def test_one_class_is_refused(tmp_path):
    make_dataset(tmp_path / "ds", per_class=3, classes={"only": (1, 2, 3)})
    with pytest.raises(DatasetError, match="at least 2 class folders"):
        data.scan(tmp_path / "ds")


def test_empty_class_is_refused(tmp_path):
    root = make_dataset(tmp_path / "ds", per_class=3)
    (root / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty"):
        data.scan(root)


def test_split_is_seeded_stratified_and_disjoint(tiny_dataset):
    info = data.scan(tiny_dataset)
    a = data.split(info, 0.25, 0.25, seed=7)
    b = data.split(info, 0.25, 0.25, seed=7)
    c = data.split(info, 0.25, 0.25, seed=8)
    assert a.train == b.train and a.val == b.val and a.test == b.test
    assert a.val != c.val
    assert a.sizes() == {"train": 18, "val": 9, "test": 9}
    assert sorted(label for _, label in a.val) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    files = [p for p, _ in a.train + a.val + a.test]
    assert len(files) == len(set(files)) == 36


def test_validation_folds_rotate_the_validation_photos_and_never_the_held_out_ones(tiny_dataset):
    info = data.scan(tiny_dataset)  # 12 photos per class: 3 val, 3 held out, 6 train
    folds = [data.split(info, 0.25, 0.25, seed=7, val_fold=k) for k in range(3)]
    assert folds[0] == data.split(info, 0.25, 0.25, seed=7)  # fold 0 is the plain split
    for f in folds:
        assert f.test == folds[0].test and f.sizes() == {"train": 18, "val": 9, "test": 9}
        assert set(f.train + f.val) == set(folds[0].train + folds[0].val)
    vals = [{p for p, _ in f.val} for f in folds]
    assert not (vals[0] & vals[1] or vals[0] & vals[2] or vals[1] & vals[2])  # 3 disjoint validation sets
    with pytest.raises(DatasetError, match="validation fold 3 needs 12 photos"):
        data.split(info, 0.25, 0.25, seed=7, val_fold=3)
    with pytest.raises(UserError, match="validation fold must be 0"):
        TrainConfig(val_fold=-1)


def test_unreadable_files_are_reported_not_fatal(tiny_dataset, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8garbage")
    items = [(bad, 0)] + [(p, 1) for p in sorted((tiny_dataset / "greens").glob("*.jpg"))[:2]]
    images, labels, errors = data.load_arrays(items, 32)
    assert images.shape == (2, 32, 32, 3) and list(labels) == [1, 1]
    assert len(errors) == 1 and "broken.jpg" in errors[0]


def _zip(path, entries):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, payload in entries.items():
            zf.writestr(name, payload)
    return path


def test_zip_of_class_folders_is_extracted_once(tmp_path, tiny_dataset):
    archive = tmp_path / "mine.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in tiny_dataset.rglob("*.jpg"):
            zf.write(f, f"my_photos/{f.relative_to(tiny_dataset)}")
    root = data.resolve(archive, cache=tmp_path / "cache")
    assert root.name == "my_photos" and data.scan(root).n_images == 36
    assert data.resolve(archive, cache=tmp_path / "cache") == root


@pytest.mark.parametrize("name", ["../evil.jpg", "a/../../evil.jpg", "/tmp/evil.jpg"])
def test_zip_with_paths_outside_is_refused(tmp_path, name):
    archive = _zip(tmp_path / "bad.zip", {"ok/a.jpg": b"x", name: b"x"})
    with pytest.raises(DatasetError, match="unsafe path"):
        data.resolve(archive, cache=tmp_path / "cache")
    assert not (tmp_path / "evil.jpg").exists()
    assert not list((tmp_path / "cache" / "datasets").iterdir())  # no half extraction left behind


def test_tar_with_paths_outside_is_refused(tmp_path):
    archive = tmp_path / "bad.tgz"
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo("../escape.jpg")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(DatasetError, match="unsafe"):
        data.resolve(archive, cache=tmp_path / "cache")
    assert not (tmp_path / "escape.jpg").exists()


def test_zip_bomb_is_refused_by_declared_size(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MAX_EXTRACTED_BYTES", 1_000_000)
    archive = _zip(tmp_path / "bomb.zip", {"a/big.jpg": b"\0" * 2_000_000, "b/x.jpg": b"x"})
    assert archive.stat().st_size < 100_000
    with pytest.raises(DatasetError, match="would unpack"):
        data.resolve(archive, cache=tmp_path / "cache")


def test_not_an_archive_is_refused(tmp_path):
    fake = tmp_path / "photos.zip"
    fake.write_text("hello")
    with pytest.raises(DatasetError, match="not a readable zip"):
        data.resolve(fake, cache=tmp_path / "cache")
    with pytest.raises(DatasetError, match="no such file"):
        data.resolve(tmp_path / "missing.tgz", cache=tmp_path / "cache")


@needs_mini
def test_official_url_uses_the_owners_mirror_without_a_request(tmp_path, monkeypatch):
    """Offline servers (and these tests) point FLOWERS_DATASET_MIRROR at a copy of the official archive."""
    monkeypatch.setenv(data.MIRROR_ENV, str(MINI_ARCHIVE))
    events = []
    root = data.resolve(data.OFFICIAL_URL, cache=tmp_path / "cache", progress=events.append)
    assert not (tmp_path / "cache" / "downloads").exists()
    assert any(e.stage == "extract" for e in events)
    info = data.scan(root)
    assert info.classes == ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    assert set(info.counts.values()) == {20}


def test_training_photos_are_read_back_without_being_mapped(tiny_dataset, tmp_path):
    """The decoded training set is read a batch at a time from its file (page cache the kernel may
    drop), not mapped into the job: mapped pages would count as the job's own memory."""
    from core.model import training
    from core.model.recipes import TrainConfig

    cfg = TrainConfig(arch="tutorial_cnn", image_size=32, val_fraction=0.25)
    prepared = training.load_and_split(tiny_dataset, cfg, tmp_path)
    backing = tmp_path / "train.npy"
    assert str(backing) not in Path("/proc/self/maps").read_text()
    rows = np.array([3, 0, len(prepared.y_train) - 1])
    assert np.array_equal(prepared.x_train[rows], np.load(backing)[rows])
    assert len(prepared.x_train) == len(prepared.y_train) and prepared.x_train.shape[1:] == (32, 32, 3)

"""Every hostile or awkward input gets a clear message or a correct result, never a crash."""

from pathlib import Path

import pytest

from conftest import app_test, results_table
from core.model import data
from core.model.data import DatasetError
from core.runtimes.predict import Predictor
from corpus import image_corpus, zip_corpus
from fakes import fake_predictor  # noqa: F401  (a fixture)

IMAGES = image_corpus()
ZIPS = zip_corpus()


def test_the_corpus_covers_every_named_hazard_with_its_expected_outcome():
    """Each hazard the reliability issue names is in the corpus, expecting the right answer
    (a refusal with a reason, or a correct prediction); the tests below hold each one to it."""
    expected_images = {
        "zero_bytes.jpg": "empty", "truncated_half.jpg": "corrupt", "elf_renamed.jpg": "not an image",
        "bomb_30000.png": "limit", "bomb_wide.png": "limit",  # decompression bombs
        "cmyk.jpg": "ok", "png16.png": "ok", "exif_rotated.jpg": "ok", "animated.gif": "ok", "rgba.png": "ok",
    }
    expected_zips = {
        "dotdot.zip": "unsafe path", "absolute.zip": "unsafe path", "zip_bomb.zip": "would unpack",
        "non_utf8_names.zip": "ok", "not_a_zip.zip": "not a readable zip",
    }
    assert {n: IMAGES[n][1].split()[0] if IMAGES[n][1] == "corrupt or truncated" else IMAGES[n][1]
            for n in expected_images} == expected_images
    assert {n: ZIPS[n][1] for n in expected_zips} == expected_zips
    assert len(IMAGES) >= 30 and len(ZIPS) >= 10


@pytest.fixture(scope="module")
def predictor(tiny_model):
    return Predictor(tiny_model)


@pytest.mark.parametrize("name", list(IMAGES))
def test_predict_path(predictor, name):
    payload, expected = IMAGES[name]
    result = predictor.classify(name, payload)
    if expected == "ok":
        assert result.error is None and set(result.results) == set(predictor.backends)
    else:
        assert result.error is not None and expected in result.error, result.error
        assert not result.results


def test_one_upload_with_every_bad_file_still_predicts_the_good_ones(tiny_model, monkeypatch, fake_predictor):
    """Layout and messages: each bad file its own error, each good one an answer (fixed answers)."""
    monkeypatch.setenv("FLOWERS_MODELS_DIR", str(tiny_model.parent))
    at = app_test("app_pages/predict.py", timeout=300)
    at.file_uploader(key="photos").set_value([(name, payload, "application/octet-stream") for name, (payload, _) in IMAGES.items()])
    at.run()
    assert not at.exception, at.exception
    bad = [n for n, (_, e) in IMAGES.items() if e != "ok"]
    errors = [e.value for e in at.error]
    assert len(errors) == len(bad)
    for name in bad:
        assert any(f"**{name}**" in e and IMAGES[name][1] in e for e in errors), name
    answered = len(at.success) + len(at.warning)
    assert answered == len(IMAGES) - len(bad)
    table = results_table(at)
    assert len(table) == len(IMAGES) and (table["verdict"] == "error").sum() == len(bad)


@pytest.mark.parametrize("name", list(ZIPS))
def test_dataset_import_path(name, tmp_path):
    payload, expected = ZIPS[name]
    archive = tmp_path / "upload" / name
    archive.parent.mkdir()
    archive.write_bytes(payload)
    cache = tmp_path / "cache"
    before = set(Path("/tmp").iterdir())
    if expected == "ok":
        info = data.scan(data.resolve(archive, cache=cache))
        assert info.classes == ["a", "b"] and info.n_images >= 6
    else:
        with pytest.raises(DatasetError, match=expected):
            data.scan(data.resolve(archive, cache=cache))
    written = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_relative_to(cache)]
    assert written == [archive]  # nothing outside the cache, apart from the upload itself
    assert not [p for p in set(Path("/tmp").iterdir()) - before if "evil" in p.name]
    assert not (Path("/tmp") / "evil.jpg").exists()


def test_bad_images_inside_a_dataset_are_skipped_and_reported(tmp_path):
    from conftest import make_dataset

    root = make_dataset(tmp_path / "ds", per_class=3)
    for name, (payload, expected) in list(IMAGES.items())[:6]:
        (root / "reds" / name).write_bytes(payload)
    info = data.scan(root)
    items = [(f, 0) for f in info.files["reds"]]
    images, labels, bad = data.load_arrays(items, 32)
    assert len(images) == 3 and len(bad) == 6
    assert all(":" in b for b in bad)


def test_a_visitors_class_names_show_as_themselves_in_the_top_k_table():
    """A model trained on a visitor's photos names its classes after their folders: markdown in a name
    is shown as text, and a `|` does not break the table."""
    from core.runtimes.predict import ImageResult, SetupResult
    from core.timing import Timing

    probabilities = {"a|b": 0.7, "*bold* [link](x)": 0.2, "plain": 0.1}
    result = ImageResult("x.jpg", {s: SetupResult(s, probabilities, Timing((0.001,)))
                                   for s in ("tensorflow", "openvino-int8")})
    lines = result.top_k_table(2).splitlines()
    assert lines[0] == "| class | TensorFlow | OpenVINO INT8 |" and len(lines) == 4
    assert lines[2] == r"| a\|b | 70.0% | 70.0% |"
    assert lines[3] == r"| \*bold\* \[link\](x) | 20.0% | 20.0% |"

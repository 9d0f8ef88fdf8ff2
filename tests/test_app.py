"""The pages through Streamlit's AppTest, on the shipped model."""

import io
import re

import pytest
from PIL import Image
from conftest import app_test, mini_photo, needs_mini, results_table, wait_until_loaded
from fakes import fake_predictor  # noqa: F401  (a fixture)

from core.model import registry
from core.model.registry import read_card


def start(page: str | None = None):
    return app_test(page)


def test_home_leads_with_the_measured_result_and_an_invitation_then_the_card(shipped_model):
    at = start()
    assert at.title[0].value.endswith("Flowers: TensorFlow → OpenVINO")
    text = " ".join(m.value for m in at.markdown)
    # The result, from the run shipped with the model (never a typed number), with its machine and date.
    from core.measure import headline
    from core.model.registry import ModelEntry, read_card

    result = headline.find(ModelEntry(shipped_model.name, shipped_model, read_card(shipped_model)), [])
    assert result is not None and result.speedup > 1 and result.memory_ratio > 1
    assert result.sentence() in text and f"{result.speedup:.1f}× faster" in text
    assert any(result.machine in c.value and "Measured 20" in c.value for c in at.caption)
    assert any(c.proto.spec and "ms per photo" in c.proto.spec for c in at.get("plotly_chart"))
    assert at.button[0].label == "Try it on a photo"
    # The card in words a visitor reads: labels, percentages, no None.
    table = next(m.value for m in at.markdown if m.value.startswith("| variant"))
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    assert [r[0] for r in rows] == ["TensorFlow", "OpenVINO FP32", "OpenVINO FP16", "OpenVINO INT8"]
    assert all(re.fullmatch(r"9\d\.\d% \(\d+\.\d%–\d+\.\d%\)", r[2]) for r in rows)
    assert "None" not in table and rows[0][-1] == "—"
    assert "knows only 5 kinds" in text and "of other flowers" in text  # the scope, with measured shares
    assert at.selectbox(key="model-selector").value.endswith(f"/{registry.DEFAULT_MODEL}")
    assert "Role: **visitor**" in at.sidebar.info[0].value  # nothing configured: safe by default
    assert [b.proto.label for b in at.get("download_button")] == ["Download for OpenVINO Model Server"]

    at.toggle(key="whole-card").set_value(True).run()  # the rest of the card, on request
    text = " ".join(m.value for m in at.markdown)
    assert "Precision the CPU plugin picks by default" in text
    assert "Precision this app runs OpenVINO in: **f32**" in text
    assert "294 photos" in text and "Wilson" in text  # the held-out split's size, and the interval's kind
    assert any("predicted" in c.proto.spec for c in at.get("plotly_chart"))


def test_try_it_opens_predict_with_an_example_answered(shipped_model, fake_predictor):
    at = start()
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert at.session_state["example"] == "daisy"
    assert any("daisy" in s.value and "kinds this model knows" in s.value for s in at.success)
    assert any("Flickr photo" in c.value and "CC BY 2.0" in c.value for c in at.caption)  # the photo's credit


@needs_mini
@pytest.mark.parametrize("cls", ["daisy", "sunflowers"])
def test_predict_shows_agreeing_answers_and_bad_files_get_a_message(shipped_model, cls):
    at = start("app_pages/predict.py")
    wait_until_loaded()
    at.file_uploader(key="photos").set_value([
        (f"{cls}.jpg", mini_photo(cls), "image/jpeg"),
        ("broken.jpg", b"\xff\xd8\xff\xe0 truncated", "image/jpeg"),
        ("empty.png", b"", "image/png"),
    ]).run()
    assert not at.exception, at.exception
    [verdict] = [s.value for s in at.success]
    from core.runtimes.predict import default_setups

    n = len(default_setups(registry.list_models()[0].path))  # what the page runs by default
    assert n >= 3 and verdict.startswith(f"**{cls}**, one of the 5 kinds this model knows — all {n} backends agree, "
                                         "calibrated confidence ")
    [top_k] = [m.value for m in at.markdown if m.value.startswith("| class |")]  # each backend's top 3, in words
    assert "OpenVINO INT8" in top_k and top_k.splitlines()[2].startswith(f"| {cls} |") and len(top_k.splitlines()) == 5
    errors = [e.value for e in at.error]
    assert any("broken.jpg" in e and "corrupt" in e for e in errors)
    assert any("empty.png" in e and "empty" in e for e in errors)
    table = results_table(at)
    assert list(table["file"]) == [f"{cls}.jpg", "broken.jpg", "empty.png"]
    assert list(table["verdict"]) == [cls, "error", "error"] and table.loc[0, "openvino-int8 class"] == cls


def test_predict_without_upload_offers_examples_with_their_credits(shipped_model, fake_predictor):
    at = start("app_pages/predict.py")
    assert any("Tap an example, or upload" in i.value for i in at.info)
    pills = at.get("button_group")[0]
    assert pills.proto.options and [o.content for o in pills.proto.options] == [
        "daisy", "dandelion", "roses", "sunflowers", "tulips", "not a flower"]
    from core.app import examples

    catalogue = examples.load()
    for example in catalogue.photos:  # every photo is there, credited and licensed as the rules allow
        assert example.path.is_file() and example.licence in ("CC BY 2.0", "CC0 1.0") and example.link.startswith("https://")
    photos, held_out = catalogue.for_model(read_card(shipped_model))
    assert held_out and len(photos) == 6



def test_predictions_are_kept_until_measured_again(shipped_model, fake_predictor, monkeypatch):
    """Moving the top-k slider redraws the kept results; "Measure again" times the photos anew."""
    calls = []
    original = fake_predictor.classify
    monkeypatch.setattr(fake_predictor, "classify", lambda self, *a, **k: calls.append(a[0]) or original(self, *a, **k))
    at = start("app_pages/predict.py")
    photo = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 40, 40)).save(photo, "PNG")
    at.file_uploader(key="photos").set_value([("red.png", photo.getvalue(), "image/png")]).run()
    assert calls == ["red.png"]
    assert any("first call" in c.value for c in at.caption)
    at.slider(key="top-k").set_value(1).run()
    assert calls == ["red.png"]  # redrawn, not measured again
    assert [len(m.value.splitlines()) for m in at.markdown if m.value.startswith("| class |")] == [3]  # one class
    at.button(key="measure-again").click().run()
    assert calls == ["red.png", "red.png"]


def test_a_model_loading_in_the_background_is_shared_and_a_failed_load_is_retried(shipped_model, fake_predictor,
                                                                                  monkeypatch):
    """Home starts loading Predict's backends after it is drawn; Predict waits for that same load.
    A load that fails is not kept: the next page run tries again."""
    import app_pages.predictors as predictors
    from core.model.registry import ModelEntry, read_card

    entry = ModelEntry(shipped_model.name, shipped_model, read_card(shipped_model))
    variants, settings = predictors.predict_defaults(entry)
    predictors.start_loading(entry, variants, settings)
    first = predictors.predictor(entry, variants, settings)
    assert predictors.predictor(entry, variants, settings) is first

    attempts = []

    def flaky(*args, **kwargs):
        attempts.append(args)
        if len(attempts) == 1:
            raise RuntimeError("the disk hiccuped")
        return fake_predictor(*args, **kwargs)

    monkeypatch.setattr(predictors, "Predictor", flaky)
    other = [v for v in variants if v != variants[0]]
    with pytest.raises(RuntimeError):
        predictors.predictor(entry, other, settings)
    assert predictors.predictor(entry, other, settings).backends.keys() == set(other)
    assert len(attempts) == 2

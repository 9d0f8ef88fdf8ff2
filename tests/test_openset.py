"""Open-set rejection and temperature scaling: the maths on known cases, then the shipped model."""

import io
import json
from dataclasses import asdict

import numpy as np
import pytest
from PIL import Image
from conftest import app_test, mini_photo, needs_lite0, needs_mini, results_table

from core.runtimes.predict import NOT_ONE_OF_THEM
from core.model import imagenet, openset, registry
from core.quality import calibrate


def test_temperature_scaling_works_on_probabilities_as_on_logits():
    logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    expected = np.exp(logits / 2) / np.exp(logits / 2).sum(1, keepdims=True)
    assert openset.scale(probs, 2.0) == pytest.approx(expected)


def test_fitting_recovers_the_temperature_that_made_overconfident_answers():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (4000, 5))
    true = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(5, p=p) for p in true])  # labels drawn from the true probabilities
    overconfident = openset.scale(true, 0.5)  # as a model with logits twice too large would say
    assert openset.fit_temperature(overconfident, labels) == pytest.approx(2.0, rel=0.1)
    assert openset.expected_calibration_error(true, labels) < 0.03 < openset.expected_calibration_error(overconfident,
                                                                                                         labels)


def test_auroc_and_false_positives_at_95_percent_true_positives():
    flowers, others = np.linspace(0.5, 1.0, 100), np.array([0.1, 0.2, 0.6, 0.99])
    assert openset.auroc(flowers, np.array([0.0, 0.1])) == 1.0
    assert openset.auroc(np.array([0.5]), np.array([0.5])) == 0.5
    assert openset.fpr_at_tpr(flowers, others) == 0.5  # 0.6 and 0.99 pass the threshold that keeps 95% of flowers


def photo_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_the_shipped_model_says_when_a_picture_is_not_a_flower(shipped_model):
    calibration = openset.from_card(registry.read_card(shipped_model).openset)
    assert calibration is not None and calibration.fitted_on.startswith("val")
    m = calibration.measured["variants"]
    assert set(m) == set(registry.available_variants(shipped_model))  # the same score for every variant
    assert m["tensorflow"]["ece_after"] < m["tensorflow"]["ece_before"]
    noise = np.random.default_rng(1).integers(0, 256, (300, 300, 3), np.uint8)
    blue = np.full((300, 300, 3), (20, 60, 200), np.uint8)
    at = app_test("app_pages/predict.py")
    at.file_uploader(key="photos").set_value([("noise.png", photo_bytes(noise), "image/png"),
                                              ("blue.png", photo_bytes(blue), "image/png"),
                                              ("cat.png", photo_bytes(skimage_photo("chelsea")), "image/png")]).run()
    assert not at.exception, at.exception
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 3 and all(w.startswith("This does not look like one of: daisy, dandelion")
                                      for w in warnings[:2])
    # Where the ImageNet classifier is sure, the page says what the photo looks like instead.
    assert warnings[2].startswith("This looks like **Egyptian cat**") and "not one of: daisy" in warnings[2]
    assert all("for every backend" in w for w in warnings)  # the ImageNet check decides: one score, said once
    assert not at.success  # no confident class for any
    table = results_table(at)
    assert list(table["verdict"]) == [NOT_ONE_OF_THEM] * 3  # the table and its CSV carry it, not a class
    assert table["looks like (ImageNet)"].tolist()[2] == "Egyptian cat"


def skimage_photo(name: str) -> np.ndarray:
    import skimage.data

    return np.asarray(getattr(skimage.data, name)())


@needs_lite0
@needs_mini
def test_every_backend_gives_the_same_verdict_with_the_imagenet_check(shipped_model):
    """TensorFlow and the OpenVINO variants the folder ships, INT8 included, on real photos of
    flowers and of other things: one verdict per photo, and the ImageNet check names what it is
    sure of. (The FP32 IR, remade on first use, is TensorFlow's network to 1e-4: test_pipeline.)"""
    from core.runtimes import predict

    calibration = openset.from_card(registry.read_card(shipped_model).openset, shipped_model)
    assert calibration.imagenet is not None and calibration.in_use == openset.IMAGENET
    predictor = predict.Predictor(shipped_model, ["tensorflow", "openvino-fp16", "openvino-int8"])
    assert predictor.judge is not None and predictor.threshold == calibration.imagenet.threshold
    assert set(predictor.backends) == {"tensorflow", "openvino-fp16", "openvino-int8"}
    photos = {f"{cls}.jpg": mini_photo(cls, 1) for cls in ("daisy", "dandelion", "roses", "sunflowers", "tulips")}
    photos |= {f"{name}.png": photo_bytes(skimage_photo(name)) for name in ("chelsea", "coffee", "astronaut", "rocket")}
    verdicts = {}
    for name, data in photos.items():
        result = predictor.classify(name, data, repeats=1)
        assert len({r.known for r in result.results.values()}) == 1, (name, result.to_dict())
        verdicts[name] = result.known
        assert result.imagenet_ms > 0
        if name == "chelsea.png":
            assert result.looks_like.label == "Egyptian cat" and result.looks_like.probability > 0.5
        if name == "coffee.png":
            assert result.looks_like.label == "espresso"
    assert sum(verdicts[f"{cls}.jpg"] for cls in ("daisy", "dandelion", "roses", "sunflowers", "tulips")) >= 4
    assert not any(verdicts[f"{name}.png"] for name in ("chelsea", "coffee", "astronaut", "rocket"))


def test_the_imagenet_check_is_fitted_on_flowers_and_kept_with_the_model(tmp_path):
    """Photos near some training photos in the ImageNet features are typical, a photo unlike all of
    them is not; the threshold keeps 95% of the flowers it was fitted on; the card and the model's
    folder keep it (the features in 8 bits); a confident other class is named, an unsure one is not;
    a card from before the check had its file decides without it."""
    rng = np.random.default_rng(0)
    kinds = rng.uniform(0, 1, (6, 1280)) * (rng.uniform(0, 1, (6, 1280)) < 0.1)  # sparse, as after ReLU6

    def opinion(centres: np.ndarray, n: int) -> imagenet.Opinion:
        features = centres[rng.integers(0, len(centres), n)] + rng.uniform(0, 0.05, (n, 1280))
        p = rng.dirichlet(np.full(1000, 0.05), n) * 0.4
        p[:, 985] += 0.6  # daisy
        return imagenet.Opinion(p, features)

    training, flowers = opinion(kinds, 300), opinion(kinds, 400)
    check = openset.ImageNetCheck.fit(training, flowers)
    assert 985 in check.kin and len(check.reference) == openset.QUANTILES
    assert list(check.reference) == sorted(check.reference)
    assert 0.92 < np.mean(check.typicality(opinion(kinds, 2000)) >= check.threshold) < 0.98
    cat_probabilities = np.full((1, 1000), 0.0002)
    cat_probabilities[0, 285] = 1 - cat_probabilities.sum() + cat_probabilities[0, 285]  # Egyptian cat
    cat = imagenet.Opinion(cat_probabilities, rng.uniform(0, 1, (1, 1280)))
    assert check.typicality(cat)[0] == 0.0 and check.looks_like(cat).label == "Egyptian cat"
    unsure = imagenet.Opinion(np.full((1, 1000), 0.001), cat.features)
    assert check.looks_like(unsure) is None  # nothing confident: nothing named

    calibration = openset.Calibration(1.0, 0.05, openset.MAHALANOBIS, imagenet=check)
    card = json.loads(json.dumps(calibration.to_card()))
    check.save(tmp_path / openset.NEIGHBOURS_FILE)
    again = openset.from_card(card, tmp_path)
    assert again.imagenet == check and again.in_use == openset.IMAGENET
    assert (tmp_path / openset.NEIGHBOURS_FILE).stat().st_size < 300 * 1280  # at most a byte each
    probe = opinion(kinds, 50)
    np.testing.assert_allclose(again.imagenet.typicality(probe), check.typicality(probe), atol=1e-6)
    del card["imagenet"]["neighbours"]  # as a card written before the ImageNet features decided
    assert openset.from_card(card, tmp_path).imagenet is None
    assert openset.from_card(json.loads(json.dumps(calibration.to_card()))).imagenet is None  # no folder: no file


def test_home_shows_the_calibration_and_its_reliability_diagram(shipped_model):
    at = app_test()
    at.toggle(key="whole-card").set_value(True).run()  # the card's details, drawn on request
    assert not at.exception, at.exception
    text = " ".join(m.value for m in at.markdown)
    assert "brings the expected calibration error on the held-out split from" in text
    accepted = registry.read_card(shipped_model).openset["measured"]["variants"]["tensorflow"]["non_flowers_accepted"]
    assert all(name in text for name in accepted)  # which pictures pass, by name, not only how many
    assert any("Is the stated confidence right?" in c.proto.spec for c in at.get("plotly_chart"))
    # The candidate scores, measured, with the one in use marked.
    candidates = next(d.value for d in at.dataframe if "score" in d.value.columns)
    used = candidates[candidates["used"]]["score"].tolist()
    assert len(candidates) == 5 and len(used) == 1 and used[0] == openset.SCORE_NAMES[openset.IMAGENET]
    # Measured on real photos of other things (`openset-eval --record`): per kind, as recorded on the card.
    kinds = next(d.value for d in at.dataframe if "kind" in d.value.columns)
    recorded = registry.read_card(shipped_model).openset["evaluated"]["report"]
    [in_use] = [s for s in recorded["scores"] if s["in_use"]]
    assert kinds["kind"].tolist() == [r["kind"] for r in in_use["at_model"]] and "cats and dogs" in kinds["kind"].tolist()
    assert kinds["taken for a flower"].tolist() == [r["accepted"] for r in in_use["at_model"]]


def test_the_distance_knows_the_classes_and_not_what_is_far_from_them(tmp_path):
    """Three tight classes in 20 dimensions: points near them are typical, points elsewhere are not;
    the file keeps it (the projection in float16)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 5, (3, 20))
    labels = np.repeat(np.arange(3), 200)
    features = centres[labels] + rng.normal(0, 1, (600, 20))
    distance = openset.fit_distance(features, labels, 3, k=8)
    val = centres[np.repeat(np.arange(3), 50)] + rng.normal(0, 1, (150, 20))
    distance = openset.Distance(distance.projection, distance.means, np.sort(distance.distance(val)))
    near = centres[[0, 1, 2]] + rng.normal(0, 1, (3, 20))
    far = rng.normal(0, 5, (3, 20)) + 12
    assert (distance.typicality(near) > 0.05).all() and (distance.typicality(far) < 0.05).all()
    distance.save(tmp_path / "openset.npz")
    again = openset.Distance.load(tmp_path / "openset.npz")
    np.testing.assert_allclose(again.typicality(near), distance.typicality(near), atol=0.02)


def test_calibrating_a_model_chooses_a_score_by_measurement_and_every_runtime_computes_it(tiny_model, tmp_path,
                                                                                         capsys):
    import shutil

    from core.runtimes import predict

    model = tmp_path / "tiny"
    shutil.copytree(tiny_model, model)
    calibration = calibrate.calibrate(model)
    measured = calibration.measured
    assert set(measured["candidates"]) == {"msp", "energy", "mahalanobis", "mahalanobis-all", openset.IMAGENET}
    assert calibration.score == max(("msp", "mahalanobis"), key=lambda s: measured["candidates"][s]["auroc"])
    # The IR has the features output, so every variant gets the same kind of score.
    assert set(measured["variants"]) == set(registry.available_variants(model))
    assert (model / openset.DISTANCE_FILE).exists()
    assert (model / openset.NEIGHBOURS_FILE).exists() == (calibration.imagenet is not None)
    loaded = openset.from_card(registry.read_card(model).openset, model)
    assert loaded.distance is not None and loaded.threshold == calibration.threshold
    predictor = predict.Predictor(model)
    photo = np.full((64, 64, 3), (200, 40, 40), np.uint8)
    results = predictor.classify("red.png", photo_bytes(photo)).results
    assert all(r.known_score is not None for r in results.values())
    scores = [r.known_score for r in results.values()]
    assert max(scores) - min(scores) < 0.1  # TensorFlow and the IRs see the same photo alike

    # Measured on a folder of other pictures, a subfolder per kind: the in-use score's verdicts at the model's
    # threshold are Predict's own, photo by photo.
    others = tmp_path / "others"
    rng = np.random.default_rng(7)
    pictures = {"noise": [rng.integers(0, 256, (80, 80, 3), np.uint8) for _ in range(4)],
                "greys": [np.full((80, 80, 3), g, np.uint8) for g in (30, 90, 150, 210)]}
    for kind, arrays in pictures.items():
        (others / kind).mkdir(parents=True)
        for i, array in enumerate(arrays):
            (others / kind / f"{i}.png").write_bytes(photo_bytes(array))
    report = calibrate.evaluate_on(model, others)
    joined = {openset.IMAGENET} if calibration.imagenet is not None else set()
    assert {s.score for s in report.scores} == {"msp", "mahalanobis"} | joined
    assert report.flowers > 0
    [used] = [s for s in report.scores if s.in_use]
    assert used.score == calibration.in_use and 0 < used.flowers_kept_at_model <= 1
    assert [(r.kind, r.photos) for r in used.at_95] == [("greys", 4), ("noise", 4), ("all", 8)]
    taken = [predictor.classify(f"{kind}{i}.png", photo_bytes(a)).results["tensorflow"].known
             for kind in ("greys", "noise") for i, a in enumerate(pictures[kind])]
    assert used.at_model[-1].accepted == sum(taken) / len(taken)
    from core import cli

    capsys.readouterr()
    assert cli.main(["openset-eval", "--model-dir", str(model), "--data", str(others), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["scores"] == json.loads(json.dumps(asdict(report)))["scores"]

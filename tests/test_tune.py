"""Tune on the tiny model: the search, the accuracy guard, the saved winners, and where they show."""

import json
import shutil

import pytest

from conftest import app_test
from core.measure import tune
from core.model import evaluate, registry
from core.runtimes.backends import device_info


@pytest.fixture(scope="module")
def tuned_model(tiny_model, tmp_path_factory):
    """A copy of the tiny model (tuning writes into the model folder), tuned briefly."""
    root = tmp_path_factory.mktemp("tuned")
    model = root / "tiny"
    shutil.copytree(tiny_model, model)
    return model


def test_tune_guards_measures_and_saves_the_winners(tuned_model, monkeypatch):
    calls, rows = [], []
    score = evaluate.score_variants

    def counted(model_dir, images, labels, variants=None, ov_settings=None, progress=None):
        calls.append(ov_settings.precision)
        return score(model_dir, images, labels, variants, ov_settings)

    monkeypatch.setattr(evaluate, "score_variants", counted)
    result = tune.tune(tuned_model, "both", budget_s=10, variants=["openvino-fp32", "openvino-int8"],
                       peer_variants=["litert"], on_candidate=rows.append)
    precisions = tune.native_precisions(device_info()["capabilities"])
    assert calls == precisions  # the guard ran once per precision (every variant at once), not per setup
    assert json.loads((tuned_model / tune.TUNED_FILE).read_text()) == json.loads(json.dumps(result))
    assert len(result["candidates"]) >= 2
    assert all(c in rows for c in json.loads(json.dumps(result["candidates"])))  # re-measured setups: rows > candidates
    assert set(result["objectives"]) == {"latency", "throughput"}
    for c in result["candidates"]:
        assert set(c["setup"]) >= {"variant", "precision", "hint", "streams", "requests", "batch", "shape", "pinning"}
        if c["runtime"] == "litert":  # the peer, over its thread counts
            assert c["setup"]["variant"] == "litert" and c["setup"]["threads"] is not None
            continue
        assert c["setup"]["variant"] in ("openvino-fp32", "openvino-int8") and c["setup"]["precision"] in precisions
        assert c["eligible"] == (c["reason"] == "")
        fp32 = c["setup"]["variant"] == "openvino-fp32" and c["setup"]["precision"] == "f32"
        assert not fp32 or c["eligible"], c  # FP32 in f32 is TensorFlow's answer: always within the budget
    for objective, best in result["objectives"].items():
        if best is not None:
            assert best["eligible"] and best["objective"] == objective and best["runtime"] == "openvino"
    # LiteRT f32 gives TensorFlow's answers: within the budget, so it is the best peer to beat.
    assert {p["runtime"] for p in result["best_peers"].values()} == {"litert"}
    lines = tune.recommendation(result)
    assert sum("the best peer within the same accuracy budget" in line for line in lines) == 2
    assert result["machine"]["capabilities"] == device_info()["capabilities"]


def test_a_setup_that_crashes_is_left_out_and_the_search_goes_on(tuned_model, monkeypatch):
    """Some setups abort on some CPUs; a worker that dies is reported, not the end of the tuning."""
    real = tune.benchmark.measure_backend

    def crashing_with_one_stream(key, spec, *args, **kwargs):
        if spec.ov.streams == 1:
            return {"label": spec.label, "error": "terminate called without an active exception"}
        return real(key, spec, *args, **kwargs)

    monkeypatch.setattr(tune.benchmark, "measure_backend", crashing_with_one_stream)
    result = tune.tune(tuned_model, "throughput", budget_s=5, variants=["openvino-fp32"], peer_variants=[])
    assert result["failed"] and all("streams 1," in f["label"] for f in result["failed"])
    assert result["objectives"]["throughput"] is not None
    assert all(c["setup"]["streams_requested"] is None for c in result["candidates"])
    assert any("failed to run on this machine" in line for line in tune.recommendation(result))


def test_the_guard_rejects_with_a_reason():
    guard = tune.Guard(accuracy=0.88, agreement_with_tf=0.999, tf_accuracy=0.90, n_images=100)
    assert "more than 1% below TensorFlow's 90.0%" in guard.reason
    assert "agreement" in tune.Guard(0.90, 0.985, 0.90, 100).reason
    assert tune.Guard(0.895, 0.995, 0.90, 100).reason is None


def test_pareto_front_keeps_only_undominated_eligible_setups():
    def c(p50, ips, eligible=True):
        return {"p50_ms": p50, "throughput_ips": ips, "eligible": eligible}

    fast, bulk, dominated, excluded = c(1.0, 500), c(5.0, 900), c(2.0, 400), c(0.5, 2000, eligible=False)
    assert tune.pareto([fast, bulk, dominated, excluded]) == [fast, bulk]


def tuned_file(model, precision: str) -> None:
    """A saved tuning whose latency winner runs in `precision` (made from the real run in docs/tune)."""
    saved = json.loads((tune.Path(__file__).parent.parent / "docs" / "tune" / "tuned.json").read_text())
    winner = saved["objectives"]["latency"] | {}
    winner["setup"] = winner["setup"] | {"variant": "openvino-fp32", "precision": precision}
    (model / tune.TUNED_FILE).write_text(json.dumps(saved | {"objectives": {"latency": winner}}))


def test_predict_offers_the_tuned_setup_only_where_its_precision_is_native(tuned_model, tmp_path):
    from core.runtimes.predict import TUNED_LATENCY, Predictor, offered_setups

    model = tmp_path / "tiny"
    shutil.copytree(tuned_model, model)
    tuned_file(model, "f32")
    assert offered_setups(model)[-1] == TUNED_LATENCY
    predictor = Predictor(model, ["openvino-fp32", TUNED_LATENCY])
    assert predictor.backends[TUNED_LATENCY].settings()["hint"] == "LATENCY"
    if "BF16" not in device_info()["capabilities"]:
        tuned_file(model, "bf16")
        assert TUNED_LATENCY not in offered_setups(model)


def test_benchmark_page_shows_the_tuning_and_only_the_owner_tunes_shared_models(tuned_model, tmp_path, monkeypatch):
    models = tmp_path / "models"
    shutil.copytree(tuned_model, models / "tiny")
    shutil.copy(tune.Path(__file__).parent.parent / "docs" / "tune" / "tuned.json", models / "tiny" / tune.TUNED_FILE)
    monkeypatch.setenv("FLOWERS_MODELS_DIR", str(models))
    at = app_test("app_pages/benchmark.py")
    text = " ".join(m.value for m in at.markdown)
    assert "For one photo at a time use" in text and "INT8 costs" in text
    assert any("Pareto front" in c.proto.spec for c in at.get("plotly_chart"))
    button = next(b for b in at.button if b.label == "Find the best setup")
    assert button.disabled  # a visitor, on a shared model
    assert registry.list_models(models)[0].name == "tiny"


def test_tuning_runs_as_a_job_with_each_setup_as_a_row(tuned_model):
    from core.app.jobs import RUNNER

    RUNNER.start("tune", "tuning tiny", "core.measure.tune:tune_job",
                 {"model_dir": str(tuned_model), "objective": "latency", "budget_s": 7.0, "p99_ms": None})
    job = RUNNER.wait(300)
    assert job.status == "done", job.error
    assert job.rows and all(r["objective"] == "latency" for r in job.rows)
    assert job.result["objectives"]["latency"]["eligible"]
    assert tune.load_tuned(tuned_model)["created"] == job.result["created"]

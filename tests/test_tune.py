"""Tune on the tiny model: the search, the accuracy guard, the saved winners, and where they show."""

import json
import shutil

import pytest

from dataclasses import replace
from pathlib import Path

from conftest import app_test
from core.measure import tune
from core.model import tuned
from core.model import registry
from core.quality import evaluate
from core.runtimes.backends import device_info, native_precisions
from fakes import candidate

SHIPPED = Path(__file__).parent.parent / "docs" / "tune" / "tuned.json"


@pytest.fixture(scope="module")
def tuned_model(tiny_model, tmp_path_factory):
    """A copy of the tiny model (tuning writes into the model folder), tuned briefly."""
    root = tmp_path_factory.mktemp("tuned")
    model = root / "tiny"
    shutil.copytree(tiny_model, model)
    return model


def test_the_guard_scores_every_variant_once_per_precision(tuned_model, monkeypatch):
    calls = []
    score = evaluate.score_variants

    def counted(model_dir, images, labels, variants=None, ov_settings=None, progress=None):
        calls.append((ov_settings.precision, tuple(variants)))
        return score(model_dir, images, labels, variants, ov_settings)

    monkeypatch.setattr(evaluate, "score_variants", counted)
    precisions = native_precisions(device_info()["capabilities"])
    guards = tune.accuracy_guards(tuned_model, ["openvino-fp32", "openvino-int8"], precisions, ["litert"])
    # Once per precision (every variant at once), not per setup; the peer, whose precision is its own, once.
    assert [p for p, _ in calls] == precisions and sum("litert" in v for _, v in calls) == 1
    assert set(guards) == {(v, p) for v in ("openvino-fp32", "openvino-int8") for p in precisions} | {("litert", "f32")}


def test_tune_runs_as_a_job_measures_and_saves_the_winners(tuned_model):
    """A tuning through the job runner, as the Tune page starts it (on fewer setups): each measured setup a row, the
    winners saved in the model folder."""
    from core.app.jobs import RUNNER

    # One IR variant and one peer: their first round starts with each objective's OpenVINO and LiteRT
    # setups. 14 s covers that under the suite's load (with two IR variants and 10 s, the accuracy guard
    # took so long on the AVX2 machine that the peer was sometimes never reached).
    RUNNER.start("tune", "tuning tiny", tune.tune_job,
                 {"model_dir": str(tuned_model), "objective": "both", "budget_s": 14.0, "p99_ms": None,
                  "variants": ["openvino-fp32"], "peer_variants": ["litert"]})
    job = RUNNER.wait(300)
    assert job.status == "done", job.error
    result = tuned.load(tuned_model)
    assert result.created == job.result["created"]
    rows = [tuned.Candidate.from_dict(r) for r in job.rows]
    precisions = native_precisions(device_info()["capabilities"])
    assert len(result.candidates) >= 2
    assert all(c in rows for c in result.candidates)  # re-measured setups: rows > candidates
    assert result.objectives == ("latency", "throughput")
    for c in result.candidates:
        if c.runtime == "litert":  # the peer, over its thread counts
            assert c.setup.variant == "litert" and c.setup.ov is None
            continue
        assert c.setup.variant == "openvino-fp32" and c.setup.precision in precisions
        assert c.setup.async_queue == (c.objective == "throughput") and c.setup.ov.hint == c.objective.upper()
        assert c.eligible == (c.reason == "")
        fp32 = c.setup.variant == "openvino-fp32" and c.setup.precision == "f32"
        assert not fp32 or c.eligible, c  # FP32 in f32 is TensorFlow's answer: always within the budget
    for objective, best in result.winners.items():
        if best is not None:
            assert best.eligible and best.objective == objective and best.runtime == "openvino"
    # LiteRT f32 gives TensorFlow's answers: within the budget, so it is the best peer to beat.
    assert {result.winner(o, among_peers=True).runtime for o in result.objectives} == {"litert"}
    assert all(result.over_best_peer(o) > 0 for o in result.objectives)
    assert result.machine["capabilities"] == device_info()["capabilities"]


def test_a_setup_that_crashes_is_left_out_and_the_search_goes_on(tuned_model, monkeypatch):
    """Some setups abort on some CPUs; a worker that dies is reported, not the end of the tuning."""
    real = tune.benchmark.measure_backend

    def crashing_with_one_stream(key, spec, *args, **kwargs):
        if spec.ov.streams == 1:
            return {"label": spec.label, "error": "terminate called without an active exception"}
        return real(key, spec, *args, **kwargs)

    monkeypatch.setattr(tune.benchmark, "measure_backend", crashing_with_one_stream)
    result = tune.tune(tuned_model, "throughput", budget_s=5, variants=["openvino-fp32"], peer_variants=[])
    assert result.failed and all("streams 1," in f.label for f in result.failed)
    assert result.winner("throughput") is not None
    assert all(c.setup.ov.streams is None for c in result.candidates)


def test_the_guard_rejects_with_a_reason():
    guard = evaluate.Guard(accuracy=0.88, agreement_with_tf=0.999, tf_accuracy=0.90, n_images=100)
    assert guard.reason and "90.0%" in guard.reason
    assert evaluate.Guard(0.90, 0.985, 0.90, 100).reason
    assert evaluate.Guard(0.895, 0.995, 0.90, 100).reason is None


def test_pareto_front_keeps_only_undominated_eligible_setups():
    fast, bulk = candidate(p50_ms=1.0, throughput_ips=500), candidate(p50_ms=5.0, throughput_ips=900)
    dominated, excluded = candidate(p50_ms=2.0, throughput_ips=400), candidate(p50_ms=0.5, throughput_ips=2000,
                                                                               eligible=False)
    assert tuned.pareto([fast, bulk, dominated, excluded]) == [fast, bulk]


def test_the_shipped_version_1_tuning_reads_with_the_same_winners():
    """docs/tune/tuned.json was written before tunings were versioned: read through the migration,
    its winners (recomputed by the same rule) are the ones the file names, with the streams it asked for."""
    old = json.loads(SHIPPED.read_text())
    tuning = tuned.load(Path(), SHIPPED)
    assert tuning is not None and tuning.version == tuned.TUNED_VERSION
    assert len(tuning.candidates) == len(old["candidates"])
    for objective, winner in old["objectives"].items():
        ours = tuning.winner(objective)
        assert (ours.label, ours.batch, ours.p50_ms, ours.throughput_ips) == (
            winner["label"], winner["setup"]["batch"], winner["p50_ms"], winner["throughput_ips"])
        assert ours.setup.ov.streams == winner["setup"]["streams_requested"]
        assert ours.reported.streams == winner["setup"]["streams"]
    for objective, peer in old["best_peers"].items():
        assert tuning.winner(objective, among_peers=True).label == peer["label"]
    assert [c.objective for c in tuning.benchmark_app] == ["latency", "throughput"]
    assert tuned.Tuning.from_dict(json.loads(json.dumps(tuning.to_dict()))) == tuning  # version 2 round-trips


def tuned_file(model, precision: str) -> None:
    """A saved tuning whose only setup, the latency winner, runs in `precision` (from the real run in docs/tune)."""
    shipped = tuned.load(Path(), SHIPPED)
    winner = shipped.winner("latency")
    setup = replace(winner.setup, variant="openvino-fp32", ov=replace(winner.setup.ov, precision=precision))
    replace(shipped, candidates=(replace(winner, setup=setup),)).save(model)


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


def test_tune_page_shows_the_tuning_and_only_the_owner_tunes_shared_models(tuned_model, tmp_path, monkeypatch):
    models = tmp_path / "models"
    shutil.copytree(tuned_model, models / "tiny")
    shutil.copy(SHIPPED, models / "tiny" / tuned.TUNED_FILE)
    monkeypatch.setenv("FLOWERS_MODELS_DIR", str(models))
    at = app_test("app_pages/tune.py")
    assert len(at.markdown) >= len(tuned.summary(tuned.load(models / "tiny")))
    assert any("Pareto front" in c.proto.spec for c in at.get("plotly_chart"))
    assert at.button(key="tune").disabled  # a visitor, on a shared model
    assert registry.list_models(models)[0].name == "tiny"

"""The benchmark engine and page on the tiny model (timings are recorded, never asserted)."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from conftest import TINY_SIZE, app_test
from core.measure import bench_worker, benchmark, benchmark_app, runs
from core.model import registry
from core.settings import SETUPS, SWEEP_PRESETS, SweepConfig
from tests import job_targets


@pytest.fixture(scope="module")
def sweep(tiny_model, tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    cfg = SweepConfig(str(tiny_model), ["tensorflow", "openvino-fp32", "openvino-int8-tput", "onnxruntime",
                                        "onnxruntime-int8", "litert", "litert-int8"],
                                sizes=[4, 8], batches=[1, 4], repeats=2, images=str(tiny_dataset))
    cells = []
    run_dir = benchmark.run_sweep(cfg, on_cell=cells.append, out_root=out)
    return run_dir, cells


def test_every_cell_is_measured_in_a_separate_process(sweep):
    run_dir, cells = sweep
    run = json.loads((run_dir / "run.json").read_text())
    assert len(run["rows"]) == len(cells) == 7 * 2 * 2
    pids = {k: b["pid"] for k, b in run["backends"].items()}
    assert len(set(pids.values())) == 7 and os.getpid() not in pids.values()
    # OpenVINO's and the peers' processes never load TensorFlow, so their memory is their runtime's alone.
    for key in ("openvino-fp32", "onnxruntime", "litert", "litert-int8"):
        assert not run["backends"][key]["tensorflow_imported"], key
    assert run["backends"]["tensorflow"]["tensorflow_imported"]
    df = pd.read_csv(run_dir / "rows.csv")
    assert set(df["backend"]) == {"tensorflow", "openvino-fp32", "openvino-int8-tput", "onnxruntime",
                                  "onnxruntime-int8", "litert", "litert-int8"}
    assert set(df[df["backend"] == "onnxruntime-int8"]["precision"]) == {"int8 (QDQ)"}
    assert set(df[df["backend"] == "litert-int8"]["precision"]) == {"int8 (full integer)"}
    for col in ["precision", "hint", "requests", "threads", "pinning", "shape", "batch", "cpu", "library_version",
                "total_s_median", "batch_latency_ms_p99", "throughput_ips", "rss_peak_mb", "rss_after_load_mb"]:
        assert df[col].notna().all(), col
    assert (df["total_s_min"] <= df["total_s_median"]).all() and (df["total_s_median"] <= df["total_s_max"]).all()
    ov = df[df["backend"] == "openvino-fp32"].iloc[0]
    assert ov["precision"] == "f32" and ov["hint"] == "LATENCY" and ov["pinning"] == "off"
    tput = df[df["backend"] == "openvino-int8-tput"].iloc[0]
    assert tput["hint"] == "THROUGHPUT" and tput["mode"] == "async" and tput["requests"] >= 1


def _cell(backend: str, batch: int, seconds: float, rss: float, runtime: str | None = None) -> dict:
    """A row of a made-up run: only what `summary` reads is filled in."""
    settings = dict.fromkeys(runs.SETTINGS_COLUMNS) | {
        "backend": backend, "label": SETUPS[backend].label, "precision": "f32", "batch": batch, "size": 100,
        "runtime": runtime}
    result = dict.fromkeys(runs.RESULT_COLUMNS) | {
        "total_s_median": seconds, "throughput_ips": 100 / seconds, "rss_peak_mb": rss}
    return {"settings": settings, "load": dict.fromkeys(runs.LOAD_COLUMNS), "result": result}


def test_summary_states_ratios_over_the_baseline_in_the_same_run():
    run = {"backends": {"onnxruntime": {"label": "ONNX Runtime", "error": "worker exited with code 1"}},
           "rows": [_cell("tensorflow", 1, 2.0, 800), _cell("openvino-int8", 1, 0.5, 200), _cell("tensorflow-predict", 1, 4.0, 800)]}
    sp = runs.speedups(runs.frame(run)).set_index("backend")
    assert sp.loc["openvino-int8", "speedup"] == 4.0 and sp.loc["openvino-int8", "memory_ratio"] == 0.25
    assert sp.loc["tensorflow-predict", "speedup"] == 0.5  # slower: a ratio below one, not a made-up "speed-up"
    lines = runs.summary(run)
    assert len(lines) == 3 and "4.0×" in lines[0] and "2.0×" in lines[1]  # fastest first
    assert "worker exited with code 1" in lines[2]  # a failed backend is said, with its error
    run["rows"] = run["rows"][1:]  # no baseline in the run: no ratio is made up
    assert runs.summary(run) == []


def test_summary_compares_openvino_with_the_best_peer_within_the_accuracy_budget(tiny_model):
    card = registry.read_card(tiny_model)
    within = {"accuracy": 0.9, "agreement_with_tf": 1.0, "tf_accuracy": 0.9, "n_images": 100, "eligible": True,
              "reason": ""}
    outside = within | {"agreement_with_tf": 0.9, "eligible": False, "reason": "top-1 agreement with TensorFlow 90.0% < 99%"}
    run = {"backends": {"tensorflow": {"label": SETUPS["tensorflow"].label, "accuracy": within},
                        "openvino-fp32": {"label": SETUPS["openvino-fp32"].label, "accuracy": within},
                        "openvino-int8": {"label": SETUPS["openvino-int8"].label, "accuracy": outside},
                        "openvino-fp32-default": {"label": SETUPS["openvino-fp32-default"].label,
                                            "accuracy": benchmark.accuracy_record(card, SETUPS["openvino-fp32-default"])},
                        "litert": {"label": SETUPS["litert"].label, "accuracy": within},
                        "onnxruntime-int8": {"label": SETUPS["onnxruntime-int8"].label, "accuracy": outside}},
           "rows": [_cell("tensorflow", 1, 2.0, 800, "tensorflow"), _cell("openvino-fp32", 1, 0.5, 200, "openvino"),
                    _cell("openvino-int8", 1, 0.2, 150, "openvino"), _cell("openvino-fp32-default", 1, 0.1, 200, "openvino"),
                    _cell("litert", 1, 0.4, 100, "litert"), _cell("onnxruntime-int8", 1, 0.3, 100, "onnxruntime")]}
    # INT8 (faster, but outside the budget) and the bf16 default (not scored as run) are not the ones compared.
    [comparison] = runs.against_peers(run, runs.frame(run))
    assert (comparison.ours, comparison.theirs, comparison.batch) == ("openvino-fp32", "litert", 1)
    assert comparison.ratio == 200 / 250
    left_out = runs.left_out_of_comparison(run, runs.frame(run))
    assert set(left_out) == {"openvino-int8", "onnxruntime-int8", "openvino-fp32-default"}
    assert left_out["openvino-fp32-default"] == "scored in f32, run in default"
    assert len(runs.summary(run)) == 5 + 2  # a line per backend but the baseline, the comparison, what was left out
    # A real card: the FP32 IR in f32 is within the budget, the peer files were scored when they were made.
    assert benchmark.accuracy_record(card, SETUPS["openvino-fp32"])["eligible"]
    assert benchmark.accuracy_record(card, SETUPS["litert"])["eligible"]


def test_a_saved_version_1_run_reads_with_the_new_names(sweep, tmp_path):
    run_dir, _ = sweep
    run = runs.load_run(run_dir.name, run_dir.parent)
    old = {k: v for k, v in run.items() if k != "version"}  # version 1: flat rows, "tf-serving"
    old["rows"] = [r["settings"] | r["load"] | r["result"] | {"backend": "tf-serving"}
                   if r["settings"]["backend"] == "tensorflow" else r["settings"] | r["load"] | r["result"]
                   for r in run["rows"]]
    old["backends"] = {("tf-serving" if k == "tensorflow" else k): v for k, v in run["backends"].items()}
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "run.json").write_text(json.dumps(old))
    again = runs.load_run("old", tmp_path)
    assert again["rows"] == run["rows"] and set(again["backends"]) == set(run["backends"])
    assert list(runs.frame(again).columns) == runs.COLUMNS


def test_the_example_run_of_version_1_is_one_arrow_table():
    """Its counts are numbers and its pinning booleans where newer runs write words: the page's table
    gets one type per column (Streamlit would otherwise fall back, with a traceback, on every rerun)."""
    import pyarrow as pa

    df = runs.frame(runs.load_run(runs.EXAMPLE_RUN.name, runs.EXAMPLE_RUN.parent))
    pa.Table.from_pandas(df)
    assert set(df["pinning"]) <= {"on", "off", "-"} and set(df["threads"]) >= {"auto", "2"}


def test_a_saved_version_2_run_reads_with_the_catalogue_s_names(sweep, tmp_path):
    """Before version 3, setups had short names (ov-fp32, tf-function); they read as the variants' names."""
    from core.settings import RENAMED_SETUPS

    run_dir, _ = sweep
    run = runs.load_run(run_dir.name, run_dir.parent)
    short = {new: old for old, new in RENAMED_SETUPS.items() if old.startswith(("ov-", "tf-function"))}
    old = json.loads(json.dumps(run)) | {"version": 2}
    old["backends"] = {short.get(k, k): v for k, v in run["backends"].items()}
    old["config"]["backends"] = [short.get(k, k) for k in run["config"]["backends"]]
    for row in old["rows"]:
        row["settings"]["backend"] = short.get(row["settings"]["backend"], row["settings"]["backend"])
    assert old != run
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "run.json").write_text(json.dumps(old))
    assert runs.load_run("v2", tmp_path) == run


def test_worker_parts_load_and_measure_in_process(tiny_model, tiny_dataset):
    """The worker's steps without its subprocess: a static shape pads the last batch with real
    photos, and every measured field of a cell is filled."""
    images = np.random.default_rng(0).integers(0, 256, (10, TINY_SIZE, TINY_SIZE, 3), dtype=np.uint8)
    loaded = bench_worker.load(SETUPS["openvino-int8-tput-static"], str(tiny_model), batch=4)
    assert loaded.backend.static_batch == 4 and loaded.requests >= 1
    chunks, padded = bench_worker.batches_of(images, 10, 4, loaded.backend.static_batch)
    assert [len(c) for c in chunks] == [4, 4, 4] and padded == 2
    result = bench_worker.measure(loaded.run, chunks, size=10, repeats=2, warmup=1)
    assert set(result) == set(runs.RESULT_COLUMNS) - {"padded_images"}
    assert result["total_s_min"] <= result["total_s_median"] <= result["total_s_max"]
    assert result["throughput_ips"] == pytest.approx(10 / result["total_s_median"])
    # The async queue's latencies are OpenVINO's own, one per request and each a real duration.
    latencies = loaded.run(chunks)
    assert len(latencies) == len(chunks) and all(0 < s < 10 for s in latencies)
    assert 0 < result["batch_latency_ms_p50"] <= result["batch_latency_ms_p99"]
    sync = bench_worker.load(SETUPS["openvino-fp32"], str(tiny_model), batch=4)
    chunks, padded = bench_worker.batches_of(images, 10, 4, sync.backend.static_batch)
    assert [len(c) for c in chunks] == [4, 4, 2] and padded == 0
    assert len(sync.run(chunks)) == 3  # one latency per batch call


def test_saved_runs_list_only_complete_ones(sweep):
    run_dir, _ = sweep
    (run_dir.parent / ".tmp-run-half").mkdir()
    assert runs.list_runs(run_dir.parent) == [run_dir.name]


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="unknown backend"):
        SweepConfig("any-model", ["nope"])  # refused before any model is read


def test_page_renders_every_chart_of_a_saved_run(sweep, monkeypatch):
    run_dir, _ = sweep
    monkeypatch.setenv("FLOWERS_RESULTS_DIR", str(run_dir.parent))
    at = app_test("app_pages/benchmark.py")
    assert not at.exception, at.exception
    charts = at.get("plotly_chart")
    assert len(charts) == 8  # the study's four, throughput, latency percentiles, throughput vs latency, speed-up
    text = " ".join(m.value for m in at.markdown)
    assert "than TensorFlow compiled tf.function" in text


def test_page_starts_a_sweep_in_the_background(tiny_model, tiny_dataset, tmp_path, monkeypatch):
    """A visitor's sweep runs in a child process and its run is listed for that visitor only."""
    from core.app import workspace
    from core.app.jobs import RUNNER

    monkeypatch.setenv("FLOWERS_MODELS_DIR", str(tiny_model.parent))
    monkeypatch.setenv("FLOWERS_RESULTS_DIR", str(tmp_path / "shared"))
    at = app_test("app_pages/benchmark.py")
    preset = next(iter(SWEEP_PRESETS))  # the page's default
    at.multiselect(key=f"backends-{preset}").set_value(["openvino-fp32", "openvino-int8"])
    at.text_input(key=f"sizes-{preset}").set_value("2,4")
    at.multiselect(key=f"batches-{preset}").set_value([1])
    at.button(key="run-sweep").click().run()
    assert not at.exception, at.exception
    job = RUNNER.wait(300)
    assert job.kind == "benchmark" and job.status == "done", job.error
    assert len(job.rows) == 4
    at.run()
    mine = workspace.Workspace(at.session_state["workspace-key"]).results
    assert runs.list_runs(mine) and not runs.list_runs(tmp_path / "shared")
    assert len(at.get("plotly_chart")) == 7  # no TF baseline: no speed-up chart
    other_visitor = app_test("app_pages/benchmark.py")  # sees the shipped example, not the first visitor's run
    assert any(i.value.startswith("No saved runs yet. Shown meanwhile") for i in other_visitor.info)
    assert other_visitor.multiselect[-1].value == ["benchmark"]
    assert len(other_visitor.get("plotly_chart")) == 8


def test_page_refusals_stay_until_they_no_longer_apply(tiny_model, tmp_path, monkeypatch):
    from core.app.jobs import RUNNER

    monkeypatch.setenv("FLOWERS_MODELS_DIR", str(tiny_model.parent))
    monkeypatch.setenv("FLOWERS_RESULTS_DIR", str(tmp_path))
    at = app_test("app_pages/benchmark.py")
    at.text_input(key=f"sizes-{next(iter(SWEEP_PRESETS))}").set_value("10, ten")
    at.button(key="run-sweep").click().run()
    assert [e.value for e in at.error] == ["Not started: test sizes must be whole numbers separated by commas, "
                                           "not '10, ten'"]
    assert RUNNER.current is None or not RUNNER.current.running

    release = tmp_path / "release"
    RUNNER.start("benchmark", "a sweep that blocks", job_targets.wait_for, {"path": str(release)})
    at.text_input(key=f"sizes-{next(iter(SWEEP_PRESETS))}").set_value("4")
    at.button(key="run-sweep").click().run()
    assert not at.error
    assert "busy with another benchmark job" in at.warning[0].value
    at.run()  # a later run (or the live fragment's rerun) still answers the click
    assert "busy with another" in at.warning[0].value
    release.touch()
    RUNNER.wait(60)
    at.run()
    assert not at.warning  # the blocker ended: the refusal no longer applies


def test_charts_name_backends_in_words_and_colour_them_by_runtime():
    import plotly.express as px

    from core.measure import charts, run_charts

    run = runs.load_run(runs.EXAMPLE_RUN.name, runs.EXAMPLE_RUN.parent)  # a version-1 run
    df = runs.frame(run)
    colours = run_charts.family_colours(df)
    for label, runtime in zip(df["label"], df["runtime"]):
        assert colours[label] in charts.FAMILIES[runtime], (label, runtime)
    legend = {trace.name for trace in run_charts.run_figures(df)["Time trend"].data}
    assert legend == set(df["label"]) and not legend & set(df["backend"])
    assert px.colors.sequential.Blues is charts.FAMILIES["openvino"]


def test_benchmark_app_is_fed_the_same_real_photos(tiny_model):
    """OpenVINO's own meter, for the cross-checks: on the model's photos, not generated data."""
    result = benchmark_app.run_benchmark_app(tiny_model, "openvino-fp32", "latency", 1, seconds=1)
    assert result["inputs"].startswith("32 real photos") and " -i " in result["command"]
    # The tiny model runs in microseconds, which benchmark_app prints in us: read as ms here.
    assert result["throughput_ips"] > 0 and 0 < result["median_ms"] < 1000 / result["throughput_ips"] * 10


def test_a_visitor_cannot_make_peer_files_in_a_shared_model(tiny_model, tmp_path):
    import shutil

    model = tmp_path / "shared"
    shutil.copytree(tiny_model, model)
    shutil.rmtree(registry.variant_path(model, "litert").parent)
    assert "litert" in benchmark.available_backends(model)  # the owner's sweep would make it
    offered = benchmark.available_backends(model, make_peers=False)
    assert "litert" not in offered and "litert-int8" in offered and "openvino-fp32" in offered

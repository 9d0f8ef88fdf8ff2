"""The benchmark engine and page on the tiny model (timings are recorded, never asserted)."""

import json
import os

import pandas as pd
import pytest

from conftest import app_test
from core import benchmark


@pytest.fixture(scope="module")
def sweep(tiny_model, tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    cfg = benchmark.SweepConfig(str(tiny_model), ["tf-predict", "tf-serving", "ov-fp32", "ov-int8-tput", "onnxruntime"],
                                sizes=[4, 8], batches=[1, 4], repeats=2, images=str(tiny_dataset))
    cells = []
    run_dir = benchmark.run_sweep(cfg, on_cell=cells.append, out_root=out)
    return run_dir, cells


def test_every_cell_is_measured_in_a_separate_process(sweep):
    run_dir, cells = sweep
    run = json.loads((run_dir / "run.json").read_text())
    assert len(run["rows"]) == len(cells) == 5 * 2 * 2
    pids = {k: b["pid"] for k, b in run["backends"].items()}
    assert len(set(pids.values())) == 5 and os.getpid() not in pids.values()
    # OpenVINO's processes never load TensorFlow, so their memory is OpenVINO's alone.
    assert not run["backends"]["ov-fp32"]["tensorflow_imported"]
    assert not run["backends"]["onnxruntime"]["tensorflow_imported"]
    assert run["backends"]["tf-serving"]["tensorflow_imported"]
    df = pd.read_csv(run_dir / "rows.csv")
    assert set(df["backend"]) == {"tf-predict", "tf-serving", "ov-fp32", "ov-int8-tput", "onnxruntime"}
    for col in ["precision", "hint", "requests", "threads", "pinning", "shape", "batch", "cpu", "library_version",
                "total_s_median", "batch_latency_ms_p99", "throughput_ips", "rss_peak_mb", "rss_after_load_mb"]:
        assert df[col].notna().all(), col
    assert (df["total_s_min"] <= df["total_s_median"]).all() and (df["total_s_median"] <= df["total_s_max"]).all()
    ov = df[df["backend"] == "ov-fp32"].iloc[0]
    assert ov["precision"] == "f32" and ov["hint"] == "LATENCY" and ov["pinning"] in (False, "False")
    tput = df[df["backend"] == "ov-int8-tput"].iloc[0]
    assert tput["hint"] == "THROUGHPUT" and tput["mode"] == "async" and tput["requests"] >= 1


def test_summary_sentences_come_from_the_run(sweep):
    run_dir, _ = sweep
    run = benchmark.load_run(run_dir.name, run_dir.parent)
    lines = benchmark.summary(run)
    assert len(lines) == 2 * 4  # two batch sizes, four backends against the baseline
    sp = benchmark.speedups(benchmark.frame(run))
    best = sp[(sp["batch"] == 1) & (sp["size"] == 8) & (sp["backend"] != "tf-serving")].sort_values("speedup").iloc[-1]
    assert f"{best['speedup']:.1f}×" in lines[0] and best["label"] in lines[0]


def test_saved_runs_list_only_complete_ones(sweep):
    run_dir, _ = sweep
    (run_dir.parent / ".tmp-run-half").mkdir()
    assert benchmark.list_runs(run_dir.parent) == [run_dir.name]


def test_unknown_backend_is_refused(tiny_model):
    with pytest.raises(ValueError, match="unknown backend"):
        benchmark.SweepConfig(str(tiny_model), ["nope"])


def test_page_renders_every_chart_of_a_saved_run(sweep, monkeypatch):
    run_dir, _ = sweep
    monkeypatch.setenv("FLOWERS_RESULTS_DIR", str(run_dir.parent))
    at = app_test("app_pages/benchmark.py")
    assert not at.exception, at.exception
    charts = at.get("plotly_chart")
    assert len(charts) == 8  # the study's four, throughput, latency percentiles, throughput vs latency, speed-up
    text = " ".join(m.value for m in at.markdown)
    assert "faster than TensorFlow compiled function" in text or "slower than TensorFlow compiled function" in text


def test_page_starts_a_sweep_in_the_background(tiny_model, tiny_dataset, tmp_path, monkeypatch):
    """A visitor's sweep runs in a child process and its run is listed for that visitor only."""
    from core import workspace
    from core.jobs import RUNNER

    monkeypatch.setenv("FLOWERS_MODELS_DIR", str(tiny_model.parent))
    monkeypatch.setenv("FLOWERS_RESULTS_DIR", str(tmp_path / "shared"))
    at = app_test("app_pages/benchmark.py")
    at.multiselect[0].set_value(["ov-fp32", "ov-int8"])
    at.text_input[0].set_value("2,4")
    at.multiselect[1].set_value([1])
    at.button[0].click().run()
    assert not at.exception, at.exception
    job = RUNNER.wait(300)
    assert job.kind == "benchmark" and job.status == "done", job.error
    assert len(job.rows) == 4
    at.run()
    mine = workspace.Workspace(at.session_state["workspace-key"]).results
    assert benchmark.list_runs(mine) and not benchmark.list_runs(tmp_path / "shared")
    assert len(at.get("plotly_chart")) == 7  # no TF baseline: no speed-up chart
    other_visitor = app_test("app_pages/benchmark.py")
    assert any(i.value.startswith("No saved runs yet") for i in other_visitor.info)


def test_page_refusals_stay_until_they_no_longer_apply(tiny_model, tmp_path, monkeypatch):
    from core.jobs import RUNNER

    monkeypatch.setenv("FLOWERS_MODELS_DIR", str(tiny_model.parent))
    monkeypatch.setenv("FLOWERS_RESULTS_DIR", str(tmp_path))
    at = app_test("app_pages/benchmark.py")
    at.text_input[0].set_value("10, ten")
    at.button[0].click().run()
    assert [e.value for e in at.error] == ["Not started: test sizes must be whole numbers separated by commas, "
                                           "not '10, ten'"]
    assert RUNNER.current is None or not RUNNER.current.running

    release = tmp_path / "release"
    RUNNER.start("benchmark", "a sweep that blocks", "tests.job_targets:wait_for", {"path": str(release)})
    at.text_input[0].set_value("4")
    at.button[0].click().run()
    assert not at.error
    assert "busy with another benchmark job" in at.warning[0].value
    at.run()  # a later run (or the live fragment's rerun) still answers the click
    assert "busy with another" in at.warning[0].value
    release.touch()
    RUNNER.wait(60)
    at.run()
    assert not at.warning  # the blocker ended: the refusal no longer applies


def test_cancel_kills_the_running_worker_at_once(tiny_model, tiny_dataset, tmp_path):
    import threading
    import time

    from core.progress import Cancelled, CancelToken

    token = CancelToken()
    cfg = benchmark.SweepConfig(str(tiny_model), ["ov-fp32"], sizes=[8], batches=[1], repeats=100_000,
                                images=str(tiny_dataset))

    def cancel_once_measuring(event):
        if "measuring" in event.message:
            threading.Timer(0.5, token.cancel).start()

    start = time.time()
    with pytest.raises(Cancelled):
        benchmark.run_sweep(cfg, cancel_once_measuring, token, out_root=tmp_path)
    assert time.time() - start < 60  # 100,000 repeats would take far longer
    assert benchmark.list_runs(tmp_path) == []

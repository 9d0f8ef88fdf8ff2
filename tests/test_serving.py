"""Serving: the OVMS export, a real KServe v2 server on loopback running it, the `kserve-v2`
backend against that server (Predict and the benchmark's worker), and a bounded load test."""

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from conftest import ROOT, TINY_SIZE
from core import atomic
from core.measure import benchmark
from core.model import tuned
from core.model import data, registry
from core.runtimes import predict, remote
from core.serve import loadtest, serving
from core.runtimes.backends import load_backend
from core.runtimes.remote import RemoteBackend, RemoteConfig, RemoteError
from core.settings import OVSettings, SweepConfig
from fakes import candidate


def _has_server_environment() -> bool:
    try:
        serving.server_python()
        return True
    except serving.ServingError:
        return False


needs_server = pytest.mark.skipif(not _has_server_environment(),
                                  reason="no model server environment (.ci/run makes .venv-serve)")


@pytest.fixture(scope="module")
def repository(tiny_model, tmp_path_factory):
    return serving.export(tiny_model, tmp_path_factory.mktemp("serving") / "repo", "openvino-fp32")


@pytest.fixture(scope="module")
def server(repository, tmp_path_factory):
    with serving.running_server(repository, log=tmp_path_factory.mktemp("server") / "server.log") as running:
        yield running.url


@pytest.fixture(scope="module")
def photos(tiny_model, tiny_dataset):
    items = [(f, 0) for c in data.scan(tiny_dataset).files.values() for f in c[:4]]
    images, _, _ = data.load_arrays(items, TINY_SIZE)
    return images


def test_export_is_an_ovms_model_repository(tiny_model, repository):
    card = registry.read_card(tiny_model)
    config = json.loads((repository / "config.json").read_text())["model_config_list"][0]["config"]
    assert config["name"] == "tiny" and config["base_path"] == "tiny"
    # Without a tuning: the app's defaults, f32 as scored on the card.
    assert config["plugin_config"] == OVSettings("f32", "THROUGHPUT").config_strings()
    assert config["nireq"] == 2 and "shape" not in config
    source = registry.variant_path(tiny_model, "openvino-fp32")
    assert (repository / "tiny" / "1" / "model.xml").read_bytes() == source.read_bytes()
    assert (repository / "tiny" / "1" / "model.bin").read_bytes() == source.with_suffix(".bin").read_bytes()
    assert (repository / "tiny" / "labels.txt").read_text().split() == list(card.classes)
    described = json.loads((repository / "tiny" / "serving.json").read_text())
    assert described["input"] | {"preprocessing": ""} == {"name": "image", "datatype": "UINT8", "layout": "NHWC",
                                                           "shape": [-1, TINY_SIZE, TINY_SIZE, 3],
                                                           "preprocessing": ""}
    assert described["classes"] == list(card.classes)
    assert "--config_path" in (repository / "docker-compose.yml").read_text()
    manifest = (repository / "inferenceservice.yaml").read_text()
    assert "openvino_ir" in manifest and "protocolVersion: v2" in manifest
    readme = (repository / "README.md").read_text()
    assert f"[N, {TINY_SIZE}, {TINY_SIZE}, 3]" in readme and "Inference-Header-Content-Length" in readme


def _tuned_json(path):
    """A saved tuning with made-up figures (this is about the mapping; `test_tune` makes real ones)."""
    bf16 = OVSettings("bf16", "THROUGHPUT", streams=2)
    tuning = tuned.Tuning(
        candidates=(candidate("openvino-fp32", batch=8, static=True, ov=bf16, requests=4, throughput_ips=500.0),
                    candidate("openvino-int8", batch=8, throughput_ips=900.0),
                    candidate("openvino-fp32", batch=1, static=True, requests=2, throughput_ips=300.0),
                    candidate("openvino-fp32", batch=8, static=True, ov=bf16, throughput_ips=990.0, eligible=False)),
        objectives=("throughput",), failed=(), guard=tuned.GuardSettings(0.01, 0.99, None, "held-out", 100),
        machine={"cpu": "Test CPU"}, budget_s=60, seconds=60, created="2026-11-30T00:00:00+0000")
    atomic.write_json(path, tuning.to_dict())
    return path


def test_export_takes_the_tuned_throughput_setup(tiny_model, tmp_path):
    """The tuning's throughput winner for one photo per request (or any batch) becomes
    plugin_config, nireq and the shape."""
    tuning = _tuned_json(tmp_path / "tuned.json")
    single = serving.choose_setup(tiny_model, "tuned", tuning)
    assert single.variant == "openvino-fp32" and single.batch == 1 and single.nireq == 2 and "Test CPU" in single.source
    best = serving.choose_setup(tiny_model, "tuned", tuning, batch=None)
    assert best.variant == "openvino-int8" and best.batch is None  # a dynamic shape
    fp32 = serving.choose_setup(tiny_model, "openvino-fp32", tuning, batch=None)
    assert fp32.plugin_config == {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": "2",
                                  "ENABLE_CPU_PINNING": "NO", "INFERENCE_PRECISION_HINT": "bf16"}
    assert fp32.nireq == 4 and fp32.batch == 8
    # The served setup is the tuning's own RunSetup: what Predict and the benchmark compile too.
    assert fp32.setup == tuned.load(tiny_model, tuning).candidates[0].setup
    out = serving.export(tiny_model, tmp_path / "repo", "openvino-fp32", tuning, batch=None)
    config = json.loads((out / "config.json").read_text())["model_config_list"][0]["config"]
    assert config["shape"] == {"image": f"(8,{TINY_SIZE},{TINY_SIZE},3)"}
    with pytest.raises(serving.ServingError, match="no tuning"):
        serving.choose_setup(tiny_model, "tuned")


def test_export_never_replaces_a_folder_that_is_not_an_export(tiny_model, tmp_path):
    keep = tmp_path / "mine" / "notes.txt"
    keep.parent.mkdir()
    keep.write_text("mine")
    with pytest.raises(serving.ServingError, match="not a model repository"):
        serving.export(tiny_model, keep.parent, "openvino-fp32")
    assert keep.read_text() == "mine"
    zipped = serving.export_zip(tiny_model, "int8")  # the older spelling still works
    assert zipped[:2] == b"PK" and b"serving/tiny/1/model.xml" in zipped


@needs_server
def test_remote_backend_answers_like_the_local_ir_on_every_photo(tiny_model, server, photos):
    card = registry.read_card(tiny_model)
    backend = RemoteBackend(RemoteConfig(server, "tiny"), card.image_size, len(card.classes))
    local = load_backend(tiny_model, "openvino-fp32", OVSettings("f32"))
    one_by_one = np.concatenate([backend.predict(p[None]) for p in photos])
    batched = backend.predict(photos)  # a dynamic batch: one request
    expected = local.predict(photos)
    assert (one_by_one.argmax(1) == expected.argmax(1)).all() and (batched.argmax(1) == expected.argmax(1)).all()
    np.testing.assert_allclose(batched, expected, atol=1e-5)
    # The open-set score's features come over the wire too (a second binary output).
    probs, features = backend.infer(photos)
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    np.testing.assert_allclose(features, local.infer(photos)[1], atol=1e-4)
    assert backend.settings()["server"].startswith("kserve") and "url" not in backend.settings()


@needs_server
def test_remote_backend_errors_are_clear(tiny_model, server):
    card = registry.read_card(tiny_model)
    with pytest.raises(RemoteError, match="does not serve a model named 'roses'"):
        RemoteBackend(RemoteConfig(server, "roses"), card.image_size, len(card.classes))
    with pytest.raises(RemoteError, match="a different model or export"):
        RemoteBackend(RemoteConfig(server, "tiny"), card.image_size + 1, len(card.classes))
    with pytest.raises(RemoteError, match="a different model"):
        RemoteBackend(RemoteConfig(server, "tiny"), card.image_size, len(card.classes) + 2)
    closed = f"http://127.0.0.1:{serving.free_port()}"
    with pytest.raises(RemoteError, match="cannot reach the model server"):
        RemoteBackend(RemoteConfig(closed, "tiny", timeout_s=2), card.image_size, len(card.classes))
    # A request whose bytes do not match its shape gets a 400 with the reason, not a crash.
    header = json.dumps({"inputs": [{"name": "image", "shape": [1, TINY_SIZE, TINY_SIZE, 3], "datatype": "UINT8",
                                     "parameters": {"binary_data_size": 10}}]}).encode()
    request = urllib.request.Request(f"{server}/v2/models/tiny/infer", header + bytes(10), method="POST",
                                     headers={"Inference-Header-Content-Length": str(len(header))})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400 and "image" in refused.value.read().decode()


@needs_server
def test_predict_and_benchmark_use_the_configured_server(tiny_model, tiny_dataset, server, monkeypatch, tmp_path):
    monkeypatch.setenv("FLOWERS_MODELS_DIR", str(tiny_model.parent))
    monkeypatch.setenv(remote.URL_ENV, server)
    monkeypatch.setenv(remote.MODEL_ENV, "tiny")
    assert remote.REMOTE_SETUP in predict.offered_setups(tiny_model)
    assert remote.REMOTE_SETUP in benchmark.available_backends(tiny_model, make_peers=False)
    # Only for the shared model of that name: a visitor's own copy elsewhere is never sent to the server.
    assert not remote.serves(tmp_path / "tiny")

    model = predict.Predictor(tiny_model, ["openvino-fp32", remote.REMOTE_SETUP])
    photo = next(iter(data.scan(tiny_dataset).files.values()))[0]
    result = model.classify(photo.name, photo)
    assert set(result.results) == {"openvino-fp32", remote.REMOTE_SETUP} and result.agree and not result.failed

    cells = []
    cfg = SweepConfig(str(tiny_model), [remote.REMOTE_SETUP], sizes=[4], batches=[1, 4], repeats=1,
                      images=str(tiny_dataset))
    run_dir = benchmark.run_sweep(cfg, on_cell=cells.append, out_root=tmp_path / "results")
    run = json.loads((run_dir / "run.json").read_text())
    assert len(cells) == 2 and "error" not in run["backends"][remote.REMOTE_SETUP]
    assert run["backends"][remote.REMOTE_SETUP]["settings"]["runtime"] == "kserve-v2 (remote)"


def test_predict_goes_on_without_an_unreachable_server(tiny_model, tiny_dataset, monkeypatch):
    monkeypatch.setenv(remote.URL_ENV, f"http://127.0.0.1:{serving.free_port()}")
    monkeypatch.setenv(remote.MODEL_ENV, "tiny")
    model = predict.Predictor(tiny_model, ["openvino-fp32", remote.REMOTE_SETUP])
    assert list(model.backends) == ["openvino-fp32"]
    assert "cannot reach the model server" in model.unavailable[remote.REMOTE_SETUP]
    photo = next(iter(data.scan(tiny_dataset).files.values()))[0]
    assert model.classify(photo.name, photo).results["openvino-fp32"].top_class


@needs_server
def test_bounded_load_answers_every_request(tiny_model, repository, server, photos):
    local = loadtest.in_process(repository, photos, requests=8)
    card = registry.read_card(tiny_model)
    backend = RemoteBackend(RemoteConfig(server, "tiny"), card.image_size, len(card.classes), pool_size=4)
    for clients in (1, 4):
        level = loadtest.run_level(backend, photos, local["probabilities"], clients, requests=24)
        assert (level.ok, level.wrong, level.errors, level.lost) == (24, 0, 0, 0)
        assert level.max_abs_diff < 1e-5


@needs_server
def test_serve_command_stops_its_server(tiny_model):
    port = serving.free_port()
    cli = subprocess.Popen([sys.executable, "-m", "core", "serve", "--model-dir", str(tiny_model), "--variant",
                            "openvino-int8", "--port", str(port)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/tiny/ready", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert cli.poll() is None, cli.stderr.read()
                time.sleep(0.3)
        else:
            pytest.fail("the server did not become ready")
        cli.send_signal(signal.SIGINT)  # Ctrl-C
        assert cli.wait(timeout=30) == 0
    finally:
        if cli.poll() is None:
            cli.kill()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the server outlived its command"


@needs_server
def test_predict_page_shows_the_remote_server_beside_the_local_runtimes(tiny_model, tiny_dataset, server,
                                                                         monkeypatch):
    from conftest import app_test, wait_until_loaded

    monkeypatch.setenv("FLOWERS_MODELS_DIR", str(tiny_model.parent))
    monkeypatch.setenv(remote.URL_ENV, server)
    monkeypatch.setenv(remote.MODEL_ENV, "tiny")
    at = app_test("app_pages/predict.py", timeout=300)
    wait_until_loaded()
    backends = at.multiselect(key="backends")
    assert remote.REMOTE_SETUP in backends.value and "OpenVINO (remote server)" in backends.options
    photo = next(iter(data.scan(tiny_dataset).files.values()))[0]
    at.file_uploader(key="photos").set_value([(photo.name, photo.read_bytes(), "image/jpeg")])
    at.run()
    assert not at.exception, at.exception
    assert f"all {len(backends.value)} backends agree" in at.success[0].value
    assert not at.warning


@needs_server
def test_a_static_batch_server_gets_padded_requests(tiny_model, photos, tmp_path):
    """A server compiled for batches of exactly 8 (as a tuning may choose): 3 photos and 11 photos go
    as padded requests and come back as 3 and 11 answers, the same as the local IR's."""
    repository = serving.export(tiny_model, tmp_path / "repo", "openvino-fp32", _tuned_json(tmp_path / "tuned.json"), batch=None)
    card = registry.read_card(tiny_model)
    local = load_backend(tiny_model, "openvino-fp32", OVSettings("bf16"))
    with serving.running_server(repository) as running:
        backend = RemoteBackend(RemoteConfig(running.url, "tiny"), card.image_size, len(card.classes))
        assert backend.max_batch == 8
        for n in (3, 11):
            assert (backend.predict(photos[:n]).argmax(1) == local.predict(photos[:n]).argmax(1)).all()

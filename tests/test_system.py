"""Facts recorded beside every result: a CPU quota is named, not hidden behind os.cpu_count(). And
what the process imports: TensorFlow without Keras's scikit-learn wrappers."""

import threading

import pytest

from core import availability, system


def test_tensorflow_imports_without_scikit_learn_which_other_threads_still_import():
    """`require_tensorflow` refuses scikit-learn to Keras (0.8 s of TensorFlow's import) in the importing
    thread only: a thread importing scikit-learn meanwhile (NNCF, the open-set check's sample photos) gets it."""
    finder = availability._NoScikitLearnForKeras()
    with pytest.raises(ModuleNotFoundError):
        finder.find_spec("sklearn")
    assert finder.find_spec("numpy") is None
    elsewhere = []
    thread = threading.Thread(target=lambda: elsewhere.append(finder.find_spec("sklearn")))
    thread.start()
    thread.join()
    assert elsewhere == [None]


def test_cpu_quota_is_read_from_the_process_cgroup_v1_and_v2(tmp_path):
    v1 = tmp_path / "v1"
    app = v1 / "cpu" / "cloud" / "app"
    app.mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    (v1 / "cpu" / "cloud" / "cpu.cfs_quota_us").write_text("200000\n")  # the parent caps at 2 cores
    (v1 / "cpu" / "cloud" / "cpu.cfs_period_us").write_text("100000\n")
    (app / "cpu.cfs_quota_us").write_text("50000\n")
    (app / "cpu.cfs_period_us").write_text("100000\n")
    proc = tmp_path / "cgroup-v1"
    proc.write_text("4:memory:/cloud/app\n1:cpu:/cloud/app\n")
    assert system.cpu_quota_cores(proc, v1) == 0.5

    v2 = tmp_path / "v2"
    (v2 / "app").mkdir(parents=True)
    (v2 / "cpu.max").write_text("max 100000\n")
    (v2 / "app" / "cpu.max").write_text("7800 100000\n")
    proc.write_text("0::/app\n")
    assert system.cpu_quota_cores(proc, v2) == 0.078

    (v2 / "app" / "cpu.max").write_text("max 100000\n")
    assert system.cpu_quota_cores(proc, v2) is None
    assert system.cpu_quota_cores(tmp_path / "absent", v2) is None


def test_memory_limit_is_read_from_the_process_cgroup_v1_and_v2(tmp_path):
    v1 = tmp_path / "v1"
    (v1 / "memory" / "cloud" / "app").mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text(f"{2**63 - 4096}\n")  # v1's "no limit"
    (v1 / "memory" / "cloud" / "memory.limit_in_bytes").write_text(f"{2700 * 2**20}\n")
    (v1 / "memory" / "cloud" / "app" / "memory.limit_in_bytes").write_text(f"{2**63 - 4096}\n")
    proc = tmp_path / "cgroup"
    proc.write_text("4:memory:/cloud/app\n1:cpu:/cloud/app\n")
    assert system.memory_limit_mb(proc, v1) == 2700  # the parent's

    v2 = tmp_path / "v2"
    (v2 / "app").mkdir(parents=True)
    (v2 / "app" / "memory.max").write_text(f"{690 * 2**20}\n")
    proc.write_text("0::/app\n")
    assert system.memory_limit_mb(proc, v2) == 690
    (v2 / "app" / "memory.max").write_text("max\n")
    assert system.memory_limit_mb(proc, v2) is None


def test_openvino_telemetry_is_declined_unless_the_user_chose(tmp_path):
    system.decline_openvino_telemetry(tmp_path)
    consent = tmp_path / "intel" / "openvino_telemetry"
    assert consent.read_text().strip() == "0"
    consent.write_text("1\n")  # the user's own choice stays
    system.decline_openvino_telemetry(tmp_path)
    assert consent.read_text().strip() == "1"

"""Facts about this machine and its libraries, recorded beside every result."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any, Callable


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist, key in (("tensorflow-cpu", "tensorflow"), ("tensorflow", "tensorflow"), ("keras", "keras"),
                      ("openvino", "openvino"), ("nncf", "nncf"),
                      ("onnxruntime", "onnxruntime"), ("tf2onnx", "tf2onnx"),
                      ("ai-edge-litert", "litert"), ("numpy", "numpy"), ("pillow", "pillow")):
        if key in out:
            continue
        try:
            out[key] = version(dist)
        except PackageNotFoundError:
            pass
    return out


# The widest vector instructions a CPU has, as /proc/cpuinfo's flags name them, widest first: what
# decides OpenVINO's default precision (bf16) and INT8's speed (VNNI), so every result names it.
VECTOR_ISAS = (("amx_bf16", "AMX"), ("avx512_bf16", "AVX-512 BF16"), ("avx512_vnni", "AVX-512 VNNI"),
               ("avx512f", "AVX-512"), ("avx2", "AVX2"))


def machine_summary() -> dict[str, Any]:
    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        first = Path("/proc/cpuinfo").read_text().split("\n\n")[0]  # the first processor's entry
        info = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in first.splitlines() if ":" in line)}
        cpu = info.get("model name") or cpu
        flags = set(info.get("flags", "").split())
    except OSError:
        pass
    isa = next((name for flag, name in VECTOR_ISAS if flag in flags), None)
    return {"cpu": cpu, "cores": os.cpu_count(), "cpu_quota_cores": cpu_quota_cores(), "system": platform.platform(),
            "isa": isa}


def describe_cpu(machine: dict[str, Any]) -> str:
    """"AMD EPYC (AVX2), 2 cores" or, under a quota, "…, 2 cores, capped at 0.5 core": the same words
    wherever a result names its machine (results saved before the ISA was recorded lack it)."""
    quota = machine.get("cpu_quota_cores")
    isa = f" ({machine['isa']})" if machine.get("isa") else ""
    return f"{machine['cpu']}{isa}, {machine['cores']} cores" + (f", capped at {quota:g} core(s)" if quota else "")


def cpu_quota_cores(proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU time this process may use, in cores, where a cgroup quota caps it (Community Cloud
    gives an app 0.078 to 2 cores; `os.cpu_count()` still says how many the machine has); None
    when nothing caps it. The tightest quota on the way from the process's group to the root."""
    found = _cgroup_limits(proc_cgroup, root, "cpu", "cpu.cfs_quota_us", "cpu.max", _quota)
    return round(min(found), 3) if found else None


def memory_limit_mb(proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The memory this process's cgroup may use, in MB (Community Cloud: 690 MB to 2.7 GB); None
    when nothing caps it. The tightest limit on the way to the root."""
    found = _cgroup_limits(proc_cgroup, root, "memory", "memory.limit_in_bytes", "memory.max", _memory)
    return round(min(found)) if found else None


def _cgroup_limits(proc_cgroup: Path, root: Path, controller: str, v1_name: str, v2_name: str,
                   read: Callable[[Path, str], float | None]) -> list[float]:
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return []
    limits = []
    for line in lines:
        _, controllers, group = line.split(":", 2)
        if controllers == "":  # cgroup v2: one hierarchy
            base, name = root, v2_name
        elif controller in controllers.split(","):
            base, name = root / controllers, v1_name
            if not base.exists():
                base = root / controller
        else:
            continue
        folder = base / group.lstrip("/")
        while True:
            limits.append(read(folder, name))
            if folder == base or base not in folder.parents:
                break
            folder = folder.parent
    return [x for x in limits if x is not None]


def _quota(folder: Path, name: str) -> float | None:
    """cpu.max holds "quota period" or "max period"; v1 has the two in two files."""
    try:
        if name == "cpu.max":
            quota, period = (folder / name).read_text().split()
        else:
            quota, period = (folder / name).read_text(), (folder / "cpu.cfs_period_us").read_text()
    except (OSError, ValueError):
        return None
    quota = quota.strip()
    return None if quota in ("max", "-1") else int(quota) / int(period)


def _memory(folder: Path, name: str) -> float | None:
    try:
        text = (folder / name).read_text().strip()
    except OSError:
        return None
    if text == "max" or not text.isdigit() or int(text) >= 2**62:  # v1 writes "no limit" as ~2^63
        return None
    return int(text) / 2**20


def decline_openvino_telemetry(home: Path | None = None) -> None:
    """Opt out of OpenVINO's usage telemetry unless the user already chose. `import openvino` sends
    an event to Google Analytics from a forked process unless a consent file says no; in this
    multi-threaded server that fork hung at an offline exit (a cold-start server that never stopped
    on SIGTERM: its exit waited for the fork, stuck in getaddrinfo), and a deployment should not
    report its visitors' use anyway. The file is the one OpenVINO's own `opt_in_out --opt_out` writes."""
    path = (home or Path.home()) / "intel" / "openvino_telemetry"
    if path.exists():
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("0\n")
    except OSError:
        pass  # a read-only home: nothing to keep it from sending, but nothing breaks either



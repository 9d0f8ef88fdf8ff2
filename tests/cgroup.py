"""A memory cgroup (v1 or v2) that caps a process tree the way Streamlit Community Cloud caps an app.

Needs root and a writable cgroup file system; `MemoryCgroup.create` returns the reason otherwise.
Besides the kernel's own peak (which counts all page cache, e.g. an extracted data set that is
never read again), it samples the group's resident memory: anonymous memory plus files mapped
into its processes (shared libraries, counted once, and memory-mapped data), the working set
that cannot be dropped without killing or thrashing.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

V1 = Path("/sys/fs/cgroup/memory")
V2 = Path("/sys/fs/cgroup")


class MemoryCgroup:
    def __init__(self, path: Path, version: int, limit_mb: int) -> None:
        self.path, self.version, self.limit_mb = path, version, limit_mb
        self.peak_rss_mb = 0.0
        self.peak_anon_mb = 0.0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    @classmethod
    def create(cls, limit_mb: int) -> "MemoryCgroup | str":
        name = f"flowers-test-{uuid.uuid4().hex[:8]}"
        limit = str(limit_mb * 2**20)
        try:
            if (V1 / "memory.limit_in_bytes").exists():
                path = V1 / name
                path.mkdir()
                (path / "memory.limit_in_bytes").write_text(limit)
                if (path / "memory.memsw.limit_in_bytes").exists():
                    (path / "memory.memsw.limit_in_bytes").write_text(limit)  # no escape into swap
                group = cls(path, 1, limit_mb)
            elif (V2 / "cgroup.controllers").exists() and "memory" in (V2 / "cgroup.controllers").read_text():
                path = V2 / name
                path.mkdir()
                (path / "memory.max").write_text(limit)
                if (path / "memory.swap.max").exists():
                    (path / "memory.swap.max").write_text("0")
                group = cls(path, 2, limit_mb)
            else:
                return "no memory cgroup controller is mounted"
        except OSError as exc:
            return f"cannot create a memory cgroup here ({exc}); it needs root and a writable /sys/fs/cgroup"
        # A page is charged to the group that first reads it: drop the clean page cache so that the
        # libraries the app loads are charged to this group, as in a fresh Cloud container.
        try:
            os.sync()
            Path("/proc/sys/vm/drop_caches").write_text("1")
        except OSError:
            pass
        group._sampler.start()
        return group

    def enter(self) -> None:
        """For `preexec_fn`: move the new process (and so all its children) into the group."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def _stat(self) -> dict[str, int]:
        name = "memory.stat"
        out = {}
        for line in (self.path / name).read_text().splitlines():
            key, value = line.split()
            out[key] = int(value)
        return out

    def anon_mb(self) -> float:
        stat = self._stat()
        return (stat["rss"] if self.version == 1 else stat["anon"]) / 2**20

    def rss_mb(self) -> float:
        """Resident memory of the group: anonymous plus mapped files."""
        stat = self._stat()
        mapped = stat["mapped_file"] if self.version == 1 else stat["file_mapped"]
        return self.anon_mb() + mapped / 2**20

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_rss_mb = max(self.peak_rss_mb, self.rss_mb())
                self.peak_anon_mb = max(self.peak_anon_mb, self.anon_mb())
            except OSError:
                return
            self._stop.wait(0.2)

    @property
    def peak_usage_mb(self) -> float:
        """The kernel's peak, page cache included."""
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        return int((self.path / name).read_text()) / 2**20

    @property
    def oom_kills(self) -> int:
        text = (self.path / ("memory.oom_control" if self.version == 1 else "memory.events")).read_text()
        for line in text.splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0

    def close(self) -> None:
        self._stop.set()
        self._sampler.join(timeout=5)
        remove_group(self.path)


def remove_group(path: Path) -> None:
    """Kill whatever still runs in a test's cgroup, then remove the group."""
    for _ in range(50):
        for pid in (path / "cgroup.procs").read_text().split():
            try:
                os.kill(int(pid), 9)
            except ProcessLookupError:
                pass
        try:
            path.rmdir()
            return
        except OSError:
            time.sleep(0.1)


CPU_V1 = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 100_000


class CpuQuota:
    """A CPU cgroup that gives a process tree `cores` of CPU time (CFS quota per 100 ms period),
    as Community Cloud gives an app between 0.078 and 2 cores. v1 (`cpu.cfs_quota_us`) or v2 (`cpu.max`)."""

    def __init__(self, path: Path, cores: float) -> None:
        self.path, self.cores = path, cores

    @classmethod
    def create(cls, cores: float) -> "CpuQuota | str":
        name = f"flowers-test-cpu-{uuid.uuid4().hex[:8]}"
        quota = str(int(cores * PERIOD_US))
        try:
            if (CPU_V1 / "cpu.cfs_quota_us").exists():
                path = CPU_V1 / name
                path.mkdir()
                (path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                (path / "cpu.cfs_quota_us").write_text(quota)
            elif (V2 / "cgroup.controllers").exists() and "cpu" in (V2 / "cgroup.controllers").read_text():
                path = V2 / name
                path.mkdir()
                (path / "cpu.max").write_text(f"{quota} {PERIOD_US}")
            else:
                return "no cpu cgroup controller is mounted"
        except OSError as exc:
            return f"cannot create a cpu cgroup here ({exc}); it needs root and a writable /sys/fs/cgroup"
        return cls(path, cores)

    def enter(self) -> None:
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def set_cores(self, cores: float | None) -> None:
        """Change the quota of the running group; None lifts it."""
        self.cores = cores
        quota = str(int(cores * PERIOD_US)) if cores else None
        if (self.path / "cpu.cfs_quota_us").exists():
            (self.path / "cpu.cfs_quota_us").write_text(quota or "-1")
        else:
            (self.path / "cpu.max").write_text(f"{quota or 'max'} {PERIOD_US}")

    @property
    def throttled_s(self) -> float:
        """How long the group was held back by its quota."""
        for line in (self.path / "cpu.stat").read_text().splitlines():
            key, value = line.split()
            if key == "throttled_time":  # v1, ns
                return int(value) / 1e9
            if key == "throttled_usec":  # v2
                return int(value) / 1e6
        return 0.0

    def close(self) -> None:
        remove_group(self.path)

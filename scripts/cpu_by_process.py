"""CPU seconds used by the app's server, Chromium's processes (by kind) and pytest, sampled while
something else runs: where a crowd's time goes (docs/results.md).

Every 0.5 s, one JSON line of cumulative CPU seconds per kind, counted from the sampler's start
(a process that ended keeps its last reading):

    python scripts/cpu_by_process.py OUT.jsonl &  python -m pytest -m crowd -n 0 -s;  kill %1
"""

from __future__ import annotations

import argparse
import json
import time

import psutil


def kind(cmdline: str, name: str) -> str | None:
    if "streamlit" in cmdline and " run " in f" {cmdline} ":
        return "server"
    if "chromium" in cmdline or "chrome" in name:
        for part in ("renderer", "gpu-process", "utility", "zygote"):
            if f"--type={part}" in cmdline:
                return part
        return "browser"
    return "pytest" if "pytest" in cmdline else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="the JSON-lines file to write")
    args = parser.parse_args()
    seen: dict[int, tuple[str, float]] = {}
    start = time.time()
    with open(args.out, "w") as out:
        while True:
            for p in psutil.process_iter(["cmdline", "name", "cpu_times"]):
                cpu = p.info["cpu_times"]
                what = kind(" ".join(p.info["cmdline"] or []), p.info["name"] or "")
                if what and cpu is not None:
                    seen[p.pid] = (what, cpu.user + cpu.system)
            totals: dict[str, float] = {}
            for what, seconds in seen.values():
                totals[what] = totals.get(what, 0.0) + seconds
            out.write(json.dumps({"t": round(time.time() - start, 2)} | {k: round(v, 2) for k, v in totals.items()}) + "\n")
            out.flush()
            time.sleep(0.5)


if __name__ == "__main__":
    main()

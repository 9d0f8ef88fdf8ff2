"""Two (or more) models side by side on one machine, in one run: held-out accuracy with its interval,
single-photo latency per backend, throughput at batch 32, peak memory and file sizes.

    python scripts/compare_models.py models/flowers-efficientnet-lite0 models/flowers-mobilenetv2

Each model gets one benchmark sweep (each backend in its own process, the same real photos for
every backend of a model, repeats and medians, as the Benchmark page measures); accuracy is read
from the cards (`python -m core evaluate --split test` reproduces it). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.measure import benchmark, runs  # noqa: E402
from core.model import registry  # noqa: E402
from core.settings import SweepConfig  # noqa: E402
from core.system import describe_cpu, machine_summary  # noqa: E402

# Each a variant and the name of its default setup in a sweep (settings.SETUPS).
COMPARED = ("tensorflow", "openvino-fp32", "openvino-fp16", "openvino-int8")


def measure(model_dir: Path, photos: int, repeats: int) -> dict[str, dict[tuple[str, int], float]]:
    cfg = SweepConfig(str(model_dir), list(COMPARED), sizes=[photos], batches=[1, 32], repeats=repeats)
    run_dir = benchmark.run_sweep(cfg, out_root=Path(tempfile.mkdtemp(prefix="compare-")))
    df = runs.frame(runs.load_run(run_dir.name, run_dir.parent))
    rows = {(r.backend, int(r.batch)): r for r in df.itertuples()}
    return {"p50": {k: r.batch_latency_ms_p50 for k, r in rows.items()},
            "ips": {k: r.throughput_ips for k, r in rows.items()},
            "rss": {k: r.rss_peak_mb for k, r in rows.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--photos", type=int, default=64, help="photos per timed run")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    columns = {}
    for model_dir in args.models:
        card = registry.read_card(model_dir)
        test = card.scores["test"]
        m = measure(model_dir, args.photos, args.repeats)
        col = {"architecture": f"{card.architecture} at {card.image_size} px"}
        for variant in COMPARED:
            lo, hi = test.accuracy_ci95[variant]
            col[f"held out, {variant}"] = f"{test.accuracy[variant]:.1%} [{lo:.1%}, {hi:.1%}]"
        col["agreement with TF, openvino-fp32 / int8"] = (f"{test.agreement_with_tf['openvino-fp32']:.1%} / "
                                                          f"{test.agreement_with_tf['openvino-int8']:.1%}")
        for backend in COMPARED:
            col[f"one photo, {backend} (ms, p50)"] = f"{m['p50'][(backend, 1)]:.2f}"
        for backend in COMPARED:
            col[f"batch 32, {backend} (photos/s)"] = f"{m['ips'][(backend, 32)]:.0f}"
        for backend in COMPARED:
            col[f"peak memory, {backend} process (MB)"] = f"{max(m['rss'][(backend, b)] for b in (1, 32)):.0f}"
        for variant in COMPARED:
            col[f"size, {variant} (MB)"] = f"{registry.variant_size_bytes(model_dir, variant) / 1e6:.1f}"
        shipped = sum(f.stat().st_size for f in Path(model_dir).rglob("*") if f.is_file() and ".tmp-" not in str(f))
        col["folder as it is (MB)"] = f"{shipped / 1e6:.1f}"
        columns[card.name] = col
    names = list(columns)
    print(f"Machine: {describe_cpu(machine_summary())}; {args.photos} photos per timed run, {args.repeats} repeats, medians.\n")
    print("| | " + " | ".join(names) + " |")
    print("| --- |" + " --- |" * len(names))
    for key in columns[names[0]]:
        print(f"| {key} | " + " | ".join(columns[n][key] for n in names) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

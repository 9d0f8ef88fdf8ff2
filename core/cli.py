"""`python -m core ...`: every job of the dashboard, headless."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

from core.progress import Event


def _print_progress(event: Event) -> None:
    """Progress on stderr so that --json output on stdout stays parseable."""
    if event.stage == "batch":
        return
    if event.stage == "fit":
        print(f"[{event.message}] epochs {int(event.step) + 1} to {int(event.total)}", file=sys.stderr)
        return
    if event.stage == "epoch":
        m = event.metrics
        print(f"[{m['phase']}] epoch {event.step}/{event.total} "
              f"loss {m.get('loss', 0):.4f} acc {m.get('accuracy', 0):.4f} "
              f"val_loss {m.get('val_loss', 0):.4f} val_acc {m.get('val_accuracy', 0):.4f}", file=sys.stderr)
    elif event.total is None or event.step in (0, event.total) or event.stage in ("convert", "evaluate", "saved"):
        print(f"[{event.stage}] {event.message}", file=sys.stderr)


def _model_dir(value: str | None) -> Path:
    from core import registry

    return registry.resolve_model_dir(value)


def cmd_train(args: argparse.Namespace) -> int:
    from core import training

    given = {
        "arch": args.arch, "alpha": args.alpha, "image_size": args.image_size, "epochs": args.epochs,
        "fine_tune_epochs": args.fine_tune_epochs, "fine_tune_layers": args.fine_tune_layers,
        "batch_size": args.batch_size, "learning_rate": args.learning_rate,
        "fine_tune_learning_rate": args.fine_tune_learning_rate, "dropout": args.dropout,
        "label_smoothing": args.label_smoothing, "patience": args.patience, "val_fraction": args.val_fraction,
        "test_fraction": args.test_fraction, "seed": args.seed,
        "augment": False if args.no_augment else None,
    }
    # A named recipe (the Train page's) is the starting point; flags given on top override it.
    base = asdict(training.RECIPES[args.recipe].config) if args.recipe else {}
    cfg = training.TrainConfig(**(base | {k: v for k, v in given.items() if v is not None}
                                  | {"weights": None if args.no_pretrained else "imagenet"}))
    out = Path(args.out)
    command = "python -m core " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    path = training.train(args.data, cfg, out.name, out.parent, _print_progress, overwrite=args.overwrite,
                          command=command)
    print(path)
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from core import convert, evaluate, registry

    model_dir = _model_dir(args.model_dir)
    meta = registry.read_metadata(model_dir)
    precisions = tuple(p.strip() for p in args.precisions.split(",") if p.strip())
    parts = None
    calibration = None
    if "int8" in precisions or not args.no_validate:
        parts = evaluate.model_split(meta | ({"data": meta["data"] | {"source": args.data}} if args.data else {}),
                                     _print_progress)
    if "int8" in precisions:
        calibration = convert.calibration_images(parts, int(meta["image_size"]), args.calibration_size,
                                                 meta["config"]["seed"], _print_progress)
    record = convert.convert(model_dir, calibration, precisions, _print_progress, args.calibration_size)
    print(json.dumps(record, indent=2))
    if not args.no_validate:
        print(json.dumps(evaluate.validate(model_dir, parts, _print_progress), indent=2))
    return 0


def _ov_settings(args: argparse.Namespace):
    from core.backends import OVSettings

    return OVSettings(precision=args.precision, hint=args.hint, pinning=args.pinning)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from core import evaluate

    variants = args.variants.split(",") if args.variants else None
    report = evaluate.evaluate_source(_model_dir(args.model_dir), args.data, variants, _ov_settings(args),
                                      _print_progress, args.split)
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['n_images']} images")
        for variant, row in report["variants"].items():
            print(f"  {variant:16s} accuracy {row['accuracy']:.4f}  agreement with TF {row['agreement_with_tf']:.4f}"
                  f"  max |p - p_tf| {row['max_prob_diff']:.2e}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from core.predict import Predictor

    variants = args.variants.split(",") if args.variants else None
    predictor = Predictor(_model_dir(args.model_dir), variants, _ov_settings(args))
    results = [predictor.classify(Path(p).name, Path(p).read_bytes() if Path(p).is_file() else b"")
               for p in args.images]
    if args.json:
        print(json.dumps({"model": predictor.meta["name"], "images": [r.to_dict() for r in results]}))
    else:
        for r in results:
            if r.error:
                print(f"{r.name}: error: {r.error}")
                continue
            cells = ", ".join(f"{v} {res.top_class} {res.probabilities[res.top_class]:.3f} ({res.latency_ms:.1f} ms)"
                              for v, res in r.results.items())
            print(f"{r.name}: {cells}{'' if r.agree else '  [DISAGREE]'}")
    return 1 if any(r.error for r in results) else 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from core import benchmark, registry

    cfg = benchmark.SweepConfig(
        model_dir=str(_model_dir(args.model_dir)), backends=args.backends.split(","),
        sizes=benchmark.parse_int_list(args.sizes, "--sizes"), batches=benchmark.parse_int_list(args.batch, "--batch"),
        repeats=args.repeats, warmup=args.warmup, images=args.images,
    )
    run_dir = benchmark.run_sweep(cfg, _print_progress, out_root=Path(args.out) if args.out else None)
    run = benchmark.load_run(run_dir.name, run_dir.parent)
    if args.benchmark_app:
        checks = []
        for key in [k for k in cfg.backends if benchmark.BACKENDS[k].async_queue]:
            spec = benchmark.BACKENDS[key]
            for batch in cfg.batches:
                theirs = benchmark.benchmark_app(Path(cfg.model_dir), spec.variant, spec.ov, batch, args.benchmark_app)
                rows = [r for r in run["rows"] if r["backend"] == key and r["batch"] == batch]
                ours = max(rows, key=lambda r: r["size"])["throughput_ips"]  # the longest run, not the best
                checks.append(theirs | {"backend": key, "ours_throughput_ips": ours,
                                        "ratio": ours / theirs["throughput_ips"]})
                print(f"[benchmark_app] {key} batch {batch}: ours {ours:.1f} img/s, "
                      f"benchmark_app {theirs['throughput_ips']:.1f} img/s ({ours / theirs['throughput_ips']:.0%})",
                      file=sys.stderr)
        run["benchmark_app"] = checks
        registry.write_json_atomic(run_dir / "run.json", run)
    df = benchmark.frame(run)
    cols = ["backend", "precision", "hint", "batch", "size", "total_s_median", "throughput_ips",
            "batch_latency_ms_p50", "batch_latency_ms_p99", "rss_peak_mb"]
    print(df[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}") if not df.empty else "no results")
    for line in benchmark.summary(run):
        print(line)
    print(run_dir)
    return 0 if not df.empty else 1


def cmd_charts(args: argparse.Namespace) -> int:
    import re

    from core import benchmark, charts

    run_dir = Path(args.run)
    run = benchmark.load_run(run_dir.name, run_dir.parent)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for title, fig in charts.run_figures(run).items():
        stem = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
        fig.write_html(out / f"{stem}.html", include_plotlyjs="cdn")
        if args.png:
            (out / f"{stem}.png").write_bytes(charts.figure_png(fig))
        print(out / stem)
    return 0


def _add_ov_flags(p: argparse.ArgumentParser) -> None:
    from core.backends import HINTS, PRECISIONS

    p.add_argument("--precision", choices=PRECISIONS, default="f32", help="OpenVINO inference precision hint")
    p.add_argument("--hint", choices=HINTS, default="LATENCY", help="OpenVINO performance hint")
    p.add_argument("--pinning", action="store_true", help="enable OpenVINO CPU pinning")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model on a dataset URL, archive or folder")
    t.add_argument("--data", default=None, help="dataset URL, .tgz/.zip archive or folder (default: official flower_photos)")
    from core.training import RECIPES, TrainConfig

    d = TrainConfig()  # the defaults, shown in --help; unset flags fall back to the recipe, then to these
    t.add_argument("--recipe", choices=list(RECIPES), default=None,
                   help="start from one of the Train page's recipes; other flags override it")
    t.add_argument("--arch", choices=("tutorial_cnn", "mobilenet_v2"), default=None, help=f"default {d.arch}")
    t.add_argument("--alpha", type=float, default=None, help=f"default {d.alpha}")
    t.add_argument("--image-size", type=int, default=None, help="default 224 for mobilenet_v2, 180 for the CNN")
    t.add_argument("--epochs", type=int, default=None,
                   help=f"epochs (frozen-backbone epochs for mobilenet_v2), default {d.epochs}")
    t.add_argument("--fine-tune-epochs", type=int, default=None, help=f"default {d.fine_tune_epochs}")
    t.add_argument("--fine-tune-layers", type=int, default=None, help=f"default {d.fine_tune_layers}")
    t.add_argument("--batch-size", type=int, default=None, help=f"default {d.batch_size}")
    t.add_argument("--learning-rate", type=float, default=None, help=f"default {d.learning_rate}")
    t.add_argument("--fine-tune-learning-rate", type=float, default=None, help=f"default {d.fine_tune_learning_rate}")
    t.add_argument("--dropout", type=float, default=None, help=f"default {d.dropout}")
    t.add_argument("--label-smoothing", type=float, default=None, help=f"default {d.label_smoothing}")
    t.add_argument("--patience", type=int, default=None, help=f"default {d.patience}")
    t.add_argument("--no-augment", action="store_true")
    t.add_argument("--no-pretrained", action="store_true", help="random init instead of ImageNet weights")
    t.add_argument("--val-fraction", type=float, default=None, help=f"default {d.val_fraction}")
    t.add_argument("--test-fraction", type=float, default=None,
                   help=f"held-out share, never used for model selection; default {d.test_fraction}")
    t.add_argument("--seed", type=int, default=None, help=f"default {d.seed}")
    t.add_argument("--out", required=True, help="model folder to create, e.g. models/my-flowers")
    t.add_argument("--overwrite", action="store_true")
    t.set_defaults(func=cmd_train)

    c = sub.add_parser("convert", help="add OpenVINO IR variants to a model folder and validate them")
    c.add_argument("--model-dir", default=None)
    c.add_argument("--precisions", default="fp32,fp16,int8")
    c.add_argument("--data", default=None, help="dataset source if it moved since training")
    c.add_argument("--calibration-size", type=int, default=300)
    c.add_argument("--no-validate", action="store_true", help="skip accuracy checks on the validation split")
    c.set_defaults(func=cmd_convert)

    e = sub.add_parser("evaluate", help="accuracy and TF agreement of every variant on a dataset")
    e.add_argument("--model-dir", default=None)
    e.add_argument("--data", required=True)
    e.add_argument("--variants", default=None, help="comma-separated, default: all available")
    e.add_argument("--split", choices=("train", "val", "test"), default=None,
                   help="evaluate only this part of the model's own seeded split of --data")
    e.add_argument("--json", action="store_true")
    _add_ov_flags(e)
    e.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="classify image files with every variant")
    p.add_argument("--model-dir", default=None)
    p.add_argument("images", nargs="+")
    p.add_argument("--variants", default=None)
    p.add_argument("--json", action="store_true")
    _add_ov_flags(p)
    p.set_defaults(func=cmd_predict)

    from core.benchmark import BACKENDS, DEFAULT_BACKENDS

    b = sub.add_parser("benchmark", help="time and memory sweep, each backend in its own process")
    b.add_argument("--model-dir", default=None)
    b.add_argument("--backends", default=",".join(DEFAULT_BACKENDS), help=f"comma-separated from: {', '.join(BACKENDS)}")
    b.add_argument("--sizes", default="10,20,30,40,50,60,70,80,90,100", help="test sizes (images per run)")
    b.add_argument("--batch", default="1,32", help="batch sizes")
    b.add_argument("--repeats", type=int, default=3)
    b.add_argument("--warmup", type=int, default=1)
    b.add_argument("--images", default=None, help="dataset source for the images (default: the model's own split)")
    b.add_argument("--out", default=None, help="results folder (default: results/)")
    b.add_argument("--benchmark-app", type=int, default=0, metavar="SECONDS",
                   help="also run OpenVINO's benchmark_app for this long on each THROUGHPUT backend and compare")
    b.set_defaults(func=cmd_benchmark)

    ch = sub.add_parser("charts", help="write a saved benchmark run's charts as HTML (and PNG)")
    ch.add_argument("run", help="a run folder, e.g. results/20261126-072423-flowers-mobilenetv2")
    ch.add_argument("--out", required=True)
    ch.add_argument("--png", action="store_true", help="also PNG (needs kaleido and Chrome/Chromium)")
    ch.set_defaults(func=cmd_charts)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    if getattr(args, "data", "") is None and args.command == "train":
        from core.data import OFFICIAL_URL

        args.data = OFFICIAL_URL
    from core.errors import UserError

    try:
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

"""`python -m core ...`: every job of the dashboard, headless."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from core.progress import Event


def _print_progress(event: Event) -> None:
    """Progress on stderr so that --json output on stdout stays parseable."""
    if event.stage == "batch":
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

    cfg = training.TrainConfig(
        arch=args.arch, alpha=args.alpha, image_size=args.image_size, epochs=args.epochs,
        fine_tune_epochs=args.fine_tune_epochs, fine_tune_layers=args.fine_tune_layers, batch_size=args.batch_size,
        learning_rate=args.learning_rate, fine_tune_learning_rate=args.fine_tune_learning_rate,
        augment=not args.no_augment, dropout=args.dropout, label_smoothing=args.label_smoothing,
        patience=args.patience, val_fraction=args.val_fraction, test_fraction=args.test_fraction, seed=args.seed,
        weights=None if args.no_pretrained else "imagenet",
    )
    out = Path(args.out)
    command = "python -m core " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    path = training.train(args.data, cfg, out.name, out.parent, _print_progress, overwrite=args.overwrite,
                          command=command)
    print(path)
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from core import convert, data, evaluate, registry

    model_dir = _model_dir(args.model_dir)
    meta = registry.read_metadata(model_dir)
    precisions = tuple(p.strip() for p in args.precisions.split(",") if p.strip())
    parts = None
    calibration = None
    if "int8" in precisions or not args.no_validate:
        parts = evaluate.model_split(meta | ({"data": meta["data"] | {"source": args.data}} if args.data else {}),
                                     _print_progress)
    if "int8" in precisions:
        import random

        # The calibration subset is drawn from the training split only, with the model's seed.
        items = random.Random(meta["config"]["seed"]).sample(parts.train, min(args.calibration_size, len(parts.train)))
        calibration, _, _ = data.load_arrays(items, int(meta["image_size"]), _print_progress, "load calibration")
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
                                      _print_progress)
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
    t.add_argument("--arch", choices=("tutorial_cnn", "mobilenet_v2"), default="mobilenet_v2")
    t.add_argument("--alpha", type=float, default=0.5)
    t.add_argument("--image-size", type=int, default=None)
    t.add_argument("--epochs", type=int, default=5, help="epochs (frozen-backbone epochs for mobilenet_v2)")
    t.add_argument("--fine-tune-epochs", type=int, default=0)
    t.add_argument("--fine-tune-layers", type=int, default=30)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--learning-rate", type=float, default=1e-3)
    t.add_argument("--fine-tune-learning-rate", type=float, default=1e-4)
    t.add_argument("--dropout", type=float, default=0.2)
    t.add_argument("--label-smoothing", type=float, default=0.0)
    t.add_argument("--patience", type=int, default=3)
    t.add_argument("--no-augment", action="store_true")
    t.add_argument("--no-pretrained", action="store_true", help="random init instead of ImageNet weights")
    t.add_argument("--val-fraction", type=float, default=0.2)
    t.add_argument("--test-fraction", type=float, default=0.0, help="held-out share, never used for model selection")
    t.add_argument("--seed", type=int, default=123)
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
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    if getattr(args, "data", "") is None and args.command == "train":
        from core.data import OFFICIAL_URL

        args.data = OFFICIAL_URL
    from core.data import DatasetError
    from core.registry import ModelError
    from core.training import WeightsUnavailable

    try:
        return args.func(args)
    except (DatasetError, ModelError, WeightsUnavailable, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

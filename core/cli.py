"""`python -m core ...`: every job of the dashboard, headless.

The flags of `train`, `benchmark`, `evaluate` and `predict` are made from the fields of
`core.settings`' dataclasses, so the CLI, the pages and the jobs share one set of defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import signal
import sys
import types
import typing
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator, TextIO

from core import settings, variants
from core.model import recipes, tuned
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
        val = (f" val_loss {m['val_loss']:.4f} val_acc {m['val_accuracy']:.4f}" if "val_accuracy" in m
               else "")  # a final fit has no validation photos
        print(f"[{m['phase']}] epoch {event.step}/{event.total} "
              f"loss {m.get('loss', 0):.4f} acc {m.get('accuracy', 0):.4f}{val}", file=sys.stderr)
    elif (event.total is None or event.step in (0, event.total)
          or event.stage in ("convert", "evaluate", "saved", "benchmark_app")):
        print(f"[{event.stage}] {event.message}", file=sys.stderr)


# ---------------------------------------------------------------- flags from the settings dataclasses

def _parser_for(hint: Any, flag: str):
    """The argparse `type` for a field's annotation: int, float, str, or a comma-separated list."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, types.UnionType) and len(args) == 1:
        hint = args[0]
    if typing.get_origin(hint) is list:
        if typing.get_args(hint) == (int,):
            return lambda text: settings.parse_int_list(text, flag)
        return lambda text: [x.strip() for x in text.split(",") if x.strip()]
    return hint


def add_fields(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """A flag per field of `cls`, with its help and default. Unset flags stay None, so that
    `config_from` can lay them over another base (a recipe) before the dataclass's own defaults."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        flags = f.metadata.get("flags") or ("--" + f.name.replace("_", "-"),)
        text = f.metadata.get("help", "") + (f" (default: {shown})" if default not in (None, "") else "")
        if hints[f.name] is bool:
            parser.add_argument(*flags, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            parser.add_argument(*flags, dest=f.name, type=_parser_for(hints[f.name], flags[0]), default=None,
                                help=text, metavar=f.name.upper())


def config_from(cls: type, args: argparse.Namespace, base: dict[str, Any] | None = None, **fixed: Any):
    """`cls` built from `base`, then the flags that were given, then `fixed`."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
             if getattr(args, f.name, None) is not None}
    return cls(**((base or {}) | given | fixed))


# ---------------------------------------------------------------- commands

def _model_dir(value: str | None) -> Path:
    from core.model import registry

    return registry.resolve_model_dir(value or None)


def cmd_train(args: argparse.Namespace) -> int:
    from core.model import data, training

    # A named recipe (the Train page's) is the starting point; flags given on top override it.
    base = asdict(recipes.RECIPES[args.recipe].config) if args.recipe else {}
    cfg = config_from(recipes.TrainConfig, args, base)
    out = Path(args.out)
    command = "python -m core " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    path = training.train(args.data or data.OFFICIAL_URL, cfg, out.name, out.parent, _print_progress,
                          overwrite=args.overwrite, command=command)
    print(path)
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from core.model import convert, registry
    from core.quality import evaluate

    model_dir = _model_dir(args.model_dir)
    card = registry.read_card(model_dir)
    precisions = tuple(p.strip() for p in args.precisions.split(",") if p.strip())
    split = calibration = validation = None
    if "int8" in precisions or not args.no_validate:
        split = card.rebuild_split(args.data, _print_progress)
    if "int8" in precisions:
        calibration = convert.calibration_images(split, card.image_size, args.calibration_size, card.seed,
                                                 _print_progress)
        if args.accuracy_control:
            validation = convert.validation_images(split, card.image_size, card.seed, _print_progress)
    record = convert.convert(model_dir, calibration, precisions, _print_progress, args.calibration_size, validation)
    print(json.dumps(record, indent=2), file=args.stdout)
    if not args.no_validate:
        scores = evaluate.validate_and_record(model_dir, split, _print_progress)
        print(json.dumps({subset: asdict(s) for subset, s in scores.items()}, indent=2), file=args.stdout)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from core.quality import evaluate

    variants = args.variants.split(",") if args.variants else None
    if args.data is None and args.split is None:  # the model's own photos: the held-out ones, not its training set
        args.split = "test"
    scores, unreadable = evaluate.evaluate_dataset(_model_dir(args.model_dir), args.data, variants,
                                                   config_from(settings.OVSettings, args), _print_progress,
                                                   args.split)
    if args.json:
        print(json.dumps(asdict(scores) | {"subset": args.split, "unreadable": unreadable}), file=args.stdout)
        return 0
    print(f"{scores.n_images} images" + (f" ({len(unreadable)} unreadable, skipped)" if unreadable else ""))
    for variant, accuracy in scores.accuracy.items():
        line = f"  {variant:16s} accuracy {accuracy:.4f}"
        if variant in scores.agreement_with_tf:
            line += (f"  agreement with TF {scores.agreement_with_tf[variant]:.4f}"
                     f"  max |p - p_tf| {scores.max_prob_diff[variant]:.2e}")
        print(line)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from core.runtimes.predict import Predictor

    variants = args.variants.split(",") if args.variants else None
    predictor = Predictor(_model_dir(args.model_dir), variants, config_from(settings.OVSettings, args))
    results = [predictor.classify(Path(p).name, Path(p).read_bytes() if Path(p).is_file() else b"")
               for p in args.images]
    if args.json:
        print(json.dumps({"model": predictor.card.name, "images": [r.to_dict() for r in results]}), file=args.stdout)
    else:
        for r in results:
            if r.error:
                print(f"{r.name}: error: {r.error}")
                continue
            cells = ", ".join(f"{v} {res.top_class} {res.probabilities[res.top_class]:.3f} ({res.latency_ms:.1f} ms)"
                              for v, res in r.results.items())
            looks = (f" (looks like {r.looks_like.label}, {r.looks_like.probability:.0%} by ImageNet)"
                     if r.known is False and r.looks_like else "")
            print(f"{r.name}: {r.verdict}{looks} | {cells}")
    return 1 if any(r.error for r in results) else 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from core.measure import benchmark, benchmark_app, runs

    for note in settings.renamed(args.backends or []):
        print(f"note: {note}", file=sys.stderr)
    cfg = config_from(settings.SweepConfig, args, model_dir=str(_model_dir(args.model_dir)))
    run_dir = benchmark.run_sweep(cfg, _print_progress, out_root=Path(args.out) if args.out else None)
    if args.benchmark_app:
        benchmark_app.compare_with_benchmark_app(run_dir, args.benchmark_app, _print_progress)
    run = runs.load_run(run_dir.name, run_dir.parent)
    df = runs.frame(run)
    print(df[runs.SUMMARY_COLUMNS].to_string(index=False, float_format=lambda v: f"{v:.4g}") if not df.empty else "no results")
    for line in runs.summary(run):
        print(line)
    print(run_dir)
    return 0 if not df.empty else 1


def cmd_latency(args: argparse.Namespace) -> int:
    from core.measure import latency
    from core.system import machine_summary

    table = latency.page_vs_isolated(_model_dir(args.model_dir), args.images, args.photos, args.repeats,
                                     _print_progress)
    if args.json:
        print(json.dumps({"machine": machine_summary(), "photos": args.photos, "rows": table.to_dict("records")}), file=args.stdout)
    else:
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from core.measure import benchmark_app, tune

    model_dir = _model_dir(args.model_dir)
    tuning = tune.tune(model_dir, args.objective, args.budget_s, args.p99_ms, _print_progress,
                       variants=args.variants.split(",") if args.variants else None,
                       peer_variants=None if args.peers is None else [p for p in args.peers.split(",") if p])
    if args.benchmark_app:
        tuning = benchmark_app.check_winners(model_dir, tuning, args.benchmark_app, _print_progress)
    if args.json:
        print(json.dumps(tuning.to_dict()), file=args.stdout)
        return 0
    for objective, best in tuning.winners.items():
        if best is None:
            print(f"{objective}: no setup passed the accuracy guard")
            continue
        print(f"{objective}: {best.label}, batch {best.batch}: p50 {best.p50_ms:.2f} ms, "
              f"p99 {best.p99_ms:.2f} ms, {best.throughput_ips:.0f} images/s, accuracy {best.accuracy:.1%} "
              f"(TensorFlow {best.tf_accuracy:.1%}), agreement {best.agreement_with_tf:.1%}")
    for line in tuned.summary(tuning):
        if "best peer" in line or "failed" in line:
            print(line)
    for check in tuning.benchmark_app:
        print(f"benchmark_app -hint {check.objective}: {check.benchmark_app:.2f} {check.unit}; tuned "
              f"{check.ours:.2f} ({'at least as good' if check.tuned_is_at_least_as_good else 'worse'})")
    ineligible = [c for c in tuning.candidates if not c.eligible]
    print(f"{len(tuning.candidates)} setups measured in {tuning.seconds:.0f} s, {len(ineligible)} ineligible"
          + (f" (e.g. {ineligible[0].label}: {ineligible[0].reason})" if ineligible else ""))
    return 0


def cmd_openset_eval(args: argparse.Namespace) -> int:
    from core.model import openset
    from core.quality import calibrate

    report = calibrate.evaluate_on(_model_dir(args.model_dir), args.data, args.variant, _print_progress)
    if args.record:
        openset.record_evaluation(_model_dir(args.model_dir), report, args.record)
    if args.json:
        print(json.dumps(asdict(report)), file=args.stdout)
        return 0
    print(f"{report.model} ({report.variant}): {report.flowers} held-out flowers")
    for s in report.scores:
        print(f"{openset.SCORE_NAMES[s.score]}{' (in use)' if s.in_use else ''}: AUROC {s.auroc:.3f}")
        rows = [("keeping 95% of held-out flowers", s.at_95)]
        if s.in_use:
            rows.append((f"at the model's threshold (keeps {s.flowers_kept_at_model:.1%} of held-out flowers)",
                         s.at_model))
        for what, rates in rows:
            print(f"  taken for a flower, {what}: "
                  + ", ".join(f"{r.kind} {r.accepted:.1%} of {r.photos}" for r in rates))
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from core.model import openset
    from core.quality import calibrate

    calibration = calibrate.calibrate(_model_dir(args.model_dir), _print_progress)
    if args.json:
        print(json.dumps(calibration.to_card()), file=args.stdout)
        return 0
    m = calibration.measured
    print(f"temperature {calibration.temperature:.2f}; score: {openset.SCORE_NAMES[calibration.score]}, threshold "
          f"{calibration.threshold:.3f} (keeps {calibration.keep:.0%} of the correctly classified validation photos)")
    print(f"{m['flowers']} held-out flowers vs {m['non_flowers']} pictures that are not flowers:")
    for name, v in m["candidates"].items():
        print(f"  candidate {name} (TensorFlow): AUROC {v['auroc']:.3f}, FPR at 95% TPR {v['fpr_at_95_tpr']:.1%}, "
              f"{v['flowers_rejected']} flowers rejected, {len(v['non_flowers_accepted'])} non-flowers accepted")
    for variant, v in m["variants"].items():
        print(f"  {variant}: AUROC {v['auroc']:.3f}, FPR at 95% TPR {v['fpr_at_95_tpr']:.1%}, "
              f"{v['flowers_rejected']} flowers rejected, {len(v['non_flowers_accepted'])} non-flowers accepted, "
              f"ECE {v['ece_before']:.3f} -> {v['ece_after']:.3f}")
    return 0


def cmd_charts(args: argparse.Namespace) -> int:
    import re

    from core.measure import run_charts, runs

    run_dir = Path(args.run)
    run = runs.load_run(run_dir.name, run_dir.parent)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for title, fig in run_charts.run_figures(runs.frame(run)).items():
        stem = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
        fig.write_html(out / f"{stem}.html", include_plotlyjs="cdn")
        if args.png:
            (out / f"{stem}.png").write_bytes(run_charts.figure_png(fig))
        print(out / stem)
    return 0


def cmd_export_serving(args: argparse.Namespace) -> int:
    from core.serve import serving

    model_dir = _model_dir(args.model_dir)
    out = serving.export(model_dir, Path(args.out), args.variant or serving.default_variant(model_dir, _tuned(args)),
                         _tuned(args), args.batch or None)
    print(out)
    return 0


def _tuned(args: argparse.Namespace) -> Path | None:
    return Path(args.tuned) if args.tuned else None


def cmd_serve(args: argparse.Namespace) -> int:
    import tempfile

    from core import children
    from core.serve import serving

    with tempfile.TemporaryDirectory(prefix="serving-") as tmp:
        if args.repository:
            repository = Path(args.repository)
        else:
            model_dir = _model_dir(args.model_dir)
            repository = serving.export(model_dir, Path(tmp) / "repository",
                                        args.variant or serving.default_variant(model_dir, _tuned(args)), _tuned(args),
                                        args.batch or None)
        print(f"serving {repository} on http://{args.host}:{args.port} (KServe v2 REST); Ctrl-C stops it",
              file=sys.stderr)
        # Ctrl-C stops it even where the parent ignored SIGINT (an ignored signal is inherited, and
        # Python then keeps ignoring it): in the full test suite the command once started so.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        proc = serving.start_server(repository, args.port, args.host, stdout=None, stderr=None)
        try:
            return proc.wait()
        except KeyboardInterrupt:
            return 0
        finally:
            children.stop(proc)


def cmd_loadtest(args: argparse.Namespace) -> int:
    from core import atomic
    from core.measure import benchmark
    from core.serve import loadtest, serving

    model_dir = _model_dir(args.model_dir)
    photos, origin = benchmark.prepare_images(settings.SweepConfig(model_dir=str(model_dir), sizes=[args.photos],
                                                                   images=args.images), _print_progress)
    concurrency = tuple(settings.parse_int_list(args.concurrency, "concurrency"))
    result = loadtest.load_test(model_dir, photos, args.variant or serving.default_variant(model_dir, _tuned(args)),
                                _tuned(args),
                                concurrency, args.requests, _print_progress, args.batch or None)
    result["photos_origin"] = origin
    if args.out:
        atomic.write_json(Path(args.out), result)
    local = result["in_process"]
    print(f"{result['model']} {result['variant']}, {result['settings_source']}")
    print(f"in process: p50 {local['p50_ms']:.2f} ms (one request at a time; CPU {local['cpu_ms']:.1f} ms), "
          f"{local['throughput_ips']:.0f} img/s (AsyncInferQueue, {local['nireq']} requests)")
    for level in result["levels"]:
        print(f"{level['concurrency']} clients: {level['throughput_ips']:.0f} img/s, p50 {level['p50_ms']:.2f} ms, "
              f"p99 {level['p99_ms']:.2f} ms; {level['ok']}/{level['requests']} right, {level['wrong']} other "
              f"class, {level['errors']} errors, {level['lost']} lost; CPU per request: server "
              f"{level['server_cpu_ms']:.1f} ms, clients {level['client_cpu_ms']:.1f} ms")
    bad = sum(level["wrong"] + level["errors"] + level["lost"] for level in result["levels"])
    return 1 if bad else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _model_commands(sub)
    _measure_commands(sub)
    _serving_commands(sub)
    return parser


def _model_commands(sub) -> None:
    """train, convert, evaluate, predict, calibrate."""
    t = sub.add_parser("train", help="train a model on a dataset URL, archive or folder")
    t.add_argument("--data", default=None, help="dataset URL, .tgz/.zip archive or folder (default: official flower_photos)")
    t.add_argument("--recipe", choices=list(recipes.RECIPES), default=None,
                   help="start from one of the Train page's recipes; other flags override it")
    add_fields(t, recipes.TrainConfig)
    t.add_argument("--out", required=True, help="model folder to create, e.g. models/my-flowers")
    t.add_argument("--overwrite", action="store_true")
    t.set_defaults(func=cmd_train)

    c = sub.add_parser("convert", help="add OpenVINO IR variants to a model folder and validate them")
    c.add_argument("--model-dir", default=None)
    c.add_argument("--precisions", default="fp32,fp16,int8")
    c.add_argument("--data", default=None, help="dataset source if it moved since training")
    c.add_argument("--calibration-size", type=int, default=settings.CALIBRATION_SIZE,
                   help=f"training photos to calibrate INT8 on (default: {settings.CALIBRATION_SIZE})")
    c.add_argument("--no-validate", action="store_true", help="skip accuracy checks on the validation split")
    c.add_argument("--accuracy-control", action="store_true",
                   help="INT8 with NNCF's accuracy control on validation photos: the layers whose quantized inputs "
                        "cost most fidelity to the float model take them in floating point again (slow: minutes)")
    c.set_defaults(func=cmd_convert)

    e = sub.add_parser("evaluate", help="accuracy and TF agreement of every variant on a dataset")
    e.add_argument("--model-dir", default=None)
    e.add_argument("--data", default=None, help="a data set (default: the model's own, recorded on its card, whose "
                                                 "held-out split is then scored unless --split says otherwise)")
    e.add_argument("--variants", default=None, help="comma-separated, default: all available")
    e.add_argument("--split", choices=("train", "val", "test"), default=None,
                   help="evaluate only this part of the model's own seeded split of --data")
    e.add_argument("--json", action="store_true")
    add_fields(e, settings.OVSettings)
    e.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="classify image files with every variant")
    p.add_argument("--model-dir", default=None)
    p.add_argument("images", nargs="+")
    p.add_argument("--variants", default=None)
    p.add_argument("--json", action="store_true")
    add_fields(p, settings.OVSettings)
    p.set_defaults(func=cmd_predict)

    ca = sub.add_parser("calibrate", help="temperature scaling and the 'not one of the classes' threshold, "
                                          "fitted on the validation split; measured on held-out and non-flowers")
    ca.add_argument("--model-dir", default=None)
    ca.add_argument("--json", action="store_true")
    ca.set_defaults(func=cmd_calibrate)

    oe = sub.add_parser("openset-eval", help="the 'not one of the classes' check on photos of other things: per "
                                             "kind, the share taken for a flower; held-out flowers kept; AUROC")
    oe.add_argument("--model-dir", default=None)
    oe.add_argument("--data", required=True, help="a folder or archive of photos that are not these flowers, one "
                                                  "subfolder per kind (animals, people, food, ...; at least two)")
    oe.add_argument("--variant", default=variants.TF_VARIANT, choices=list(variants.CATALOGUE),
                    help="the backend that answers (default: tensorflow)")
    oe.add_argument("--json", action="store_true")
    oe.add_argument("--record", default=None, metavar="DESCRIPTION",
                    help="keep the result on the model's card, described so (where the photos came from), for the "
                         "Home page; the next calibration clears it")
    oe.set_defaults(func=cmd_openset_eval)


def _measure_commands(sub) -> None:
    """benchmark, tune, latency, charts."""
    b = sub.add_parser("benchmark", help="time and memory sweep, each backend in its own process")
    add_fields(b, settings.SweepConfig)
    b.add_argument("--out", default=None, help="results folder (default: results/)")
    b.add_argument("--benchmark-app", type=int, default=0, metavar="SECONDS",
                   help="also run OpenVINO's benchmark_app for this long on each THROUGHPUT backend and compare")
    b.set_defaults(func=cmd_benchmark)

    tu = sub.add_parser("tune", help="the fastest OpenVINO setup within the accuracy budget, against the peers at "
                                     "their best; saves tuned.json")
    tu.add_argument("--model-dir", default=None)
    tu.add_argument("--objective", choices=tuned.OBJECTIVE_CHOICES, default=tuned.BOTH)
    tu.add_argument("--budget-s", type=float, default=300, help="time budget in seconds (default: 300)")
    tu.add_argument("--p99-ms", type=float, default=None, help="setups whose p99 batch latency is above this are "
                                                               "ineligible")
    tu.add_argument("--variants", default=None, help="comma-separated IR variants to search (default: all)")
    tu.add_argument("--peers", default=None, help="comma-separated peers to search beside them, from: "
                                                  f"{', '.join(variants.PEER_VARIANTS)} (default: all; '' for none)")
    tu.add_argument("--benchmark-app", type=int, default=0, metavar="SECONDS",
                    help="then run benchmark_app -hint latency / -hint throughput this long on the winners' IR")
    tu.add_argument("--json", action="store_true")
    tu.set_defaults(func=cmd_tune)

    la = sub.add_parser("latency", help="the Predict page's per-photo latency beside each backend's isolated p50")
    la.add_argument("--model-dir", default=None)
    la.add_argument("--images", default=None, help="dataset source of the photos (default: the model's own split)")
    la.add_argument("--photos", type=int, default=20)
    la.add_argument("--repeats", type=int, default=5, help="warm calls per photo, and timed runs of the sweep")
    la.add_argument("--json", action="store_true")
    la.set_defaults(func=cmd_latency)

    ch = sub.add_parser("charts", help="write a saved benchmark run's charts as HTML (and PNG)")
    ch.add_argument("run", help="a run folder, e.g. results/20261126-072423-flowers-mobilenetv2")
    ch.add_argument("--out", required=True)
    ch.add_argument("--png", action="store_true", help="also PNG (needs kaleido and Chrome/Chromium)")
    ch.set_defaults(func=cmd_charts)


def _served_variant(value: str) -> str:
    """--variant as the catalogue names it; the older short names (int8, fp32, fp16) still work."""
    if value in variants.SHORT_IR_NAMES:
        print(f"note: {value!r} is now {variants.SHORT_IR_NAMES[value]!r}", file=sys.stderr)
        return variants.SHORT_IR_NAMES[value]
    return value


def _serving_commands(sub) -> None:
    """export-serving, serve, loadtest."""
    def serving_flags(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--model-dir", default=None)
        parser.add_argument("--variant", type=_served_variant, choices=("tuned", *variants.IR_VARIANTS), default=None,
                            help="the IR to serve (default: tuned if the model has a tuning, else openvino-int8)")
        parser.add_argument("--tuned", default=None, help="a tuned.json to take the settings from (default: the "
                                                          "model's own)")
        parser.add_argument("--batch", type=int, default=1, help="photos per request the tuned setup is chosen "
                                                                 "for (default 1; 0: any batch)")

    ex = sub.add_parser("export-serving", help="an OpenVINO Model Server model repository (config.json, compose "
                                               "file, KServe InferenceService, README)")
    serving_flags(ex)
    ex.add_argument("--out", required=True, help="folder to write (a new one, or an earlier export)")
    ex.set_defaults(func=cmd_export_serving)

    sv = sub.add_parser("serve", help="the model on a KServe v2 (Open Inference Protocol) server, in its own "
                                      "environment (requirements-serve.txt)")
    serving_flags(sv)
    sv.add_argument("--repository", default=None, help="serve this exported repository instead of exporting")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to be reachable from the network")
    sv.set_defaults(func=cmd_serve)

    lt = sub.add_parser("loadtest", help="concurrent clients against the model server on loopback, beside the same "
                                         "IR in process")
    serving_flags(lt)
    lt.add_argument("--concurrency", default="1,2,4,8", help="client counts, one level each (default: 1,2,4,8)")
    lt.add_argument("--requests", type=int, default=400, help="single-photo requests per level (default: 400)")
    lt.add_argument("--photos", type=int, default=64, help="distinct photos, cycled (default: 64)")
    lt.add_argument("--images", default=None, help="dataset source of the photos (default: the model's own split)")
    lt.add_argument("--out", default=None, help="write the result as JSON here")
    lt.set_defaults(func=cmd_loadtest)


@contextmanager
def _json_stdout(json_only: bool) -> Iterator[TextIO]:
    """Where the commands write their JSON document. With --json, stdout holds exactly that one
    document: while the command runs, whatever a library prints (TensorFlow's and Keras's notices
    among them) goes to stderr, at the file-descriptor level too where stdout is fd 1."""
    if not json_only:
        yield sys.stdout
        return
    document = sys.stdout
    try:
        on_fd_1 = document.fileno() == 1
    except (AttributeError, OSError, ValueError):  # a captured stream (tests calling main in process)
        on_fd_1 = False
    document.flush()
    if on_fd_1:
        document = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)
    saved, sys.stdout = sys.stdout, sys.stderr
    try:
        yield document
    finally:
        document.flush()
        sys.stdout = saved
        if on_fd_1:
            os.dup2(document.fileno(), 1)
            document.close()


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    from core.errors import UserError

    with _json_stdout(bool(getattr(args, "json", False))) as args.stdout:
        try:
            return args.func(args)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

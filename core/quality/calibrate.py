"""The open-set check (`core.model.openset`) fitted and measured by running the model: `calibrate`
fits the temperature, the distance and the thresholds and measures every variant's verdicts;
`evaluate_on` measures every score on a folder of photos of other things, by kind, fitting nothing."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import UserError
from core.model import data, imagenet, registry
from core.model.openset import (IMAGENET, KEEP, MAHALANOBIS, MSP, DISTANCE_FILE, NEIGHBOURS_FILE, Calibration,
                                ImageNetCheck, KindRate, OpenSetReport, ScoreOnSet, auroc, energy,
                                expected_calibration_error, fit_distance, fit_temperature, fpr_at_tpr, from_card,
                                imagenet_check_photos, known_score, non_flowers, reliability, scale)
from core.progress import Event, ProgressFn, ignore
from core.quality.evaluate import SCORING_BATCH
from core.runtimes.backends import load_backend

_FEATURE_CHUNK = 64  # training photos decoded at a time while fitting the distance


def infer_batched(backend, images: np.ndarray, batch_size: int = SCORING_BATCH) -> tuple[np.ndarray, np.ndarray | None]:
    parts = [backend.infer(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
    features = None if parts[0][1] is None else np.concatenate([f for _, f in parts])
    return np.concatenate([p for p, _ in parts]), features


def training_features(backend, items: list, image_size: int, progress: ProgressFn = ignore) -> tuple[np.ndarray, np.ndarray]:
    """Penultimate features of the training photos, decoded a chunk at a time (the photos are
    never all in memory: on Community Cloud the job shares 2.7 GB with the server)."""
    features, labels = [], []
    for i in range(0, len(items), _FEATURE_CHUNK):
        x, y, _ = data.load_arrays(items[i:i + _FEATURE_CHUNK], image_size)
        features.append(infer_batched(backend, x)[1])
        labels.append(y)
        progress(Event("calibrate", i + len(x), len(items), "features of the training photos"))
    return np.concatenate(features), np.concatenate(labels)


def _separation(flowers: np.ndarray, others: np.ndarray, threshold: float, names: list[str]) -> dict[str, Any]:
    return {"auroc": auroc(flowers, others), "fpr_at_95_tpr": fpr_at_tpr(flowers, others),
            "flowers_rejected": int(np.sum(flowers < threshold)),
            "non_flowers_accepted": [n for n, s in zip(names, others) if s >= threshold]}


def _judged(items: list, progress: ProgressFn) -> imagenet.Opinion:
    """The ImageNet classifier's opinion of dataset photos, decoded at its own size a chunk at a
    time (in a training job the photos would otherwise add about 180 MB to its peak)."""
    answers = []
    for i in range(0, len(items), _FEATURE_CHUNK):
        x, _, _ = data.load_arrays(items[i:i + _FEATURE_CHUNK], imagenet.SIZE)
        answers.append(imagenet.judge_each(x))
        progress(Event("calibrate", i + len(x), len(items), "asking the ImageNet classifier"))
    return imagenet.Opinion.concatenate(answers)


def _fit_imagenet_check(split: data.Split, correct: np.ndarray,
                        progress: ProgressFn) -> tuple[ImageNetCheck | None, imagenet.Opinion | None, str]:
    """The ImageNet check, the validation photos' ImageNet opinion, and why not where it cannot be made."""
    try:
        imagenet.judge()
    except (UserError, registry.ModelError) as exc:
        return None, None, str(exc)
    progress(Event("calibrate", 1, 4, "asking an ImageNet classifier about the training and validation photos"))
    neighbours, others = imagenet_check_photos(split)
    j_val = _judged(split.val, progress)
    flowers = imagenet.Opinion.concatenate([j_val.take(correct)] + ([_judged(others, progress)] if others else []))
    return ImageNetCheck.fit(_judged(neighbours, progress), flowers), j_val, ""


def calibrate(model_dir: Path, progress: ProgressFn = ignore) -> Calibration:
    """Fit the temperature, the distance (on the training split) and the threshold (on the
    validation split) with TensorFlow; compare the candidate scores; join the ImageNet check to the
    distance where it can run; measure the chosen score on the held-out split and the non-flower
    pictures with every variant; store them with the model."""
    card = registry.read_card(model_dir)
    split = card.rebuild_split(progress=progress)
    tf = load_backend(model_dir, registry.TF_VARIANT)
    progress(Event("calibrate", 0, 4, "fitting the temperature and the distance"))
    x_val, y_val, _ = data.load_arrays(split.val, card.image_size, progress, "load val")
    p_val, f_val = infer_batched(tf, x_val)
    temperature = fit_temperature(p_val, y_val)
    correct = p_val.argmax(1) == y_val
    f_train, y_train = training_features(tf, split.train, card.image_size, progress)
    distance = fit_distance(f_train, y_train, len(card.classes))
    everywhere = fit_distance(f_train, y_train, len(card.classes), k=f_train.shape[1])
    distance = dataclasses.replace(distance, reference=np.sort(distance.distance(f_val[correct])))
    thresholds = {MSP: float(np.quantile(known_score(p_val, temperature)[correct], 1 - KEEP)),
                  MAHALANOBIS: 1 - KEEP}
    check, j_val, no_check = _fit_imagenet_check(split, correct, progress)
    progress(Event("calibrate", 2, 4, "measuring on the held-out split and on pictures that are not flowers"))
    held_out = split.test or split.val
    x_test, y_test, _ = data.load_arrays(held_out, card.image_size, progress, "load held-out")
    junk, names = non_flowers(card.image_size)
    j_test = j_junk = None
    if check is not None:
        j_test, j_junk = _judged(held_out, progress), imagenet.judge_each(non_flowers(imagenet.SIZE)[0])
    measured: dict[str, Any] = {"split": "test" if split.test else "val", "flowers": len(x_test),
                                "non_flowers": len(junk), "non_flower_names": names, "variants": {}}
    if no_check:
        measured["imagenet_check"] = f"not used: {no_check}"
    # The candidates, on TensorFlow: each with a threshold that keeps KEEP of the correct validation flowers
    # (the ImageNet check: its own, which keeps KEEP of those and of other training photos).
    answers = {registry.TF_VARIANT: (infer_batched(tf, x_test), infer_batched(tf, junk))}
    (p_test, f_test), (p_junk, f_junk) = answers[registry.TF_VARIANT]
    weights, bias = tf.model.get_layer(registry.CLASSIFIER_LAYER).get_weights()
    candidates = {MSP: lambda p, f, j: known_score(p, temperature), "energy": lambda p, f, j: energy(f @ weights + bias),
                  MAHALANOBIS: lambda p, f, j: -distance.distance(f), "mahalanobis-all": lambda p, f, j: -everywhere.distance(f)}
    if check is not None:
        candidates[IMAGENET] = lambda p, f, j: check.typicality(j)
    measured["candidates"] = {
        name: _separation(score(p_test, f_test, j_test), score(p_junk, f_junk, j_junk),
                          check.threshold if name == IMAGENET else
                          float(np.quantile(score(p_val, f_val, j_val)[correct], 1 - KEEP)), names)
        for name, score in candidates.items()}
    chosen = max((MSP, MAHALANOBIS), key=lambda name: measured["candidates"][name]["auroc"])
    # A final fit (TrainConfig.fit_on_val) has seen these photos; the held-out measurement below shows what that costs.
    fitted_on = "val (seen in training: a final fit)" if card.config is not None and card.config.fit_on_val else "val"
    calibration = Calibration(temperature, thresholds[chosen], chosen, fitted_on=fitted_on, imagenet=check,
                              distance=distance)
    for variant in registry.available_variants(model_dir):
        if variant not in answers:
            backend = load_backend(model_dir, variant)
            answers[variant] = (infer_batched(backend, x_test), infer_batched(backend, junk))
        (p_test, f_test), (p_junk, f_junk) = answers[variant]
        flowers, others = calibration.known(p_test, f_test, j_test), calibration.known(p_junk, f_junk, j_junk)
        if flowers is None:
            continue  # an IR converted before it had a features output: no verdict from it
        measured["variants"][variant] = _separation(flowers[0], others[0], calibration.threshold_in_use, names) | {
            "ece_before": expected_calibration_error(p_test, y_test),
            "ece_after": expected_calibration_error(scale(p_test, temperature), y_test),
        }
        if variant == registry.TF_VARIANT:
            measured["reliability_before"] = reliability(p_test, y_test)
            measured["reliability_after"] = reliability(scale(p_test, temperature), y_test)
    calibration = dataclasses.replace(calibration, measured=measured)
    distance.save(Path(model_dir) / DISTANCE_FILE)
    if check is not None:
        check.save(Path(model_dir) / NEIGHBOURS_FILE)
    registry.update_card(model_dir, openset=calibration.to_card())
    progress(Event("calibrate", 4, 4, f"temperature {temperature:.2f}, {chosen} threshold {calibration.threshold:.3f}"
                                      + (f"; the ImageNet check decides where it runs (threshold {check.threshold:.3f})"
                                         if check is not None else "")))
    return calibration


def _rates(score: np.ndarray, kinds: np.ndarray, names: list[str], threshold: float) -> tuple[KindRate, ...]:
    accepted = score >= threshold
    per_kind = [KindRate(name, int(np.sum(kinds == i)), float(np.mean(accepted[kinds == i])))
                for i, name in enumerate(names) if np.any(kinds == i)]
    return (*per_kind, KindRate("all", len(score), float(np.mean(accepted))))


def evaluate_on(model_dir: Path, source: str | Path, variant: str = registry.TF_VARIANT,
                progress: ProgressFn = ignore) -> OpenSetReport:
    """Every score this model can compute, on its held-out flowers against `source`: a folder (or
    archive) of photos that are not these flowers, one subfolder per kind. Nothing is fitted here:
    the set is for measuring, kept out of every choice."""
    card = registry.read_card(model_dir)
    calibration = from_card(card.openset, model_dir)
    if calibration is None:
        raise registry.ModelError(f"{card.name} is not calibrated; run `python -m core calibrate` first")
    info = data.scan(data.resolve(source, progress=progress), min_images=1)
    items = [(f, i) for i, kind in enumerate(info.classes) for f in info.files[kind]]
    others, kinds, _ = data.load_arrays(items, card.image_size, progress, "load the evaluation set")
    split = card.rebuild_split(progress=progress)
    flowers_x, _, _ = data.load_arrays(split.test or split.val, card.image_size, progress, "load held-out")
    backend = load_backend(model_dir, variant)
    (p_flowers, f_flowers), (p_others, f_others) = infer_batched(backend, flowers_x), infer_batched(backend, others)
    scores = {MSP: (known_score(p_flowers, calibration.temperature), known_score(p_others, calibration.temperature))}
    in_use, threshold = calibration.score, calibration.threshold  # unless the ImageNet check decides, below
    if calibration.distance is not None and f_flowers is not None:
        scores[MAHALANOBIS] = calibration.distance.typicality(f_flowers), calibration.distance.typicality(f_others)
    if (check := calibration.imagenet) is not None:
        judged = _judged(split.test or split.val, progress), _judged(items, progress)
        scores[IMAGENET] = check.typicality(judged[0]), check.typicality(judged[1])
        in_use, threshold = calibration.in_use, calibration.threshold_in_use
    results = []
    for name, (flowers, other) in scores.items():
        at_95 = _rates(other, kinds, info.classes, float(np.quantile(flowers, 1 - KEEP)))
        used = name == in_use
        results.append(ScoreOnSet(
            name, auroc(flowers, other), at_95, used,
            float(np.mean(flowers >= threshold)) if used else None,
            _rates(other, kinds, info.classes, threshold) if used else ()))
    return OpenSetReport(card.name, variant, len(flowers_x), tuple(results))

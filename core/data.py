"""Datasets in the `flower_photos` layout: `<root>/<class>/<image files>`.

A source is a URL (the official archive by default, `file://` included), a local
archive (.tgz/.tar.gz/.tar/.zip) or a folder. Archives are fetched once into the cache
and extracted without ever writing outside their target folder.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from core import paths
from core.images import IMAGE_SUFFIXES, ImageError, load_for_model
from core.progress import CancelToken, Event, ProgressFn, ignore

OFFICIAL_URL = "https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz"
ARCHIVE_SUFFIXES = (".tgz", ".tar.gz", ".tar", ".zip")
MIN_CLASSES = 2
MIN_IMAGES_PER_CLASS = 2
# Refuse archives that claim to unpack to more than this: a zip bomb declares its size.
MAX_EXTRACTED_BYTES = 4 * 2**30
MAX_ARCHIVE_MEMBERS = 200_000


class DatasetError(ValueError):
    """A dataset that cannot be used; the message says why, for the user."""


@dataclass
class DatasetInfo:
    root: Path
    classes: list[str]
    files: dict[str, list[Path]]
    skipped: list[str] = field(default_factory=list)  # files that are not images

    @property
    def counts(self) -> dict[str, int]:
        return {c: len(self.files[c]) for c in self.classes}

    @property
    def n_images(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> dict:
        return {"root": str(self.root), "classes": self.classes, "counts": self.counts,
                "n_images": self.n_images, "skipped": len(self.skipped)}


@dataclass
class Split:
    """A seeded, per-class (stratified) partition of a dataset's files."""

    classes: list[str]
    train: list[tuple[Path, int]]
    val: list[tuple[Path, int]]
    test: list[tuple[Path, int]]
    seed: int

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


# ---------------------------------------------------------------- fetching

def is_url(source: str) -> bool:
    return urllib.parse.urlparse(source).scheme in ("http", "https", "file")


def resolve(source: str | Path, cache: Path | None = None, progress: ProgressFn = ignore) -> Path:
    """Return a local folder holding the dataset described by `source`."""
    cache = Path(cache or paths.cache_dir())
    text = str(source)
    if is_url(text):
        archive = download(text, cache / "downloads", progress)
    else:
        archive = Path(text).expanduser()
        if archive.is_dir():
            return dataset_root(archive)
        if not archive.exists():
            raise DatasetError(f"no such file or folder: {archive}")
    if not archive.name.lower().endswith(ARCHIVE_SUFFIXES):
        raise DatasetError(f"{archive.name} is not a folder or a .tgz/.tar.gz/.tar/.zip archive")
    stat = archive.stat()
    key = hashlib.sha1(f"{archive.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    target = cache / "datasets" / f"{_stem(archive.name)}-{key}"
    if not target.is_dir():
        extract(archive, target, progress)
    return dataset_root(target)


def download(url: str, folder: Path, progress: ProgressFn = ignore) -> Path:
    """Fetch `url` once into `folder` (a finished download is reused)."""
    name = Path(urllib.parse.urlparse(url).path).name or "dataset.tgz"
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / name
    if dest.exists():
        return dest
    partial = folder / f".{name}.part-{os.getpid()}"

    def hook(blocks: int, block_size: int, total: int) -> None:
        progress(Event("download", blocks * block_size, total if total > 0 else None, f"downloading {name}"))

    try:
        urllib.request.urlretrieve(url, partial, reporthook=hook)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise DatasetError(f"could not download {url}: {exc}") from exc
    os.replace(partial, dest)
    return dest


def _stem(name: str) -> str:
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def extract(archive: Path, target: Path, progress: ProgressFn = ignore) -> None:
    """Unpack into `target` atomically, refusing members that would land outside it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=target.parent))
    try:
        if archive.name.lower().endswith(".zip"):
            _extract_zip(archive, tmp, progress)
        else:
            _extract_tar(archive, tmp, progress)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_totals(n_members: int, n_bytes: int) -> None:
    if n_members > MAX_ARCHIVE_MEMBERS:
        raise DatasetError(f"the archive has {n_members} entries; the limit is {MAX_ARCHIVE_MEMBERS}")
    if n_bytes > MAX_EXTRACTED_BYTES:
        raise DatasetError(
            f"the archive would unpack to {n_bytes / 2**30:.1f} GiB; the limit is {MAX_EXTRACTED_BYTES / 2**30:.0f} GiB"
        )


def _safe_member_path(dest: Path, name: str) -> Path:
    path = (dest / name).resolve()
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or not path.is_relative_to(dest.resolve()):
        raise DatasetError(f"the archive has an unsafe path ({name!r}) that points outside its folder; refused")
    return path


def _extract_members(archive: Path, dest: Path, progress: ProgressFn, entries: list[tuple[str, int]],
                     extract_one: Callable[[int], None]) -> None:
    """Check every entry (count, declared size, path) before writing any, then extract them."""
    _check_totals(len(entries), sum(size for _, size in entries))
    for name, _ in entries:
        _safe_member_path(dest, name)
    for i in range(len(entries)):
        extract_one(i)
        progress(Event("extract", i + 1, len(entries), f"extracting {archive.name}"))


def _extract_zip(archive: Path, dest: Path, progress: ProgressFn) -> None:
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetError(f"{archive.name} is not a readable zip file ({exc})") from exc
    with zf:
        members = zf.infolist()
        _extract_members(archive, dest, progress, [(m.filename, m.file_size) for m in members],
                         lambda i: zf.extract(members[i], dest))


def _extract_tar(archive: Path, dest: Path, progress: ProgressFn) -> None:
    try:
        tf = tarfile.open(archive)
    except (tarfile.TarError, OSError) as exc:
        raise DatasetError(f"{archive.name} is not a readable tar archive ({exc})") from exc

    def extract_one(i: int) -> None:
        try:
            # The "data" filter also refuses links that escape and device files.
            tf.extract(members[i], dest, filter="data")
        except tarfile.FilterError as exc:
            raise DatasetError(f"the archive has an unsafe entry ({members[i].name!r}): {exc}") from exc

    with tf:
        members = tf.getmembers()
        _extract_members(archive, dest, progress, [(m.name, m.size) for m in members], extract_one)


# ---------------------------------------------------------------- scanning

def _is_hidden(p: Path) -> bool:
    return p.name.startswith((".", "__MACOSX"))


def dataset_root(folder: Path) -> Path:
    """Descend through single wrapper folders (`flower_photos/` inside the archive)."""
    folder = Path(folder)
    while True:
        subdirs = [p for p in folder.iterdir() if p.is_dir() and not _is_hidden(p)]
        has_images = any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir() if p.is_file())
        if len(subdirs) == 1 and not has_images:
            folder = subdirs[0]
            continue
        return folder


def scan(root: Path, min_images: int = MIN_IMAGES_PER_CLASS) -> DatasetInfo:
    """List the classes and their image files, refusing unusable datasets."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder")
    files: dict[str, list[Path]] = {}
    skipped: list[str] = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not _is_hidden(p)):
        images = []
        for f in sorted(class_dir.rglob("*")):
            rel = f.relative_to(root)
            if not f.is_file() or any(part.startswith((".", "__MACOSX")) for part in rel.parts):
                continue
            if f.suffix.lower() in IMAGE_SUFFIXES:
                images.append(f)
            else:
                skipped.append(str(rel))
        files[class_dir.name] = images
    if len(files) < MIN_CLASSES:
        found = ", ".join(files) or "none"
        raise DatasetError(
            f"a dataset needs at least {MIN_CLASSES} class folders, each holding its photos; found: {found}"
        )
    small = [f"{c} ({len(v)})" for c, v in files.items() if len(v) < min_images]
    if small:
        raise DatasetError(f"every class needs at least {min_images} images; too few in: {', '.join(small)}")
    return DatasetInfo(root=root, classes=list(files), files=files, skipped=skipped)


def split(info: DatasetInfo, val_fraction: float = 0.2, test_fraction: float = 0.0, seed: int = 123) -> Split:
    """Shuffle each class with `seed` and cut it into train / val / test."""
    rng = random.Random(seed)
    parts: dict[str, list[tuple[Path, int]]] = {"train": [], "val": [], "test": []}
    for label, cls in enumerate(info.classes):
        items = sorted(info.files[cls])
        rng.shuffle(items)
        n_val = max(1, round(len(items) * val_fraction)) if val_fraction > 0 else 0
        n_test = round(len(items) * test_fraction)
        parts["val"] += [(p, label) for p in items[:n_val]]
        parts["test"] += [(p, label) for p in items[n_val : n_val + n_test]]
        parts["train"] += [(p, label) for p in items[n_val + n_test :]]
    return Split(info.classes, parts["train"], parts["val"], parts["test"], seed)


def load_arrays(
    items: list[tuple[Path, int]],
    size: int,
    progress: ProgressFn = ignore,
    stage: str = "load",
    cancel: CancelToken | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Decode images to a uint8 (N, size, size, 3) array; unreadable files are reported, not fatal."""
    images, labels, bad = [], [], []
    for i, (path, label) in enumerate(items):
        if cancel is not None:
            cancel.check()
        try:
            images.append(load_for_model(path, size))
            labels.append(label)
        except ImageError as exc:
            bad.append(f"{path.name}: {exc}")
        if i % 50 == 0 or i == len(items) - 1:
            progress(Event(stage, i + 1, len(items), f"decoding images ({stage})"))
    if not images:
        raise DatasetError("none of the images could be read")
    return np.stack(images), np.asarray(labels, dtype=np.int32), bad


def tf_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int, shuffle: bool,
               augment=None, seed: int = 123):
    """A batched `tf.data` pipeline over decoded arrays (augmentation runs in the pipeline)."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
    if augment is not None:
        ds = ds.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


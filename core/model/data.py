"""Datasets in the `flower_photos` layout: `<root>/<class>/<image files>`.

A source is a URL (the official archive by default, `file://` included), a local
archive (.tgz/.tar.gz/.tar/.zip) or a folder. Archives are fetched once into the cache
and extracted without ever writing outside their target folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import ssl
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from core import atomic, paths
from core.errors import UserError
from core.model.images import IMAGE_SUFFIXES, ImageError, load_for_model
from core.progress import Event, ProgressFn, ignore

OFFICIAL_URL = "https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz"
ARCHIVE_SUFFIXES = (".tgz", ".tar.gz", ".tar", ".zip")
MIN_CLASSES = 2
MIN_IMAGES_PER_CLASS = 2
# Refuse archives that claim to unpack to more than this: a zip bomb declares its size.
MAX_EXTRACTED_BYTES = 4 * 2**30
MAX_ARCHIVE_MEMBERS = 200_000


class DatasetError(UserError):
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

MIRROR_ENV = "FLOWERS_DATASET_MIRROR"  # a local copy of the official archive, for offline servers and tests
ALLOWED_URLS_ENV = "FLOWERS_ALLOWED_URLS"  # comma-separated URLs (or prefixes ending in "/") the owner allows


def allowed_urls(extra: tuple[str, ...] = (), env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The official archive, the owner's configured URLs (`env`, default the process's) and `extra`."""
    env = os.environ if env is None else env
    configured = (u.strip() for u in env.get(ALLOWED_URLS_ENV, "").split(",") if u.strip())
    return tuple(dict.fromkeys([OFFICIAL_URL, *extra, *configured]))


class UnsafeSource(DatasetError):
    """A URL or path that this server will not touch; nothing was fetched or read."""


@dataclass(frozen=True)
class DownloadPolicy:
    """Where the server may download from: https only, URLs on an allow-list (an entry ending in
    "/" allows everything under it), redirects only to allowed hosts, bounded size and time."""

    allowed: tuple[str, ...] = (OFFICIAL_URL,)
    max_bytes: int = 1 * 2**30
    timeout_s: float = 900
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False)  # tests trust a local certificate

    @property
    def hosts(self) -> set[str]:
        return {urllib.parse.urlsplit(u).netloc.lower() for u in self.allowed}

    def check(self, url: str) -> None:
        """Raise `UnsafeSource` unless `url` may be fetched; makes no network request."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "https":
            raise UnsafeSource(f"only https downloads are allowed, not {parts.scheme or 'a bare path'!r}: {url}")
        if parts.username or parts.password:
            raise UnsafeSource("URLs with a user name or password are not allowed")
        if not any(url == a or (a.endswith("/") and url.startswith(a)) for a in self.allowed):
            raise UnsafeSource(f"{url} is not on this server's download allow-list "
                               f"({', '.join(self.allowed)}); the owner can add it")

    def check_redirect(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "https" or parts.netloc.lower() not in self.hosts:
            raise UnsafeSource(f"the download redirected to {url}, which is not an allowed https host; stopped")


def is_url(source: str) -> bool:
    return "://" in source or source.lower().startswith(("data:", "mailto:"))


def resolve(source: str | Path, cache: Path | None = None, progress: ProgressFn = ignore,
            policy: DownloadPolicy | None = None, roots: tuple[Path, ...] | None = None) -> Path:
    """Return a local folder holding the dataset described by `source`.

    URLs go through `policy` (default: the official archive only). With `roots`, a folder or
    archive path must lie inside one of them (the app passes the owner's data roots, or none
    for a visitor); without, any local path is taken (the CLI, run by the owner)."""
    root = _resolve(source, Path(cache or paths.cache_dir()), progress, policy, roots, fetch=True)
    assert root is not None  # with fetch=True it downloads and extracts what it must, or raises
    return root


def local_root(source: str | Path) -> Path | None:
    """The dataset folder of `source` if this server already has it (extracted, or a folder);
    None where `resolve` would have to download or extract first. Never fetches anything."""
    try:
        return _resolve(source, paths.cache_dir(), ignore, None, None, fetch=False)
    except (DatasetError, OSError):
        return None


def _resolve(source: str | Path, cache: Path, progress: ProgressFn, policy: DownloadPolicy | None,
             roots: tuple[Path, ...] | None, fetch: bool) -> Path | None:
    text = str(source)
    if is_url(text):
        mirror = os.environ.get(MIRROR_ENV)
        if text == OFFICIAL_URL and mirror:
            archive = Path(mirror)
        elif fetch:
            archive = download(text, cache / "downloads", progress, policy)
        else:
            archive = _download_path(text, cache / "downloads")
            if not archive.exists():
                return None
    else:
        archive = Path(text).expanduser() if roots is None else inside_roots(text, roots)
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
        if not fetch:
            return None
        extract(archive, target, progress)
    return dataset_root(target)


def inside_roots(text: str, roots: tuple[Path, ...]) -> Path:
    """A path typed in the browser, accepted only if it resolves (symlinks followed) inside a root.

    Relative paths are taken from the first root; `~` is never expanded."""
    if not roots:
        raise UnsafeSource("folders on the server are not available here (no data roots are configured)")
    if not text or text.startswith("~") or "\x00" in text:
        raise UnsafeSource(f"{text!r} is not a path inside the data roots ({', '.join(map(str, roots))})")
    candidate = Path(text) if Path(text).is_absolute() else roots[0] / text
    try:
        real = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        raise DatasetError(f"no such file or folder inside the data roots: {text}") from None
    if not any(real.is_relative_to(root) for root in roots):
        raise UnsafeSource(f"{text} is outside the data roots ({', '.join(map(str, roots))}); refused")
    return real


def _url_key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            h.update(block)
    return h.hexdigest()


def _download_path(url: str, folder: Path) -> Path:
    """Where `download` keeps `url`: a folder per URL, the file under its own name."""
    return Path(folder) / _url_key(url) / (Path(urllib.parse.urlsplit(url).path).name or "dataset.tgz")


def download(url: str, folder: Path, progress: ProgressFn = ignore, policy: DownloadPolicy | None = None) -> Path:
    """Fetch `url` once into `folder`, keyed by the URL itself. The size and sha256 of the first good
    download are recorded beside it and checked on every reuse; a refused URL is never requested."""
    policy = policy or DownloadPolicy(allowed_urls())
    policy.check(url)
    dest = _download_path(url, folder)
    folder, name = dest.parent, dest.name
    record_path = folder / "download.json"
    if dest.exists() and record_path.exists():
        record = json.loads(record_path.read_text())
        if dest.stat().st_size == record["size"] and _sha256(dest) == record["sha256"]:
            return dest
        shutil.rmtree(folder, ignore_errors=True)  # changed on disk since: fetch again
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{name}.part-{os.getpid()}"
    try:
        digest = _fetch(url, partial, policy, progress, name)
        os.replace(partial, dest)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    atomic.write_json(record_path, {"url": url, "size": dest.stat().st_size, "sha256": digest,
                                    "fetched": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return dest


def _fetch(url: str, dest: Path, policy: DownloadPolicy, progress: ProgressFn, name: str) -> str:
    """Stream `url` into `dest` within the policy's size and time; returns the sha256."""

    class CheckedRedirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, headers, newurl):
            policy.check_redirect(newurl)  # before the next request is made
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    opener = urllib.request.build_opener(CheckedRedirects, urllib.request.HTTPSHandler(context=policy.ssl_context))
    deadline = time.monotonic() + policy.timeout_s
    h = hashlib.sha256()
    try:
        with opener.open(url, timeout=min(60.0, policy.timeout_s)) as response, open(dest, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            if total and total > policy.max_bytes:
                raise DatasetError(f"{url} is {total / 2**20:.0f} MB; the limit is {policy.max_bytes / 2**20:.0f} MB")
            done = 0
            while block := response.read(2**20):
                done += len(block)
                if done > policy.max_bytes:
                    raise DatasetError(f"{url} is larger than the {policy.max_bytes / 2**20:.0f} MB limit; stopped")
                if time.monotonic() > deadline:
                    raise DatasetError(f"downloading {url} took longer than {policy.timeout_s:.0f} s; stopped")
                out.write(block)
                h.update(block)
                progress(Event("download", done, total, f"downloading {name}"))
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, DatasetError):
            raise exc.reason from None
        raise DatasetError(f"could not download {url}: {exc.reason}") from exc
    except OSError as exc:
        raise DatasetError(f"could not download {url}: {exc}") from exc
    return h.hexdigest()


def _stem(name: str) -> str:
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def extract(archive: Path, target: Path, progress: ProgressFn = ignore) -> None:
    """Unpack into `target` atomically, refusing members that would land outside it."""
    try:
        with atomic.atomic_dir(target) as tmp:
            if archive.name.lower().endswith(".zip"):
                _extract_zip(archive, tmp, progress)
            else:
                _extract_tar(archive, tmp, progress)
    except FileExistsError:
        pass  # another session extracted the same archive meanwhile: the same files are there


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
    real_root = root.resolve()
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not _is_hidden(p)):
        images = []
        for f in sorted(class_dir.rglob("*")):
            rel = f.relative_to(root)
            if not f.is_file() or any(part.startswith((".", "__MACOSX")) for part in rel.parts):
                continue
            if not f.resolve().is_relative_to(real_root):
                skipped.append(f"{rel} (a link to outside the dataset)")  # never read what a link points out to
            elif f.suffix.lower() in IMAGE_SUFFIXES:
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


def split(info: DatasetInfo, val_fraction: float = 0.2, test_fraction: float = 0.0, seed: int = 123,
          val_fold: int = 0) -> Split:
    """Shuffle each class with `seed` and cut it into train / val / test. `val_fold` k > 0 validates
    on the k-th next slice of the photos that are not held out, the held-out ones unchanged: a
    cross-validation that never touches the held-out split (fold 0 is the plain split)."""
    rng = random.Random(seed)
    parts: dict[str, list[tuple[Path, int]]] = {"train": [], "val": [], "test": []}
    for label, cls in enumerate(info.classes):
        items = sorted(info.files[cls])
        rng.shuffle(items)
        n_val = max(1, round(len(items) * val_fraction)) if val_fraction > 0 else 0
        n_test = round(len(items) * test_fraction)
        test = items[n_val : n_val + n_test]
        rest = items[:n_val] + items[n_val + n_test :]
        if val_fold and (val_fold + 1) * n_val > len(rest):
            raise DatasetError(f"validation fold {val_fold} needs {(val_fold + 1) * n_val} photos of {cls}, "
                               f"it has {len(rest)} outside the held-out split")
        val = rest[val_fold * n_val : (val_fold + 1) * n_val]
        parts["val"] += [(p, label) for p in val]
        parts["test"] += [(p, label) for p in test]
        parts["train"] += [(p, label) for p in rest[: val_fold * n_val] + rest[(val_fold + 1) * n_val :]]
    return Split(info.classes, parts["train"], parts["val"], parts["test"], seed)


def load_arrays(
    items: list[tuple[Path, int]],
    size: int,
    progress: ProgressFn = ignore,
    stage: str = "load",
    backing: Path | None = None,
) -> tuple[np.ndarray | RowFile, np.ndarray, list[str]]:
    """Decode images to a uint8 (N, size, size, 3) array; unreadable files are reported, not fatal.

    The array is allocated once and filled in place: no list of copies, no second stacked copy.
    With `backing`, the photos are written one by one to a .npy file there and come back as a
    `RowFile`: they are never in the process's memory all at once, not even mapped."""
    shape = (len(items), size, size, 3)
    out = open(backing, "wb") if backing is not None else None
    images = np.empty(shape if out is None else (0, size, size, 3), np.uint8)
    if out is not None:
        np.lib.format.write_array_header_2_0(out, {"descr": "|u1", "fortran_order": False, "shape": shape})
    labels = np.empty(len(items), np.int32)
    bad: list[str] = []
    n = 0
    try:
        for i, (path, label) in enumerate(items):
            try:
                photo = load_for_model(path, size)
            except ImageError as exc:
                bad.append(f"{path.name}: {exc}")
            else:
                if out is None:
                    images[n] = photo
                else:
                    out.write(photo.tobytes())
                labels[n] = label
                n += 1
            if i % 50 == 0 or i == len(items) - 1:
                progress(Event(stage, i + 1, len(items), f"decoding images ({stage})"))
    finally:
        if out is not None:
            out.close()
    if n == 0:
        raise DatasetError("none of the images could be read")
    return (images[:n] if backing is None else RowFile(backing, rows=n)), labels[:n], bad


class RowFile:
    """The rows of a uint8 .npy file, read on demand with `pread`: the decoded data set stays in
    the kernel's page cache, which it drops and re-reads under memory pressure, instead of being
    mapped into the training process (mapped pages count as the process's resident memory:
    2346 photos at 224 px are 353 MB). Indexable by an array of row numbers, like the array."""

    def __init__(self, path: Path, rows: int | None = None) -> None:
        with open(path, "rb") as f:
            major, _ = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            self.offset = f.tell()
        if fortran or dtype != np.uint8:
            raise ValueError(f"{path} is not a C-ordered uint8 array")
        self.path, self.shape = Path(path), (shape[0] if rows is None else rows, *shape[1:])
        self.row_bytes = int(np.prod(self.shape[1:]))
        self._fd = os.open(path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), *self.shape[1:]), np.uint8)
        for i, row in enumerate(np.asarray(rows)):
            out[i] = np.frombuffer(os.pread(self._fd, self.row_bytes, self.offset + int(row) * self.row_bytes),
                                   np.uint8).reshape(self.shape[1:])
        return out

    def __del__(self) -> None:
        if hasattr(self, "_fd"):
            os.close(self._fd)


def tf_dataset(images: np.ndarray | RowFile, labels: np.ndarray, batch_size: int, shuffle: bool,
               augment=None, seed: int = 123):
    """A batched `tf.data` pipeline over decoded uint8 arrays (augmentation runs in the pipeline).

    It shuffles and batches indices and gathers each batch from the array (or the `RowFile`), so
    the decoded data set stays in memory once, in uint8: `from_tensor_slices` would copy it into
    the graph."""
    import tensorflow as tf

    def gather(idx):
        return images[idx], labels[idx]

    def take(idx):
        x, y = tf.numpy_function(gather, [idx], (tf.uint8, tf.int32), stateful=False)
        x.set_shape((None, *images.shape[1:]))
        y.set_shape((None,))
        return tf.cast(x, tf.float32), y

    ds = tf.data.Dataset.range(len(images))
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(take, num_parallel_calls=tf.data.AUTOTUNE)
    if augment is not None:
        ds = ds.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


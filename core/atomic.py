"""Atomic writes: a file or a folder is built under a hidden temporary name beside its target
and renamed into place, so a crash or a kill never leaves a half-written one visible.

Leftover `.tmp-*` / `.old-*` entries of a killed process are removed by `registry.remove_stale`
and ignored by every listing (their names start with a dot).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator


def write_bytes(path: Path, fill: Callable[[BinaryIO], Any]) -> None:
    """Write `path` atomically: `fill(f)` writes a temporary file beside it, fsynced, then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; what is published is readable like any file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    """Write `data` as JSON to `path` atomically (fsynced before the rename)."""
    write_bytes(path, lambda f: f.write(json.dumps(data, indent=2, default=str).encode()))


def write_text(path: Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _swap_in(tmp: Path, target: Path) -> None:
    """Rename `tmp` onto `target`; an existing target is moved aside first, then removed."""
    old = None
    if target.exists():
        old = target.with_name(f".old-{target.name}-{os.getpid()}")
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def unique_name(target: Path) -> Path:
    """`target`, or `target-1`, `target-2`, ... whichever does not exist yet."""
    candidate, n = Path(target), 0
    while candidate.exists():
        n += 1
        candidate = target.with_name(f"{target.name}-{n}")
    return candidate


@contextmanager
def atomic_dir(target: Path, replace: bool = False) -> Iterator[Path]:
    """Yield a hidden temporary folder beside `target`; when the block ends without an error it
    becomes `target` in one rename (replacing an existing one only if `replace`), else it is removed.

        with atomic_dir(models / "roses") as tmp:
            save_everything_into(tmp)
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; what is published is readable like any folder
        if target.exists() and not replace:
            raise FileExistsError(f"{target} already exists")
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def move_into_place(folder: Path, target: Path) -> None:
    """Publish a folder that was built elsewhere on the same file system, replacing `target`."""
    os.chmod(folder, 0o755)
    _swap_in(Path(folder), Path(target))

"""A visitor's private corner of the server: their uploads, extracted photos, models and runs.

Each browser gets a workspace named by an unguessable key; nothing in the app lists another
key's folder, and no path typed in the browser can reach it (visitors type no paths at all).
Uploaded photos and extracted datasets are deleted when the job that used them ends; the
models a visitor trained are deleted after `MAX_AGE_S` unless the owner publishes them.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from core import paths

MAX_AGE_S = 24 * 3600
_KEY_RE = re.compile(r"^[0-9a-f]{32}$")


def new_key() -> str:
    return secrets.token_hex(16)


def key_from_secret(text: str) -> str:
    """A workspace key derived from a per-browser secret (a cookie value), never the secret itself."""
    return hashlib.sha256(f"flowers-workspace|{text}".encode()).hexdigest()[:32]


def key_from_xsrf_cookie(value: str) -> str:
    """The key of the browser that holds Streamlit's XSRF cookie. Its version-2 form is
    `2|mask|masked token|time` with a fresh mask on every page load; the unmasked token is the
    same for the browser's whole session, so a reload finds the same workspace and a copied
    link does not."""
    parts = value.split("|")
    if len(parts) == 4 and parts[0] == "2":
        try:
            mask, masked = bytes.fromhex(parts[1]), bytes.fromhex(parts[2])
            token = bytes(b ^ mask[i % len(mask)] for i, b in enumerate(masked)).hex()
            return key_from_secret(token)
        except ValueError:
            pass
    return key_from_secret(value)


def root() -> Path:
    return paths.cache_dir() / "workspaces"


@dataclass(frozen=True)
class Workspace:
    key: str

    def __post_init__(self) -> None:
        if not _KEY_RE.match(self.key):
            raise ValueError("a workspace key is 32 hexadecimal characters")

    @property
    def path(self) -> Path:
        return root() / self.key

    @property
    def models(self) -> Path:
        return self.path / "models"

    @property
    def uploads(self) -> Path:
        return self.path / "uploads"

    @property
    def datasets(self) -> Path:
        """Extracted archives (the `cache` argument of `data.resolve`: it adds `datasets/`)."""
        return self.path

    @property
    def results(self) -> Path:
        return self.path / "results"

    def store_upload(self, name: str, content: bytes) -> Path:
        """Save an uploaded file under a name derived from its content, atomically."""
        suffix = "".join(Path(name).suffixes[-2:]).lower() if name.lower().endswith(".tar.gz") else Path(name).suffix.lower()
        target = self.uploads / f"{hashlib.sha256(content).hexdigest()[:16]}{suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            partial = target.with_name(f".{target.name}.part-{os.getpid()}")
            partial.write_bytes(content)
            os.replace(partial, target)  # a half-written upload is never taken for a whole one
        return target

    def clear_data(self) -> None:
        """Delete uploaded files and extracted photos; models and runs stay."""
        shutil.rmtree(self.uploads, ignore_errors=True)
        shutil.rmtree(self.path / "datasets", ignore_errors=True)


def expire(max_age_s: float = MAX_AGE_S, now: float | None = None) -> list[str]:
    """Delete workspaces untouched for `max_age_s` (their newest file is older); returns their keys."""
    now = time.time() if now is None else now
    removed = []
    base = root()
    if not base.is_dir():
        return removed
    for folder in base.iterdir():
        if not folder.is_dir() or not _KEY_RE.match(folder.name):
            continue
        newest = max((f.stat().st_mtime for f in folder.rglob("*")), default=folder.stat().st_mtime)
        if now - newest > max_age_s:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed

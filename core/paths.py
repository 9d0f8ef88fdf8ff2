"""Where the project keeps models, downloads and benchmark results.

Each location can be moved with an environment variable so that tests and hosted
deployments can point them at writable, isolated folders.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def models_dir() -> Path:
    return Path(os.environ.get("FLOWERS_MODELS_DIR", PROJECT_ROOT / "models"))


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "flowers-dashboard"
    return Path(os.environ.get("FLOWERS_CACHE_DIR", default))


def results_dir() -> Path:
    return Path(os.environ.get("FLOWERS_RESULTS_DIR", PROJECT_ROOT / "results"))

"""Small job functions for the job runner's tests; they run in its real child process."""

import os
import time
from pathlib import Path

from core.model.data import DatasetError
from core.progress import Event


def count(ctx, n: int) -> int:
    for i in range(n):
        ctx.progress(Event("step", i + 1, n, "counting"))
        ctx.add_row({"i": i})
    return sum(range(n))


def wait_for(ctx, path: str, limit_s: float = 60) -> str:
    """Blocks until `path` exists (bounded), like a long job the test can release."""
    ctx.progress(Event("wait", 0, 1, f"waiting in {os.getpid()}"))
    deadline = time.time() + limit_s
    while not Path(path).exists() and time.time() < deadline:
        time.sleep(0.05)
    return "released"


def user_mistake(ctx) -> None:
    raise DatasetError("every class needs at least 2 images")


def bug(ctx) -> None:
    raise ZeroDivisionError("division by zero")

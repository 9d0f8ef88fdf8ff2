"""The child process of a job (see `core.app.jobs`): reads a spec on stdin, runs it, reports on stdout.

Lines are JSON: `progress` events, result `row`s, then one `result`, or an `error` whose
message is meant for the user (a `UserError`-like ValueError). Anything else is a programming
error: its traceback goes to stderr, which the server logs, and the exit code is non-zero.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import traceback
from typing import Any

from core.errors import UserError
from core.progress import Event
from core.children import emit, read_request


class JobContext:
    """What a job function gets: a progress sink and a place for partial results."""

    def progress(self, event: Event) -> None:
        emit("progress", **dataclasses.asdict(event))

    def add_row(self, row: dict[str, Any]) -> None:
        emit("row", row=row)


def main() -> int:
    spec = read_request()
    os.nice(spec.get("niceness", 0))
    module, name = spec["target"].split(":")
    function = getattr(importlib.import_module(module), name)
    try:
        result = function(JobContext(), **spec["kwargs"])
    except UserError as exc:  # a bad dataset, model, photo or setting: the user's to fix
        emit("error", message=str(exc))
        return 1
    except Exception:
        traceback.print_exc()
        return 3
    emit("result", result=result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

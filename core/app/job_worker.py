"""The child process of a job (see `core.app.jobs`): reads a spec on stdin, runs it, reports on stdout.

Lines are JSON: `progress` events, result `row`s, then one `result`, or an `error` whose
message is meant for the user (a `UserError`-like ValueError). Anything else is a programming
error: its traceback goes to stderr, which the server logs, and the exit code is non-zero.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys
import traceback
from typing import Any

from core.errors import UserError
from core.progress import Event
from core.system import exit_with_parent


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


class JobContext:
    """What a job function gets: a progress sink and a place for partial results."""

    def progress(self, event: Event) -> None:
        _emit({"type": "progress"} | dataclasses.asdict(event))

    def add_row(self, row: dict[str, Any]) -> None:
        _emit({"type": "row", "row": row})


def main() -> int:
    spec = json.loads(sys.stdin.read())
    exit_with_parent(kill_group=True)  # it leads its own process group (start_new_session)
    os.nice(spec.get("niceness", 0))
    module, name = spec["target"].split(":")
    function = getattr(importlib.import_module(module), name)
    try:
        result = function(JobContext(), **spec["kwargs"])
    except UserError as exc:  # a bad dataset, model, photo or setting: the user's to fix
        _emit({"type": "error", "message": str(exc)})
        return 1
    except Exception:
        traceback.print_exc()
        return 3
    _emit({"type": "result", "result": result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The progress and cancellation interface shared by the CLI, the UI and job runners."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Event:
    """One progress report: `stage` names the step (download, extract, train, ...)."""

    stage: str
    step: float = 0
    total: float | None = None
    message: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return max(0.0, min(1.0, self.step / self.total))


ProgressFn = Callable[[Event], None]


def ignore(_: Event) -> None:
    """A progress sink that drops every event."""


class Cancelled(Exception):
    """Raised inside a job when its cancel token was set."""


class CancelToken:
    """A thread-safe flag a job polls between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled by user")

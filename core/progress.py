"""The progress interface shared by the CLI, the UI and job runners. (Cancelling is killing:
a job runs in its own process group, which core.app.jobs ends; the CLI stops on Ctrl-C.)"""

from __future__ import annotations

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

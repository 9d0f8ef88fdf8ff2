"""One way to time a call: warm-up runs first, then repeated timed runs, reported by their median.

Predict, the training job's single-image latency and the benchmark worker all time through
`time_calls`, so a latency means the same thing wherever the app shows one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of `repeats` timed calls made after `warmup` untimed ones."""

    samples_s: tuple[float, ...]
    warmup_s: tuple[float, ...] = ()  # the untimed calls' own durations: the first one is the cold call
    result: Any = field(default=None, compare=False, repr=False)  # what the last call returned

    @property
    def first_ms(self) -> float | None:
        """The first call's time, when there was a warm-up call (else None)."""
        return self.warmup_s[0] * 1000 if self.warmup_s else None

    @property
    def median_ms(self) -> float:
        return float(np.median(self.samples_s)) * 1000

    @property
    def min_ms(self) -> float:
        return min(self.samples_s) * 1000

    @property
    def max_ms(self) -> float:
        return max(self.samples_s) * 1000

    @property
    def std_ms(self) -> float:
        return float(np.std(self.samples_s)) * 1000


def time_calls(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> Timing:
    """Call `fn` `warmup` times (kept apart), then `repeats` times, timing each with `perf_counter`."""
    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be at least 1 and warmup at least 0")
    warm = [time_once(fn)[0] for _ in range(warmup)]
    samples, result = [], None
    for _ in range(repeats):
        seconds, result = time_once(fn)
        samples.append(seconds)
    return Timing(tuple(samples), tuple(warm), result)


def time_once(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds of a single (cold) call and its result: loads, compiles, first inferences."""
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result

"""The jobs a page starts, typed: training a model, a benchmark sweep, a tuning. Each refuses what it
can tell is wrong before a child process starts, and hands `JobRunner` its module-level job function."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Callable

from core.app import workflow
from core.app.jobs import Job, JobRunner
from core.errors import UserError
from core.measure import benchmark, tune
from core.model.recipes import TrainConfig
from core.model.tuned import OBJECTIVE_CHOICES
from core.settings import SweepConfig

TUNING_OVERHEAD_S = 120  # a tuning's budget bounds its search; the accuracy guard and start-up come on top


def start_training(runner: JobRunner, source: Path, cfg: TrainConfig, name: str, models_root: Path, owner: str = "",
                   time_limit_s: float | None = None, on_end: Callable[[], None] | None = None) -> Job:
    """Train, convert, validate and calibrate `name` from the photos in `source` into `models_root`."""
    workflow.check_new_name(name, models_root)
    return runner.start("training", f"training {name}", workflow.train_job,
                        {"source": str(source), "config": asdict(cfg), "name": name, "models_root": str(models_root)},
                        owner=owner, time_limit_s=time_limit_s, on_end=on_end)


def start_sweep(runner: JobRunner, cfg: SweepConfig, out_root: Path, owner: str = "",
                time_limit_s: float | None = None, on_end: Callable[[], None] | None = None) -> Job:
    """A benchmark sweep of `cfg`, its run saved under `out_root`."""
    return runner.start("benchmark", f"benchmark of {Path(cfg.model_dir).name}", benchmark.sweep_job,
                        {"config": asdict(cfg), "out_root": str(out_root)},
                        owner=owner, time_limit_s=time_limit_s, on_end=on_end)


def start_tuning(runner: JobRunner, model_dir: Path, objective: str, budget_s: float, p99_ms: float | None = None,
                 owner: str = "", search_cap_s: float | None = None) -> Job:
    """A tuning of `model_dir` for `objective` within `budget_s` of search (stopped at `search_cap_s` plus
    the guard's and start-up's time, if capped); `p99_ms` bounds the latency tail when given."""
    if objective not in OBJECTIVE_CHOICES:
        raise UserError(f"the objective must be one of {', '.join(OBJECTIVE_CHOICES)}")
    return runner.start("tune", f"tuning {Path(model_dir).name}", tune.tune_job,
                        {"model_dir": str(model_dir), "objective": objective, "budget_s": float(budget_s),
                         "p99_ms": float(p99_ms) if p99_ms else None},
                        owner=owner, time_limit_s=search_cap_s + TUNING_OVERHEAD_S if search_cap_s else None)

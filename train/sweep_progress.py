"""The progress of a sweep as Ray Tune sees it: trials done, running, failed, retried and the best
so far, on one rich progress line (as every long aolo command shows its work).

:class:`SweepProgress` is a Tune callback (``RunConfig(callbacks=...)``). Tune keeps its callbacks
with the experiment for ``Tuner.restore``, so the callback holds plain counts only; the rich display
it drives lives in this module (:func:`live_progress`) and is never pickled.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ray.tune import Callback

from aolo.console import console

__all__ = ["SweepProgress", "live_progress"]

_display: dict[str, Any] = {}
"""The rich Progress and its task while :func:`live_progress` is open, else empty."""


class SweepProgress(Callback):
    """Counts trials by state from Tune's events and shows them.

    :param metric: the sweep's metric
    :param mode: min or max
    """

    def __init__(self, metric: str, mode: str) -> None:
        self.metric, self.mode = metric, mode
        self.retries: dict[str, int] = {}  # Tune trial id -> retries after a dead worker
        self.keys: dict[str, str] = {}  # Tune trial id -> aolo trial key
        self.best: tuple[float, str] | None = None
        self.counts = {"total": 0, "done": 0, "running": 0, "failed": 0}

    # --- Tune's events ------------------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._count(trials)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if "trial_key" in result:
            self.keys[trial.trial_id] = result["trial_key"]
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            signed = value if self.mode == "min" else -value
            if self.best is None or signed < self.best[0]:
                self.best = (signed, result.get("trial_key", trial.trial_id))
        self._count(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._count(trials, {trial.trial_id: "TERMINATED"})

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._count(trials, {trial.trial_id: "ERROR"})

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.retries[trial.trial_id] = self.retries.get(trial.trial_id, 0) + 1
        self._count(trials)

    # --- what it knows ------------------------------------------------------------------------------
    def retries_by_key(self) -> dict[str, int]:
        """aolo trial key -> retries seen in this process."""
        return {self.keys.get(tid, tid): n for tid, n in self.retries.items()}

    def describe(self) -> str:
        c = self.counts
        best = "-" if self.best is None else f"{self.best[0] if self.mode == 'min' else -self.best[0]:.4g} ({self.best[1]})"
        return (f"{c['done']}/{c['total']} done, {c['running']} running, {c['failed']} failed, "
                f"{sum(self.retries.values())} retried; best {self.metric} {best}")

    def _count(self, trials: list, now: dict[str, str] | None = None) -> None:
        """Count the trials by status; ``now``: trial id -> the status an event just gave it (Tune
        sets it after calling back)."""
        now = now or {}
        status = [now.get(t.trial_id, str(t.status)) for t in trials]
        self.counts = {"total": len(trials), "done": status.count("TERMINATED"), "running": status.count("RUNNING"),
                       "failed": status.count("ERROR")}
        if _display:
            _display["progress"].update(_display["task"], total=max(len(trials), 1), completed=self.counts["done"]
                                        + self.counts["failed"], description=self.describe())


@contextmanager
def live_progress(progress: SweepProgress, enabled: bool = True) -> Iterator[None]:
    """Show ``progress`` as one rich progress line while the block runs (nothing when not enabled)."""
    if not enabled:
        yield
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("[bold]sweep[/]"), BarColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                   console=console(), transient=False)
    with bar:
        _display.update(progress=bar, task=bar.add_task(progress.describe(), total=1))
        try:
            yield
        finally:
            _display.clear()

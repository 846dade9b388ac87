"""Interval metrics (the updates' means between log rows) and the progress bar."""
from __future__ import annotations

import logging
import os
import sys
import time
from contextlib import contextmanager

import numpy as np
import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm
from tqdm.std import EMA

from sac_runner.errors import NonFiniteError

log = logging.getLogger(__name__)


class IntervalMetrics:
    """Sums of the update metrics since the last row, on the training device (read once per row)."""

    def __init__(self, names: tuple[str, ...], device: torch.device):
        self.names, self.device = names, device
        self.reset()

    def reset(self) -> None:
        self._sum: torch.Tensor | None = None
        self._count = 0

    def add(self, metrics: dict) -> None:
        values = torch.stack([metrics[k] for k in self.names])
        self._sum = values if self._sum is None else self._sum + values
        self._count += 1

    def means(self, where: str, kept: str) -> dict[str, float]:
        """The interval's means (its one host sync); NonFiniteError when one is not finite."""
        if self._sum is None:
            return {}
        row = {}
        for key, value in zip(self.names, (self._sum / self._count).tolist()):
            if not np.isfinite(value):
                raise NonFiniteError(f"{key} became {value} {where}; {kept}")
            row[key] = value
        return row

    def state_dict(self) -> dict:
        return {"sum": self._sum.cpu() if self._sum is not None else None, "count": self._count}

    def load_state_dict(self, state: dict) -> None:
        self._sum = state["sum"].to(self.device) if state["sum"] is not None else None
        self._count = int(state["count"])


class Speed:
    """Env steps and updates per second, counting only time spent training: evaluations, checkpoints and the
    first (compiling) update are left out."""

    def __init__(self, step: int, updates: int):
        self.mark(step, updates)
        self.last: float | None = None

    def mark(self, step: int, updates: int) -> None:
        self._t0, self._step0, self._updates0 = time.perf_counter(), step, updates

    @contextmanager
    def paused(self, active: bool = True):
        """The time spent inside is left out of the rates (when `active`)."""
        if not active:
            yield
            return
        start = time.perf_counter()
        try:
            yield
        finally:
            self._t0 += time.perf_counter() - start

    def rates(self, step: int, updates: int) -> dict[str, float]:
        """The rates since the last mark (none when no step was taken since: a mark right before this row)."""
        if step == self._step0:
            return {}
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        row = {"perf/steps_per_second": (step - self._step0) / elapsed,
               "perf/updates_per_second": (updates - self._updates0) / elapsed}
        self.last = row["perf/steps_per_second"]
        self.mark(step, updates)
        return row


def restart_rate(bar: tqdm) -> None:
    """Count the bar's steps/s and ETA from now on: the warm-up's random steps and a compile say nothing about the
    training speed to come. (tqdm's timing state, touched here only.)"""
    if bar.disable:
        return
    now = bar._time()
    bar.start_t = bar.last_print_t = now
    bar.initial = bar.last_print_n = bar.n
    bar._ema_dn, bar._ema_dt = EMA(bar.smoothing), EMA(bar.smoothing)


@contextmanager
def progress_bar(show: bool, total: int, initial: int, file=None):
    """tqdm on a terminal (log lines printed above it; `file`: where to draw it instead), nothing elsewhere."""
    show = show and (file is not None or (sys.stderr.isatty() and os.environ.get("TERM") != "dumb"))
    bar = tqdm(total=total, initial=initial, unit="step", unit_scale=True, dynamic_ncols=file is None,
               disable=not show, smoothing=0.05, mininterval=0.5, file=file)
    try:
        with logging_redirect_tqdm(loggers=[logging.getLogger()]):
            yield bar
    finally:
        bar.close()

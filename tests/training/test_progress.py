"""The progress bar's steps/s and ETA count training only: warm-up steps and a compile are left out."""
from __future__ import annotations

import io

from sac_runner.training.metrics import progress_bar, restart_rate


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def advance(bar, clock: Clock, steps: int, seconds: float, chunks: int = 10) -> None:
    for _ in range(chunks):
        clock.now += seconds / chunks
        bar.update(steps // chunks)


def test_rate_and_eta_leave_out_warm_up_and_compile():
    clock = Clock()
    with progress_bar(True, total=100_000, initial=0, file=io.StringIO()) as bar:
        bar._time = clock  # tqdm reads its clock through this attribute
        bar.start_t = bar.last_print_t = clock.now
        advance(bar, clock, 10_000, seconds=5.0)  # warm-up: 2000 random steps/s
        restart_rate(bar)
        advance(bar, clock, 1, seconds=60.0, chunks=1)  # the first update compiles
        restart_rate(bar)
        advance(bar, clock, 2_000, seconds=20.0)  # training: 100 steps/s
        rate = bar.format_dict["rate"]
        text = bar.format_meter(**bar.format_dict)
    assert 90 < rate < 110, rate
    assert "<14:" in text, text  # (100000 - 12001) steps left at 100 steps/s: 14 min 40 s


def test_without_a_restart_the_warm_up_inflates_the_rate():
    """The reason for restarting: what the bar would show otherwise."""
    clock = Clock()
    with progress_bar(True, total=100_000, initial=0, file=io.StringIO()) as bar:
        bar._time = clock
        bar.start_t = bar.last_print_t = clock.now
        advance(bar, clock, 10_000, seconds=5.0)
        advance(bar, clock, 200, seconds=2.0, chunks=2)
        assert bar.format_dict["rate"] > 300

"""Stop signals: SIGTERM, SIGINT and the cluster's warnings before preemption end training after a checkpoint."""
from __future__ import annotations

import signal

# SIGUSR1: Slurm's warning before preemption; SIGUSR2: submitit's (its handler then requeues the job).
STOP_SIGNALS = tuple(s for s in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGUSR1", None),
                                 getattr(signal, "SIGUSR2", None)) if s)


class StopSignals:
    """While entered, a stop signal is recorded (`received`) for the loop to act on at its next step; a second
    Ctrl-C stops at once. On exit the previous handlers are back."""

    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handler(self, signum, frame) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self.received = signum

    def __enter__(self) -> "StopSignals":
        try:
            for s in STOP_SIGNALS:
                self._previous[s] = signal.signal(s, self._handler)
        except ValueError:  # not the main thread: leave signals alone
            pass
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)

    def pass_on(self) -> None:
        """After our checkpoint, let a handler installed before ours act (submitit's requeue on SIGUSR1)."""
        previous = self._previous.get(self.received)
        if callable(previous) and previous is not signal.default_int_handler and \
                not getattr(previous, "start_up_only", False):
            previous(self.received, None)

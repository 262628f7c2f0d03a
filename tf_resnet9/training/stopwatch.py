"""DAWNBench's clock, after the `Timer` of Page's cifar10-fast: a run's time in laps, of
which only some count as training."""

from __future__ import annotations

import time


class Stopwatch:
    """Each `lap` is the time since the previous one (or since the stopwatch started); the
    laps that count add up to `total`, the training time. The caller ends a lap only once
    the device has finished the lap's work (the epoch loop reads the step's totals first),
    so asynchronous dispatch cannot move time from one lap into the next.

    Args:
        total: Training time already done (a resumed run's).
    """

    def __init__(self, total: float = 0.0):
        self.total = total
        self._last = time.perf_counter()

    def lap(self, counts: bool) -> float:
        """Seconds since the last lap; added to `total` if the lap `counts`."""
        now = time.perf_counter()
        seconds, self._last = now - self._last, now
        if counts:
            self.total += seconds
        return seconds

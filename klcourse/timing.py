"""Wall time per phase of a loop, for the benchmark: ``laps.lap("generate")`` records the seconds
since the previous lap as ``time_generate`` (:func:`klcourse.ppo.train` logs one per PPO phase)."""

from __future__ import annotations

import time


class Laps:
    """Wall time of each phase of a step, as ``time_<phase>`` seconds (for the benchmark).

    Taught in notebook 05.
    """

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def lap(self, name: str) -> None:
        """Record the time since the previous lap under ``time_<name>``."""
        now = time.perf_counter()
        self.seconds[f"time_{name}"] = now - self.start
        self.start = now

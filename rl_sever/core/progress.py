"""A one-line console progress bar; silent when stderr is not a terminal."""

from __future__ import annotations

import math
import sys
import time


class Progress:
    def __init__(self, total: int, start: int = 0, enabled: bool | None = None, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total, self.start, self.t0 = total, start, time.perf_counter()
        self._last = 0.0

    def update(self, step: int, ep_return: float, force: bool = False) -> None:
        now = time.perf_counter()
        if not self.enabled or (now - self._last < 0.2 and not force):
            return
        self._last = now
        frac = min(step / max(self.total, 1), 1.0)
        fps = (step - self.start) / max(now - self.t0, 1e-9)
        bar = "#" * int(frac * 30)
        ret = "   n/a" if math.isnan(ep_return) else f"{ep_return:8.2f}"
        self.stream.write(f"\r[{bar:<30}] {step:>9,}/{self.total:,} steps  {fps:7.0f} fps  return {ret}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()

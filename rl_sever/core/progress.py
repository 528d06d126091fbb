"""Training progress on the console: a one-line bar on a terminal (stderr); without one (nohup,
a job scheduler, CI), a plain line on stdout every `every_s` seconds."""

from __future__ import annotations

import math
import sys
import time


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


class Progress:
    """`enabled`: None decides by the streams (a bar when stderr is a terminal, else lines when
    `every_s` > 0), False shows nothing, True forces the bar."""

    def __init__(self, total: int, start: int = 0, enabled: bool | None = None, stream=None, *,
                 every_s: float = 30.0, line_stream=None):
        self.stream = stream or sys.stderr
        self.line_stream = line_stream or sys.stdout
        self.bar = self.stream.isatty() if enabled is None else enabled
        self.lines = enabled is None and not self.bar and every_s > 0
        self.every_s = every_s
        self.total, self.start, self.t0 = total, start, time.perf_counter()
        self._last = self._last_line = self.t0

    def update(self, step: int, ep_return, force: bool = False) -> None:
        """`ep_return`: a float, or a function giving it (called only when something prints:
        the loop calls this every iteration)."""
        now = time.perf_counter()
        show_line = self.lines and (now - self._last_line >= self.every_s or force)
        show_bar = self.bar and (now - self._last >= 0.2 or force)
        if not (show_line or show_bar):
            return
        ep_return = ep_return() if callable(ep_return) else ep_return
        if show_line:
            self._last_line = now
            print(self.line(step, ep_return, now), file=self.line_stream, flush=True)
        if not show_bar:
            return
        self._last = now
        frac = min(step / max(self.total, 1), 1.0)
        fps = (step - self.start) / max(now - self.t0, 1e-9)
        bar = "#" * int(frac * 30)
        ret = "   n/a" if math.isnan(ep_return) else f"{ep_return:8.2f}"
        print(f"\r[{bar:<30}] {step:>9,}/{self.total:,} steps  {fps:7.0f} fps  return {ret}",
              end="", file=self.stream, flush=True)

    def line(self, step: int, ep_return: float, now: float | None = None) -> str:
        """`step 12,288/100,000 (12.3%) | 2,048 fps | return 23.50 | elapsed 0m06s | left 0m43s`"""
        elapsed = (now if now is not None else time.perf_counter()) - self.t0
        fps = (step - self.start) / max(elapsed, 1e-9)
        left = (self.total - step) / fps if fps > 0 else math.inf
        ret = "n/a" if math.isnan(ep_return) else f"{ep_return:.2f}"
        pct = 100.0 * step / max(self.total, 1)
        return (f"step {step:,}/{self.total:,} ({pct:.1f}%) | {fps:,.0f} fps | return {ret} | "
                f"elapsed {_duration(elapsed)} | left "
                f"{_duration(left) if math.isfinite(left) else 'n/a'}")

    def close(self, step: int | None = None, ep_return: float = math.nan) -> None:
        if self.lines and step is not None:
            print(self.line(step, ep_return), file=self.line_stream, flush=True)
        if self.bar:
            print(file=self.stream, flush=True)

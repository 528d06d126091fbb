"""The table `rl-sever export` prints: per format its file, size, check and latency."""

from __future__ import annotations

from typing import Any

from rl_sever.core.disk import human_bytes
from rl_sever.deploy.check import TOLERANCE


def _check(result: dict[str, Any] | None, quantized: bool) -> str:
    if result is None:
        return "not checked"
    n = result["observations"]
    parts = []
    if result["mismatched_actions"]:
        parts.append(f"{result['mismatched_actions']} of {n:,} actions differ")
    if result["max_error"]:
        parts.append(f"max error {result['max_error']:.2g}")
    verdict = ("as the agent" if result["passed"] else
               "measured, not held to the tolerance" if quantized else "FAILED")
    return f"{verdict} on {n:,} observations" + (f" ({', '.join(parts)})" if parts else "")


def format_export(formats: dict[str, dict[str, Any]]) -> str:
    rows = [("format", "file", "size", "1 obs", "64 obs", f"check (tolerance {TOLERANCE:g})")]
    for label, entry in formats.items():
        lat = entry.get("latency") or {}
        rows.append((label, entry["file"], human_bytes(entry["bytes"]),
                     f"{lat['ms_1']:.3f} ms" if lat else "-",
                     f"{lat['ms_64']:.3f} ms" if lat else "-",
                     _check(entry.get("check"), entry.get("quantize") is not None)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1]
                     for r in rows)

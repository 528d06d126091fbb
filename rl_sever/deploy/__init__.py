"""Deploy a trained policy: SavedModel, ONNX and LiteRT files that take raw observations and
return env actions, each checked against the agent and timed.

    from rl_sever.deploy import export
    report = export(agent, "policy", formats="all", quantize="int8")

The graph holds what acting needs: observation normalisation with the checkpointed statistics,
image scaling, a Dict observation's keys as inputs, the greedy action, clipping to the action
bounds, a recurrent policy's state and a masked policy's mask. metadata.json beside the files
names every input and output, the preprocessing baked in and what a caller must still do.
The files are written into a fresh folder next to `out_dir` and moved into place only when
every format has been written and has passed its check.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rl_sever.core.export import METADATA_FILE, metadata
from rl_sever.deploy import check as checks
from rl_sever.deploy import folder
from rl_sever.deploy import formats as fmts
from rl_sever.deploy.graph import bfloat16_layers, float32_matmuls, policy_module
from rl_sever.deploy.notes import caller_steps, preprocessing, signature
from rl_sever.errors import ConfigError

__all__ = ["FORMATS", "QUANTIZE", "export"]
FORMATS, QUANTIZE = fmts.FORMATS, fmts.QUANTIZE
CHECK = 1000


def parse_formats(formats: str | Iterable[str]) -> list[str]:
    names = [formats] if isinstance(formats, str) else list(formats)
    names = [n for name in names for n in (FORMATS if name == "all" else name.split(","))]
    for name in names:
        if name not in FORMATS:
            raise ConfigError(f"unknown export format '{name}'; choose from "
                              f"{', '.join(FORMATS)} or all")
    return list(dict.fromkeys(names))


def export(agent: Any, out_dir: str | Path, formats: str | Iterable[str] = "savedmodel", *,
           check: int = CHECK, quantize: str | None = None, stochastic: bool = False,
           seed: int = 12_345, latency: bool = True) -> dict[str, Any]:
    """Write the agent's greedy policy into `out_dir` in `formats` (savedmodel, onnx, litert,
    all); with `quantize` (float16 or int8) also a quantised LiteRT file; `stochastic` adds
    the distribution's parameters and a sampled action to the outputs. `check` observations
    (0: none) compare every file with agent.predict; a format that does not reproduce it
    raises ExportError and nothing is left in `out_dir`. Returns what was written, checked and
    timed (also in metadata.json)."""
    names = parse_formats(formats)
    if quantize not in (None, *QUANTIZE):
        raise ConfigError(f"quantize must be one of {', '.join(QUANTIZE)}, got '{quantize}'")
    if quantize and "litert" not in names:
        raise ConfigError("quantize applies to the litert format; add it to the formats")
    if check < 0:
        raise ConfigError(f"check must be >= 0 observations, got {check}")
    for name in names:
        fmts.require(name)
    out = folder.target(Path(out_dir))
    items = [(name, None) for name in names] + ([("litert", quantize)] if quantize else [])
    with folder.staged(out) as work:
        report = _write_all(agent, work, items, check, seed, latency, stochastic)
        meta = {**metadata(agent), **signature(agent, stochastic),
                "deterministic": not stochastic, "preprocessing": preprocessing(agent),
                "caller": caller_steps(agent), "formats": report,
                "format": "rl_sever exported policy"}
        (work / METADATA_FILE).write_text(json.dumps(meta, indent=2, allow_nan=False))
    return {"out": str(out), "formats": report}


def _write_all(agent, work: Path, items, check: int, seed: int, latency: bool,
               stochastic: bool) -> dict:
    report: dict[str, Any] = {}
    bfloat16 = bool(bfloat16_layers(agent))  # read before float32_matmuls switches them
    draws = max(check, 200 if ("litert", "int8") in items else 0, 64 if latency else 0)
    native = [item for item in items if item[0] == "savedmodel"]
    portable = [item for item in items if item[0] != "savedmodel"]
    for group, float32 in ((native, False), (portable, True)):
        if not group:
            continue
        with float32_matmuls(agent) if float32 else contextlib.nullcontext():
            specs = policy_module(agent, "onnx", stochastic).serve.input_signature
            drawn = checks.draw(agent, specs, draws, seed, stochastic) if draws else None
            for fmt, quantize in group:
                label = fmt if quantize is None else f"{fmt}_{quantize}"
                calibration = checks.calibration(drawn) if quantize == "int8" else None
                fmts.write(fmt, policy_module(agent, fmt, stochastic), work, quantize=quantize,
                           calibration=calibration)
                entry = {"file": fmts.file_name(fmt, quantize), "quantize": quantize,
                         "bytes": fmts.size_bytes(work, fmt, quantize),
                         # bfloat16 hidden matmuls (AMX, Zen 4) are float32 in the portable formats
                         "matmul_precision": ("float32" if float32 and bfloat16
                                              else "as trained")}
                if check or latency:
                    runtime = fmts.load(fmt, work, quantize)
                if check:
                    entry["check"] = result = checks.compare(runtime, drawn, agent.action)
                    if not result["passed"] and quantize is None:
                        raise checks.failure(label, result)
                if latency and drawn is not None:
                    entry["latency"] = checks.latency(runtime, drawn)
                report[label] = entry
    return report


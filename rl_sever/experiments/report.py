"""`rl-sever report RUN_DIR...`: per case, the final and the best evaluation return over its
runs (seeds) as mean, median and interquartile mean, each with a stratified bootstrap 95%
confidence interval (rl_sever.core.stats states the method); optionally normalised by
reference scores (rl_sever.experiments.references); with several cases normalised, their
aggregate. Written as a Markdown table, JSON and pictures (rl_sever.experiments.figures).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rl_sever.core import stats
from rl_sever.errors import ConfigError
from rl_sever.experiments.figures import draw_curves, draw_profiles
from rl_sever.experiments.references import reference
from rl_sever.experiments.results import Case, load_cases

METHOD = ("interquartile mean (IQM: the mean of the middle 50% of runs, int(n/4) cut from each "
          "end) and stratified bootstrap 95% percentile intervals over runs "
          f"({stats.REPS:,} resamples, seeded); Agarwal et al. 2021")


def build_report(paths: list[str | Path], *, normalize: str | None = None, by: str = "case",
                 reps: int = stats.REPS) -> dict:
    """The report of the runs under `paths` as a JSON-ready dict."""
    cases, skipped = load_cases(paths, by)
    out = {"method": METHOD, "normalize": normalize, "cases": [],
           "skipped": [str(p) for p in skipped]}
    normalized: dict[str, dict[str, list]] = {}  # group -> final/best -> per-case scores
    missing = []
    for case in cases:
        entry = {"case": case.name, "algo": case.algo, "env_id": case.env_id,
                 "runs": [{"run_dir": str(r.run_dir), "seed": r.seed, "final": r.final,
                           "best": r.best, "final_step": int(r.steps[-1])} for r in case.runs]}
        for what in ("final", "best"):
            scores = [getattr(r, what) for r in case.runs]
            entry[what] = stats.summarize([scores], reps=reps)
        if normalize:
            ref = reference(case.env_id, normalize)
            if ref is None:
                missing.append(case.env_id)
            else:
                entry["reference"] = {"random": ref[0], "reference": ref[1]}
                for what in ("final", "best"):
                    scores = stats.normalized([getattr(r, what) for r in case.runs], *ref)
                    entry[f"normalized_{what}"] = stats.summarize([scores], reps=reps)
                    group = normalized.setdefault(_group(case, by), {"final": [], "best": []})
                    group[what].append(scores)
        steps = {int(r.steps[-1]) for r in case.runs}
        if len(steps) > 1:  # stopped early, interrupted, or other budgets: say so
            entry["note"] = ("the runs' last evaluations are at different steps: "
                             + ", ".join(f"{s:,}" for s in sorted(steps)))
        out["cases"].append(entry)
    if missing:
        raise ConfigError(f"no {normalize} reference score for {', '.join(sorted(set(missing)))}"
                          " (rl_sever.experiments.references); report without --normalize")
    # Across the cases of one algorithm (or folder), never across algorithms: the stratified
    # bootstrap's purpose. Its IQM is rliable's; mean and median are over the pooled runs.
    out["aggregate"] = {
        name: {"cases": len(group["final"]),
               **{what: stats.summarize(group[what], reps=reps) for what in ("final", "best")}}
        for name, group in normalized.items() if len(group["final"]) > 1}
    out["_cases"] = cases  # for the pictures; not written
    return out


def _group(case: Case, by: str) -> str:
    return case.algo if by == "case" else case.name.split(":")[0]


def ci_cell(summary: dict, name: str = "iqm", digits: int = 1) -> str:
    """"value [low, high]" of statistic `name` of a summary (rl_sever.core.stats.summarize)."""
    value, (low, high) = summary[name]["value"], summary[name]["ci"]
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def to_markdown(report: dict) -> str:
    """The report's table: one row per case (and the aggregate when normalised)."""
    norm = report["normalize"]
    digits = 1
    head = ["case", "runs", "final IQM [95% CI]", "final mean [95% CI]",
            "final median [95% CI]", "best IQM [95% CI]"]
    if norm:
        head += [f"final IQM, {norm}-normalised", f"best IQM, {norm}-normalised"]
    rows = []
    for c in report["cases"]:
        row = [c["case"], str(c["final"]["runs"]), ci_cell(c["final"], "iqm", digits),
               ci_cell(c["final"], "mean", digits), ci_cell(c["final"], "median", digits),
               ci_cell(c["best"], "iqm", digits)]
        if norm:
            row += [ci_cell(c["normalized_final"], "iqm", 3), ci_cell(c["normalized_best"], "iqm", 3)]
        rows.append(row)
    for name, agg in report.get("aggregate", {}).items():
        rows.append([f"**{name}: {agg['cases']} cases**", str(agg["final"]["runs"]),
                     "", "", "", "", ci_cell(agg["final"], "iqm", 3), ci_cell(agg["best"], "iqm", 3)])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    notes = [f"Final: each run's last evaluation; best: its best evaluation. {report['method']}."]
    notes += [f"{c['case']}: {c['note']}." for c in report["cases"] if "note" in c]
    if norm:
        notes.append("Normalised: (return - random) / (reference - random); references in "
                     "rl_sever.experiments.references.")
    return "\n".join(lines) + "\n\n" + " ".join(notes) + "\n"


def write_report(report: dict, out_dir: str | Path, *, pictures: bool = True) -> dict[str, Path]:
    """report.md, report.json and (with `pictures`) curves.png and profile.png in `out_dir`."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file, not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {"markdown": out_dir / "report.md", "json": out_dir / "report.json"}
    written["markdown"].write_text(to_markdown(report))
    data = {k: v for k, v in report.items() if not k.startswith("_")}
    written["json"].write_text(json.dumps(data, indent=1, default=_jsonable))
    if pictures:
        cases: list[Case] = report["_cases"]
        curves = draw_curves(cases, out_dir / "curves.png")
        if curves is not None:
            written["curves"] = curves
        written["profile"] = draw_profiles(report, out_dir / "profile.png")
    return written


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")

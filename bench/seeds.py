"""Several seeds side by side (issue 25): rl_sever's runs as `rl-sever report` summarises them
(its report.json), beside Stable-Baselines3's runs of the same cases from
`bench/returns.py --only-sb3 --seeds 0 1 2 3 4` (its JSON), both summarised the same way:
interquartile mean and mean of the final evaluation returns over seeds, each with its stratified
bootstrap 95% confidence interval (rl_sever.core.stats), and the zoo's reference.

    python -m bench.seeds --report report/report.json [--sb3 bench/results_seeds_sb3.json ...]
                          [--out bench/results_seeds.json] [--md bench/results_seeds.md]

On rl_sever's side the final return is each run's last evaluation (evaluations.json); on SB3's,
evaluate_policy over the same number of episodes after training (bench/returns.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rl_sever.core import stats  # noqa: E402
from rl_sever.experiments.references import ZOO  # noqa: E402
from rl_sever.experiments.report import ci_cell  # noqa: E402


def sb3_cases(paths: list[str]) -> dict[str, dict]:
    """"algo env_id" -> {seeds, finals, summary} of SB3's rows."""
    finals: dict[str, dict[int, float]] = {}
    for path in paths:
        for row in json.load(open(path))["results"]:
            if row.get("sb3"):
                finals.setdefault(f"{row['algo']} {row['env_id']}", {})[row["seed"]] = \
                    row["sb3"]["eval_mean"]
    return {case: {"seeds": sorted(by_seed), "finals": [by_seed[s] for s in sorted(by_seed)],
                   "summary": stats.summarize([list(by_seed.values())])}
            for case, by_seed in finals.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", nargs="+", required=True, help="rl-sever report's JSON")
    parser.add_argument("--sb3", nargs="*", default=[], help="bench/returns.py --only-sb3 JSON")
    parser.add_argument("--out", default="bench/results_seeds.json")
    parser.add_argument("--md", default="bench/results_seeds.md")
    args = parser.parse_args(argv)
    sb3 = sb3_cases(args.sb3)
    rows, table = [], ["| case | runs | rl_sever final IQM [95% CI] | rl_sever final mean [95% CI] "
                       "| SB3 runs | SB3 final IQM [95% CI] | SB3 final mean [95% CI] | zoo |",
                       "|---|---:|---|---|---:|---|---|---|"]
    for path in args.report:
        for case in json.load(open(path))["cases"]:
            name = f"{case['algo']} {case['env_id']}"
            other = sb3.get(name)
            zoo = ZOO.get(case["env_id"])
            rows.append({"case": case["case"], "rl_sever": {
                "finals": [r["final"] for r in case["runs"]],
                "seeds": [r["seed"] for r in case["runs"]], "summary": case["final"]},
                "sb3": other, "zoo": zoo[0] if zoo and zoo[1] == case["algo"] else None})
            table.append(
                f"| {case['case']} | {case['final']['runs']} | {ci_cell(case['final'], 'iqm')} | "
                f"{ci_cell(case['final'], 'mean')} | {len(other['finals']) if other else ''} | "
                f"{ci_cell(other['summary'], 'iqm') if other else ''} | "
                f"{ci_cell(other['summary'], 'mean') if other else ''} | "
                f"{rows[-1]['zoo'] if rows[-1]['zoo'] is not None else ''} |")
    with open(args.out, "w") as f:
        json.dump({"method": "stratified bootstrap 95% percentile intervals, 10,000 resamples, "
                   "seeded (rl_sever.core.stats)", "cases": rows}, f, indent=1)
    with open(args.md, "w") as f:
        f.write("\n".join(table) + "\n")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())

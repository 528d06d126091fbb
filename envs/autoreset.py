"""What an env step actually reached under Gymnasium's SAME_STEP autoreset."""

from __future__ import annotations

import numpy as np


def reached_observations(next_obs: np.ndarray, info: dict) -> np.ndarray:
    """The observation each sub-env reached in this step.

    With SAME_STEP autoreset, `next_obs` already starts the next episode for the envs whose
    episode ended; their true final observation is in info["final_obs"] (mask
    info["_final_obs"]). Bootstrapping a truncated episode must use that final observation.
    """
    final = info.get("_final_obs")
    if final is None or not final.any():
        return next_obs
    if isinstance(next_obs, dict):  # a Dict observation: each key from the final dicts
        rows = np.flatnonzero(final)
        reached = {k: v.copy() for k, v in next_obs.items()}
        for k, v in reached.items():
            v[rows] = np.stack([info["final_obs"][i][k] for i in rows])
        return reached
    reached = next_obs.copy()
    reached[final] = np.stack(info["final_obs"][final])
    return reached

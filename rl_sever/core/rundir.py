"""Run folders: runs/<env>__<algo>__<seed>__<time>/ with config.json, event files, checkpoints/."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from rl_sever.errors import CheckpointError

CONFIG_FILE = "config.json"


def new_run_dir(logdir: str | Path, env_id: str, algo: str, seed: int) -> Path:
    """Create a fresh, uniquely named run folder under `logdir`."""
    safe_env = re.sub(r"[^A-Za-z0-9_.-]+", "-", env_id)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(logdir) / f"{safe_env}__{algo}__{seed}__{stamp}"
    path, i = base, 1
    while path.exists():  # two runs started in the same second
        path = base.with_name(f"{base.name}-{i}")
        i += 1
    path.mkdir(parents=True)
    (path / "checkpoints").mkdir()
    return path


def write_config(run_dir: Path, record: dict[str, Any]) -> None:
    tmp = run_dir / (CONFIG_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True))
    tmp.replace(run_dir / CONFIG_FILE)


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """The run's config.json, with clear errors for a missing or unreadable run folder."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory not found: {run_dir}")
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{run_dir} is not an rl_sever run directory (no {CONFIG_FILE})")
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from None
    for key in ("algo", "env_id", "config"):
        if key not in record:
            raise CheckpointError(f"{path} is missing the '{key}' entry")
    return record

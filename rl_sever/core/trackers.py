"""Experiment trackers beside TensorBoard (config `trackers`: wandb, mlflow; each an extra).

A tracker receives the resolved config, every scalar the logger dumps (same names, env steps
as steps), the gradient-flow matrix of the first update as text, and at the end the best
policy (`best/`) as an artifact. Its run is named like the run folder and resumed with it (the
ids are kept in `<run>/trackers.json`). A tracker that cannot be reached, or fails later, warns
once and is dropped: training goes on with TensorBoard.

- Weights & Biases: project `tracker_project`; its usual variables apply (WANDB_MODE=offline
  writes to `<run>/wandb/` for `wandb sync`; WANDB_API_KEY, WANDB_BASE_URL, WANDB_ENTITY).
- MLflow: experiment `tracker_project` at MLFLOW_TRACKING_URI (default: an SQLite file in the
  run folder's parent, `<logdir>/mlflow.db`, artifacts in `<logdir>/mlartifacts/`; `mlflow ui
  --backend-store-uri sqlite:///<logdir>/mlflow.db` opens it).
"""

from __future__ import annotations

import html
import importlib.util
import json
import logging
import os
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import Any

from rl_sever.core.rundir import write_json

IDS_FILE = "trackers.json"
PROBE_TIMEOUT_S = 5.0


class TrackerWarning(UserWarning):
    """An experiment tracker could not be reached or failed; training goes on without it."""


def _probe(url: str) -> None:
    """Raise OSError when nothing answers at `url` within PROBE_TIMEOUT_S (any HTTP answer,
    even an error status, means a server is there)."""
    try:
        urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError) as e:
        raise OSError(f"{url} cannot be reached ({getattr(e, 'reason', e)})") from None


class WandbTracker:
    name = "wandb"

    def __init__(self, run_dir: Path, project: str, config: dict, run_id: str | None):
        os.environ.setdefault("WANDB_SILENT", "true")  # its console lines stay off ours
        import wandb

        mode = os.environ.get("WANDB_MODE", "online")
        if mode not in ("offline", "disabled", "dryrun"):
            _probe(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
        self.wandb = wandb
        self.run = wandb.init(project=project, name=run_dir.name, id=run_id, resume="allow",
                              dir=str(run_dir), config=config, reinit="create_new",
                              settings=wandb.Settings(console="off", init_timeout=30))
        self.run_id = self.run.id

    def scalars(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=int(step))

    def text(self, name: str, text: str, step: int) -> None:
        self.run.log({name: self.wandb.Html(f"<pre>{html.escape(text)}</pre>")}, step=int(step))

    def artifact(self, path: Path, name: str) -> None:
        art = self.wandb.Artifact(f"{self.run.name}-{name}", type="model")
        art.add_dir(str(path))
        self.run.log_artifact(art)

    def close(self) -> None:
        self.run.finish()


class MlflowTracker:
    name = "mlflow"
    PARAMS_PER_CALL = 100  # MLflow's log_batch limit

    def __init__(self, run_dir: Path, project: str, config: dict, run_id: str | None):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # a lost server must
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")  # not stall training
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # its database set-up notes
        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{run_dir.parent.resolve() / 'mlflow.db'}"
        if uri.startswith(("http://", "https://")):
            _probe(uri.rstrip("/") + "/health")
        self.client = MlflowClient(tracking_uri=uri)
        if run_id is None:
            experiment = self.client.get_experiment_by_name(project)
            # Artifacts beside the database, not in ./mlruns of whatever folder this runs in.
            artifacts = (run_dir.parent.resolve() / "mlartifacts").as_uri()
            exp_id = (experiment.experiment_id if experiment is not None
                      else self.client.create_experiment(project, artifact_location=artifacts))
            run_id = self.client.create_run(exp_id, run_name=run_dir.name).info.run_id
            params = [Param(k, str(v)[:500]) for k, v in config.items()]
            for i in range(0, len(params), self.PARAMS_PER_CALL):
                self.client.log_batch(run_id, params=params[i:i + self.PARAMS_PER_CALL])
        self.run_id = run_id

    def scalars(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, int(step))
                                                    for k, v in values.items()])

    def text(self, name: str, text: str, step: int) -> None:
        self.client.log_text(self.run_id, text, f"{name}.md")

    def artifact(self, path: Path, name: str) -> None:
        self.client.log_artifacts(self.run_id, str(path), name)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


KINDS = {"wandb": WandbTracker, "mlflow": MlflowTracker}  # config `trackers` names these


class Trackers:
    """Every tracker a run asked for, each dropped (with one warning) at its first failure."""

    def __init__(self, names: list[str], run_dir: Path | None, project: str, config: dict):
        self.active: list[Any] = []
        if not names or run_dir is None:
            return
        self.ids_path = Path(run_dir) / IDS_FILE
        ids = self._read_ids()
        for name in names:
            if importlib.util.find_spec(name) is None:
                warnings.warn(f"the {name} tracker is not installed (pip install "
                              f"'rl_sever[{name}]'); training goes on without it",
                              TrackerWarning, stacklevel=3)
                continue
            try:
                tracker = KINDS[name](Path(run_dir), project, config, ids.get(name))
            except Exception as e:  # unreachable, refused, misconfigured
                self._warn(name, e)
                continue
            self.active.append(tracker)
            ids[name] = tracker.run_id
        if self.active:
            try:
                write_json(self.ids_path, ids)
            except OSError:
                pass  # the next resume starts new tracker runs

    def _read_ids(self) -> dict:
        try:
            return json.loads(self.ids_path.read_text())
        except (OSError, ValueError):
            return {}

    @staticmethod
    def _warn(name: str, error: Exception) -> None:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        warnings.warn(f"the {name} tracker failed ({first}); training goes on without it",
                      TrackerWarning, stacklevel=4)

    def _each(self, method: str, *args) -> None:
        for tracker in list(self.active):
            try:
                getattr(tracker, method)(*args)
            except Exception as e:
                self._warn(tracker.name, e)
                self.active.remove(tracker)
                try:
                    tracker.close()
                except Exception:
                    pass

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.active and values:
            self._each("scalars", values, step)

    def text(self, name: str, text: str, step: int) -> None:
        self._each("text", name, text, step)

    def artifact(self, path: Path, name: str) -> None:
        if Path(path).is_dir():
            self._each("artifact", Path(path), name)

    def close(self) -> None:
        self._each("close")
        self.active = []

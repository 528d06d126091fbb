"""Learner processes started by Ray (config `learners`): N Ray actors, each a worker of a
`distribute=multiworker` run (rl_sever.core.distribute), as Ray Train's TensorFlow trainer
starts them: every actor finds a free port on its node, the actors' addresses make the
TF_CONFIG cluster, each sets its own TF_CONFIG before TensorFlow's first op and trains. Each
worker collects its own data (DD-PPO); worker 0, the chief, writes the run folder on its node.

A learner that dies ends the run (the collectives need every worker; ClusterError): `rl-sever
train --resume RUN_DIR` continues from the chief's last checkpoint. Ctrl-C stops the learners
as it stops a local run (each saves a checkpoint) before the actors go.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path

import numpy as np

from rl_sever.core.distribute import get_strategy
from rl_sever.errors import ClusterError
from rl_sever.runners.cluster import connect, import_ray, raised_in, release

CHECKPOINT_WAIT_S = 120.0  # Ctrl-C: how long the learners may take to save their checkpoint


class Learner:
    """One learner process (a Ray actor)."""

    def address(self) -> str:
        """host:port for this worker's collectives (a port free now on its node)."""
        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        return f"{import_ray().util.get_node_ip_address()}:{port}"

    def train(self, tf_config: dict, agent_class, env_id: str, config, logdir,
              run_dir=None, steps=None, overrides=None) -> dict:
        os.environ["TF_CONFIG"] = json.dumps(tf_config)
        get_strategy("multiworker")  # before TensorFlow's first op
        if run_dir is not None:  # resume: every worker reads the chief's checkpoints
            agent = agent_class.load(run_dir, overrides=overrides, import_losses=True)
            if steps is not None:
                agent.target_steps.assign(int(agent.global_step.numpy()) + steps)
            agent.continue_learning(progress=False)
        else:
            agent = agent_class(env_id, config, logdir=logdir)
            agent.learn(progress=False)
        digest = hashlib.sha256()
        for v in agent.acting_variables():
            digest.update(np.ascontiguousarray(v.numpy()).tobytes())
        out = {"chief": agent.replicas.is_chief, "rank": agent.replicas.rank,
               "data_seed": agent.data_seed, "steps": int(agent.global_step.numpy()),
               "run_dir": str(agent.run_dir) if agent.replicas.is_chief else None,
               "last_eval": getattr(agent, "last_eval", None), "weights": digest.hexdigest()}
        agent.close()
        return out


def train_learners(agent_class, env_id: str, config, logdir="runs", run_dir=None,
                   steps: int | None = None, overrides: dict | None = None) -> list[dict]:
    """Train `agent_class` on `env_id` with `config.learners` Ray-started learner processes
    (`run_dir`: resume that run with `overrides`, `steps` more env steps); returns each
    worker's summary, the chief's first. Paths are made absolute here: the learners may run
    on other nodes (the run folder must then be on a filesystem they share)."""
    ray = import_ray()
    connect(config.ray_address, config.learners, 1.0)
    logdir = None if logdir is None else str(Path(logdir).resolve())
    run_dir = None if run_dir is None else str(Path(run_dir).resolve())
    actor = ray.remote(Learner).options(num_cpus=1, max_restarts=0,
                                        scheduling_strategy="SPREAD")
    learners, runs = [actor.remote() for _ in range(config.learners)], []
    try:
        addresses = ray.get([a.address.remote() for a in learners])
        cluster = {"worker": addresses}
        runs = [a.train.remote({"cluster": cluster, "task": {"type": "worker", "index": i}},
                               agent_class, env_id, config, logdir, run_dir, steps, overrides)
                for i, a in enumerate(learners)]
        try:
            results = ray.get(runs)
        except ray.exceptions.RayTaskError as e:  # raised in a learner: raise it here
            raise raised_in(e) from None
        except ray.exceptions.RayActorError as e:
            raise ClusterError(f"a learner process died ({str(e).splitlines()[0]}); resume the "
                               "run from its last checkpoint with rl-sever train --resume") from None
        return sorted(results, key=lambda r: r["rank"])
    except KeyboardInterrupt:
        # The learners stop as on Ctrl-C (each saves a checkpoint), then the run ends here.
        for ref in runs:
            ray.cancel(ref)
        ray.wait(runs, num_returns=len(runs), timeout=CHECKPOINT_WAIT_S)
        raise
    finally:
        for a in learners:
            try:
                ray.kill(a)
            except Exception:
                pass
        release()

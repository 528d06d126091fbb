"""Multi-device and multi-host learners through tf.distribute (config `distribute`): one copy
of every variable per replica, the gradients of each replica's minibatch slice averaged and
applied once; only the chief writes events and checkpoints. See docs/distribute.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tensorflow as tf

from rl_sever.config.run import STRATEGIES
from rl_sever.errors import ConfigError

TF_CONFIG_EXAMPLE = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}')

_STRATEGIES: dict[tuple, tf.distribute.Strategy] = {}  # one per process: collectives are global


def read_tf_config() -> dict[str, Any]:
    """The TF_CONFIG cluster description of this process, checked enough to fail clearly."""
    text = os.environ.get("TF_CONFIG", "").strip()
    hint = f"; set it on every worker, e.g. TF_CONFIG='{TF_CONFIG_EXAMPLE}' (docs/distribute.md)"
    if not text:
        raise ConfigError("distribute=multiworker needs the TF_CONFIG environment variable" + hint)
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({e})" + hint) from None
    cluster, task = (spec.get("cluster"), spec.get("task")) if isinstance(spec, dict) else (None, None)
    if not isinstance(cluster, dict) or not cluster or not isinstance(task, dict):
        raise ConfigError("TF_CONFIG must hold a 'cluster' mapping and a 'task' mapping" + hint)
    kind, index = task.get("type"), task.get("index")
    members = cluster.get(kind)
    if not isinstance(members, list) or not isinstance(index, int) or not 0 <= index < len(members):
        raise ConfigError(f"TF_CONFIG task {task} is not a member of the cluster {cluster}" + hint)
    return spec


def get_strategy(kind: str = "default", devices: list[str] | tuple[str, ...] = ()) -> tf.distribute.Strategy:
    """The process's strategy for `kind` (created once). A multi-worker strategy must be created
    before TensorFlow runs its first op; call this at program start when that matters."""
    if kind not in STRATEGIES:
        raise ConfigError(f"unknown distribute strategy '{kind}'; choose one of {list(STRATEGIES)}")
    if kind == "default":
        return tf.distribute.get_strategy()
    key = (kind, tuple(devices))
    if key in _STRATEGIES:
        return _STRATEGIES[key]
    if kind == "mirrored":
        strategy = tf.distribute.MirroredStrategy(list(devices) or None)
    else:
        read_tf_config()
        # RING collectives run on CPUs and GPUs alike (NCCL would need GPUs everywhere).
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING)
        try:
            strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        except RuntimeError as e:
            if "program startup" not in str(e):
                raise
            raise ConfigError(
                "distribute=multiworker must set up TensorFlow's collectives before its first op: "
                "call rl_sever.core.distribute.get_strategy('multiworker') at the start of the program "
                "(the CLI does)") from None
    _STRATEGIES[key] = strategy
    return strategy


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True for the process that writes events and checkpoints: the 'chief' task, or worker 0
    of a cluster without one; always true outside a multi-worker cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if task_type is None:
        return True
    jobs = resolver.cluster_spec().as_dict()
    if "chief" in jobs:
        return task_type == "chief"
    return task_type == "worker" and int(resolver.task_id) == 0


def worker_rank(strategy: tf.distribute.Strategy) -> tuple[int, int]:
    """(this process's rank, the number of worker processes): the chief first, then the
    workers by index; (0, 1) outside a multi-worker cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if task_type is None:
        return 0, 1
    jobs = resolver.cluster_spec().as_dict()
    chiefs, workers = len(jobs.get("chief", [])), len(jobs.get("worker", []))
    rank = 0 if task_type == "chief" else chiefs + int(resolver.task_id)
    return rank, chiefs + workers


class ReplicaSet:
    """The replicas of an agent's update: strategy, cluster role, split-and-average gradients."""

    def __init__(self, kind: str = "default", devices: list[str] | tuple[str, ...] = ()):
        self.kind = kind
        self.strategy = get_strategy(kind, devices)
        # `default` is the one-device step even inside a user's own strategy scope.
        self.count = int(self.strategy.num_replicas_in_sync) if self.distributed else 1
        self.is_chief = is_chief(self.strategy) if self.distributed else True
        # Worker processes each collect their own data (multiworker: DD-PPO); a minibatch is
        # split only among the replicas of one process.
        self.rank, self.workers = worker_rank(self.strategy) if self.distributed else (0, 1)
        self.local = max(1, self.count // self.workers)
        self._scratch: Path | None = None

    @property
    def distributed(self) -> bool:
        return self.kind != "default"

    def scope(self) -> contextlib.AbstractContextManager:
        """Create variables (networks, optimizer slots, flags) under this; one per replica."""
        return self.strategy.scope() if self.distributed else contextlib.nullcontext()

    def check_divisible(self, size: int, what: str) -> None:
        if size % self.local:
            raise ConfigError(f"{what} ({size}) must be divisible by the number of replicas "
                              f"({self.local}) of distribute={self.kind}: each replica takes an "
                              "equal slice")

    def gradients(self, grad_fn: Callable[[dict], tuple[tf.Tensor, dict[str, tf.Tensor], list]],
                  batch: dict[str, tf.Tensor], variables: list) -> tuple[tf.Tensor, dict, list]:
        """(loss, metrics, gradients ordered like `variables`) of `grad_fn` (the learner's
        tapes, rl_sever.core.learner) on `batch`, averaged across replicas.

        One replica: exactly the single-device step. Several: each replica takes its slice of
        every batch entry (the replicas of one process share its batch; processes have their
        own), the losses, metrics and gradients are averaged across all replicas; a gradient
        that is None (disconnected) stays None.
        """
        if self.count == 1:
            return grad_fn(batch)
        n_rep = self.local
        present = []  # which gradients exist: fixed by the graph, equal on all replicas

        def replica_step(batch):
            context = tf.distribute.get_replica_context()
            i = context.replica_id_in_sync_group % n_rep  # its index within this process
            # Nested entries (a Dict observation) are sliced key by key.
            part = {k: tf.nest.map_structure(lambda x: _slice(x, i, n_rep), v)  # noqa: B023
                    for k, v in batch.items()}
            loss, metrics, grads = grad_fn(part)
            present[:] = [g is not None for g in grads]
            metrics = {k: tf.cast(v, tf.float32) for k, v in metrics.items()}
            # Static shapes: the collectives pack the gradients, and a feature dimension lost
            # in a reshape would leave them unpackable.
            grads = [tf.ensure_shape(tf.convert_to_tensor(g), v.shape)
                     for g, v in zip(grads, variables) if g is not None]
            # One batched all-reduce; every replica (and worker) then holds the same mean.
            return context.all_reduce(tf.distribute.ReduceOp.MEAN, (loss, metrics, grads))

        reduced = self.strategy.run(replica_step, args=(batch,))
        first = self.strategy.experimental_local_results
        loss, metrics, grads = tf.nest.map_structure(lambda x: first(x)[0], reduced)
        it = iter(grads)
        return loss, metrics, [next(it) if p else None for p in present]

    # -- chief-only outputs -------------------------------------------------------------------
    def worker_dir(self) -> Path:
        """A non-chief worker's scratch run folder (its checkpoints go there, then away)."""
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="rl_sever_worker_"))
            (self._scratch / "checkpoints").mkdir()
            # Removed at the end of the run, or at exit if the run fails first.
            self._remove = weakref.finalize(self, shutil.rmtree, str(self._scratch), True)
        return self._scratch

    def discard_worker_dir(self) -> None:
        if self._scratch is not None:
            self._remove()
            self._scratch = None


def _slice(x: tf.Tensor, i: tf.Tensor, n: int) -> tf.Tensor:
    """Replica i's equal share of the rows of x (the sizes were checked to divide)."""
    size = tf.shape(x)[0] // n
    return x[i * size : (i + 1) * size]

"""Agent base: owns the env, seeding, the run folder, logging, checkpoints and the public API.

An algorithm subclass owns only its networks, its compiled act/update steps and its flow
contract (see rl_sever.onpolicy.agent, rl_sever.offpolicy.agent). `learn` hands the loop to
rl_sever.core.loop.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf

from envs import find_normalizer
from rl_sever import __version__
from rl_sever.config.changes import check_resume_changes, config_changes, history_entry
from rl_sever.config.fields import flat_items, to_dict, update
from rl_sever.config.loss_spec import parse_spec
from rl_sever.config.spaces import action_spec, observation_dtype, observation_shape
from rl_sever.core import metrics, registry, rundir
from rl_sever.core.action_masks import uses_action_masks
from rl_sever.core.agent_env import agent_env
from rl_sever.core.batch import Layout
from rl_sever.core.checkpoint import Checkpointer
from rl_sever.core.compiled import fast_call_of
from rl_sever.core.distribute import ReplicaSet
from rl_sever.core.ingraph_env import tfnative_env
from rl_sever.core.loop import run_training
from rl_sever.core.policy_inputs import act_inputs
from rl_sever.core.threads import apply_intra_op_threads
from rl_sever.deploy import export as export_policy
from rl_sever.errors import ConfigError, suggest
from rl_sever.isolation.freeze import FreezeSchedule
from rl_sever.objective import binding

SEEDS_PER_STEP = 16  # sub-seeds one next_seed() provides (Agent.sub_seed)


class Agent:
    """Common API of every rl_sever agent: learn, predict, save, load."""

    algo: str = ""
    config_cls: type = object
    mode: str = ""
    skipped_losses: tuple[str, ...] | list[str] = ()  # loss specs Agent.load left out

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("algo"):  # a page declares its name: it registers itself
            registry.register(cls)

    @classmethod
    def check_page(cls) -> None:
        """Fail with one ConfigError line when this class cannot be trained as an algorithm."""
        name = f"{cls.__module__}:{cls.__qualname__}"
        if not cls.algo or not cls.algo.replace("-", "_").isidentifier():
            raise ConfigError(f"algorithm class {name} must set `algo`, its name (e.g. 'ppo')")
        if not (dataclasses.is_dataclass(cls.config_cls) and hasattr(cls.config_cls, "validate")):
            raise ConfigError(f"algorithm class {name} must set `config_cls` to its config "
                              "dataclass (a subclass of OnPolicyConfig or OffPolicyConfig)")
        if cls.mode not in ("on_policy", "off_policy"):
            raise ConfigError(f"algorithm class {name} must derive from OnPolicyAgent or "
                              f"OffPolicyAgent (mode is {cls.mode!r})")

    def __init__(self, env: str | gym.vector.VectorEnv, config: Any = None, *,
                 logdir: str | Path | None = "runs", run_dir: str | Path | None = None,
                 losses: list | None = None, encoder: Any = None):
        """`losses`: edits of the objective applied after config.losses, in order: spec strings
        (rl_sever.config.loss_spec), LossTerms (added) or Objectives (their terms added).
        `encoder`: a keras.Model / Layer from (scaled) observations to features [batch, d],
        used as the agent's shared encoder (rl_sever.nn.encoders.UserEncoder)."""
        type(self).check_page()
        self._loss_edits = list(losses or [])
        if config is None:
            config = self.config_cls()
        elif isinstance(config, dict):
            config = update(self.config_cls(), config)
        elif not isinstance(config, self.config_cls):
            raise ConfigError(f"{type(self).__name__} expects a {self.config_cls.__name__}, "
                              f"got {type(config).__name__}")
        config.validate()
        self.config = config
        if config.distribute != "default" and self.mode != "on_policy":
            raise ConfigError(f"distribute={config.distribute} is supported for the on-policy agents "
                              f"(ppo, a2c, impala), not {self.algo}; use distribute=default")
        # First: a multi-worker strategy must set up collectives before TensorFlow's first op.
        self.replicas = ReplicaSet(config.distribute, config.devices)
        keras.utils.set_random_seed(config.seed)
        if config.intra_op_threads != "auto":  # before the env (a user's env may run TF ops)
            apply_intra_op_threads(config.intra_op_threads, 0)
        # Envs and acting: each worker of a multi-worker run collects its own data (DD-PPO).
        self.data_seed = config.seed + self.replicas.rank * config.n_envs
        self.env_id, env = agent_env(env, config, self.data_seed)
        self.env = env
        # A Dict observation (images with vectors, envs.dict_obs): key -> shape, key -> dtype.
        self.obs_shape = observation_shape(env.single_observation_space)
        self.obs_dtype = tf.nest.map_structure(tf.as_dtype,
                                               observation_dtype(env.single_observation_space))
        self.action = action_spec(env.single_action_space)
        # Action masks (rl_sever.core.action_masks): stored with the batch, read by the policy.
        self.masked = uses_action_masks(env, self.action, getattr(config, "action_masks", "off"),
                                        tf_native=tfnative_env(env) is not None)
        self.layout = Layout(self.obs_shape, self.obs_dtype, self.action.shape, self.action.dtype,
                             self.action.mask_dim if self.masked else 0)

        self.normalizer = find_normalizer(env)
        self.user_encoder = encoder
        # Before the first TensorFlow op of the agent: the pools are fixed from then on.
        self.intra_op_threads = apply_intra_op_threads(config.intra_op_threads,
                                                       self.auto_intra_op_threads())
        # The one source of randomness inside compiled steps (sampling, shuffling, noise):
        # stateless seeds (config.seed, counter), checkpointed, XLA-friendly (next_seed).
        self.seed_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="seed_counter")
        self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        self.iteration = tf.Variable(0, dtype=tf.int64, trainable=False, name="iteration")
        self.target_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="target_steps")
        self.logdir = logdir
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.config_history: list[dict] = []  # config changes made on resume (config.json)
        if encoder is not None and self.replicas.distributed:
            raise ConfigError("a user-supplied encoder cannot be mirrored by distribute="
                              f"{config.distribute} (its variables exist outside the strategy); "
                              "use distribute=default")
        with self.replicas.scope():  # networks, optimizer slots, flags: one copy per replica
            self._build()
        self.freeze_schedule = self._freeze_schedule(config.freeze)
        self.checkpoint = self._make_checkpoint()
        self._checkpointer: Checkpointer | None = None
        self._collector = None  # made on first use; owns the env's current observation

    def _make_checkpoint(self) -> tf.train.Checkpoint:
        """The checkpoint of everything a resume needs (rebuilt if the trackables change)."""
        return tf.train.Checkpoint(
            seed_counter=self.seed_counter, global_step=self.global_step, iteration=self.iteration,
            target_steps=self.target_steps, **self.trackables(),
            **({"normalizer": self.normalizer.trackable()} if self.normalizer is not None else {}),
        )

    # -- subclass API -----------------------------------------------------------------------
    def _build(self) -> None:  # networks and compiled steps
        raise NotImplementedError

    def trackables(self) -> dict:  # what a checkpoint holds
        raise NotImplementedError

    def auto_intra_op_threads(self) -> int:  # under intra_op_threads=auto (0: TF's default)
        return 0  # (runs no op)

    def has_updated(self) -> bool:  # the loop audits the first update
        return int(self.iteration.numpy()) > 0

    def module_optimizers(self) -> list:  # every ModuleOptimizer (freeze schedules set flags)
        return [self.optimizer]

    def _freeze_schedule(self, spec: dict) -> FreezeSchedule:
        schedule = FreezeSchedule.from_config(spec)
        known = [m for opt in self.module_optimizers() for m in opt.module_names]
        for module in schedule.windows:
            if module not in known:
                raise ConfigError(f"freeze: unknown module '{module}'; this agent's modules are "
                                  f"{sorted(set(known))}." + suggest(module, known))
        return schedule

    def apply_freeze_schedule(self, step: int) -> dict[str, bool]:
        """Set the frozen flags for env step `step` (plain Python, between compiled calls)."""
        changed = {}
        for opt in self.module_optimizers():
            windows = {m: w for m, w in self.freeze_schedule.windows.items() if m in opt.frozen}
            if windows:
                changed.update(FreezeSchedule(windows).apply(opt, step))
        return changed

    # The family's collectors (Gymnasium envs, TF-native envs, Gymnasium envs on Ray runners)
    # and its learner processes on Ray (config `learners`), if any.
    collector_classes: tuple = ()
    train_learners = None

    def make_collector(self):
        """A new object that steps the env for rl_sever.core.loop (see its docstring)."""
        if not self.collector_classes:
            raise NotImplementedError(f"{type(self).__name__} sets no collector_classes")
        python, ingraph, runners = self.collector_classes
        if getattr(self, "ingraph", None) is not None and self.config.runners:
            raise ConfigError("runners step Gymnasium envs; a tf: env runs inside the "
                              "learner's graph (use runners=0)")
        if getattr(self, "ingraph", None) is not None:
            return ingraph(self)
        return (runners if self.config.runners else python)(self)

    def acting_variables(self) -> list:  # what env runners receive once per update
        raise NotImplementedError

    @property
    def collector(self):
        """The agent's collector, made once: later learn() calls continue its episodes."""
        if self._collector is None:
            self._collector = self.make_collector()
        return self._collector

    def plan_updates(self, env_steps: int) -> None:  # the run will have trained this many
        pass

    def invalidate_host_copies(self) -> None:  # weights or step may have changed outside the
        pass  # loop: host-side copies (rl_sever.onpolicy.host_policy, the step) read them again

    def train(self, batch) -> dict[str, float]:  # one compiled update; metrics by TB name
        raise NotImplementedError

    train_metric_keys: tuple[str, ...] = ()  # the agent's own raw keys, logged as train/<key>

    def logged_metrics(self, raw) -> dict[str, float]:
        """The raw [sum, count] metrics of one or more compiled updates (rl_sever.core.metrics)
        as means under their TensorBoard names; runs the terms' `on_update` hooks."""
        out = metrics.means(raw)
        logged = binding.log_metrics(self._objective, self._term_metrics, out,
                                     list(self.train_metric_keys))
        logged.update(self.state_metrics())
        binding.run_hooks(self, self._objective, self._term_metrics, out)
        return logged

    def state_metrics(self) -> dict[str, float]:  # read from the state after an update
        return {}

    def next_seed(self) -> tf.Tensor:
        """A fresh stateless seed [data seed, counter * SEEDS_PER_STEP] (int32, what
        tf.random.stateless_* and tensorflow-probability take); `sub_seed(seed, k)` for k <
        SEEDS_PER_STEP gives independent seeds from it within one step."""
        # int32 arithmetic, no modulo: under XLA an int64 modulo here cost 30% of a fused
        # in-graph PPO iteration (bench/ingraph.py). The product wraps; seeds repeat after 2**28.
        count = tf.cast(self.seed_counter.assign_add(1), tf.int32)
        return tf.stack([tf.constant(self.data_seed % 2**31, tf.int32), count * SEEDS_PER_STEP])

    @staticmethod
    def sub_seed(seed: tf.Tensor, k: int) -> tf.Tensor:
        return seed + tf.constant([0, k], tf.int32)

    # -- run folder -------------------------------------------------------------------------
    def config_record(self) -> dict:
        record = {"algo": self.algo, "agent_class": registry.class_path(type(self)),
                  "env_id": self.env_id, "config": to_dict(self.config),
                  "rl_sever_version": __version__}
        if self.user_encoder is not None:  # its architecture is code: load() must be given it
            record["user_encoder"] = rundir.describe_models(self.user_encoder)
        if self.config_history:
            record["history"] = self.config_history
        return record

    def ensure_run_dir(self, *, write_config: bool = True) -> Path | None:
        """The run folder (created on first use, its config.json written unless
        `write_config` is False); a non-chief worker gets a scratch folder."""
        if not self.replicas.is_chief:
            has_dir = self.run_dir is not None or self.logdir is not None
            return self.replicas.worker_dir() if has_dir else None
        if self.run_dir is None and self.logdir is not None:
            self.run_dir = rundir.new_run_dir(self.logdir, self.env_id, self.algo, self.config.seed)
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if write_config:
                rundir.write_config(self.run_dir, self.config_record())
        return self.run_dir

    def discard_worker_dir(self) -> None:  # a non-chief worker's scratch folder, at the end
        if not self.replicas.is_chief:
            self.replicas.discard_worker_dir()
            self._checkpointer = None

    @property
    def checkpointer(self) -> Checkpointer | None:
        directory = self.ensure_run_dir() if self._checkpointer is None else None
        if directory is not None:
            self._checkpointer = Checkpointer(self.checkpoint, directory, self.config.keep_checkpoints)
        return self._checkpointer

    def hparams(self) -> dict:
        return {"algo": self.algo, "env_id": self.env_id, **dict(flat_items(self.config))}

    # -- public API -------------------------------------------------------------------------
    def learn(self, total_steps: int | None = None, *, progress: bool | None = None,
              callback=None) -> Agent:
        """Train for `total_steps` more env steps (default: config.total_steps)."""
        steps = int(total_steps if total_steps is not None else self.config.total_steps)
        if steps <= 0:
            raise ConfigError(f"total_steps must be positive, got {steps}")
        self.target_steps.assign(int(self.global_step.numpy()) + steps)
        return self.continue_learning(progress=progress, callback=callback)

    def continue_learning(self, *, progress: bool | None = None, callback=None) -> Agent:
        """Train until the stored target step (used by `learn` and by --resume)."""
        self._check_losses_loaded("train")
        run_training(self, progress=progress, callback=callback)
        return self

    def normalize_obs(self, obs: np.ndarray) -> np.ndarray:
        if self.normalizer is not None and self.normalizer.obs_rms is not None:
            return self.normalizer.normalize_obs(obs)
        return obs

    def predict(self, obs: np.ndarray, state: np.ndarray | None = None,
                episode_start: np.ndarray | None = None, deterministic: bool = True, *,
                action_masks: np.ndarray | None = None):
        """Actions for a batch of raw observations (a single observation also works).

        sb3-contrib's signature. A recurrent policy (network.recurrent) returns (actions, next
        state): pass the state back with the next observations, and `episode_start` (bool per
        observation) where a new episode begins; `state` None starts every episode. The state is
        [batch, state_dim] floats ([h, c] for an LSTM). `action_masks` (bool [batch, mask_dim]):
        the allowed actions, for an agent trained with masks (None: every action allowed).
        `predict(obs, False)` still means deterministic=False."""
        if isinstance(state, (bool, np.bool_)):  # the positional `deterministic` of before
            state, deterministic = None, bool(state)
        args, single = act_inputs(self, obs, state, episode_start, action_masks)
        out = self.act_arrays(args, deterministic)
        if not self.layout.state_dim:
            actions = self.env_actions(out)
            return actions[0] if single else actions
        actions, state = self.env_actions(out[0]), out[1]
        return (actions[0], state[0]) if single else (actions, state)

    def act_arrays(self, args: list, deterministic: bool):
        """The act step on predict's arrays: actions (and a recurrent policy's next state)."""
        out = fast_call_of(self, "greedy_fn" if deterministic else "act_fn")(*args)
        return tuple(o.numpy() for o in out) if self.layout.state_dim else out.numpy()

    def env_actions(self, actions: np.ndarray) -> np.ndarray:
        """Clip Gaussian actions to the action bounds (only when stepping, never in log-probs)."""
        return self.action.env_actions(actions)

    export = export_policy  # agent.export(out_dir, formats, ...): rl_sever.deploy.export

    def _check_losses_loaded(self, what: str) -> None:
        if self.skipped_losses:  # Agent.load left them out: a checkpoint would lose them
            raise ConfigError(f"this agent was loaded without the loss terms its run imports "
                              f"from users' modules ({', '.join(self.skipped_losses)}); to "
                              f"{what} it, load it with Agent.load(run_dir, import_losses=True)")

    def save(self) -> str:
        """Write a checkpoint into the run folder; returns its path."""
        self._check_losses_loaded("save")
        if self.checkpointer is None:
            raise ConfigError("this agent has no run folder (logdir=None); nothing to save into")
        if self.normalizer is not None:
            self.normalizer.before_save()
        return self.checkpointer.save(int(self.global_step.numpy()))

    def close(self) -> None:
        if self._collector is not None and hasattr(self._collector, "close"):
            self._collector.close()  # env runners: their actors (and a Ray this run started)
        self.env.close()

    @classmethod
    def load(cls, run_dir: str | Path, *, env: gym.vector.VectorEnv | None = None,
             overrides: dict | None = None, encoder: Any = None,
             import_losses: bool = False) -> Agent:
        """Rebuild an agent from a run folder's config.json and restore its latest checkpoint.
        A run trained with a user-supplied encoder needs the same architecture as `encoder`
        (its weights come from the checkpoint). Loss terms from users' modules are imported
        only with `import_losses=True` (training needs them; acting does not)."""
        record = rundir.read_config(run_dir)
        klass = cls if cls is not Agent and cls.algo else registry.trained_class(record, run_dir)
        if klass.algo != record["algo"]:
            raise ConfigError(f"{run_dir} holds a {record['algo']} run, not {klass.algo}")
        config = update(klass.config_cls(), record["config"])
        skipped = [spec for spec in config.losses if not import_losses and parse_spec(spec).path]
        config = dataclasses.replace(config, losses=[s for s in config.losses if s not in skipped])
        changes = {}
        if overrides:  # only what may change mid-run (rl_sever.config.changes)
            stored, config = config, update(config, overrides)
            changes = check_resume_changes(config_changes(stored, config), run_dir)
        if record.get("user_encoder") and encoder is None:
            raise ConfigError(f"{run_dir} was trained with a user-supplied encoder "
                              f"({record['user_encoder']}); load it from Python with "
                              "Agent.load(run_dir, encoder=<a model of the same architecture>)")
        agent = klass(env if env is not None else record["env_id"], config, run_dir=run_dir,
                      encoder=encoder)
        # A non-chief worker reads the chief's checkpoints but saves into its scratch folder.
        source = agent.checkpointer if agent.replicas.is_chief else Checkpointer(agent.checkpoint, run_dir)
        path = source.restore_latest()
        if agent.normalizer is not None:
            agent.normalizer.after_restore()
        agent.on_restore(path)
        agent.skipped_losses = skipped
        agent.config_history = list(record.get("history", []))
        if changes:  # written to config.json when training resumes
            agent.config_history.append(history_entry(int(agent.global_step.numpy()), changes))
        return agent

    def on_restore(self, path: str) -> None:
        """Hook after `load` restored checkpoint `path` (off-policy agents reload their replay)."""

    def __repr__(self) -> str:
        fields = ", ".join(f"{f.name}={getattr(self.config, f.name)!r}"
                           for f in dataclasses.fields(self.config)[:4])
        return f"{type(self).__name__}(env={self.env_id!r}, {fields}, ...)"


"""Config dataclasses shared by agents: network, run-level and on-policy settings.

Each field's docstring (the string under it) is its help text: see rl_sever.config.fields.field_docs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from envs.atari import AtariSettings
from envs.factory import VECTORIZATION_MODES, check_n_workers
from rl_sever.config.auxiliary import AUXILIARY, AuxiliaryConfig
from rl_sever.config.fields import check
from rl_sever.config.loss_spec import parse_spec
from rl_sever.errors import suggest

ACTIVATIONS = ("tanh", "relu", "elu", "gelu", "silu")
ENCODER_KINDS = ("auto", "mlp", "cnn", "nature")
OPTIMIZERS = ("adam", "rmsprop", "sgd")
SCHEDULES = ("constant", "linear")
GRAD_SOURCES = ("actor", "critic", "aux")
STRATEGIES = ("default", "mirrored", "multiworker")


def parse_grad_from(value: str) -> frozenset[str]:
    """network.encoder_grad_from -> the losses that train the shared encoder:
    'critic+aux' -> {critic, aux}; 'both' = actor+critic; 'none' = nothing."""
    text = str(value).strip().lower()
    if text == "none":
        return frozenset()
    parts = {p.strip() for p in text.replace(",", "+").split("+") if p.strip()}
    if "both" in parts:
        parts = (parts - {"both"}) | {"actor", "critic"}
    bad = sorted(parts - set(GRAD_SOURCES))
    check(bool(parts) and not bad,
          f"network.encoder_grad_from must name losses among {GRAD_SOURCES} joined by '+' "
          f"(or both / none), got '{value}'")
    return frozenset(parts)


@dataclass
class NetworkConfig:
    """The network settings every algorithm has; each family's subclass sets its defaults."""

    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    """Widths of the hidden layers of each MLP (actor, critic, or the shared encoder)."""
    activation: str = "tanh"
    """Hidden-layer activation: tanh, relu, elu, gelu or silu."""
    shared_encoder: bool = False
    """Put one encoder in front of actor, critic and auxiliary modules (always on for images)."""
    encoder_grad_from: str = "both"
    """With a shared encoder, which losses train it: actor, critic, aux, joined by + (e.g.
    both+aux), both (= actor+critic) or none; the other losses see it severed."""
    encoder: str = "auto"
    """Encoder kind: auto (for uint8 images the Nature CNN from 80 px a side, e.g. Atari, else
    the small CNN; MLP otherwise), mlp, cnn or nature."""
    cnn_channels: list[int] = field(default_factory=lambda: [32, 32, 32])
    """Channels of the CNN encoder's 3x3 convolutions (stride 2 for the first two, then 1)."""
    feature_dim: int = 50
    """Output width of the CNN encoder (projection + LayerNorm + tanh)."""

    def validate(self) -> None:
        for key in ("hidden_sizes", "cnn_channels"):
            sizes = getattr(self, key)
            check(len(sizes) > 0 and all(h > 0 for h in sizes),
                  f"network.{key} must be positive widths, got {sizes}")
        check(self.activation in ACTIVATIONS,
              f"network.activation must be one of {ACTIVATIONS}, got '{self.activation}'")
        check(self.encoder in ENCODER_KINDS,
              f"network.encoder must be one of {ENCODER_KINDS}, got '{self.encoder}'")
        check(self.feature_dim > 0, f"network.feature_dim must be positive, got {self.feature_dim}")
        parse_grad_from(self.encoder_grad_from)

    @property
    def grad_from(self) -> frozenset[str]:
        return parse_grad_from(self.encoder_grad_from)


@dataclass
class OnPolicyNetworkConfig(NetworkConfig):
    ortho_init: bool = True
    """Orthogonal initialisation (gain sqrt(2) hidden, 0.01 policy head, 1 value head)."""
    log_std_init: float = 0.0
    """Initial log standard deviation of the Gaussian policy (Box action spaces)."""
    recurrent: str = "none"
    """A policy with memory (docs/recurrent.md): lstm or gru, one layer between the encoder (or
    the flat observation) and the policy and value MLPs; none for a feed-forward policy."""
    recurrent_size: int = 64
    """Width of the recurrent layer's output (its state: twice that for an LSTM)."""

    def validate(self) -> None:
        super().validate()
        check(self.recurrent in ("none", "lstm", "gru"),
              f"network.recurrent must be none, lstm or gru, got '{self.recurrent}'")
        check(self.recurrent_size > 0,
              f"network.recurrent_size must be positive, got {self.recurrent_size}")


@dataclass
class RunConfig:
    total_steps: int = 100_000
    """Environment steps to train for (the CLI's --steps overrides it)."""
    seed: int = 0
    """Seed for TensorFlow, NumPy and the environments."""
    n_envs: int = 8
    """Number of parallel environments in the vector env."""
    vectorization: str = "sync"
    """Vector env mode: sync (one process), async (worker processes, see n_workers) or ale
    (Atari games only: ale-py's C++ vector env, its threads step and preprocess the games)."""
    n_workers: int = 0
    """With vectorization=async, the number of worker processes sharing the n_envs envs (0: one
    process per env). At most n_envs; a divisor of n_envs gives equal shares (docs/scaling.md)."""
    normalize_obs: bool = False
    """Normalise observations with running statistics (saved in checkpoints)."""
    normalize_reward: bool = False
    """Scale rewards by the running std of the discounted return (saved in checkpoints)."""
    atari: AtariSettings = field(default_factory=AtariSettings)
    """Preprocessing of Atari games (ALE/<Game>-v5, <Game>NoFrameskip-v4), applied to them only."""
    checkpoint_every: int = -1
    """Save a checkpoint every this many env steps (-1: every 10% of the run's steps; 0: no
    step-based checkpoints). Checkpoints are also saved at the end, on Ctrl-C and SIGTERM."""
    checkpoint_minutes: float = 10.0
    """Also save a checkpoint once this many minutes of wall time have passed since the last
    (0: no time-based checkpoints). With the default checkpoint_every, a killed run loses at
    most 10% of its steps or 10 minutes."""
    keep_checkpoints: int = 3
    """How many checkpoints to keep in the run's checkpoints/ folder."""
    eval_every: int = 0
    """Evaluate the greedy policy every this many env steps on fresh envs seeded seed + 10000,
    logged as eval/mean_reward; the best policy is kept in the run's best/ folder (0: evaluate
    only at the end of the run). docs/reporting.md."""
    eval_episodes: int = 10
    """Episodes per evaluation (0: no evaluation at all)."""
    stop_reward: float | None = None
    """Stop training once an evaluation's mean return reaches this value (needs eval_every)."""
    stop_patience: int = 0
    """Stop training after this many evaluations in a row without a new best mean return
    (0: never; needs eval_every)."""
    stop_min_evals: int = 0
    """Evaluations made before stop_patience starts counting."""
    trackers: list[str] = field(default_factory=list)
    """Experiment trackers beside TensorBoard: wandb and/or mlflow (each an extra; none by
    default). One that cannot be reached warns once and training goes on (docs/reporting.md)."""
    tracker_project: str = "rl_sever"
    """The W&B project / MLflow experiment the trackers log the run into."""
    log_every_steps: int = 0
    """Write TensorBoard scalars at most every this many env steps, averaging the iterations in
    between (0: every iteration)."""
    check_finite: str = "stop"
    """NaN/inf guards: non-finite actions, observations or rewards (Gymnasium envs) stop the run
    naming what, which sub-env and step (stop), warn once per kind (warn) or are not checked
    (off). A non-finite loss or gradient norm always stops the run (rl_sever.core.finite)."""
    progress_seconds: float = 30.0
    """When stderr is not a terminal (nohup, a job scheduler, CI), print a progress line on
    stdout every this many seconds (0: none); a terminal gets the progress bar instead."""
    freeze: dict = field(default_factory=dict)
    """Freeze schedule: module -> window of env steps, e.g. {encoder: {until_step: 10000}}
    (frozen while from_step <= step < until_step; {} freezes for the whole run)."""
    audit: bool = True
    """Check the agent's gradient-flow contract on the first update and stop on a violation."""
    jit_compile: bool | str = "auto"
    """Compile the update step with XLA (on tf: envs, the fused in-graph iteration): a slower
    first call (a second or more; several on tf: envs), faster updates after it. auto: where a
    run of small MLP updates on the CPU is long enough to win the compile back
    (rl_sever.onpolicy.xla, docs/performance.md)."""
    intra_op_threads: int | str = "auto"
    """Threads TensorFlow may use inside one op (0: its default, one per core; auto: the agent's
    choice, 1 for small MLP updates on CPU, except off-policy ones under XLA and on-policy ones
    with jit_compile: true, a distribute strategy or a tf: env). Applies only where TensorFlow
    has not run yet in the process (rl_sever.core.threads); an explicit value that cannot is an
    error."""
    distribute: str = "default"
    """tf.distribute strategy of the update: default (one device), mirrored (the devices of one
    host) or multiworker (several hosts, cluster from TF_CONFIG); docs/distribute.md."""
    devices: list[str] = field(default_factory=list)
    """With distribute=mirrored, the devices to mirror on, e.g. [/gpu:0, /gpu:1] (empty: every
    GPU, or the CPU when there is none)."""
    runners: int = 0
    """Env runners as Ray actors (0: the envs step in this process). The n_envs sub-envs are
    split evenly among them, each seeded as in a local run; docs/scaling.md."""
    ray_address: str = "local"
    """With runners: local (start Ray on this machine), auto (the cluster this machine joined
    with `ray start`) or host:port of a Ray head."""
    runner_inference: str = "local"
    """With runners: local (each runner acts with its copy of the policy) or central (one copy
    on the learner's node acts for all runners, batching their observations: SEED RL)."""
    learners: int = 0
    """With distribute=multiworker: start this many learner processes as Ray actors (on
    ray_address), each a worker collecting its own data; 0: the processes are started by
    hand with TF_CONFIG (docs/distribute.md)."""
    runner_cpus: float = 1.0
    """Logical CPUs Ray reserves per runner (below 1 packs several runners per core, for envs
    that wait on I/O)."""
    gamma: float = 0.99
    """Discount factor."""
    learning_rate: float = 3e-4
    """Initial learning rate (of every optimizer of the agent)."""
    lr_schedule: str = "constant"
    """Learning-rate schedule over the run: constant or linear (to zero)."""
    optimizer: str = "adam"
    """Optimizer: adam, rmsprop or sgd (one per optimizer group of the agent)."""
    adam_eps: float = 1e-5
    """Epsilon of the optimizer's denominator (RMSprop: added outside the square root, as torch)."""
    max_grad_norm: float = 0.5
    """Clip each optimizer's global gradient norm to this value (<= 0 disables clipping)."""
    network: NetworkConfig = field(default_factory=NetworkConfig)
    """Network architecture."""
    aux: list[str] = field(default_factory=list)
    """Auxiliary losses on the shared encoder: vae, reward, inverse (needs a shared encoder)."""
    aux_weights: dict[str, float] = field(default_factory=dict)
    """Weight of each auxiliary loss in its update (default 1.0 each)."""
    auxiliary: AuxiliaryConfig = field(default_factory=AuxiliaryConfig)
    """Settings of the auxiliary modules."""
    losses: list[str] = field(default_factory=list)
    """Edits of the agent's objective, applied in order: -NAME removes a term, +PKG.MOD:ATTR[@W]
    adds one, NAME=PKG.MOD:ATTR[@W] replaces one, NAME@W[:linear] reweights one
    (docs/custom_losses.md)."""

    def validate(self) -> None:
        check(self.total_steps > 0, f"total_steps must be positive, got {self.total_steps}")
        check(self.n_envs > 0, f"n_envs must be positive, got {self.n_envs}")
        check(self.vectorization in VECTORIZATION_MODES,
              f"vectorization must be one of {', '.join(VECTORIZATION_MODES)}, got "
              f"'{self.vectorization}'")
        check_n_workers(self.n_workers, self.n_envs, self.vectorization)
        check(self.checkpoint_every >= -1, "checkpoint_every must be >= 0, or -1 (every 10%)")
        check(self.checkpoint_minutes >= 0, "checkpoint_minutes must be >= 0")
        check(self.progress_seconds >= 0, "progress_seconds must be >= 0")
        check(self.check_finite in ("stop", "warn", "off"),
              f"check_finite must be stop, warn or off, got '{self.check_finite}'")
        check(self.keep_checkpoints > 0, "keep_checkpoints must be positive")
        check(self.intra_op_threads == "auto" or (isinstance(self.intra_op_threads, int)
                                                   and self.intra_op_threads >= 0),
              f"intra_op_threads must be auto or an integer >= 0, got {self.intra_op_threads!r}")
        check(self.eval_every >= 0, "eval_every must be >= 0")
        check(self.eval_episodes >= 0, "eval_episodes must be >= 0")
        check(self.stop_patience >= 0 and self.stop_min_evals >= 0,
              "stop_patience and stop_min_evals must be >= 0")
        stops = self.stop_reward is not None or self.stop_patience > 0
        check(not stops or (self.eval_every > 0 and self.eval_episodes > 0),
              "stop_reward and stop_patience act on the evaluations during training: set "
              "eval_every (env steps between evaluations) and eval_episodes > 0")
        check(not stops or self.distribute != "multiworker",
              "stop_reward and stop_patience are not supported with distribute=multiworker "
              "(the workers would stop at different steps)")
        check(self.log_every_steps >= 0, "log_every_steps must be >= 0")
        for name in self.trackers:
            check(name in ("wandb", "mlflow"),
                  f"unknown tracker '{name}' in trackers; available: wandb, mlflow")
        check(self.distribute in STRATEGIES,
              f"distribute must be one of {', '.join(STRATEGIES)}, got '{self.distribute}'."
              + suggest(str(self.distribute), STRATEGIES))
        check(not self.devices or self.distribute == "mirrored",
              f"devices ({self.devices}) only applies to distribute=mirrored")
        check(self.runners >= 0, f"runners must be >= 0, got {self.runners}")
        check(not self.runners or self.n_envs % self.runners == 0,
              f"n_envs ({self.n_envs}) must be a multiple of runners ({self.runners}): each "
              "runner steps an equal share")
        check(self.ray_address in ("local", "auto")
              or re.fullmatch(r"[A-Za-z0-9_.\-\[\]:]+:\d+", str(self.ray_address)) is not None,
              f"ray_address must be local, auto or host:port, got {self.ray_address!r}")
        check(self.distribute != "multiworker" or not (self.normalize_obs or self.normalize_reward),
              "normalize_obs / normalize_reward with distribute=multiworker is not supported: "
              "each worker's running statistics would see only its own data")
        check(self.runner_inference in ("local", "central"),
              f"runner_inference must be local or central, got {self.runner_inference!r}")
        check(self.learners >= 0, f"learners must be >= 0, got {self.learners}")
        check(not self.learners or self.distribute == "multiworker",
              "learners starts the workers of distribute=multiworker; set distribute=multiworker")
        check(self.runner_cpus > 0, f"runner_cpus must be positive, got {self.runner_cpus}")
        check(not self.runners or self.distribute == "default",
              f"runners with distribute={self.distribute} is not supported yet; use "
              "distribute=default")
        check(0.0 < self.gamma <= 1.0, f"gamma must be in (0, 1], got {self.gamma}")
        check(self.learning_rate >= 0.0, f"learning_rate must be >= 0, got {self.learning_rate}")
        check(self.lr_schedule in SCHEDULES,
              f"lr_schedule must be one of {SCHEDULES}, got '{self.lr_schedule}'")
        check(self.optimizer in OPTIMIZERS,
              f"optimizer must be one of {', '.join(OPTIMIZERS)}, got '{self.optimizer}'")
        check(self.adam_eps > 0.0, f"adam_eps must be positive, got {self.adam_eps}")
        self.network.validate()
        for name in self.aux:
            check(name in AUXILIARY,
                  f"unknown auxiliary module '{name}'; available: {', '.join(sorted(AUXILIARY))}")
        check(len(set(self.aux)) == len(self.aux), f"aux lists a module twice: {self.aux}")
        for name, w in self.aux_weights.items():
            check(name in self.aux, f"aux_weights names '{name}', which is not in aux {self.aux}")
            check(float(w) >= 0, f"aux_weights['{name}'] must be >= 0, got {w}")
        self.auxiliary.validate()
        self.atari.validate()
        for spec in self.losses:
            parse_spec(spec)  # syntax only; the paths are imported when the agent is built


@dataclass
class OnPolicyConfig(RunConfig):
    n_steps: int = 2048
    """Steps per env per rollout; a rollout holds n_steps * n_envs transitions."""
    gae_lambda: float = 0.95
    """GAE lambda (1.0: Monte-Carlo returns with a bootstrap at the rollout end)."""
    ent_coef: float = 0.0
    """Weight of the entropy bonus."""
    vf_coef: float = 0.5
    """Weight of the value loss."""
    normalize_advantage: bool = True
    """Normalise advantages per minibatch (zero mean, unit std)."""
    network: OnPolicyNetworkConfig = field(default_factory=OnPolicyNetworkConfig)
    host_act: str = "auto"
    """Act with a NumPy copy of the policy during Gymnasium rollouts: auto (MLP policies without
    a GPU, where it is the faster path), on (insist; an error where it cannot apply) or off
    (always the compiled act step). Updates stay compiled (rl_sever.onpolicy.host_policy)."""
    bptt_length: int = 0
    """Recurrent policies: the length of the sequences an update unrolls (truncated
    back-propagation through time); each env's n_steps are cut into sequences of this many steps
    (0: the longest that divides both n_steps and the minibatch size). Must divide both."""
    action_masks: str = "auto"
    """Action masks from the env (Discrete and MultiDiscrete actions; docs/spaces.md): auto (when
    the env has an action_masks() method), on (also from info["action_mask"]; an error where the
    env gives none) or off. Forbidden actions get probability zero in acting, loss and entropy."""

    def validate(self) -> None:
        super().validate()
        check(self.action_masks in ("auto", "on", "off"),
              f"action_masks must be auto, on or off, got '{self.action_masks}'")
        check(self.jit_compile is True or self.jit_compile is False or self.jit_compile == "auto",
              f"jit_compile must be true, false or auto, got {self.jit_compile!r}")
        check(self.bptt_length >= 0, f"bptt_length must be >= 0, got {self.bptt_length}")
        check(self.host_act in ("auto", "on", "off"),
              f"host_act must be auto, on or off, got '{self.host_act}'")
        check(self.n_steps > 0, f"n_steps must be positive, got {self.n_steps}")
        check(0.0 <= self.gae_lambda <= 1.0, f"gae_lambda must be in [0, 1], got {self.gae_lambda}")
        check(self.ent_coef >= 0.0, "ent_coef must be >= 0")
        check(self.vf_coef >= 0.0, "vf_coef must be >= 0")

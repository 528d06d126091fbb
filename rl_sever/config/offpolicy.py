"""Config dataclasses of the off-policy agents (SAC, TD3, DDPG): network, replay and update.

Each field's docstring (the string under it) is its help text: see rl_sever.config.fields.field_docs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rl_sever.config.fields import check
from rl_sever.config.run import NetworkConfig, RunConfig


@dataclass
class OffPolicyNetworkConfig(NetworkConfig):
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])
    """Hidden widths of the actor and of each critic."""
    activation: str = "relu"
    """Hidden-layer activation of actor, critics and the MLP encoder: tanh, relu, elu, gelu, silu."""
    encoder_grad_from: str = "critic"
    """Losses that train the shared encoder: actor, critic, aux, joined by + (e.g. critic+aux),
    both (= actor+critic) or none. The other losses read its features through sever."""
    encoder_sizes: list[int] = field(default_factory=lambda: [256])
    """Hidden widths of the MLP encoder (its last width is the feature size)."""
    matmul_precision: str = "auto"
    """Precision of the hidden-to-hidden matmuls of actor and critics: float32, bfloat16
    (weights, activations and gradients stay float32), or auto (bfloat16 where it was measured
    faster, on CPUs with AMX bfloat16 units and on AMD Zen 4, when there is no GPU and no XLA;
    float32 otherwise)."""

    def validate(self) -> None:
        super().validate()
        check(self.matmul_precision in ("auto", "float32", "bfloat16"),
              "network.matmul_precision must be auto, float32 or bfloat16, got "
              f"'{self.matmul_precision}'")
        check(len(self.encoder_sizes) > 0 and all(h > 0 for h in self.encoder_sizes),
              f"network.encoder_sizes must be positive widths, got {self.encoder_sizes}")


HER_STRATEGIES = ("none", "future", "final", "episode")


@dataclass
class HerConfig:
    """Hindsight experience replay (Andrychowicz et al. 2017) on goal-conditioned envs
    (docs/spaces.md#goal-conditioned-envs-and-hindsight-experience-replay)."""

    strategy: str = "none"
    """How relabelled goals are chosen: future (an achieved goal later in the same episode),
    final (the episode's last), episode (any of the episode's), or none (no relabelling)."""
    n_sampled_goal: int = 4
    """Relabelled transitions per real one: a sampled transition gets a new goal with
    probability n_sampled_goal / (n_sampled_goal + 1)."""

    def validate(self) -> None:
        check(self.strategy in HER_STRATEGIES,
              f"her.strategy must be one of {', '.join(HER_STRATEGIES)}, got '{self.strategy}'")
        check(self.n_sampled_goal >= 0, f"her.n_sampled_goal must be >= 0, got {self.n_sampled_goal}")


@dataclass
class OffPolicyConfig(RunConfig):
    n_envs: int = 1
    buffer_size: int = 1_000_000
    """Replay buffer capacity in transitions (over all sub-envs)."""
    learning_starts: int = 100
    """Env steps of uniformly random actions before the first update; updates start once the
    buffer holds this many transitions."""
    batch_size: int = 256
    """Transitions per gradient step, sampled uniformly with replacement."""
    train_freq: int = 1
    """Update every this many vector-env steps."""
    gradient_steps: int = 1
    """Gradient steps per update (-1: as many as transitions collected since the last one)."""
    tau: float = 0.005
    """Polyak coefficient of the target networks: target <- (1 - tau) target + tau online."""
    n_step: int = 1
    """n-step returns from the replay buffer (1: one-step TD targets)."""
    max_grad_norm: float = 0.0
    adam_eps: float = 1e-8
    """Epsilon of the optimizer's denominator (1e-8: torch's Adam default, as SB3)."""
    save_replay: bool = True
    """Save the replay buffer with every checkpoint (.npy files in checkpoints/replay-<step>/;
    on a tf: env, inside the TF checkpoint) so --resume continues with it; turn off for huge
    buffers (a resumed run then refills learning_starts transitions before updating again)."""
    steps_per_iteration: int = 100
    """Vector-env steps per training-loop iteration (the loop logs, evaluates, checkpoints and
    calls callbacks between iterations; updates still happen every train_freq steps)."""
    log_every_steps: int = 1000
    """Write TensorBoard scalars at most every this many env steps, averaging in between."""
    jit_compile: bool | None = None
    """Compile act and update steps with XLA (None: only the in-graph chunk of a tf: env; on
    Gymnasium envs the update runs faster without XLA, see bench/README.md)."""
    network: OffPolicyNetworkConfig = field(default_factory=OffPolicyNetworkConfig)
    her: HerConfig = field(default_factory=HerConfig)
    """Hindsight experience replay: relabelled goals for envs with observation, achieved_goal,
    desired_goal and compute_reward (off by default)."""

    def validate(self) -> None:
        super().validate()
        self.her.validate()
        check(self.her.strategy == "none" or self.n_step == 1,
              f"her needs one-step returns (n_step 1, got {self.n_step}): a relabelled goal "
              "changes every reward of an n-step window")
        check(not self.normalize_obs and not self.normalize_reward,
              "normalize_obs / normalize_reward are not supported by off-policy agents (the replay "
              "buffer would hold observations normalised with stale statistics)")
        check(self.buffer_size > 0, f"buffer_size must be positive, got {self.buffer_size}")
        check(self.learning_starts >= 0, "learning_starts must be >= 0")
        check(self.batch_size > 0, f"batch_size must be positive, got {self.batch_size}")
        check(self.train_freq > 0, f"train_freq must be positive, got {self.train_freq}")
        check(self.gradient_steps > 0 or self.gradient_steps == -1,
              f"gradient_steps must be positive or -1, got {self.gradient_steps}")
        check(0.0 < self.tau <= 1.0, f"tau must be in (0, 1], got {self.tau}")
        check(self.n_step >= 1, f"n_step must be >= 1, got {self.n_step}")
        check(self.steps_per_iteration > 0, "steps_per_iteration must be positive")

    def updates_per_call(self) -> int:
        """Gradient steps of one update (gradient_steps, or -1 resolved)."""
        return self.gradient_steps if self.gradient_steps > 0 else self.train_freq * self.n_envs

"""Helpers shared by the test modules: tiny configs and agents of every algorithm, batches,
parameter snapshots, gradient checks, event-file reading, and two small test environments."""

from __future__ import annotations

import dataclasses
import functools

import gymnasium as gym
import numpy as np
import tensorflow as tf

import agents  # noqa: F401  (the shipped pages register themselves on import)
from rl_sever.core.registry import registered

# Every shipped page (the registry's algorithms from `agents`; users' pages a test defines do
# not join): a new page joins every test below.
SHIPPED = {a: k for a, k in registered().items() if k.__module__.startswith("agents.")}
ALGOS = list(SHIPPED)
ONPOLICY = tuple(a for a, k in SHIPPED.items() if k.mode == "on_policy")
ENV_FOR = {a: "CartPole-v1" if a in ONPOLICY else "Pendulum-v1" for a in ALGOS}

TINY_MD_ID = "RlSeverTinyMultiDiscrete-v0"
TINY_MD_HORIZON = 10  # TimeLimit truncation


class TinyMultiDiscreteEnv(gym.Env):
    """A MultiDiscrete([3, 2]) test env with both terminated and truncated episodes.

    Observation: [t / horizon, a - 1, 2b - 1] for a hidden target (a, b) drawn per episode,
    so the step counter of a final observation tells it apart from a reset observation.
    Reward: one per component of the action equal to the target; the episode terminates
    when both are right, else the TimeLimit truncates it after `TINY_MD_HORIZON` steps.
    """

    metadata = {"render_modes": []}

    def __init__(self):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.action_space = gym.spaces.MultiDiscrete([3, 2])
        self.t, self.a, self.b = 0, 0, 0

    def _obs(self):
        return np.array([self.t / TINY_MD_HORIZON, self.a - 1, 2 * self.b - 1], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.a, self.b = int(self.np_random.integers(3)), int(self.np_random.integers(2))
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        hits = int(action[0] == self.a) + int(action[1] == self.b)
        return self._obs(), float(hits), hits == 2, False, {}


if TINY_MD_ID not in gym.registry:
    gym.register(TINY_MD_ID, entry_point=TinyMultiDiscreteEnv, max_episode_steps=TINY_MD_HORIZON)



# Off-policy tiny settings: a small replay buffer, one 16-unit layer pair, no XLA.
OFFPOLICY_TINY = {
    "learning_starts": 64,
    "batch_size": 16,
    "buffer_size": 5_000,
    "network.hidden_sizes": [16, 16],
    "network.encoder_sizes": [16],
    "auxiliary.hidden_sizes": [16],
    "auxiliary.latent_dim": 4,
    "eval_episodes": 0,
    "jit_compile": False,
    "steps_per_iteration": 32,
}


def _agent_class(algo: str):
    from rl_sever.core.registry import get_agent_class

    return get_agent_class(algo)


def tiny_config(algo: str, overrides: dict | None = None, **kwargs):
    """A fast config for `algo`. On-policy: 2 envs, 16-step rollouts, one 16-unit layer, 2
    evaluation episodes; off-policy: OFFPOLICY_TINY. `overrides` (dotted keys allowed) and
    `kwargs` win."""
    from rl_sever.config.fields import update

    klass = _agent_class(algo)
    if algo not in ONPOLICY:
        base = dict(OFFPOLICY_TINY)
    else:
        base = {"n_envs": 2, "n_steps": 16, "total_steps": 64, "eval_episodes": 2,
                "network.hidden_sizes": [16]}
    if algo == "ppo":
        base.update(batch_size=16, n_epochs=2)
    # A page's own network widths (CrossQ's critic_hidden_sizes) are tiny too.
    base.update({f.name: [16, 16] for f in dataclasses.fields(klass.config_cls)
                 if f.name.endswith("hidden_sizes") and f.name != "hidden_sizes"})
    values = {**base, **(overrides or {}), **kwargs}
    # Nested keys first so a `network` mapping in the overrides can still replace them.
    ordered = dict(sorted(values.items(), key=lambda kv: "." not in kv[0]))
    return update(klass.config_cls(), ordered)


def make_agent(algo: str, env_id: str = "CartPole-v1", overrides: dict | None = None, *,
               logdir=None, **kwargs):
    """A tiny agent of `algo` on `env_id` (no run folder unless `logdir` is given)."""
    return _agent_class(algo)(env_id, tiny_config(algo, overrides, **kwargs), logdir=logdir)


def tiny_agent(algo: str, env: str | None = None, *, fill: int | None = None, logdir=None,
               encoder=None, **overrides):
    """A tiny agent of `algo` on `env` (default ENV_FOR[algo]). Off-policy agents first collect
    `fill` random transitions (default 48, below learning_starts: no update yet)."""
    agent = _agent_class(algo)(env or ENV_FOR[algo], tiny_config(algo, **overrides),
                               logdir=logdir, encoder=encoder)
    fill = (0 if algo in ONPOLICY else 48) if fill is None else fill
    if fill:
        agent.learn(fill, progress=False)
    return agent


def count_calls(monkeypatch, klass, *methods: str) -> dict[str, int]:
    """Count the Python calls of `klass`'s methods from now on. For a method that only compiled
    code calls (an update or act body), each call is one trace: unlike a tf.function's own
    tracing count, this sees a retrace through any wrapper (a new tf.function, a new concrete
    function), so it can fail."""
    counts = dict.fromkeys(methods, 0)

    def counting(name, original):
        @functools.wraps(original)  # tf.function binds inputs by the body's signature
        def counted(self, *args, **kwargs):
            counts[name] += 1
            return original(self, *args, **kwargs)

        return counted

    for name in methods:
        monkeypatch.setattr(klass, name, counting(name, getattr(klass, name)))
    return counts


def collect_or_sample(agent) -> dict[str, np.ndarray]:
    """A batch as the loop hands it to the audit: a rollout (on-policy) or a replay sample."""
    if agent.algo in ONPOLICY:
        return collect_batch(agent)
    return agent.sample_batch()


def module_snapshot(agent, module: str) -> list[np.ndarray]:
    """Copies of the parameters of one flow module (actor, critic, encoder, ...)."""
    return snapshot(agent.flow_modules()[module])


def params_changed(before: list[np.ndarray], after: list[np.ndarray]) -> bool:
    return any(not np.array_equal(a, b) for a, b in zip(before, after))


def collect_batch(agent) -> dict[str, np.ndarray]:
    """One rollout collected by the agent's own collector, copied out of the buffer."""
    batch = agent.make_collector().collect().batch  # a new collector: reset with the seed
    return {k: np.array(v, copy=True) for k, v in batch.items()}


def read_event_tensors(run_dir) -> dict[str, list[tuple[int, np.ndarray]]]:
    """Every summary of every event file of a run, in writing order: tag -> [(step, value)].

    Reads the raw records (not EventAccumulator, which silently purges out-of-order steps),
    so duplicated or decreasing steps stay visible.
    """
    from pathlib import Path

    import tensorflow as tf
    from tensorboard.compat.proto import event_pb2

    files = []
    for path in Path(run_dir).glob("events.out.tfevents.*"):
        events = [event_pb2.Event.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(path))]
        if events:
            files.append((events[0].wall_time, path.name, events))
    out: dict[str, list[tuple[int, np.ndarray]]] = {}
    for _, _, events in sorted(files, key=lambda f: (f[0], f[1])):
        for event in events:
            if event.HasField("summary"):
                for value in event.summary.value:
                    out.setdefault(value.tag, []).append((event.step, tf.make_ndarray(value.tensor)))
    return out




def one_batch(agent):
    """One gradient step's batch (the first of a sampled update), as tensors (Transitions)."""
    return agent.sample_batch().map(lambda v: tf.convert_to_tensor(v[0]))


def gradients(agent, loss: str, mb) -> dict[str, list]:
    """Module -> gradients of `loss` w.r.t. every variable of the module (one explicit tape)."""
    from rl_sever.nn.layers import tf_variables

    modules = {m: tf_variables(vs) for m, vs in agent.flow_modules().items()}
    flat = [v for vs in modules.values() for v in vs]
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(flat)
        value = agent.loss_terms(mb)[loss]
    grads = tape.gradient(value, flat)
    out, i = {}, 0
    for m, vs in modules.items():
        out[m] = grads[i : i + len(vs)]
        i += len(vs)
    return out


def term_gradients(agent, batch, term: str) -> dict[str, list]:
    """Module -> gradients of one loss term on the first minibatch of `batch`."""
    from rl_sever.nn.layers import tf_variables

    modules = {m: tf_variables(vs) for m, vs in agent.flow_modules().items()}
    loss = agent.flow_losses(batch)[term]
    with tf.GradientTape(watch_accessed_variables=False, persistent=True) as tape:
        tape.watch([v for vs in modules.values() for v in vs])
        value = loss()
    return {m: tape.gradient(value, vs) for m, vs in modules.items()}


def none_or_zero(grads) -> bool:
    return all(g is None or not np.any(tf.convert_to_tensor(g).numpy()) for g in grads)


def flows(grads) -> bool:
    return any(g is not None and np.any(tf.convert_to_tensor(g).numpy()) for g in grads)


def snapshot(variables) -> list[np.ndarray]:
    return [np.array(v.numpy(), copy=True) for v in variables]


class CountdownEnv(gym.Env):
    """Box obs [t / 10, goal], Box action in [-2, 2]; terminates at t == 4 when goal > 0,
    else a TimeLimit of 6 steps truncates: both episode ends occur, and a final observation
    (t > 0) is told apart from a reset observation (t == 0)."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
        self.t, self.goal = 0, 1.0

    def _obs(self):
        return np.array([self.t / 10, self.goal], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.goal = float(self.np_random.choice([-1.0, 1.0]))
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), float(action[0]), self.goal > 0 and self.t == 4, False, {}


COUNTDOWN_ID = "RlSeverCountdown-v0"
if COUNTDOWN_ID not in gym.registry:
    gym.register(COUNTDOWN_ID, entry_point=CountdownEnv, max_episode_steps=6)

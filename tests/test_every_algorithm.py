"""One suite over every algorithm (ppo, a2c, sac, td3, ddpg), as SB3's tests/test_run.py:
smoke runs on discrete, box and pixel observations, save/load, resume, no retrace, the flow
contract on a real batch, and "parameters equal before, different after" for every loss term.
Same seed, same result for every algorithm is in tests/test_determinism.py."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from rl_sever.audit import run_audit
from rl_sever.errors import UnsupportedSpaceError
from rl_sever.objective import LossTerm
from rl_sever.onpolicy.rollout_buffer import Rollout
from tests.helpers import (
    ALGOS,
    ENV_FOR,
    ONPOLICY,
    _agent_class,
    collect_or_sample,
    count_calls,
    read_event_tensors,
    snapshot,
    tiny_agent,
    tiny_config,
)

ENVS = {"discrete": "CartPole-v1", "box": "Pendulum-v1", "pixels": None}
PIXELS = {True: "Pixels/CartPole-v1", False: "Pixels/Pendulum-v1"}  # keyed by on-policy


def env_for(algo: str, kind: str) -> str:
    return PIXELS[algo in ONPOLICY] if kind == "pixels" else ENVS[kind]


def one_update(agent) -> dict[str, float]:
    """One update on a real batch (a rollout, or a replay sample), through the public path."""
    return agent.train(collect_or_sample(agent))


@pytest.mark.parametrize("kind", ["discrete", "box", "pixels"])
@pytest.mark.parametrize("algo", ALGOS)
def test_smoke_run_on_each_observation_and_action_kind(algo, kind):
    env_id = env_for(algo, kind)
    if algo not in ONPOLICY and kind == "discrete":
        with pytest.raises(UnsupportedSpaceError, match="needs a Box action space"):
            tiny_agent(algo, env_id)
        return
    agent = tiny_agent(algo, env_id, fill=0, eval_episodes=0)
    agent.learn(96, progress=False)
    assert int(agent.global_step.numpy()) == 96
    assert agent.has_updated()
    if algo not in ONPOLICY:  # every transition stored, several updates
        assert len(agent.replay) == int(agent.global_step.numpy())
        assert agent.n_updates.numpy() > 1
    obs = np.stack([agent.env.single_observation_space.sample() for _ in range(3)])
    actions = agent.predict(obs)
    assert len(actions) == 3 and agent.env.single_action_space.contains(actions[0])
    if kind == "pixels":
        assert "encoder" in agent.flow_modules()  # images always go through the shared CNN
    agent.close()


@pytest.mark.parametrize("algo", ALGOS)
def test_save_load_gives_identical_actions_and_resume_continues_the_step_axis(algo, tmp_path):
    from agents import load

    agent = tiny_agent(algo, fill=0, logdir=tmp_path, eval_episodes=0)
    agent.learn(96, progress=False)
    run_dir, step = agent.run_dir, int(agent.global_step.numpy())
    obs = np.stack([agent.env.single_observation_space.sample() for _ in range(8)])
    expected = agent.predict(obs)
    modules = {name: snapshot(v) for name, v in agent.flow_modules().items()}
    agent.close()
    loaded = load(run_dir)
    assert int(loaded.global_step.numpy()) == step
    # Every module comes back, target networks included (their optimizer does not hold them).
    assert set(loaded.flow_modules()) == set(modules)
    for name, values in modules.items():
        for a, b in zip(values, snapshot(loaded.flow_modules()[name]), strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)
    np.testing.assert_array_equal(loaded.predict(obs), expected)
    loaded.learn(64, progress=False)
    assert int(loaded.global_step.numpy()) == step + 64
    loaded.close()
    events = read_event_tensors(run_dir)
    steps = [s for s, _ in events["time/fps"]]
    assert all(a < b for a, b in zip(steps, steps[1:])), steps  # one axis, no step twice
    assert steps[-1] > step


TRACED = {"on_policy": ("_train", "_behave", "_greedy"),
          "off_policy": ("_update", "_act_unit", "_greedy_unit")}


@pytest.mark.parametrize("algo", ALGOS)
def test_compiled_steps_trace_once_across_iterations_and_learn_calls(algo, monkeypatch):
    # The learning rate is annealed every iteration; off-policy, train_freq=2 makes both the
    # plain act step (between updates) and the fused update-and-act step run. The bodies of
    # the compiled steps count their traces (a retrace through any wrapper shows).
    klass = _agent_class(algo)
    update, act, greedy_body = TRACED[klass.mode]
    counts = count_calls(monkeypatch, klass, update, act, greedy_body)
    extra = {"host_act": "off"} if algo in ONPOLICY else {"train_freq": 2}
    agent = tiny_agent(algo, fill=0, lr_schedule="linear", eval_episodes=0, **extra)
    agent.learn(96, progress=False)
    agent.learn(96, progress=False)
    # The update body once: off-policy, the audited first update runs the update-and-act step
    # too. The act body once on-policy; off-policy in its two compiled steps (act and
    # update-and-act).
    assert (counts[update], counts[act]) == (1, 1 if algo in ONPOLICY else 2), counts
    # The counter sees a retrace: a function without a fixed signature, given an input of
    # another shape, traces its body again (TD3's act body calls the greedy one: from `before`).
    before = counts[greedy_body]
    greedy = tf.function(getattr(agent, greedy_body))
    obs = np.zeros((2, *agent.obs_shape), agent.obs_dtype.as_numpy_dtype)
    greedy(obs), greedy(obs)
    assert counts[greedy_body] == before + 1
    greedy(obs[:1])
    assert counts[greedy_body] == before + 2
    agent.close()


@pytest.mark.parametrize("algo", ALGOS)
def test_flow_contract_holds_on_a_real_batch(algo):
    agent = tiny_agent(algo, **{"network.shared_encoder": True})
    matrix, violations = run_audit(agent, collect_or_sample(agent), enforce=False)
    assert violations == []
    assert "encoder" in matrix.modules and set(agent.objective.names) <= set(matrix.losses)
    agent.close()


def module_params(agent) -> dict[str, list[np.ndarray]]:
    return {m: [np.array(v.numpy(), copy=True) for v in vs]
            for m, vs in agent.flow_modules().items()}


def moved(before: list[np.ndarray], after: list[np.ndarray]) -> bool:
    return any(not np.array_equal(a, b) for a, b in zip(before, after))


TERMS = {"ppo": ["policy", "value", "entropy"], "a2c": ["policy", "value", "entropy"],
         "sac": ["actor", "critic", "alpha"], "td3": ["actor", "critic"],
         "ddpg": ["actor", "critic"]}
# A page not listed here is tested on each of its default terms (term None: all of them).
CASES = [(algo, term) for algo in ALGOS for term in TERMS.get(algo, [None])]


@pytest.mark.parametrize("algo,term", CASES)
def test_each_loss_moves_the_modules_it_must_train_and_no_other(algo, term):
    """Every other term's weight set to 0: one update moves exactly the modules the term must
    train (Adam and RMSprop leave a parameter with a zero gradient where it is)."""
    # Enough gradient steps for one actor step (TD3: every 2nd critic step, CrossQ: 3rd).
    extra = {"gradient_steps": max(2, getattr(_agent_class(algo).config_cls(), "policy_delay", 1))}
    if algo in ONPOLICY:
        extra = {"ent_coef": 0.01}  # the entropy term's weight must start non-zero
    names = [term] if term is not None else tiny_agent(algo, fill=0).objective.names
    for name in names:
        agent = tiny_agent(algo, **{"network.shared_encoder": True}, **extra)
        assert agent.objective.names == TERMS.get(algo, names)
        moves_only_its_modules(agent, name)
        agent.close()


def moves_only_its_modules(agent, term):
    for other in agent.objective.names:
        if other != term:
            agent.objective.set_weight(other, 0.0)
    flow = agent.flow_contract().flows[term]
    before = module_params(agent)
    one_update(agent)
    after = module_params(agent)
    for module in before:
        if module == "targets":  # Polyak-averaged after every actor step, by no loss
            continue
        if module in flow.must:
            assert moved(before[module], after[module]), (term, module)
        elif module not in flow.may:
            assert not moved(before[module], after[module]), (term, module)
    assert flow.must, term  # every default term trains something


class Recorder(LossTerm):
    """A weight-0 critic-side term whose `on_update` keeps what it receives."""

    def __init__(self, output: str):
        super().__init__("watch", weight=0.0, trains={"critic"})
        self.output, self.seen = output, []

    def compute(self, batch, out):
        x = out[self.output]
        return tf.reduce_mean(tf.square(x)), {"size": tf.cast(tf.size(x), tf.float32)}

    def on_update(self, agent, stats):
        self.seen.append(dict(stats))


@pytest.mark.parametrize("algo", ALGOS)
def test_metrics_have_one_format_and_reach_the_term_hooks(algo):
    """Every algorithm's compiled update returns {key: [sum, count]}; logged_metrics gives the
    term loss/watch and loss/watch_size, and its on_update hook gets the same means."""
    term = Recorder("values" if algo in ONPOLICY else "q")
    agent = _agent_class(algo)(ENV_FOR[algo], tiny_config(algo), losses=[term])
    if algo not in ONPOLICY:
        agent.learn(48, progress=False)  # fill the replay buffer (no update yet)
    batch = collect_or_sample(agent)
    raw = (agent.train_fn(*Rollout.of(batch)) if algo in ONPOLICY
           else agent.compiled["update"](batch))
    assert {"watch", "watch_size"} <= set(raw)
    assert all(tuple(v.shape) == (2,) for v in raw.values())  # [sum, count] per key
    logged = agent.logged_metrics(raw)
    assert term.seen == [{"value": logged["loss/watch"], "size": logged["loss/watch_size"]}]
    cfg = agent.config
    # Off-policy: q is [critics, batch, outputs per critic] (1, or TQC's quantiles).
    per_critic = getattr(cfg, "n_quantiles", 1)
    size = agent.minibatch_size() if algo in ONPOLICY else cfg.batch_size * cfg.n_critics * per_critic
    assert logged["loss/watch_size"] == size
    agent.close()

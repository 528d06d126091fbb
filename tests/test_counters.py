"""rl_sever.core.counters: the loop's reads and writes of the checkpointed counters."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from agents.a2c import A2C
from rl_sever.core import counters
from rl_sever.objective import LossTerm
from tests.helpers import make_agent, tiny_config


@pytest.mark.parametrize("dtype", [tf.int64, tf.int32])
def test_read_and_write_agree_with_the_variables_own_methods(dtype):
    var = tf.Variable(7, dtype=dtype)
    assert counters.read(var) == 7 and isinstance(counters.read(var), int)
    counters.write(var, 2**30 + 3)
    assert int(var.numpy()) == 2**30 + 3 and var.dtype == dtype
    var.assign(11)
    assert counters.read(var) == 11


def test_a_checkpoint_saves_what_write_set(tmp_path):
    var = tf.Variable(0, dtype=tf.int64)
    counters.write(var, 4096)
    path = tf.train.Checkpoint(step=var).save(str(tmp_path / "ckpt"))
    counters.write(var, 1)
    tf.train.Checkpoint(step=var).restore(path)
    assert counters.read(var) == 4096


def test_a_mirrored_variable_takes_its_own_methods():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        var = tf.Variable(3, dtype=tf.int64)
    assert isinstance(var, tf.distribute.DistributedValues)
    counters.write(var, 5)
    assert counters.read(var) == 5
    assert [int(v.numpy()) for v in strategy.experimental_local_results(var)] == [5]


def test_inside_compiled_code_the_variables_methods_are_traced():
    var = tf.Variable(0, dtype=tf.int64)

    @tf.function
    def bump(value):
        counters.write(var, value)
        return var.read_value()

    assert int(bump(tf.constant(9, tf.int64))) == 9
    assert int(bump(tf.constant(12, tf.int64))) == 12
    np.testing.assert_array_equal(var.numpy(), 12)


class StepSeen(LossTerm):
    """A weight-0 term reporting the global step and iteration its update call reads."""

    def __init__(self):
        super().__init__("seen", weight=0.0, trains={"critic"})
        self.agent, self.seen, self.eager = None, [], []

    def compute(self, batch, out):
        if self.agent is not None and tf.executing_eagerly():  # the audit, the pre-flight
            self.eager.append(int(self.agent.global_step.numpy()))
        counts = ({"step": tf.cast(self.agent.global_step, tf.float32),
                   "iteration": tf.cast(self.agent.iteration, tf.float32)}
                  if self.agent is not None else {"step": 0.0, "iteration": 0.0})
        return tf.reduce_mean(tf.square(out["values"])), counts

    def on_update(self, agent, stats):
        self.seen.append((int(stats["step"]), int(stats["iteration"])))


class OwnTrain(A2C):
    """A user's page with its own `train`: the loop sets the counters before calling it."""

    def train(self, batch):
        return super().train(batch)


@pytest.mark.parametrize("klass", [A2C, OwnTrain])
def test_the_update_reads_the_counters_of_the_rollout_it_trains_on(klass):
    term = StepSeen()
    agent = klass("CartPole-v1", tiny_config("a2c", n_envs=2, n_steps=4, audit=True),
                  losses=[term])
    term.agent = agent
    assert agent.counts_in_update is (klass is A2C)
    in_callback = []
    agent.learn(40, progress=False, callback=lambda a, m: in_callback.append(
        (int(a.global_step.numpy()), int(a.iteration.numpy()))))
    # 8 env steps an iteration: the update of iteration i sees step 8 i, as the callback after it.
    assert term.seen == in_callback == [(8 * i, i) for i in range(1, 6)]
    assert term.eager and set(term.eager) == {8}  # the first update's audit and pre-flight
    agent.close()


def test_an_instances_own_train_gets_no_counters():
    agent = make_agent("a2c", n_envs=2, n_steps=4)
    assert agent.counts_in_update
    train = agent.train
    agent.train = lambda batch: train(batch)
    assert not agent.counts_in_update
    agent.learn(16, progress=False)
    assert (int(agent.global_step.numpy()), int(agent.iteration.numpy())) == (16, 2)
    agent.close()


def test_a_multi_worker_rollout_ends_at_the_step_the_run_counts(monkeypatch):
    agent = make_agent("a2c", n_envs=2, n_steps=4)
    monkeypatch.setattr(agent.replicas, "workers", 2)  # each worker collects as much
    collected = agent.collector.collect()
    assert collected.steps == 16 and agent.collector.next_step == 16
    agent.close()


def test_an_interrupt_between_collection_and_update_checkpoints_the_collected_steps(tmp_path):
    agent = make_agent("a2c", n_envs=2, n_steps=4, logdir=tmp_path)

    def interrupted(run):  # before the update call, which would have set the counters
        raise KeyboardInterrupt

    agent.learn(16, progress=False)
    agent.compiled_call = interrupted
    with pytest.raises(KeyboardInterrupt):
        agent.learn(16, progress=False)
    assert (int(agent.global_step.numpy()), int(agent.iteration.numpy())) == (24, 3)
    assert Path(agent.checkpointer.latest).name == "ckpt-24"
    agent.close()


def test_the_collector_reads_the_step_again_where_it_may_have_been_set(monkeypatch):
    """Inside a learn() call a rollout starts where the last one ended (the update set that
    step); a step set outside the loop is read again: the host sampler is seeded by it."""
    agent = make_agent("a2c", n_envs=2, n_steps=4)
    host, seen = agent.collector.host, []
    sync = host.sync
    monkeypatch.setattr(host, "sync", lambda step: seen.append(step) or sync(step))
    agent.learn(16, progress=False)
    agent.global_step.assign(1000)
    agent.learn(8, progress=False)  # a learn() call reads it
    assert agent.collector.next_step == int(agent.global_step.numpy()) == 1008
    agent.global_step.assign(2000)
    agent.invalidate_host_copies()  # as the loop does before a callback
    agent.collector.collect()
    assert seen == [0, 8, 1000, 2000]
    agent.close()

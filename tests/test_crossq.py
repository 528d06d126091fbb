"""CrossQ's joint forward pass and its severed half, with exact gradients: the critic loss
reaches the critics and nothing of the policy, though a' comes from the actor and the batch
statistics mix both halves; without the sever it would reach the actor. Batch
renormalization's statistics move in training updates only, never in the audit."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from rl_sever.nn.layers import tf_variables
from tests.helpers import flows, none_or_zero, one_batch, tiny_agent

SMALL = {"critic_hidden_sizes": [16, 16]}


def grads_of(loss_fn, variables):
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(tf_variables(variables))
        loss = loss_fn()
    return tape.gradient(loss, tf_variables(variables))


def test_the_critic_loss_reaches_the_critics_and_not_the_actor():
    agent = tiny_agent("crossq", **SMALL)
    mb = one_batch(agent)
    seed = tf.constant([0, 3], tf.int32)
    critic_loss = lambda: agent.critic_terms(mb, seed)[0]["critic"]  # noqa: E731
    assert all(g is None for g in grads_of(critic_loss, agent.actor.weights))  # None, exactly
    assert flows(grads_of(critic_loss, agent.critic.weights))
    assert all(g is None for g in grads_of(critic_loss, [agent.log_alpha]))
    agent.close()


def test_without_the_sever_the_next_half_would_train_the_actor():
    """The control: the same joint pass with the next half not severed sends gradient into
    the actor through a' and the shared batch statistics."""
    agent = tiny_agent("crossq", **SMALL)
    mb = one_batch(agent)
    from rl_sever.nn.distributions import squashed_gaussian_sample

    def unsevered():
        next_actions, _ = squashed_gaussian_sample(*agent._policy(mb["next_obs"]),
                                                   tf.constant([0, 3], tf.int32))
        current = tf.concat([mb["obs"], mb["actions"]], -1)
        following = tf.concat([mb["next_obs"], next_actions], -1)
        q = agent.critic(tf.concat([current, following], 0), training=True, update=False)
        return tf.reduce_mean(tf.square(q[:, : agent.config.batch_size]))  # current half only

    assert flows(grads_of(unsevered, agent.actor.weights))
    agent.close()


def test_the_actor_loss_reaches_no_critic_weight():
    agent = tiny_agent("crossq", **SMALL)
    mb = one_batch(agent)
    actor_loss = lambda: agent.actor_terms(mb, tf.constant([0, 5], tf.int32))[0]["actor"]  # noqa: E731
    assert none_or_zero(grads_of(actor_loss, agent.critic.weights))
    assert flows(grads_of(actor_loss, agent.actor.weights))
    agent.close()


def running_stats(agent):
    return [np.array(v.numpy(), copy=True) for member in agent.critic.layers
            for layer in member for v in layer[2:4]] + [agent.critic.steps.numpy()]


def test_statistics_follow_the_joint_batch_in_updates_and_not_in_the_audit():
    agent = tiny_agent("crossq", **SMALL)
    batch = agent.sample_batch()
    before = running_stats(agent)
    agent.loss_terms(one_batch(agent))  # the audit's entry point
    assert all(np.array_equal(a, b) for a, b in zip(before, running_stats(agent)))
    mb = batch.map(lambda v: tf.convert_to_tensor(v[0]))
    agent.update(batch)  # one gradient step (updates_per_call == 1 here)
    after = running_stats(agent)
    assert after[-1] == before[-1] + 1
    # The input layer's running mean moved by momentum x (mean of both halves): obs and
    # actions of the current half, s' and the policy's a' of the next one.
    x_current = tf.concat([mb["obs"], mb["actions"]], -1).numpy()
    rows = np.concatenate([x_current[:, :3], mb["next_obs"].numpy()], 0).mean(0)
    expected = before[0][:3] + agent.config.batch_norm_momentum * (rows - before[0][:3])
    np.testing.assert_allclose(after[0][:3], expected, rtol=1e-5, atol=1e-6)
    agent.close()


def test_evaluation_mode_normalises_by_the_running_statistics():
    agent = tiny_agent("crossq", **SMALL, **{"network.matmul_precision": "float32"})
    x = tf.random.stateless_normal([5, 4], [1, 2])
    for member in agent.critic.layers:  # non-trivial statistics
        for _, _, mean, var, *_ in member:
            mean.assign(tf.fill(mean.shape, 0.3))
            var.assign(tf.fill(var.shape, 2.0))
    got = agent.critic(x).numpy()[0]
    h = x.numpy()
    layers = agent.critic.layers[0]
    for i, (*_, kernel, bias) in enumerate(layers):
        h = (h - 0.3) / np.sqrt(2.0 + agent.config.batch_norm_eps)
        h = h @ kernel.numpy() + bias.numpy()
        h = np.maximum(h, 0) if i < len(layers) - 1 else h
    np.testing.assert_allclose(got, h, rtol=1e-5, atol=1e-5)
    agent.close()


def test_adam_beta1_is_sb3_contribs_for_actor_and_critic_only():
    agent = tiny_agent("crossq", fill=0, **SMALL)
    betas = {name: {o.beta_1 for o in opt.optimizers.values()}
             for name, opt in agent.optimizers.items()}
    assert betas == {"critic": {0.5}, "actor": {0.5}, "alpha": {0.9}}
    assert "target_critic" not in agent.trackables() and "targets" not in agent.flow_modules()
    agent.close()


def renorm_numpy(h, mean, var, eps, rmax=3.0, dmax=5.0):
    """Batch Renormalization (Ioffe 2017) after the warm-up, in NumPy."""
    batch_mean, batch_var = h.mean(0), h.var(0, ddof=1)
    std = np.sqrt(var + eps)
    r = np.clip(np.sqrt(batch_var + eps) / std, 1 / rmax, rmax)
    d = np.clip((batch_mean - mean) / std, -dmax, dmax)
    use_mean, use_var = batch_mean - d * np.sqrt(batch_var) / r, batch_var / r**2
    return (h - use_mean) / np.sqrt(use_var + eps)


def _renormalising_critic():
    """A tiny CrossQ agent past its (zero-step) warm-up, its first critic layer's running mean
    0.5 and variance 0.2: (agent, critic, eps, running mean, running variance)."""
    agent = tiny_agent("crossq", fill=0, renorm_warmup_steps=0, **SMALL)
    critic = agent.critic
    mean, var = critic.layers[0][0][2:4]
    mean.assign(tf.fill(mean.shape, 0.5))
    var.assign(tf.fill(var.shape, 0.2))
    return agent, critic, agent.config.batch_norm_eps, mean, var


def test_after_the_warm_up_the_batch_is_renormalised_towards_the_running_statistics():
    agent, critic, eps, mean, var = _renormalising_critic()
    x = tf.random.stateless_normal([32, 4], [3, 4]) * 2.0
    h = critic._renorm(x, mean, var, update=False)  # steps 0: not before the warm-up's end
    np.testing.assert_allclose(h.numpy(), (x.numpy() - x.numpy().mean(0)) /
                               np.sqrt(x.numpy().var(0, ddof=1) + eps), rtol=1e-4, atol=1e-5)
    critic.steps.assign(1)  # past the warm-up
    h = critic._renorm(x, mean, var, update=False)
    np.testing.assert_allclose(h.numpy(), renorm_numpy(x.numpy(), 0.5, 0.2, eps),
                               rtol=1e-4, atol=1e-5)
    # r and d are constants: the gradient is the batch-norm gradient scaled by r, finite
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = tf.reduce_sum(critic._renorm(x, mean, var, update=False) ** 2)
    assert np.all(np.isfinite(tape.gradient(out, x).numpy()))
    agent.close()


def test_a_unit_without_batch_variance_after_the_warm_up_keeps_every_gradient_finite():
    """A column with no variance in the batch (a ReLU unit dead for the whole batch, a constant
    input): sqrt(batch_var)'s gradient at zero is infinite, and in the renormalised mean it made
    the update's gradient NaN, which stopped runs right after the warm-up. Now that column's
    correction is zero, as its value was, and its gradient too; the other columns are the
    NumPy reference's."""
    agent, critic, eps, mean, var = _renormalising_critic()
    live = tf.random.stateless_normal([32, 3], [3, 4]) * 2.0
    x = tf.concat([live, tf.zeros([32, 1])], -1)

    def gradient(inputs, mean, var):  # with a gradient into the constant column, if present
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            h = critic._renorm(inputs, mean, var, update=False)
            out = tf.reduce_sum(h[:, :3] ** 2) + tf.reduce_sum(h[:, 3:])
        return h, tape.gradient(out, inputs).numpy()

    for steps in (0, 1):  # in the warm-up (plain batch norm), then past it
        critic.steps.assign(steps)
        h, grad = gradient(x, mean, var)
        assert np.all(np.isfinite(grad)), steps
        # Columns are normalised each on its own: the others' gradients are exactly what they
        # are without the constant column, and non-zero; the constant column's is zero (up to
        # the rounding of the batch mean's own gradient: 1/n summed n times).
        _, alone = gradient(live, tf.Variable(mean[:3]), tf.Variable(var[:3]))
        np.testing.assert_array_equal(grad[:, :3], alone)
        assert np.all(alone != 0.0)
        np.testing.assert_allclose(grad[:, 3], 0.0, atol=1e-4)
    np.testing.assert_allclose(h.numpy(), renorm_numpy(x.numpy(), 0.5, 0.2, eps),
                               rtol=1e-4, atol=1e-5)
    # A whole run past the warm-up with tiny critics, whose hidden units die within a batch.
    agent.learn(256, progress=False)
    assert all(np.all(np.isfinite(w.numpy())) for w in critic.weights)
    agent.close()

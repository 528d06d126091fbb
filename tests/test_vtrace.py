"""V-trace (rl_sever.objective.advantages.vtrace) against a NumPy reference written from the
paper's sums (not its recursion), and its on-policy reductions: n-step returns, GAE."""

from __future__ import annotations

import numpy as np
import pytest

from rl_sever.objective.advantages import gae, vtrace


def reference(log_rhos, rewards, values, next_values, terminated, dones, gamma, lam, rho_bar,
              c_bar, pg_rho_bar):
    """v_s = V(x_s) + sum_{t=s}^{e} gamma^(t-s) (prod_{i=s}^{t-1} c_i) delta_t, e the last step of
    the episode inside the rollout, per env; the advantages from v_{s+1} (or V(x_{s+1}))."""
    T, N = rewards.shape
    rhos = np.exp(log_rhos)
    clipped, cs = np.minimum(rho_bar, rhos), lam * np.minimum(c_bar, rhos)
    deltas = clipped * (rewards + gamma * next_values * (1 - terminated) - values)
    vs = np.zeros((T, N))
    for n in range(N):
        for s in range(T):
            total, weight = 0.0, 1.0
            for t in range(s, T):
                total += weight * deltas[t, n]
                if dones[t, n]:
                    break
                weight *= gamma * cs[t, n]
            vs[s, n] = values[s, n] + total
    adv = np.zeros((T, N))
    for n in range(N):
        for s in range(T):
            nxt = vs[s + 1, n] if s + 1 < T and not dones[s, n] else next_values[s, n]
            adv[s, n] = min(pg_rho_bar, rhos[s, n]) * (
                rewards[s, n] + gamma * (1 - terminated[s, n]) * nxt - values[s, n])
    return adv, vs


def rollout(seed: int, T: int = 9, N: int = 3):
    """Random [T, N] data as a rollout gives it: V of the observation reached is V of the next
    observation inside an episode, of the true final observation (its own value) where one
    ended, of the observation after the rollout at its end."""
    rng = np.random.default_rng(seed)
    terminated = rng.random((T, N)) < 0.15
    dones = terminated | (rng.random((T, N)) < 0.1)
    values = rng.normal(size=(T, N))
    next_values = np.concatenate([values[1:], rng.normal(size=(1, N))])
    next_values = np.where(dones, rng.normal(size=(T, N)), next_values)
    return dict(log_rhos=rng.normal(0.0, 0.6, (T, N)), rewards=rng.normal(size=(T, N)),
                values=values, next_values=next_values, terminated=terminated, dones=dones)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("lam, rho_bar, c_bar, pg_rho_bar",
                         [(1.0, 1.0, 1.0, 1.0), (0.9, 2.0, 0.7, 1.5), (0.95, 0.5, 1.0, 0.8)])
def test_vtrace_matches_the_papers_sums(seed, lam, rho_bar, c_bar, pg_rho_bar):
    data = rollout(seed)
    f32 = {k: np.asarray(v, np.float32) if v.dtype != bool else v for k, v in data.items()}
    adv, vs = vtrace(f32["log_rhos"], f32["rewards"], f32["values"], f32["next_values"],
                     f32["terminated"], f32["dones"], 0.97, lam, rho_bar, c_bar, pg_rho_bar)
    ref_adv, ref_vs = reference(**data, gamma=0.97, lam=lam, rho_bar=rho_bar, c_bar=c_bar,
                                pg_rho_bar=pg_rho_bar)
    np.testing.assert_allclose(vs.numpy(), ref_vs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(adv.numpy(), ref_adv, rtol=1e-5, atol=1e-5)


def test_on_policy_vtrace_is_n_step_returns():
    data = rollout(3, T=12, N=4)
    T, N = data["rewards"].shape
    gamma = 0.9
    zeros = np.zeros((T, N), np.float32)
    adv, vs = vtrace(zeros, data["rewards"].astype(np.float32), data["values"].astype(np.float32),
                     data["next_values"].astype(np.float32), data["terminated"], data["dones"],
                     gamma)
    # The discounted rewards to the episode's end or the rollout's, then V of where it got to.
    returns = np.zeros((T, N))
    for n in range(N):
        for s in range(T):
            total, discount = 0.0, 1.0
            for t in range(s, T):
                total += discount * data["rewards"][t, n]
                discount *= gamma
                if data["dones"][t, n] or t == T - 1:
                    total += discount * (1 - data["terminated"][t, n]) * data["next_values"][t, n]
                    break
            returns[s, n] = total
    np.testing.assert_allclose(vs.numpy(), returns, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(adv.numpy(), returns - data["values"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("lam", [1.0, 0.9])
def test_on_policy_vtrace_targets_are_gae_returns(lam):
    data = {k: (v.astype(np.float32) if v.dtype != bool else v) for k, v in rollout(4).items()}
    args = (data["rewards"], data["values"], data["next_values"], data["terminated"],
            data["dones"], 0.95)
    adv_gae, ret_gae = gae(*args, lam)
    adv, vs = vtrace(np.zeros_like(data["rewards"]), *args, lam=lam)
    np.testing.assert_allclose(vs.numpy(), ret_gae.numpy(), rtol=1e-5, atol=1e-5)
    if lam == 1.0:
        np.testing.assert_allclose(adv.numpy(), adv_gae.numpy(), rtol=1e-5, atol=1e-5)


def test_clipping_bounds_the_correction():
    data = {k: (v.astype(np.float32) if v.dtype != bool else v) for k, v in rollout(5).items()}
    big = np.full_like(data["rewards"], 3.0)  # ratio e^3 everywhere
    args = (data["rewards"], data["values"], data["next_values"], data["terminated"],
            data["dones"], 0.95)
    clipped = vtrace(big, *args, rho_bar=1.0, c_bar=1.0, pg_rho_bar=1.0)
    on_policy = vtrace(np.zeros_like(big), *args)
    for a, b in zip(clipped, on_policy):  # clipped at 1: as if on-policy
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)

"""The on-policy collector of an agent: the collection loop (rl_sever.onpolicy.rollout_collector)
acting with the agent's NumPy host policy for a small MLP on CPU, else its compiled act step
without tf.function's per-call dispatch (rl_sever.core.compiled)."""

from __future__ import annotations

from rl_sever.core import counters
from rl_sever.core.compiled import FastCall
from rl_sever.onpolicy.host_policy import make_host_policy
from rl_sever.onpolicy.rollout_collector import RolloutCollector


class OnPolicyCollector(RolloutCollector):
    """Fills a rollout buffer with n_steps transitions from every sub-env of the agent's env."""

    def __init__(self, agent):
        host = make_host_policy(agent.model, agent.config.host_act, agent.data_seed)
        # Traced only where it acts (tracing it for a host-acting run cost 0.3 s of start-up).
        super().__init__(agent, host, FastCall(agent.behave_fn) if host is None else None)

    def invalidate(self) -> None:
        """The weights or the step may have been set outside the loop: read both again."""
        if self.host is not None:
            self.host.invalidate()
        self.next_step = None

    def read_step(self) -> int:
        return counters.read(self.agent.global_step)

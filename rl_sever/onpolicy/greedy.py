"""Greedy acting on the host for `predict(..., deterministic=True)` and evaluations, mixed
into OnPolicyAgent: where the collector would act with the NumPy copy of the policy
(rl_sever.onpolicy.host_policy, `host_act`), the greedy actions come from such a copy too
(tests/test_host_policy.py: equal to the compiled greedy policy's). The copy is the agent's
own, not the collector's, so a loaded agent acts the same to the last bit; it reads the
weights at each call, or once for a whole evaluation (`weights_held`)."""

from __future__ import annotations

import contextlib

from rl_sever.onpolicy.host_policy import make_host_policy


class GreedyOnHost:
    _weights_held = False
    _greedy_hosts: tuple = ()

    def _greedy_host(self):
        if not self._greedy_hosts or self._greedy_hosts[0] is not self.model:
            self._greedy_hosts = (self.model, make_host_policy(self.model, self.config.host_act,
                                                               self.data_seed))
        return self._greedy_hosts[1]

    def act_arrays(self, args: list, deterministic: bool):
        # Greedy actions on the host where host acting applies (evaluation, predict), with the
        # weights read afresh unless held (docs/performance.md). Its own host copy: a loaded
        # agent, which has no collector, acts the same to the last bit.
        host = self._greedy_host() if deterministic else None
        if host is None:
            return super().act_arrays(args, deterministic)
        if not self._weights_held:
            host.invalidate()  # a user may have set them since
        host.refresh()
        return host.mode(*args)

    @contextlib.contextmanager
    def weights_held(self):
        """Within: the weights do not change (an evaluation), so host acting reads them once."""
        self._weights_held, host = True, self._greedy_host()
        if host is not None:
            host.invalidate()
        try:
            yield
        finally:
            self._weights_held = False

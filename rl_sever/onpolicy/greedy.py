"""Greedy acting on the host during evaluations, mixed into OnPolicyAgent: where the
collector would act with the NumPy copy of the policy (rl_sever.onpolicy.host_policy,
`host_act`), an evaluation's greedy actions come from such a copy too (tests/test_host_policy.py:
equal to the compiled greedy policy's), its weights read once per evaluation. The copy is the
agent's own, not the collector's, so a loaded agent evaluates the same. `predict` outside an
evaluation stays the compiled policy: what an export reproduces to the last bit."""

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
        host = self._greedy_host() if deterministic and self._weights_held else None
        if host is None:
            return super().act_arrays(args, deterministic)
        host.refresh()
        return host.mode(*args)

    @contextlib.contextmanager
    def weights_held(self):
        """Within (an evaluation): the weights do not change, so greedy actions come from the
        host copy, which reads them once (docs/performance.md)."""
        self._weights_held, host = True, self._greedy_host()
        if host is not None:
            host.invalidate()
        try:
            yield
        finally:
            self._weights_held = False

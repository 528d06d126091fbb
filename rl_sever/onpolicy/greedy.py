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
    _greedy_copy: tuple | None = None  # (the host copy, or None where host acting does not apply)

    def _greedy_host(self):
        if self._greedy_copy is None:
            self._greedy_copy = (make_host_policy(self.model, self.config.host_act, self.data_seed),)
        return self._greedy_copy[0]

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

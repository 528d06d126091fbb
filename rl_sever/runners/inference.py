"""Central inference for env runners (config `runner_inference: central`, as SEED RL acts): one
copy of the policy in a Ray actor on the learner's node acts for every runner. Each runner
sends its observations every step; the server answers the requests that arrive together (one
per runner, or whatever came within WAIT_S) with one batched call of the agent's compiled act
step. The learner sends the server the weights of each update; the runners then need none.

Where it pays: a policy whose forward pass is expensive (a CNN on pixels) and an accelerator
next to the learner, where one batched call beats a forward pass in every runner. It costs a
round trip through Ray per env step (bench/inference.py measures both on pixels).

The runners hold the server's actor handle, and Ray imports this module wherever a handle is
unpickled: it imports no TensorFlow itself (runners without it, rl_sever.runners.host_runner);
the server's process imports it with its copy of the agent.
"""

from __future__ import annotations

import asyncio

import numpy as np

from rl_sever.runners.share import runner_config

WAIT_S = 0.002  # how long a request waits for the other runners' before the server acts


def _map(fn, *parts):
    """`fn` over the arrays of `parts` (arrays, or a Dict observation's key -> array)."""
    if isinstance(parts[0], dict):
        return {key: fn(*(p[key] for p in parts)) for key in parts[0]}
    return fn(*parts)


def _join(parts: list):
    return _map(lambda *xs: np.concatenate(xs), *parts)


def _rows(x) -> int:
    return len(next(iter(x.values())) if isinstance(x, dict) else x)


class InferenceServer:
    """Acts for `count` runners with a copy of the agent's policy (a Ray actor)."""

    def __init__(self, agent_class, env_id: str, config, count: int, encoder=None):
        from rl_sever.runners.runner import weight_setter  # (TensorFlow: the server's process)

        # All the run's envs: an off-policy act step is compiled for that many rows.
        self.agent = agent_class(env_id, runner_config(config, 0, 1), logdir=None,
                                 encoder=encoder)
        self.rows = config.n_envs
        self._set = weight_setter(self.agent.acting_variables())
        self.on_policy = self.agent.mode == "on_policy"
        self.batch = count
        self.queue: list = []
        self.timer = None
        self.calls = self.requests = 0

    def set_weights(self, weights) -> None:
        self._set(*weights)

    async def act(self, *inputs):
        """The act step's outputs for one runner's inputs (on-policy: actions, log-probs,
        values and a recurrent policy's state; off-policy: unit actions)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.queue.append((inputs, future))
        if len(self.queue) >= self.batch:
            self._flush()
        elif self.timer is None:
            self.timer = loop.call_later(WAIT_S, self._flush)
        return await future

    def _flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        queue, self.queue = self.queue, []
        if not queue:
            return
        sizes = [_rows(inputs[0]) for inputs, _ in queue]
        joined = [_join([inputs[j] for inputs, _ in queue]) for j in range(len(queue[0][0]))]
        try:
            if self.on_policy:
                outputs = [np.asarray(x) for x in self.agent.behave_fn(*joined)]
            else:  # padded to the rows it was compiled for when some runners are not here
                obs = _map(self._pad, joined[0])
                outputs = [self.agent.act_unit(obs)[:sum(sizes)]]
        except Exception as e:  # every waiting runner gets the error
            for _, future in queue:
                future.set_exception(e)
            return
        self.calls, self.requests = self.calls + 1, self.requests + len(queue)
        start = 0
        for (_, future), n in zip(queue, sizes):
            part = [x[start:start + n] for x in outputs]
            future.set_result(part if self.on_policy else part[0])
            start += n

    def _pad(self, x: np.ndarray) -> np.ndarray:
        missing = self.rows - len(x)
        return x if missing <= 0 else np.concatenate([x, np.zeros((missing, *x.shape[1:]), x.dtype)])

    def stats(self) -> dict:
        """Batched calls made and requests answered."""
        return {"calls": self.calls, "requests": self.requests}


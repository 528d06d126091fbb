"""A vector env whose sub-envs are spread over a few worker processes.

Gymnasium's AsyncVectorEnv starts one process per env, so every step pays one pipe round
trip per env; with more envs than cores the processes mostly wait. `WorkerPoolVectorEnv`
starts `n_workers` processes instead, each stepping its share of the envs in a loop (a sync
sub-vector), so a step costs one round trip per worker. Observations, rewards and the
terminated/truncated flags come back through shared memory, only non-empty infos through the
pipe.

Semantics are those of SyncVectorEnv with SAME_STEP autoreset, env for env: the same
seeds give the same trajectories, and the step that ends an episode returns the next
episode's first observation with the true last one in info["final_obs"] (mask
info["_final_obs"]) and the env's own info in info["final_info"].
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
from gymnasium import Env
from gymnasium.error import ClosedEnvironmentError
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import (
    CloudpickleWrapper,
    batch_space,
    create_shared_memory,
    iterate,
    read_from_shared_memory,
    write_to_shared_memory,
)

_CLOSE_TIMEOUT = 10.0  # seconds a worker gets to close its envs before it is terminated


class EnvWorkerError(RuntimeError):
    """A sub-env raised (or its worker process died) inside a WorkerPoolVectorEnv."""


def default_context() -> str:
    """forkserver where available, else spawn: never fork a parent that runs TensorFlow."""
    return "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"


def split_envs(n_envs: int, n_workers: int) -> list[range]:
    """The env indices of each worker: contiguous, sizes differing by at most one."""
    bounds = np.linspace(0, n_envs, n_workers + 1).round().astype(int)
    return [range(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]


class WorkerPoolVectorEnv(VectorEnv):
    """`len(env_fns)` envs stepped by `n_workers` processes, SAME_STEP autoreset only."""

    def __init__(self, env_fns: Sequence[Callable[[], Env]], n_workers: int, *,
                 context: str | None = None, env_name: str | None = None) -> None:
        if not 1 <= n_workers <= len(env_fns):
            raise ValueError(f"n_workers must be in [1, {len(env_fns)}], got {n_workers}")
        self.pipes: list[Connection] = []  # set first: close() must work on a failed start
        self.processes: list[mp.process.BaseProcess] = []
        self.num_envs = len(env_fns)
        self.n_workers = int(n_workers)
        self.shares = split_envs(self.num_envs, self.n_workers)
        # The spaces come from a throw-away env in the parent, as in AsyncVectorEnv: the
        # shared memory must exist before the workers start.
        dummy = env_fns[0]()
        self.env_name = (env_name or getattr(dummy.spec, "id", None)
                         or type(dummy.unwrapped).__name__)
        self.metadata = {**dummy.metadata, "autoreset_mode": AutoresetMode.SAME_STEP}
        self.render_mode = dummy.render_mode
        self.single_observation_space = dummy.observation_space
        self.single_action_space = dummy.action_space
        dummy.close()
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

        ctx = mp.get_context(context or default_context())
        if ctx.get_start_method() == "forkserver":
            # Import the env code (and the TensorFlow it pulls in) once in the fork server
            # rather than once per worker. No effect if the server already runs.
            ctx.set_forkserver_preload(["__main__", "envs.worker_preload"])
        shm = create_shared_memory(self.single_observation_space, n=self.num_envs, ctx=ctx)
        self._obs = read_from_shared_memory(self.single_observation_space, shm, n=self.num_envs)
        # Rewards and flags in shared memory too: pickling three small arrays per worker and
        # step costs more than the stepping of a cheap env.
        shm_steps = [ctx.RawArray(code, self.num_envs) for code in "dbb"]
        self._rewards, self._terminated, self._truncated = _step_arrays(shm_steps)
        spaces = (self.single_observation_space, self.single_action_space)
        for w, share in enumerate(self.shares):
            parent, child = ctx.Pipe()
            fns = CloudpickleWrapper([env_fns[i] for i in share])
            # daemon: the worker dies with the parent even if close() is never called.
            process = ctx.Process(target=_worker, name=f"rl_sever-env-worker-{w}", daemon=True,
                                  args=(share.start, fns, child, parent, shm, shm_steps, spaces))
            process.start()
            child.close()  # so recv() sees EOF if the worker dies
            self.pipes.append(parent)
            self.processes.append(process)
        self.closed = False
        self._round_trip("start", [None] * self.n_workers)

    def reset(self, *, seed: int | Sequence[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset every sub-env (or those in options["reset_mask"]); an int seed gives env i
        `seed + i`, as in SyncVectorEnv."""
        self._check_open()
        if seed is None:
            seed = [None] * self.num_envs
        elif isinstance(seed, (int, np.integer)):
            seed = [int(seed) + i for i in range(self.num_envs)]
        if len(seed) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} seeds, got {len(seed)}")
        options = None if options is None else dict(options)
        mask = options.pop("reset_mask", None) if options else None
        mask = np.ones(self.num_envs, bool) if mask is None else np.asarray(mask, bool)
        self._terminated[mask] = self._truncated[mask] = False
        todo = [[(i, seed[i]) for i in share if mask[i]] for share in self.shares]
        infos = self._gather_infos("reset", [("reset", (t, options)) for t in todo])
        return self._obs.copy(), infos

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every sub-env; an episode's end resets that env in the same step."""
        self._check_open()
        # Slicing an array batch is cheaper than splitting it per env.
        per_env = (actions if isinstance(actions, np.ndarray)
                   else list(iterate(self.action_space, actions)))
        messages = [("step", per_env[share.start : share.stop]) for share in self.shares]
        infos = self._gather_infos("step", messages)
        return (self._obs.copy(), self._rewards.copy(), self._terminated.copy(),
                self._truncated.copy(), infos)

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Call method `name` (or read attribute `name`) of every sub-env."""
        self._check_open()
        replies = self._round_trip(f"call {name!r}",
                                   [("call", (name, args, kwargs))] * self.n_workers)
        return tuple(r for results in replies for r in results)

    def get_attr(self, name: str) -> tuple[Any, ...]:
        """Attribute `name` of every sub-env."""
        return self.call(name)

    def set_attr(self, name: str, values: Any) -> None:
        """Set attribute `name` of every sub-env (a list/tuple gives one value per env)."""
        self._check_open()
        if not isinstance(values, (list, tuple)):
            values = [values] * self.num_envs
        if len(values) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} values, got {len(values)}")
        messages = [("set_attr", (name, [values[i] for i in share])) for share in self.shares]
        self._round_trip(f"set_attr {name!r}", messages)

    def render(self) -> tuple[Any, ...]:
        """The frames of every sub-env."""
        return self.call("render")

    def close_extras(self, terminate: bool = False, **kwargs: Any) -> None:
        """Ask every worker to close its envs, then join it (terminating it if it hangs)."""
        for pipe in self.pipes:
            if not terminate:
                try:
                    pipe.send(("close", None))
                    if pipe.poll(_CLOSE_TIMEOUT):
                        pipe.recv()
                except (OSError, EOFError):
                    pass  # the worker is already gone
            pipe.close()
        for process in self.processes:
            process.join(0 if terminate else _CLOSE_TIMEOUT)
            if process.is_alive():
                process.terminate()
                process.join()

    def _gather_infos(self, what: str, messages: list[Any]) -> dict[str, Any]:
        """`_round_trip`, then the workers' (env index, info) entries merged into one info."""
        infos: dict[str, Any] = {}
        for entries in self._round_trip(what, messages):
            for i, info in entries:
                infos = self._add_info(infos, info, i)
        return infos

    def _round_trip(self, what: str, messages: list[Any]) -> list[Any]:
        """Send worker w `messages[w]` (None: only wait) and return every reply in worker
        order. The first error or dead worker closes the pool and raises EnvWorkerError."""
        failures: dict[int, tuple[str, Any]] = {}
        for w, (pipe, message) in enumerate(zip(self.pipes, messages)):
            try:
                if message is not None:
                    pipe.send(message)
            except OSError:
                failures[w] = ("died", None)
        replies = []
        for w, pipe in enumerate(self.pipes):
            if w in failures:
                continue
            try:
                status, payload = pipe.recv()
            except (EOFError, OSError):
                status, payload = "died", None
            if status == "ok":
                replies.append(payload)
            else:
                failures[w] = (status, payload)
        if not failures:
            return replies
        # Name a raised error rather than a worker that died of it or after it.
        w = min(failures, key=lambda k: (failures[k][0] != "error", k))
        status, payload = failures[w]
        if status == "died":
            self.processes[w].join(1.0)  # so its exit code is known
            share = self.shares[w]
            failure = (f"worker {w} (envs {share.start}-{share.stop - 1} of {self.env_name}) "
                       f"died during {what} (exit code {self.processes[w].exitcode})")
        else:
            index, error, trace = payload
            failure = (f"env {index} ({self.env_name}) in worker {w} raised {error} during "
                       f"{what}\n--- worker traceback ---\n{trace}")
        self.close(terminate=True)
        raise EnvWorkerError(failure)

    def _check_open(self) -> None:
        if self.closed:
            raise ClosedEnvironmentError(f"{type(self).__name__} is closed")

    def __repr__(self) -> str:
        return f"WorkerPoolVectorEnv({self.env_name}, num_envs={self.num_envs}, n_workers={self.n_workers})"

    def __del__(self) -> None:
        if not getattr(self, "closed", True):
            self.close(terminate=True)


def _step_arrays(shm_steps: list[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NumPy views of the shared rewards (float64) and terminated / truncated flags."""
    return tuple(np.frombuffer(a, t) for a, t in zip(shm_steps, (np.float64, np.bool_, np.bool_)))


def _worker(first: int, env_fns: CloudpickleWrapper, pipe: Connection, parent_pipe: Connection,
            shm: Any, shm_steps: list[Any], spaces: tuple[Any, Any]) -> None:
    """Build envs `first`, `first + 1`, ... and serve the parent's commands until "close"."""
    # Ctrl-C reaches the whole process group; the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent_pipe.close()
    obs_space, action_space = spaces
    rewards, terminated, truncated = _step_arrays(shm_steps)
    envs: dict[int, Env] = {}  # by env index
    i = first  # the env being built or stepped, named in errors
    try:
        for i, fn in enumerate(env_fns.fn, first):
            envs[i] = fn()
            if envs[i].observation_space != obs_space or envs[i].action_space != action_space:
                raise RuntimeError(f"spaces {envs[i].observation_space}, {envs[i].action_space} "
                                   f"differ from the first env's {obs_space}, {action_space}")
        pipe.send(("ok", None))
        while True:
            command, data = pipe.recv()
            reply = None
            if command == "step":
                reply = []
                for (i, env), action in zip(envs.items(), data):
                    obs, rewards[i], terminated[i], truncated[i], info = env.step(action)
                    if terminated[i] or truncated[i]:
                        # As SyncVectorEnv under SAME_STEP: final obs/info, then the reset's.
                        reply.append((i, {"final_obs": obs, "final_info": info}))
                        obs, info = env.reset()
                    if info:
                        reply.append((i, info))
                    write_to_shared_memory(obs_space, i, obs, shm)
            elif command == "reset":
                todo, options = data
                reply = []
                for i, seed in todo:
                    obs, info = envs[i].reset(seed=seed, options=options)
                    write_to_shared_memory(obs_space, i, obs, shm)
                    if info:
                        reply.append((i, info))
            elif command == "call":
                name, args, kwargs = data
                reply = []
                for i in envs:
                    attr = envs[i].get_wrapper_attr(name)
                    reply.append(attr(*args, **kwargs) if callable(attr) else attr)
            elif command == "set_attr":
                name, values = data
                for i, value in zip(envs, values):
                    envs[i].set_wrapper_attr(name, value)
            elif command != "close":
                raise RuntimeError(f"unknown command {command!r}")
            pipe.send(("ok", reply))
            if command == "close":
                break
    except EOFError:
        pass  # the parent is gone
    except Exception as e:
        try:
            pipe.send(("error", (i, f"{type(e).__name__}: {e}", traceback.format_exc())))
        except OSError:
            pass
    finally:
        for env in envs.values():
            env.close()

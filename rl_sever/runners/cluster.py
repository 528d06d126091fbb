"""Connecting to Ray for env runners (config `ray_address`): `local` starts a Ray instance in
this process's machine (or uses the one this process already started), `auto` joins the
cluster this machine belongs to (`ray start` ran here, or RAY_ADDRESS), `host:port` joins the
head at that address. A cluster that cannot be reached is a ConfigError (one line, exit 2)."""

from __future__ import annotations

import math
import os
import socket

from rl_sever.errors import ConfigError

CONNECT_TIMEOUT_S = 5.0
# Runner groups and learner groups of this process using Ray, and whether one of them started
# it (then the last to finish shuts it down; a Ray the user started stays up).
_USE = {"users": 0, "owned": False}


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("runners need Ray: pip install 'rl_sever[ray]' (or pip install ray)") \
            from None
    return ray


def raised_in(error: Exception) -> BaseException:
    """What an actor's method raised, from Ray's wrapper of it (RayTaskError)."""
    cause = getattr(error, "cause", None)
    return cause if isinstance(cause, BaseException) else error


def on_this_node():
    """A Ray scheduling strategy that places an actor on this process's node if it can."""
    ray = import_ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)


def _check_reachable(address: str) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"ray_address must be local, auto or host:port, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise ConfigError(f"cannot reach the Ray head at {address} ({e.strerror or e}); start "
                          f"it with `ray start --head --port={port}` or fix ray_address") from None


def connect(address: str, runners: int, runner_cpus: float) -> None:
    """Make sure this process is connected to Ray as `address` says (a Ray already running in
    it is used as it is); pair with `release()`."""
    ray = import_ray()
    if not ray.is_initialized():
        _init(ray, address, runners, runner_cpus)
        _USE["owned"] = True
    _USE["users"] += 1


def release() -> None:
    """One user of `connect` is done: the last one shuts down a Ray that `connect` started."""
    _USE["users"] = max(0, _USE["users"] - 1)
    ray = import_ray()
    if not _USE["users"] and _USE["owned"]:
        _USE["owned"] = False
        if ray.is_initialized():
            ray.shutdown()


def _init(ray, address: str, runners: int, runner_cpus: float) -> None:
    # Runners' console output stays in Ray's logs (TensorFlow's start-up lines of every
    # runner); what fails in a runner is raised in the learner (rl_sever.runners.group).
    kwargs = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address == "local":
        # Logical CPUs for every runner, the learner and an inference server: runners of an
        # I/O-bound env may outnumber the cores (docs/scaling.md).
        cpus = max(os.cpu_count() or 1, math.ceil(runners * runner_cpus) + 2)
        ray.init(address="local", num_cpus=cpus, **kwargs)  # not RAY_ADDRESS's cluster
        return
    if address != "auto":
        _check_reachable(address)
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, TimeoutError) as e:
        where = "no running Ray cluster was found" if address == "auto" else str(e).splitlines()[0]
        raise ConfigError(f"ray_address={address}: {where}; start one with `ray start --head` "
                          "or use ray_address=local") from None

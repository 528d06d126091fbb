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


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("runners need Ray: pip install 'rl_sever[ray]' (or pip install ray)") \
            from None
    return ray


def _check_reachable(address: str) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"ray_address must be local, auto or host:port, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise ConfigError(f"cannot reach the Ray head at {address} ({e.strerror or e}); start "
                          f"it with `ray start --head --port={port}` or fix ray_address") from None


def connect(address: str, runners: int, runner_cpus: float) -> bool:
    """Make sure this process is connected to Ray as `address` says; True when this call
    started or joined it (the caller then shuts it down when done)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    # Runners' console output stays in Ray's logs (TensorFlow's start-up lines of every
    # runner); what fails in a runner is raised in the learner (rl_sever.runners.group).
    kwargs = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address == "local":
        # Logical CPUs for every runner and the learner: runners of an I/O-bound env may
        # outnumber the cores (docs/scaling.md).
        cpus = max(os.cpu_count() or 1, math.ceil(runners * runner_cpus) + 1)
        ray.init(num_cpus=cpus, **kwargs)
        return True
    if address != "auto":
        _check_reachable(address)
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, TimeoutError) as e:
        where = "no running Ray cluster was found" if address == "auto" else str(e).splitlines()[0]
        raise ConfigError(f"ray_address={address}: {where}; start one with `ray start --head` "
                          "or use ray_address=local") from None
    return True

"""TensorFlow's intra-op thread pool for a run (config `intra_op_threads`).

TensorFlow fixes its thread pools when it runs its first op, so the setting applies when an
agent is built in a process where TensorFlow has not run yet (the CLI's runs, a script that
builds its agent first). `auto` asks the agent for its preference (`Agent.auto_intra_op_threads`)
and keeps TensorFlow's pools as they are where they are already fixed; an explicit number that
cannot apply is an error naming the remedy. Why one thread suits small MLP updates on CPU:
docs/offpolicy.md#speed (SAC) and docs/performance.md (PPO).
"""

from __future__ import annotations

import tensorflow as tf

from rl_sever.core.quiet import warm_up_quietly
from rl_sever.errors import ConfigError
from rl_sever.nn.encoders import is_image


def apply_intra_op_threads(setting: int | str, preferred: int) -> int:
    """Apply config `intra_op_threads` (`auto`: `preferred`, 0 meaning TensorFlow's default);
    returns the setting in effect (0: TensorFlow's default)."""
    explicit = setting != "auto"
    wanted = int(setting) if explicit else int(preferred)
    current = tf.config.threading.get_intra_op_parallelism_threads()
    if wanted == current:
        warm_up_quietly()
        return current
    try:
        tf.config.threading.set_intra_op_parallelism_threads(wanted)
        warm_up_quietly()  # the CLI's first ops, now that the pools are set
    except RuntimeError:
        if not explicit:
            return current
        raise ConfigError(
            f"intra_op_threads={wanted} cannot apply: TensorFlow has already run in this process "
            f"and fixed its intra-op threads at its first op ({current or 'its default'}). Build "
            "the agent before any other TensorFlow work, call "
            "tf.config.threading.set_intra_op_parallelism_threads at the start, or use "
            "intra_op_threads=auto") from None
    return wanted


def small_mlp_on_cpu(agent) -> bool:
    """The agent's networks are MLPs on vectors (no image, no Dict, no user encoder) and no GPU
    is visible: their updates are many small ops, run fastest on one intra-op thread (the
    executor runs independent ops side by side; a pool's hand-offs cost more than they split)."""
    return (agent.user_encoder is None and not isinstance(agent.obs_shape, dict)
            and not is_image(agent.obs_shape, agent.obs_dtype)
            and not tf.config.list_physical_devices("GPU"))

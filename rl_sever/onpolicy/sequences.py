"""Sequences for a recurrent on-policy update (network.recurrent; docs/recurrent.md).

A rollout [T, N, ...] is cut per env into sequences of L steps (config bptt_length): [N * T / L,
L, ...], env by env, in time order. Each sequence carries the state its policy had at its first
step (`state0`, stored by the collector, already zero where an episode began there) and
`starts` [C, L]: the steps before which an episode ended inside the sequence, where the
recurrent core zeroes its state (rl_sever.nn.recurrent.RecurrentCore.sequence), so no memory and
no gradient crosses an episode boundary. Sequences have one length, so none is padded; a
minibatch is a set of whole sequences, flattened sequence-major [C_mb * L, ...] for the loss
terms (which read per-sample values as in a feed-forward update).
"""

from __future__ import annotations

import tensorflow as tf

PER_SEQUENCE = ("state0", "starts")  # fields with one row per sequence, not per step


def env_major(x):
    """[T, N, ...] -> [N, T, ...] (each key of a Dict observation)."""
    return tf.nest.map_structure(lambda v: tf.transpose(v, [1, 0, *range(2, v.shape.rank)]), x)


def episode_starts(dones: tf.Tensor) -> tf.Tensor:
    """[N, T] flags of the steps whose observation began an episode inside the rollout (the
    step before ended one); the first step's state comes from the collector."""
    return tf.concat([tf.zeros_like(dones[:, :1]), dones[:, :-1]], axis=1)


def cut(x, length):
    """Env-major [N, T, ...] -> sequences [N * T / length, length, ...] (each key of a Dict)."""
    return tf.nest.map_structure(lambda v: tf.reshape(v, [-1, length, *v.shape[2:]]), x)


def sequence_data(steps: dict, state: tf.Tensor, starts: tf.Tensor, length) -> dict:
    """`steps`: per-step fields, env-major [N, T, ...]; `state` [N, T, S] the states the policy
    acted with; `starts` [N, T]. Returns the fields cut into sequences of `length` steps, with
    each sequence's first state and its episode starts."""
    out = {k: cut(v, length) for k, v in steps.items()}
    out["state0"] = cut(state, length)[:, 0]
    out["starts"] = cut(starts, length)
    return out


def flatten(mb: dict) -> dict:
    """A minibatch of sequences as the loss terms read it: per-step fields [C * L, ...]."""
    return {k: v if k in PER_SEQUENCE
            else tf.nest.map_structure(lambda x: tf.reshape(x, [-1, *x.shape[2:]]), v)
            for k, v in mb.items()}

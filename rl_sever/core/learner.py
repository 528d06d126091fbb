"""The learner: one gradient step for every algorithm, inside the compiled update.

An algorithm's step is a sequence of phases. A phase trains one or more optimizer groups from
one forward pass: its loss terms are computed once under one tape per group, each tape
watching exactly the variables of its group's optimizer (`watch_accessed_variables=False`), so
a term reaches only the group that lists it, by construction. The group's loss is the weighted
sum of the terms it lists; its gradients are applied by its ModuleOptimizer (frozen modules
skipped, global-norm clipping), then the phase's `after` runs (a Polyak target update). A
phase with `every` > 1 runs on every k-th step only (TD3's policy delay), a tf.cond on the
step counter.

PPO and A2C are one phase, one group, run over epochs × minibatches; SAC is a critic phase,
then an actor phase with the actor and temperature groups and the target update; TD3 the
same with `every=policy_delay`. Under a multi-replica strategy each replica builds the same
tapes on its slice of the batch and the gradients are averaged (rl_sever.core.distribute).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import tensorflow as tf

from rl_sever.core import metrics
from rl_sever.core.agent import SEEDS_PER_STEP
from rl_sever.core.optim import ModuleOptimizer
from rl_sever.nn.layers import tf_variables

SEEDS_PER_PHASE = 8  # sub-seeds of a step's seed each phase may use (Agent.sub_seed)
PHASES_PER_SEED = SEEDS_PER_STEP // SEEDS_PER_PHASE
Losses = Callable[[Any, Any], tuple[dict[str, tf.Tensor], dict[str, tf.Tensor]]]


class Phase(NamedTuple):
    """Optimizer groups trained together from one forward pass."""

    groups: tuple[str, ...]
    """The groups (keys of Learner.optimizers) this phase trains."""
    losses: Losses
    """(batch, seed) -> ({term: scalar}, {metric: tensor}): the forward pass."""
    keys: tuple[str, ...] = ()
    """The raw metric keys `step` returns (empty: the terms and metrics `losses` returns)."""
    every: int = 1
    """Run on every k-th step only (counted by the step counter given to `step`)."""
    after: Callable[[], None] | None = None
    """Runs after the gradients are applied (e.g. the Polyak target update)."""


class Learner:
    """Tapes, gradients and updates of every algorithm (see the module docstring)."""

    def __init__(self, optimizers: Mapping[str, ModuleOptimizer],
                 terms_of: Callable[[str], Sequence[str]], weight: Callable[[str], tf.Variable],
                 replicas=None):
        """`terms_of(group)`: the names of the terms a group minimises; `weight(term)`: the
        term's weight variable (read at trace time: weights change by assignment)."""
        self.optimizers, self.terms_of, self.weight = optimizers, terms_of, weight
        self.replicas = replicas

    def gradients(self, phase: Phase, batch, seed=None):
        """({group: loss}, {term and metric: tensor}, {group: gradients}) of one phase on
        `batch`: one tape per group, each watching exactly its optimizer's variables."""
        watched = {g: tf_variables(self.optimizers[g].all_variables) for g in phase.groups}
        with contextlib.ExitStack() as stack:
            tapes = {g: stack.enter_context(tf.GradientTape(watch_accessed_variables=False))
                     for g in phase.groups}
            for g in phase.groups:
                tapes[g].watch(watched[g])
            terms, extras = phase.losses(batch, seed)
            losses = {g: tf.debugging.check_numerics(
                tf.add_n([self.weight(t) * terms[t] for t in self.terms_of(g)]), f"{g} loss")
                for g in phase.groups}
        grads = {g: tapes[g].gradient(losses[g], watched[g]) for g in phase.groups}
        return losses, {**terms, **extras}, grads

    def run(self, phase: Phase, batch, seed=None) -> dict[str, tf.Tensor]:
        """One phase: gradients (averaged over replicas), applied; its values, with each
        group's `<group>_loss` and `<group>_grad_norm`."""
        if self.replicas is not None and self.replicas.distributed:
            (group,) = phase.groups  # the strategies mirror one optimizer (on-policy)

            def flat(part):
                losses, values, grads = self.gradients(phase, part, seed)
                return losses[group], values, grads[group]

            variables = self.optimizers[group].all_variables
            loss, values, grads = self.replicas.gradients(flat, batch, variables)
            losses, grads = {group: loss}, {group: grads}
        else:
            losses, values, grads = self.gradients(phase, batch, seed)
        for g in phase.groups:
            values[f"{g}_grad_norm"] = self.optimizers[g].apply(grads[g])
            values[f"{g}_loss"] = losses[g]
        if phase.after is not None:
            with tf.control_dependencies([values[f"{g}_grad_norm"] for g in phase.groups]):
                phase.after()
        return values

    def step(self, phases: Sequence[Phase], batch, seed, count: tf.Tensor | None = None):
        """The phases in order on `batch`; raw metrics (rl_sever.core.metrics) of each phase's
        `keys`; a phase skipped by its `every` adds count 0."""
        if len(phases) > PHASES_PER_SEED:
            raise ValueError(f"at most {PHASES_PER_SEED} phases share one step's seed")
        out = {}
        for i, phase in enumerate(phases):
            sub = None if seed is None else seed + tf.constant([0, SEEDS_PER_PHASE * i], tf.int32)

            def run(phase=phase, sub=sub):
                values = self.run(phase, batch, sub)
                own = [f"{g}_{k}" for g in phase.groups for k in ("loss", "grad_norm")]
                keys = phase.keys or [k for k in values if k not in own]
                return metrics.tally({k: values[k] for k in keys})

            if phase.every == 1:
                out.update(run())
            else:
                out.update(tf.cond(count % phase.every == 0, run,
                                   lambda phase=phase: metrics.skipped(phase.keys)))
        return out

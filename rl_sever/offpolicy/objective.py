"""The off-policy objective (rl_sever.core.terms) sorted into optimizer groups: each term
trains exactly one of critic, actor or SAC's alpha, whose optimizer updates only its own
modules, so no term reaches another group's variables; every term is probed at construction.
"""

from __future__ import annotations

import tensorflow as tf

from rl_sever.core.agent import SEEDS_PER_STEP
from rl_sever.core.terms import TermsOwner
from rl_sever.errors import ConfigError
from rl_sever.objective import binding
from rl_sever.objective.term import LossTerm
from rl_sever.offpolicy.replay import Transitions

GROUPS = ("critic", "actor", "alpha")  # optimizer groups; a term trains exactly one of them


def probe_seed(config_seed: int) -> tf.Tensor:
    """A fixed seed outside the training stream (the audit and the construction probe)."""
    return tf.constant([config_seed % 2**31, 2**31 - SEEDS_PER_STEP], tf.int32)


class OffPolicyObjective(TermsOwner):
    """Objective construction and term grouping, mixed into OffPolicyAgent."""

    def _aux_trains(self) -> bool:
        return self.trains_encoder("aux")

    def _build_objective(self) -> None:
        """The agent's terms, one per auxiliary module, then config.losses and `losses`; each
        term's own networks are built and the term is sorted into its optimizer group."""
        objective = self._assemble_objective()
        self._built_terms: dict = {}
        self.term_modules = binding.build_term_modules(
            self, objective, {**self.flow_modules(), "targets": []}, self._built_terms)
        groups: dict[str, list[LossTerm]] = {g: [] for g in GROUPS}
        for term in objective:
            groups[self.group_of(term)].append(term)
        for g in ("critic", "actor", *(["alpha"] if self.group_available("alpha") else [])):
            if not groups[g]:
                raise ConfigError(f"the objective of {self.algo} needs at least one term in the "
                                  f"'{g}' group (terms: {', '.join(objective.names) or 'none'})")
        self._objective, self._groups = objective, groups
        self._term_metrics: dict[str, list[str]] = {}  # term name -> its metrics (_probe_terms)

    def own_modules(self, group: str) -> dict[str, list]:
        """The networks owned by the terms of `group` (its optimizer updates them)."""
        return {name: variables for t in self._groups[group]
                for name, variables in self._built_terms[id(t)][1].items()}

    def _check_edit(self, what: str = "") -> None:
        raise ConfigError("the off-policy agents build their optimizers and compiled update "
                          "for their terms: add, remove or replace terms with the `losses` "
                          "constructor argument or config key; weights can change any time "
                          "(objective.set_weight)")

    def group_available(self, group: str) -> bool:
        return group in ("critic", "actor") or group in self.policy_modules()

    def group_optimizer_modules(self, group: str) -> set[str]:
        if group == "critic":
            return set(self.critic_side_modules())
        if group == "actor":
            return set(self.actor_side_modules())
        return set(self.policy_modules()) if group == "alpha" else set()

    def group_modules(self, group: str, base: set[str]) -> set[str]:
        """`base` plus the shared encoder when the losses of `group` may train it (the default
        terms' contracts; custom terms may use it: trains=lambda a: a.group_modules(...))."""
        source = "critic" if group == "critic" else "actor"
        enc = self.encoder is not None and group != "alpha" and self.trains_encoder(source)
        return set(base) | ({"encoder"} if enc else set())

    def group_of(self, term: LossTerm) -> str:
        """The optimizer group of a term: the one of critic / actor / alpha it trains; a term
        that trains none of them (an auxiliary loss, a term's own head) joins the critic side,
        whose optimizer also updates the shared encoder and such networks."""
        must = set(term.flow(self).must)
        found = [g for g in GROUPS if g in must]
        own = set(self._built_terms[id(term)][1])
        if len(found) > 1 or (not found and not must):
            raise ConfigError(
                f"loss term '{term.name}' must train exactly one of the modules "
                f"{', '.join(GROUPS[:2 + self.group_available('alpha')])} (that picks its "
                f"optimizer) or only critic-side modules; it declares trains={sorted(must)}")
        g = found[0] if found else "critic"
        allowed = self.group_optimizer_modules(g) | own
        if not self.group_available(g) or not must <= allowed:
            raise ConfigError(
                f"loss term '{term.name}' trains {sorted(must)}, but the '{g}' optimizer of "
                f"{self.algo} updates {sorted(allowed) or 'nothing'} with this config")
        return g

    def _probe_terms(self) -> None:
        """Evaluate every term once, eagerly, on a tiny all-zero batch: a term that fails, reads
        an output the agent lacks or does not return a scalar is a ConfigError naming it, at
        construction. A fixed seed; no variable changes."""
        zeros = Transitions.spec(self.layout, (2,)).map(lambda s: tf.zeros(s.shape, s.dtype))
        seed = probe_seed(self.config.seed)
        # Evaluates every group's terms and records the metric names they return, which the
        # compiled update reports as raw keys (see metric_keys).
        self._term_metrics = self._record_metric_names(
            lambda: (self.critic_terms(zeros, seed), self.actor_terms(zeros, seed)))

    def evaluate_group(self, group: str, mb, out) -> tuple[dict[str, tf.Tensor], dict[str, tf.Tensor]]:
        """({term name: value}, {metric key: value}) of the terms of `group` on one batch."""
        return self.evaluate_terms(self.terms_of(group), mb, out)

    def metric_keys(self, *groups: str) -> list[str]:
        """Raw metric keys of the terms of `groups`: each term's name, then its metrics."""
        terms = self.terms_of(*groups)
        return [t.name for t in terms] + [t.metric_key(m) for t in terms
                                          for m in self._term_metrics.get(t.name, [])]

    def terms_of(self, *groups: str) -> list[LossTerm]:
        return [t for g in groups for t in self._groups[g]]

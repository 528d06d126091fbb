"""An agent's objective, for every family: assembling it (the page's default terms, the
auxiliary modules' terms, then config.losses and the `losses` argument), evaluating terms on a
batch (a failing term is named; its metric names are recorded by the construction probe), and
reacting to edits. Each family binds the terms to its optimizer groups
(rl_sever.onpolicy.objective, rl_sever.offpolicy.objective)."""

from __future__ import annotations

import tensorflow as tf

from rl_sever.audit import FlowContract
from rl_sever.errors import ConfigError
from rl_sever.objective import Objective, binding
from rl_sever.objective.evaluate import evaluate_term


class TermsOwner:
    """Mixed into the family bases; they provide `default_objective`, `_aux_trains`, `_rebind`
    (after a structural edit) and `_updated` (or their own `_check_edit`)."""

    _recording: dict[str, list[str]] | None = None  # set while a probe records metric names

    def _assemble_objective(self) -> Objective:
        cfg = self.config
        objective = self.default_objective() + Objective(
            self.aux.terms(self._aux_trains(), cfg.aux_weights))
        for edit in [*cfg.losses, *self._loss_edits]:
            objective.apply(edit)
        objective._listener = self._objective_changed
        return objective

    @property
    def objective(self) -> Objective:
        """The named, weighted loss terms (rl_sever.objective): terms can be added, removed or
        replaced before the first update, weights changed any time."""
        return self._objective

    @objective.setter
    def objective(self, objective: Objective) -> None:
        self._check_edit("agent.objective = ...")
        self._objective._listener = None
        self._objective = objective
        objective._listener = self._objective_changed
        self._rebind()

    def _objective_changed(self, kind: str) -> None:
        if kind == "check":
            self._check_edit()
        elif kind == "structure":
            self._rebind()
        else:  # weights: the variables are the terms' own; refresh the schedules
            self.loss_weights = {t.name: t.weight for t in self._objective}
            self.schedules = {k: v for k, v in self.schedules.items() if not k.startswith("w_")}
            self.schedules.update(binding.weight_schedules(self._objective))

    def _check_edit(self, what: str = "objective edit") -> None:
        """Before a structural edit (a term added, removed or replaced)."""
        binding.guard_structure(self._updated, what)

    def evaluate_terms(self, terms, mb, out, check: bool = True):
        """({term name: value}, {metric key: value}) of `terms` on one batch; with `check`,
        a non-finite value stops the compiled step naming the term."""
        values, metrics = {}, {}
        for term in terms:
            try:
                value, m = evaluate_term(term, mb, out)
            except ConfigError:
                raise
            except Exception as e:  # the user's code: name the term, keep the cause
                where = " on a probe minibatch" if self._recording is not None else ""
                raise ConfigError(f"loss term '{term.name}' failed{where}: "
                                  f"{type(e).__name__}: {e}") from e
            if check:
                value = tf.debugging.check_numerics(value, f"loss term '{term.name}'")
            values[term.name] = value
            metrics.update(m)
            if self._recording is not None:
                self._recording[term.name] = binding.metric_names(term, m)
        return values, metrics

    def flow_contract(self) -> FlowContract:
        """Each term's declared contract (defaults, auxiliary and custom terms alike); a module
        in no term's `may` set (e.g. target networks) may receive nothing."""
        return FlowContract({t.name: t.flow(self) for t in self._objective})

    def terms_trackables(self) -> dict:
        """What a checkpoint holds of the objective: the loss weights, the terms' own networks
        and state, the auxiliary modules."""
        out = {"loss_weights": self.loss_weights}
        terms = binding.term_trackables(self._objective, self._built_terms)
        if terms:
            out["loss_terms"] = terms
        if len(self.aux):
            out["aux"] = self.aux
        return out

    def _record_metric_names(self, probe) -> dict[str, list[str]]:
        """Run `probe` (evaluating every term once) and return each term's metric names."""
        self._recording = {}
        try:
            probe()
            return self._recording
        finally:
            self._recording = None

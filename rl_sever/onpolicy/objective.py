"""The objective of the on-policy agents (PPO, A2C): binding its named loss terms to the agent.

`OnPolicyObjective` is the part of OnPolicyAgent (rl_sever.onpolicy.agent) that turns the
objective (rl_sever.objective: the defaults, the auxiliary modules' terms, config.losses and
the `losses` argument) into what the compiled update needs: each term's own networks, one
optimizer over every module, the weights and their schedules, the compiled steps; rebuilds them
after a structural edit before the first update; and checks every term at construction (a
synthetic rollout) and on the first real minibatch (finite values) before anything trains.
"""

from __future__ import annotations

import tensorflow as tf

from rl_sever.config.run import parse_grad_from
from rl_sever.config.schedules import Scheduled
from rl_sever.core.learner import Learner, Phase
from rl_sever.core.optim import ModuleOptimizer
from rl_sever.core.rollout import Rollout
from rl_sever.objective import LossTerm, Objective, binding
from rl_sever.objective.evaluate import check_finite
from rl_sever.onpolicy.ingraph import InGraphTrainer


class OnPolicyObjective:
    """Objective binding and checks, mixed into OnPolicyAgent."""

    @property
    def objective(self) -> Objective:
        """The named loss terms the update minimises (edit before the first update; weights
        any time)."""
        return self._objective

    @objective.setter
    def objective(self, objective: Objective) -> None:
        binding.guard_structure(self._updated, "agent.objective = ...")
        self._objective._listener = None
        self._objective = objective
        self._rebind()

    def _aux_terms(self) -> list[LossTerm]:
        """One term per auxiliary module, with the module's own flow contract."""
        cfg = self.config
        trains = (self.model.encoder is not None
                  and "aux" in parse_grad_from(cfg.network.encoder_grad_from))
        return self.aux.terms(trains, cfg.aux_weights)

    def _bind_objective(self) -> None:
        """Build the terms' networks, the optimizer over every module, the weights and the
        compiled steps for the current objective."""
        cfg = self.config
        self._objective._listener = self._objective_changed
        base = {**self.model.modules(), **self.aux.modules()}
        self.term_modules = binding.build_term_modules(self, self._objective, base, self._built_terms)
        self._modules = {**base, **self.term_modules}
        previous = getattr(self, "optimizer", None)
        self.optimizer = ModuleOptimizer(
            self._modules,
            learning_rate=previous.learning_rate if previous is not None else cfg.learning_rate,
            kind=cfg.optimizer,
            epsilon=cfg.adam_eps,
            max_grad_norm=cfg.max_grad_norm if cfg.max_grad_norm > 0 else None,
            # Fused kernels pay where each op is scheduled on its own; XLA fuses by itself.
            fused=not cfg.jit_compile,
        )
        if previous is None:
            self.schedules = {"learning_rate": Scheduled(self.optimizer.learning_rate,
                                                          cfg.lr_schedule, cfg.learning_rate)}
        self._objective_changed("weights")
        self.learner = Learner({"model": self.optimizer}, lambda group: self._objective.names,
                               lambda term: self.loss_weights[term], self.replicas)
        self.phase = Phase(("model",), lambda mb, seed: self.loss_terms(mb))
        self._term_metrics = self._probe_terms()
        self._preflight_done = False
        self.train_fn = self.update_function(jit_compile=bool(cfg.jit_compile))
        self.prepare_fn = tf.function(self._prepare, input_signature=self._rollout_signature,
                                      autograph=False)

    def update_function(self, jit_compile: bool):
        """The compiled update on one rollout (traced without AutoGraph: explicit loops)."""
        return tf.function(self._train, input_signature=self._rollout_signature,
                           jit_compile=jit_compile, autograph=False)

    def _objective_changed(self, kind: str) -> None:
        if kind == "check":
            binding.guard_structure(self._updated, "objective edit")
        elif kind == "structure":
            self._rebind()
        else:  # weights: the variables are the terms' own; refresh the schedules
            self.loss_weights = {t.name: t.weight for t in self._objective}
            self.schedules = {k: v for k, v in self.schedules.items() if not k.startswith("w_")}
            self.schedules.update(binding.weight_schedules(self._objective))

    def _rebind(self) -> None:
        """After a structural edit (before the first update): rebuild what depends on the terms."""
        with self.replicas.scope():  # the new optimizer's slots: one copy per replica
            self._bind_objective()
        if self.ingraph is not None and self.ingraph.iteration_fn.experimental_get_tracing_count():
            self.ingraph = InGraphTrainer(self, self.ingraph.env)
            self._collector = None  # its collector ran the old trainer
        self.checkpoint = self._make_checkpoint()
        self._checkpointer = None

    def _updated(self) -> bool:
        opt = getattr(self, "optimizer", None)
        return opt is not None and any(int(o.iterations.numpy()) > 0 for o in opt.optimizers.values())

    def _probe_terms(self) -> dict[str, list[str]]:
        """Evaluate the terms on a tiny synthetic rollout: bad return values fail here, at
        construction, and the compiled step learns each term's metric names."""
        T, N = 2, 1
        zeros = Rollout.spec(self.layout, (T, N)).map(lambda s: tf.zeros(s.shape, s.dtype))
        with binding.rng_kept(self):
            data = self._prepare(*zeros)
            mb = self._minibatch(data, tf.range(T * N))
            return binding.probe_terms(self._objective, mb, self.forward(mb))

    def _preflight(self, batch) -> None:
        """Every term finite on the first real minibatch, before anything is updated."""
        with binding.rng_kept(self):
            data = self.prepare_fn(*Rollout.of(batch))
            n = int(data["returns"].shape[0])
            terms, _ = self.loss_terms(self._minibatch(data, tf.range(min(self.minibatch_size(), n))),
                                       check=False)
            check_finite(terms)
        self._preflight_done = True

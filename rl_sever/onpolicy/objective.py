"""Binding the on-policy objective (rl_sever.core.terms) to OnPolicyAgent: the terms' own
networks, one optimizer over every module, weights and schedules, the compiled steps (rebuilt
after a structural edit before the first update); every term checked at construction on a
synthetic rollout and finite on the first real minibatch before anything trains.
"""

from __future__ import annotations

import tensorflow as tf

from rl_sever.config.run import parse_grad_from
from rl_sever.config.schedules import Scheduled
from rl_sever.core import counters
from rl_sever.core.compiled import FastCall, per_agent
from rl_sever.core.learner import Learner, Phase
from rl_sever.core.optim import ModuleOptimizer
from rl_sever.core.rollout import Rollout
from rl_sever.core.terms import TermsOwner
from rl_sever.objective import binding
from rl_sever.objective.evaluate import check_finite
from rl_sever.onpolicy.ingraph import InGraphTrainer


class OnPolicyObjective(TermsOwner):
    """Objective binding and checks, mixed into OnPolicyAgent."""

    def _aux_trains(self) -> bool:
        """Whether the auxiliary terms may train the shared encoder."""
        return (self.model.encoder is not None
                and "aux" in parse_grad_from(self.config.network.encoder_grad_from))

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
            # Fused kernels pay where each op is scheduled on its own; XLA fuses by itself
            # (under `auto` the update may run either way: the kernels compile under XLA too).
            fused=cfg.jit_compile is not True,
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
        self.train_fn = self.update_function(jit_compile=cfg.jit_compile is True)

    def update_function(self, jit_compile: bool):
        """The compiled update on one rollout (traced without AutoGraph: explicit loops)."""
        def train(*rollout):
            with self.tracing(jit_compile):
                return self._train(*rollout)

        return per_agent(tf.function(train, input_signature=self._rollout_signature,
                                     jit_compile=jit_compile, autograph=False))

    def _train_call(self, counted: bool = False) -> tuple[FastCall, object]:
        """The update as one call (rl_sever.core.compiled), and the host policy it returns the
        new weights to (or None): a separate read per rollout cost a second call (A2C CartPole:
        2,500 per 100k steps). `counted`: the call also takes the loop's step and iteration and
        sets the counters before the update (two eager writes less per iteration; 130-170 µs
        each inside a run on a 2-core AMD EPYC). The objective may rebuild train_fn: hence
        the identity check."""
        host = self._host_policy()
        # On tf: envs the fused iteration trains (rl_sever.onpolicy.ingraph); this update runs
        # only where a user calls train() directly, without XLA (its compile is not won back).
        train_fn = self.train_fn_for(self.ingraph is None and self.uses_xla())
        cache = self.__dict__.setdefault("_fast_trains", {})  # with and without the counters
        fast = cache.get(counted)
        if fast is None or fast[0] is not train_fn or fast[2] is not host:
            fn = train_fn
            if host is not None or counted:
                def update(*args):
                    rollout = args[:-2] if counted else args
                    if counted:  # before the update, which may read them (a user's term)
                        counters.write(self.global_step, args[-2])
                        counters.write(self.iteration, args[-1])
                    out = train_fn(*rollout)
                    if host is None:
                        return out
                    with tf.control_dependencies(tf.nest.flatten(out)):
                        return out, host.read_variables()

                count = [tf.TensorSpec([], tf.int64)] * 2 if counted else []
                fn = per_agent(tf.function(
                    update, input_signature=[*self._rollout_signature, *count], autograph=False))
            cache[counted] = fast = (train_fn, FastCall(fn), host)
        return fast[1], fast[2]

    def train_fn_for(self, xla: bool):
        """train_fn, or the same update compiled the other way (made once per train_fn)."""
        if xla == (self.config.jit_compile is True):
            return self.train_fn
        other = getattr(self, "_other_train", None)
        if other is None or other[0] is not self.train_fn:
            self._other_train = other = (self.train_fn, self.update_function(jit_compile=xla))
        return other[1]

    def _rebind(self) -> None:
        """After a structural edit (before the first update): rebuild what depends on the terms."""
        with self.replicas.scope():  # the new optimizer's slots: one copy per replica
            self._bind_objective()
        if self.ingraph is not None and self.ingraph.traced():
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
            mb = self._minibatch(data, None)
            return self._record_metric_names(lambda: self.loss_terms(mb, check=False))

    def prepare_fn(self, *rollout):
        """`_prepare` on a collected rollout's fields (arrays), run eagerly: it runs once per
        learn() call, for the first update's audit and preflight. Compiled, it was traced once
        per agent, at several times the cost of running it (PPO CartPole's tiny rollout: 0.18 s
        against 0.03 s), and from the fifth agent built in one process (seeds in a loop, a tune
        worker's trials) TensorFlow warned of frequent retracing."""
        return self._prepare(*[
            tf.nest.map_structure(lambda spec, value: tf.convert_to_tensor(value, spec.dtype),
                                  spec, value)
            for spec, value in zip(self._rollout_signature, rollout, strict=True)])

    def _first_minibatch(self, batch):
        data = self.prepare_fn(*Rollout.of(batch))
        rows = self.minibatch_size() // self.seq_len  # transitions, or sequences
        return self._minibatch(data, tf.range(min(rows, int(data["returns"].shape[0]))))

    def _preflight(self, mb) -> None:
        """Every term finite on the first real minibatch, before anything is updated (a NaN
        term fails by name, not as a NaN in the update or the audit's matrix)."""
        with binding.rng_kept(self):
            check_finite(self.loss_terms(mb, check=False)[0])
        self._preflight_done = True

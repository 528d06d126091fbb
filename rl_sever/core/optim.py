"""Per-module optimisation: one optimizer state per named module, each with a frozen flag.

Agents group their variables into named modules (actor, critic, encoder, ...). Every module gets
its own Keras optimizer sharing one learning-rate tf.Variable, and a boolean tf.Variable
`frozen[name]`. A frozen module's update is skipped inside the compiled step (tf.cond), so its
variables stay bit-identical and its optimizer slots do not move, and flipping the flag does not
retrace the step. A step whose gradient norm is not finite changes nothing either. Global-norm
gradient clipping counts only the modules that are not frozen.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import keras
import tensorflow as tf

from rl_sever.core.fused_update import FusedUpdate
from rl_sever.errors import ConfigError

OPTIMIZERS: dict[str, Callable[..., keras.optimizers.Optimizer]] = {
    "adam": lambda lr, eps: keras.optimizers.Adam(learning_rate=lr, epsilon=eps),
    # Keras divides by sqrt(v + eps), torch and the A3C paper by sqrt(v) + eps; eps**2 inside the
    # root gives the usual semantics (with eps=1e-5 the Keras form floors the step at ~3e-3).
    "rmsprop": lambda lr, eps: keras.optimizers.RMSprop(learning_rate=lr, rho=0.99, epsilon=eps**2),
    "sgd": lambda lr, eps: keras.optimizers.SGD(learning_rate=lr),
}


class ModuleOptimizer(tf.Module):
    """Applies gradients module by module, honouring per-module frozen flags."""

    def __init__(self, modules: Mapping[str, Sequence[tf.Variable]], *,
                 learning_rate: float | tf.Variable, kind: str = "adam", epsilon: float = 1e-5,
                 max_grad_norm: float | None = None, fused: bool = False,
                 name: str = "module_optimizer"):
        super().__init__(name=name)
        if kind not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer '{kind}'; choose one of {sorted(OPTIMIZERS)}")
        self.learning_rate = (learning_rate if isinstance(learning_rate, tf.Variable) else
                              tf.Variable(float(learning_rate), trainable=False, name="lr"))
        self.max_grad_norm = max_grad_norm
        self.module_names = [n for n, v in modules.items() if len(v) > 0]
        self._vars = {n: list(modules[n]) for n in self.module_names}
        self.frozen = {n: tf.Variable(False, trainable=False, name=f"frozen_{n}") for n in self.module_names}
        lr = self.learning_rate
        self.optimizers = {}
        for n in self.module_names:
            opt = OPTIMIZERS[kind](lambda: lr, epsilon)  # callable: reads the variable each step
            opt.build(self._vars[n])  # slots exist before tracing, so tf.cond branches can use them
            self.optimizers[n] = opt
        # `fused`: one kernel per variable (rl_sever.core.fused_update). Plain objects: their
        # scratch variables are not part of the checkpoint.
        self._fused = {n: FusedUpdate(self.optimizers[n], lambda: lr.read_value(), self._vars[n])
                       for n in (self.module_names if fused else [])}

    def variables_of(self, module: str) -> list[tf.Variable]:
        return self._vars[module]

    @property
    def all_variables(self) -> list[tf.Variable]:
        return [v for n in self.module_names for v in self._vars[n]]

    def set_frozen(self, module: str, frozen: bool) -> None:
        if module not in self.frozen:
            raise ConfigError(f"unknown module '{module}'; modules are {self.module_names}")
        self.frozen[module].assign(frozen)

    def apply(self, grads: Sequence[tf.Tensor | None]) -> tf.Tensor:
        """Apply `grads` (ordered like `all_variables`); returns the pre-clip global norm."""
        grads = list(grads)
        if len(grads) != len(self.all_variables):
            raise ValueError("one gradient per variable of all_variables is expected")
        it = iter(grads)
        per_module = {n: [next(it) for _ in self._vars[n]] for n in self.module_names}
        sq = []
        for n in self.module_names:
            present = [g for g in per_module[n] if g is not None]
            if present:
                s = tf.add_n([tf.reduce_sum(tf.square(tf.convert_to_tensor(g))) for g in present])
                sq.append(tf.where(self.frozen[n], tf.zeros_like(s), s))
        global_norm = tf.sqrt(tf.add_n(sq)) if sq else tf.constant(0.0)
        # A NaN or inf gradient stops the step before any variable changes (rl_sever.core.finite).
        global_norm = tf.debugging.check_numerics(global_norm, "gradient norm")
        # XLA compiles that check away: there a non-finite step is skipped by the cond below.
        nonfinite = tf.logical_not(tf.math.is_finite(global_norm))
        scale = (tf.constant(1.0) if self.max_grad_norm is None else
                 tf.minimum(1.0, self.max_grad_norm / (global_norm + 1e-6)))
        with tf.control_dependencies([global_norm]):  # the check runs before any update
            for n in self.module_names:
                pairs = [(g * scale, v) for g, v in zip(per_module[n], self._vars[n])
                         if g is not None]
                if not pairs:
                    continue
                opt = self.optimizers[n]

                def _apply(opt=opt, pairs=pairs, n=n):
                    if n not in self._fused or not self._fused[n].apply(pairs):
                        opt.apply_gradients(pairs)
                    return tf.constant(True)

                tf.cond(self.frozen[n] | nonfinite, lambda: tf.constant(False), _apply)
        return global_norm

"""Optimizer steps as TensorFlow's fused kernels (`ResourceApplyAdam`, `ResourceApplyRMSProp`,
`ResourceApplyGradientDescent`): one op per variable where a Keras optimizer builds about ten,
each costing a small network's update more in scheduling than in arithmetic (about a fifth of
the A2C CartPole update call); on the Keras optimizer's own slot variables (checkpoints
unchanged; the iteration counter advances as Keras's does). The same formulas, not bit for bit: slots agree to ~1e-5 relative,
and a first Adam step is the exact lr * g / (|g| + eps') where Keras's float32 bias correction
is off by ~7e-6. Constraints apply after the kernels, as in Keras; under a tf.distribute
strategy the kernel runs once per device copy. Used when asked (`fused=True`, every update
without XLA, which fuses the elementwise ops itself); settings the kernels do not cover
(amsgrad, centered RMSprop, momentum, weight decay, EMA, clipping inside the optimizer,
accumulation, other dtypes) keep Keras's update. Figures: README.md and bench/README.md.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def _plain(opt) -> bool:
    return not (getattr(opt, "use_ema", False) or getattr(opt, "weight_decay", None)
                or getattr(opt, "clipnorm", None) or getattr(opt, "clipvalue", None)
                or getattr(opt, "global_clipnorm", None)
                or getattr(opt, "gradient_accumulation_steps", None)
                or getattr(opt, "loss_scale_factor", None))


class FusedUpdate:
    """The fused-kernel update of one Keras optimizer; `apply` returns False where it does not
    apply (the caller then runs the optimizer's own apply_gradients)."""

    def __init__(self, opt, learning_rate, variables):
        self.opt, self.learning_rate = opt, learning_rate
        self.kind = None
        if _plain(opt) and type(opt) is keras.optimizers.Adam and not opt.amsgrad:
            self.kind = "adam"
        elif (_plain(opt) and type(opt) is keras.optimizers.RMSprop and not opt.centered
              and not opt.momentum):
            self.kind = "rmsprop"
        elif _plain(opt) and type(opt) is keras.optimizers.SGD and not opt.momentum:
            self.kind = "sgd"
        # RMSprop without momentum: the kernel's `mom` input is scratch (mom = lr*g/sqrt(ms+eps)).
        # Made here, eagerly: a variable made while tracing makes tf.function trace twice.
        self._scratch = {id(v): tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False,
                                            name="rmsprop_scratch")
                         for v in (variables if self.kind == "rmsprop" else [])}

    def apply(self, pairs) -> bool:
        if self.kind is None or any(v.dtype != tf.float32 or isinstance(g, tf.IndexedSlices)
                                    for g, v in pairs):
            return False
        opt = self.opt
        lr = tf.cast(self.learning_rate(), tf.float32)
        powers = None
        if self.kind == "adam":
            step = tf.cast(opt.iterations + 1, tf.float32)
            powers = tf.pow(float(opt.beta_1), step), tf.pow(float(opt.beta_2), step)
        # Variables made under a tf.distribute strategy have a copy per device: the kernel runs
        # once per copy, as Keras's own update does (inside it, handles are the copy's).
        strategy = getattr(opt, "_distribution_strategy", None)
        if strategy is tf.distribute.get_strategy() and not tf.distribute.has_strategy():
            strategy = None  # the default strategy: one copy
        ops = []
        for g, v in pairs:
            if strategy is None:
                ops.append(self._kernel(g, _handle(v), v, lr, powers))
            else:
                ops.append(strategy.extended.update(
                    _tf_variable(v),
                    lambda copy, grad, v=v: self._kernel(grad, copy.handle, v, lr, powers),
                    args=(g,), group=True))
        with tf.control_dependencies(ops):
            # As Keras does after its update: a variable's constraint (e.g. a weight mask,
            # rl_sever.isolation.masks) is applied to the updated value.
            ops = [v.assign(v.constraint(v)) for _, v in pairs
                   if getattr(v, "constraint", None) is not None] or ops
        with tf.control_dependencies(ops):
            opt.iterations.assign_add(1)
        return True

    def _kernel(self, g, handle, v, lr, powers):
        """The update of variable `v` (its copy `handle`) by gradient `g`."""
        opt = self.opt
        i = opt._get_variable_index(v)
        if self.kind == "adam":
            return tf.raw_ops.ResourceApplyAdam(
                var=handle, m=_handle(opt._momentums[i]), v=_handle(opt._velocities[i]),
                beta1_power=powers[0], beta2_power=powers[1], lr=lr, beta1=float(opt.beta_1),
                beta2=float(opt.beta_2), epsilon=float(opt.epsilon), grad=g)
        if self.kind == "rmsprop":
            return tf.raw_ops.ResourceApplyRMSProp(
                var=handle, ms=_handle(opt._velocities[i]), mom=_handle(self._scratch[id(v)]),
                lr=lr, rho=float(opt.rho), momentum=0.0, epsilon=float(opt.epsilon), grad=g)
        return tf.raw_ops.ResourceApplyGradientDescent(var=handle, alpha=lr, delta=g)


def _tf_variable(v):
    return getattr(v, "value", v) if not isinstance(v, tf.Variable) else v


def _handle(v):
    return v.handle if hasattr(v, "handle") else v.value.handle

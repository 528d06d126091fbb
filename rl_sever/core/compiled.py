"""What compiled steps cost outside their graph: tracing them, and calling them.

Calling: a compiled step with as little Python per call as TensorFlow allows.

A `tf.function` call spends most of its time in Python before the graph runs: binding the
arguments to the function type, converting them, and re-collecting the captured variables
(measured here: 3.9 ms for an A2C train step whose graph runs in 1.4 ms; 440 µs for an act
step whose graph runs in ~250 µs). The per-env-step act call and the per-update train call pay
it thousands of times a run.

`FastCall` traces the function once for a fixed input signature and then feeds the traced
graph directly: inputs converted to the signature's dtypes, the captured variable handles
collected once. The traced graph is the same one `tf.function` would run, so results are
bit-identical (tests/test_compiled.py). When TensorFlow's internals it relies on are missing, a
gradient tape is recording, or the call happens inside another trace, it falls back to the
public concrete-function call.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

try:  # private: TensorFlow's own "is any tape watching" test, as ConcreteFunction uses it
    from tensorflow.python.eager.record import could_possibly_record
except ImportError:  # pragma: no cover - a TensorFlow without it takes the public path
    def could_possibly_record() -> bool:
        return True

try:  # private: what tf.constant ends in for a NumPy array, without its Python around it
    from tensorflow.python.eager import context as _context
    from tensorflow.python.framework.ops import EagerTensor as _EagerTensor
except ImportError:  # pragma: no cover
    _EagerTensor = None


def per_agent(fn):
    """`fn`, a tf.function made for one agent (or one env view, one policy copy), without
    TensorFlow's "frequent retracing" warning. TensorFlow counts traces per Python code object:
    the same method or closure traced once for each of five agents built in one process (seeds
    in a loop, a tune worker's trials, an evaluation env per evaluation) made it warn that
    tracing is expensive and suggest a retrace bug that is not there. Each such function still
    traces once per instance (tests/test_retrace.py and tests/test_every_algorithm.py count
    the traces)."""
    fn._omit_frequent_tracing_warning = True  # private: TensorFlow's own opt-out; ignored if gone
    return fn


def plain_graph(fn):
    """`fn` traced as written, without AutoGraph's source rewriting.

    AutoGraph converts every function a compiled step calls, recursively; for the update steps
    that conversion was most of the trace time (A2C: 2.8 s of a 3.4 s first call). The gradient
    steps use tf.cond / tf.while_loop explicitly where they branch on tensors, so they are wrapped
    in this. Users' loss terms are still converted (rl_sever.objective.evaluate).
    """
    return tf.autograph.experimental.do_not_convert(fn)


_HOST_ONLY: list[bool] = []  # whether this process sees no GPU (found once)


def _target_device(ctx) -> str | None:
    """Where a converted input is placed: tf.constant's device (the context's), except on a
    machine without a GPU outside any device scope. There TensorFlow's empty device name
    makes it copy the new host tensor to the default device, the same CPU: 33.8 us against
    5.8 us for a [5, 8, 4] array (A2C CartPole's update converts eight per call); None skips it.
    Other accelerators (a TPU, a plugin device) are not looked for: there the runtime copies
    the host tensor where the call needs it."""
    name = ctx.device_name
    if name:
        return name
    if not _HOST_ONLY:
        _HOST_ONLY.append(not tf.config.list_logical_devices("GPU"))
    return None if _HOST_ONLY[0] else name


class FastCall:
    """`fn` traced once for `signature`; call it with positional arrays or tensors."""

    def __init__(self, fn, signature: list | None = None):
        # May nest (e.g. a Transitions of TensorSpecs).
        self.signature = list((fn.input_signature or []) if signature is None else signature)
        self.concrete = fn.get_concrete_function(*self.signature)
        self._dtypes = [spec.dtype for spec in tf.nest.flatten(self.signature)]
        # A structure (a Dict observation, even of one key; an absent field ()) is flattened.
        self._nested = any(not isinstance(spec, tf.TensorSpec) for spec in self.signature)
        self._atomic = getattr(self.concrete, "_inference_function", None)
        deferred = getattr(self.concrete.graph, "deferred_external_captures", [])
        self._captures = None
        if self._atomic is not None and hasattr(self._atomic, "call_preflattened") and not deferred:
            self._captures = list(self.concrete.captured_inputs)

    @property
    def fast(self) -> bool:
        """True when calls bypass tf.function's per-call dispatch."""
        return self._captures is not None

    @staticmethod
    def _tensor(array: np.ndarray, dtype) -> tf.Tensor:
        if _EagerTensor is None or not tf.executing_eagerly():
            return tf.constant(array)
        ctx = _context.context()
        ctx.ensure_initialized()
        # A copy, as tf.constant makes: the tensor must not share the caller's buffer.
        return _EagerTensor(array.copy(), _target_device(ctx), dtype.as_datatype_enum)

    def _convert(self, args) -> list[tf.Tensor]:
        if len(args) != len(self._dtypes):
            raise TypeError(f"expected {len(self._dtypes)} arguments, got {len(args)}")
        out = []
        for a, dtype in zip(args, self._dtypes):
            if isinstance(a, tf.Tensor) and a.dtype == dtype:
                out.append(a)
            elif isinstance(a, np.ndarray) and a.dtype == dtype.as_numpy_dtype:
                out.append(self._tensor(a, dtype))
            else:
                out.append(tf.convert_to_tensor(a, dtype))
        return out

    def __call__(self, *args) -> Any:
        """Positional arguments structured as the signature (nested ones as nested values)."""
        tensors = self._convert(tf.nest.flatten(args) if self._nested else args)
        if (self._captures is not None and tf.executing_eagerly()
                and not could_possibly_record()):
            return self._atomic.call_preflattened(tensors + self._captures)
        if self._nested:
            return self.concrete(*tf.nest.pack_sequence_as(self.signature, tensors))
        return self.concrete(*tensors)


def fast_call_of(owner, name: str):
    """`owner`'s tf.function attribute `name` called through a FastCall kept on `owner`, rebuilt
    when the attribute holds another function (an export swaps an agent's greedy_fn for a
    while: rl_sever.deploy.graph); the function itself where it has no input signature or
    functions run eagerly (debugging: tf.config.run_functions_eagerly).
    `predict` calls its act steps so: 276-296 µs against 555-626 µs through tf.function for a
    SAC HalfCheetah greedy step on 10 observations (docs/performance.md)."""
    fn = getattr(owner, name)
    if getattr(fn, "input_signature", None) is None or tf.config.functions_run_eagerly():
        return fn
    cache = owner.__dict__.setdefault("_fast_calls", {})
    held = cache.get(name)
    if held is None or held[0] is not fn:
        held = cache[name] = (fn, FastCall(fn))
    return held[1]
